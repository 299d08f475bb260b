//! The server side of the node link: the QUIC endpoint, joins (bootstrap tokens, node
//! passwords, CSR signing), and one session per connected node that registers its Node, renews
//! its Lease, streams the pods bound to it, and writes back statuses, deletions and events.
//!
//! Sessions act through the API in-process *as the node* (`system:node:<name>`), so the node
//! authorizer governs every write a node causes. Two writes use the server's own identity
//! because the authorizer cannot see a name on create: creating the node's own Node and Lease;
//! their names come from the verified certificate, never from the agent's messages.

mod certificates;
mod desired;
mod error;
mod join;
mod join_limit;
mod lease;
mod logs;
mod objects;
mod peers;
mod policies;
mod registration;
mod services;
mod session;
pub mod tokens;
mod usage;
mod work_limits;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_apiserver::ApiServer;
use skiff_link::proto::ALPN;
use skiff_link::quic::{ApiTunnelSettings, LinkServer, LinkServerConfig};
use skiff_link::session::SessionConfig;
use skiff_pki::{ClusterCa, JoinToken, ServerPki};

pub use error::NodeLinkError;
pub use join::INVALID_TOKEN_MESSAGE;
pub use join_limit::JoinRateLimit;
pub use logs::NodeLogProxy;
pub use work_limits::NodeWorkLimits;

/// Settings of the node link.
#[derive(Debug, Clone)]
pub struct NodeLinkSettings {
    /// UDP address to listen on (the API's address and port number).
    pub listen: SocketAddr,
    /// `DIR/server`: holds `node-token` and the link's restart secret under `tls/`.
    pub server_dir: PathBuf,
    /// `--token`: the default token's secret (or a whole token).
    pub token: Option<String>,
    /// Heartbeat interval asked of agents; the Lease renews at this pace.
    pub heartbeat_interval: Duration,
    /// How often the Node's Ready condition heartbeat is refreshed (upstream: 5 minutes).
    pub node_status_interval: Duration,
    /// The cluster's pod network as agents must set it up (`--cluster-cidr` and the backend),
    /// sent to agents that watch the cluster's nodes.
    pub cluster_network: Option<skiff_link::proto::ClusterNetwork>,
    /// The service CIDR and cluster DNS settings, announced to every agent when its session
    /// opens (its proxy and resolver, and its pods' resolv.conf, need them).
    pub service_network: Option<skiff_link::proto::service::ServiceNetwork>,
    /// Images the server hands over to agents that ask (image hand-over); `None`: none.
    pub images: Option<Arc<dyn skiff_link::quic::ImageSource>>,
    /// Refused joins allowed per source address.
    pub join_rate_limit: JoinRateLimit,
    /// What one node may make the server read and send at once.
    pub work_limits: NodeWorkLimits,
    /// Validity of the node certificates issued at join and renewal (agents renew at two
    /// thirds of it).
    pub node_cert_validity: Duration,
    /// The server's own local node, if it runs one: the server gives it the control-plane
    /// role label itself (a node may not claim `node-role.kubernetes.io/*`, as upstream).
    pub control_plane_node: Option<String>,
    /// The API listener nodes' tunnel streams are spliced to (the local API port), for nodes
    /// whose pods have no direct path to the API; `None`: tunnels are refused.
    pub api_tunnel_target: Option<SocketAddr>,
}

impl NodeLinkSettings {
    /// Defaults: 10 s heartbeats, node status refreshed every 5 minutes.
    pub fn new(listen: SocketAddr, server_dir: &Path, token: Option<String>) -> Self {
        Self {
            listen,
            server_dir: server_dir.to_path_buf(),
            token,
            heartbeat_interval: Duration::from_secs(10),
            node_status_interval: Duration::from_secs(300),
            cluster_network: None,
            service_network: None,
            images: None,
            join_rate_limit: JoinRateLimit::default(),
            work_limits: NodeWorkLimits::default(),
            node_cert_validity: skiff_pki::NODE_CERT_VALIDITY,
            control_plane_node: None,
            api_tunnel_target: None,
        }
    }
}

/// The running node link.
pub struct NodeLink {
    server: Arc<LinkServer>,
    token: JoinToken,
    token_path: PathBuf,
    usage: usage::UsageStore,
}

impl std::fmt::Debug for NodeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLink")
            .field("token_path", &self.token_path)
            .finish_non_exhaustive()
    }
}

/// What every session needs: the API, an admin client, the CA that signs node certificates.
pub(crate) struct Shared {
    pub api: ApiServer,
    pub admin: kube::Client,
    pub ca: ClusterCa,
    pub ca_pem: String,
    pub settings: NodeLinkSettings,
    /// The node certificates still good (shared with the API when it checks them).
    pub certificates: skiff_pki::NodeCertificates,
    /// Refused joins per source address.
    pub join_limiter: join_limit::JoinLimiter,
    /// The node directory, started when the first agent asks for it.
    pub directory: tokio::sync::OnceCell<tokio::sync::watch::Receiver<peers::Directory>>,
    /// The service directory, started when the first agent asks for it.
    pub services:
        tokio::sync::OnceCell<tokio::sync::watch::Receiver<Option<services::ServiceDirectory>>>,
    /// The server-wide NetworkPolicy compiler, started by the first node that asks.
    pub policies:
        tokio::sync::OnceCell<tokio::sync::watch::Receiver<Option<policies::PolicyDirectory>>>,
    /// The nodes' recent resource-usage reports (the metrics API's source).
    pub usage: usage::UsageStore,
}

impl NodeLink {
    /// Writes the default token (`DIR/server/node-token` and its bootstrap-token Secret) and
    /// starts the QUIC endpoint.
    pub async fn start(
        api: &ApiServer,
        pki: &ServerPki,
        settings: NodeLinkSettings,
    ) -> Result<Self, NodeLinkError> {
        let admin = kube::Client::new(api.service(skiff_pki::Identity::admin()), "default");
        let ca = ClusterCa::from_pair(pki.ca.pair().clone())?;
        let ca_pem = pki.ca.cert_pem().to_string();
        let ca_hash = skiff_pki::ca_hash(&ca_pem)?;
        let token_path = settings.server_dir.join("node-token");
        let token =
            tokens::ensure_default(&admin, &ca_hash, &token_path, settings.token.as_deref())
                .await?;
        let restart_secret =
            restart_secret(&settings.server_dir.join("tls").join("link-restart.key"))?;
        let certificates = api.node_certificates().cloned().unwrap_or_default();
        let loaded =
            certificates::load(&admin, &certificates)
                .await
                .map_err(NodeLinkError::api(
                    "cannot load the node certificate records",
                ))?;
        tracing::debug!(nodes = loaded, "node certificate records loaded");
        certificates::watch_revocations(admin.clone(), certificates.clone());
        let tls = skiff_pki::link_server_config_checked(
            &ca_pem,
            &pki.serving,
            &[ALPN],
            Some(certificates.clone()),
        )?;
        let listen = settings.listen;
        let api_tunnel = settings.api_tunnel_target.map(ApiTunnelSettings::new);
        let session = SessionConfig {
            heartbeat_interval: settings.heartbeat_interval,
            services: settings.service_network.clone(),
            ..SessionConfig::default()
        };
        let usage = usage::UsageStore::default();
        let shared = Arc::new(Shared {
            certificates,
            join_limiter: join_limit::JoinLimiter::new(settings.join_rate_limit),
            api: api.clone(),
            admin,
            ca,
            ca_pem,
            settings,
            directory: tokio::sync::OnceCell::new(),
            services: tokio::sync::OnceCell::new(),
            policies: tokio::sync::OnceCell::new(),
            usage: usage.clone(),
        });
        let server = LinkServer::bind(
            LinkServerConfig {
                listen,
                tls,
                session,
                restart_secret,
                api_tunnel,
            },
            Arc::new(session::Sessions::new(shared)),
        )?;
        tracing::info!(
            address = %server.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            token_file = %token_path.display(),
            "node link listening (UDP)"
        );
        Ok(Self {
            server: Arc::new(server),
            token,
            token_path,
            usage,
        })
    }

    /// The default join token.
    pub fn token(&self) -> &JoinToken {
        &self.token
    }

    /// Where the default token is written.
    pub fn token_path(&self) -> &Path {
        &self.token_path
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.local_addr().ok()
    }

    /// Number of connected nodes.
    pub fn session_count(&self) -> usize {
        self.server.session_count()
    }

    /// A handle the API's `pods/log` handler uses to reach nodes.
    pub fn log_proxy(&self) -> NodeLogProxy {
        NodeLogProxy::new(self.server.clone())
    }

    /// Where the API's `metrics.k8s.io` gets its numbers: the nodes' usage reports.
    pub fn metrics_source(&self) -> Arc<dyn skiff_apiserver::MetricsSource> {
        Arc::new(self.usage.clone())
    }

    /// Says goodbye to every node and closes the endpoint.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

/// The endpoint's persistent restart secret (created on first start, mode 0600).
fn restart_secret(path: &Path) -> Result<[u8; 32], NodeLinkError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(bytes) = hex::decode(text.trim()) {
            if let Ok(secret) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(secret);
            }
        }
        tracing::warn!(path = %path.display(), "unreadable link restart secret; creating a new one");
    }
    let secret: [u8; 32] = rand::random();
    tokens::write_private(path, hex::encode(secret).as_bytes())?;
    Ok(secret)
}
