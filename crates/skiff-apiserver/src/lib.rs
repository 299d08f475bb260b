//! The Kubernetes-compatible HTTPS API: discovery, OpenAPI, CRUD, patch, watch, tables,
//! authentication and authorization.
//!
//! [`ApiServer`] holds the store and everything rendered once (discovery, OpenAPI). Its
//! [`ApiServer::router`] is an axum router that answers every request with the Kubernetes
//! REST protocol; [`ApiServer::serve`] runs it over rustls with client-certificate
//! authentication, and [`ApiServer::service`] runs it in-process for a fixed identity (the
//! controllers' `kube::Client`).

mod apply;
mod auth;
mod body;
mod bootstrap;
mod discovery;
mod handlers;
mod health;
mod idle;
mod limits;
mod metrics;
pub mod metrics_api;
mod negotiate;
mod node_authorizer;
mod node_ports;
mod node_proxy;
pub mod node_restriction;
mod objects;
mod openapi;
mod openapi_pb;
mod protobuf;
mod query;
mod render;
mod request;
mod serve;
mod service;
mod service_ips;
mod spdy;
mod status;

use std::sync::{Arc, OnceLock, RwLock};

use skiff_store::Store;

pub use auth::{
    forbidden_message, forbidden_path_message, AlwaysAllow, Attributes, Authorizer, Decision,
    GroupAuthorizer, Identity, UnionAuthorizer,
};
pub use body::MAX_BODY_BYTES;
pub use bootstrap::{KUBE_DNS, KUBE_DNS_OFFSET, SYSTEM_NAMESPACES};
pub use health::HealthCheck;
pub use limits::ServeLimits;
pub use metrics_api::MetricsSource;
pub use node_authorizer::NodeAuthorizer;
pub use node_ports::{InvalidNodePortRange, NodePortRange};
pub use node_proxy::{
    NodeProxy, NodeProxyError, NodeReader, NodeWriter, PodExecOptions, PodLogOptions, ProxyFuture,
};
pub use serve::{Authenticated, ServeError};
pub use service::InProcessService;
pub use service_ips::{InvalidServiceCidr, ServiceCidr};
pub use status::{ApiError, Details, StatusCause, Subject};

/// Settings of the API server.
#[derive(Clone)]
pub struct ApiConfig {
    /// Decides what each identity may do.
    pub authorizer: Arc<dyn Authorizer>,
    /// Largest request body accepted (upstream: 3 MiB).
    pub max_body_bytes: usize,
    /// Range Service ClusterIPs are allocated from (`--service-cidr`); its first address is
    /// the `kubernetes` Service's.
    pub service_cidr: ServiceCidr,
    /// Range node ports of NodePort and LoadBalancer Services are allocated from
    /// (`--service-node-port-range`, 30000-32767).
    pub node_port_range: NodePortRange,
    /// The node certificates still good; a request with a revoked one is unauthenticated
    /// (401). `None`: node certificates are not checked beyond their chain.
    pub node_certificates: Option<skiff_pki::NodeCertificates>,
    /// Connection timeouts and caps, in-flight request limits.
    pub limits: ServeLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            authorizer: Arc::new(GroupAuthorizer::masters()),
            max_body_bytes: MAX_BODY_BYTES,
            service_cidr: ServiceCidr::default(),
            node_port_range: NodePortRange::default(),
            node_certificates: None,
            limits: ServeLimits::default(),
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("service_cidr", &self.service_cidr)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The API server: cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    config: ApiConfig,
    discovery: discovery::Discovery,
    openapi: OnceLock<openapi::OpenApiDocs>,
    node_proxy: OnceLock<Arc<dyn NodeProxy>>,
    metrics_source: OnceLock<Arc<dyn MetricsSource>>,
    service_ips: service_ips::ServiceIps,
    node_ports: node_ports::NodePorts,
    inflight: limits::InFlight,
    store_health: health::StoreHealth,
    /// Checks the server added besides `ping` and `store`.
    health_checks: RwLock<Vec<HealthCheck>>,
}

impl ApiServer {
    /// An API server over `store`. Call [`ApiServer::bootstrap`] before serving.
    pub fn new(store: Store, config: ApiConfig) -> Self {
        ApiServer {
            inner: Arc::new(Inner {
                service_ips: service_ips::ServiceIps::new(config.service_cidr),
                node_ports: node_ports::NodePorts::new(config.node_port_range),
                inflight: limits::InFlight::new(&config.limits),
                store_health: health::StoreHealth::default(),
                health_checks: RwLock::new(Vec::new()),
                store,
                config,
                discovery: discovery::Discovery::new(),
                openapi: OnceLock::new(),
                node_proxy: OnceLock::new(),
                metrics_source: OnceLock::new(),
            }),
        }
    }

    /// Creates what must exist before clients come: the system namespaces (`default`,
    /// `kube-system`, `kube-public`, `kube-node-lease`). Their `default` ServiceAccounts come
    /// from the service account controller (skiff-controllers).
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        bootstrap::run(self).await
    }

    /// Creates the `kubernetes` Service in `default` (the first address of the service CIDR,
    /// port 443 named `https`, target port `api_port`), or points an existing one's target port
    /// at `api_port`. (Routing Service addresses to endpoints is not implemented yet.)
    pub async fn ensure_kubernetes_service(&self, api_port: u16) -> Result<(), ApiError> {
        bootstrap::kubernetes_service(self, api_port).await
    }

    /// Writes the Endpoints and EndpointSlice `default/kubernetes`: `address` (what other
    /// machines and pods reach this server at) and the HTTPS `port`, named `https`. Nothing
    /// is written without an address pods can reach (none, loopback or unspecified).
    pub async fn ensure_kubernetes_endpoints(
        &self,
        address: Option<std::net::IpAddr>,
        port: u16,
    ) -> Result<(), ApiError> {
        bootstrap::kubernetes_endpoints(self, address, port).await
    }

    /// Creates the `kube-dns` Service in `kube-system` (the tenth address of the service CIDR,
    /// 53/UDP `dns` and 53/TCP `dns-tcp`, no selector) when it is missing.
    pub async fn ensure_kube_dns_service(&self) -> Result<(), ApiError> {
        bootstrap::kube_dns_service(self).await
    }

    pub(crate) fn node_ports(&self) -> &node_ports::NodePorts {
        &self.inner.node_ports
    }

    pub(crate) fn service_ips(&self) -> &service_ips::ServiceIps {
        &self.inner.service_ips
    }

    /// The store behind the API.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Plugs in how `pods/log` and `pods/exec` reach nodes (once; later calls are ignored).
    /// Without it those requests answer 503.
    pub fn set_node_proxy(&self, proxy: Arc<dyn NodeProxy>) {
        let _ = self.inner.node_proxy.set(proxy);
    }

    pub(crate) fn node_proxy(&self) -> Option<Arc<dyn NodeProxy>> {
        self.inner.node_proxy.get().cloned()
    }

    /// Plugs in where `metrics.k8s.io` (`kubectl top`) gets its numbers (once; later calls
    /// are ignored). Without it the group answers empty lists.
    pub fn set_metrics_source(&self, source: Arc<dyn MetricsSource>) {
        let _ = self.inner.metrics_source.set(source);
    }

    pub(crate) fn metrics_source(&self) -> Option<Arc<dyn MetricsSource>> {
        self.inner.metrics_source.get().cloned()
    }

    /// The node certificates this server checks requests against, if it does.
    pub fn node_certificates(&self) -> Option<&skiff_pki::NodeCertificates> {
        self.config().node_certificates.as_ref()
    }

    /// Adds a check to `/healthz`, `/livez` and `/readyz` (after `ping` and `store`, which
    /// fails while the last store write failed for the store's own reasons).
    pub fn add_health_check(&self, check: HealthCheck) {
        self.inner
            .health_checks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(check);
    }

    /// Every health check, in output order.
    pub(crate) fn health_checks(&self) -> Vec<HealthCheck> {
        let store = self.clone();
        let mut checks = vec![
            HealthCheck::new("ping", || Ok(())),
            HealthCheck::new("store", move || {
                store.inner.store_health.check(&store.inner.store)
            }),
        ];
        checks.extend(
            self.inner
                .health_checks
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        checks
    }

    /// Notes the outcome of a failed store write for the `store` health check.
    pub(crate) fn note_store_error(&self, error: &skiff_store::StoreError) {
        self.inner.store_health.note(&self.inner.store, error);
    }

    pub(crate) fn inflight(&self) -> &limits::InFlight {
        &self.inner.inflight
    }

    pub(crate) fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    pub(crate) fn discovery(&self) -> &discovery::Discovery {
        &self.inner.discovery
    }

    pub(crate) fn openapi(&self) -> &openapi::OpenApiDocs {
        self.inner
            .openapi
            .get_or_init(openapi::OpenApiDocs::generate)
    }

    /// The router answering every API path. Requests must carry an [`Authenticated`]
    /// extension (the serve loop and [`ApiServer::service`] add it) or get 401.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handlers::dispatch)
            .with_state(self.clone())
    }

    /// The router as a tower service acting as `identity`, for in-process clients:
    /// `kube::Client::new(api.service(Identity::admin()), "default")`.
    pub fn service(&self, identity: Identity) -> InProcessService {
        InProcessService::new(self.router(), identity)
    }
}
