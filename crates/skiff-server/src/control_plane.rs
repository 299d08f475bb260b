//! The started control plane: PKI, store, API server and its listener.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use skiff_apiserver::{ApiConfig, ApiServer, GroupAuthorizer, NodeAuthorizer, UnionAuthorizer};
use skiff_pki::{ServerPki, ServingNames};
use skiff_store::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::data_dir::{secure_dir, DataDirLock};
use crate::secrets_encryption::EncryptionFiles;
use crate::{ServerConfig, ServerError};

/// Where the server keeps its files under the data directory.
#[derive(Debug, Clone)]
pub struct ServerPaths {
    /// `DIR/server`.
    pub root: PathBuf,
    /// `DIR/server/tls`: CA, serving and admin certificates.
    pub tls: PathBuf,
    /// `DIR/server/db/state.redb`: the datastore.
    pub database: PathBuf,
    /// `DIR/server/admin.kubeconfig`.
    pub admin_kubeconfig: PathBuf,
    /// `DIR/server/cred`: the secrets-encryption keys and rotation state.
    pub cred: PathBuf,
}

impl ServerPaths {
    /// The layout under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        let root = data_dir.join("server");
        ServerPaths {
            tls: root.join("tls"),
            database: root.join("db").join("state.redb"),
            admin_kubeconfig: root.join("admin.kubeconfig"),
            cred: root.join("cred"),
            root,
        }
    }
}

/// The running pieces of the control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// File layout.
    pub paths: ServerPaths,
    /// CA and certificates.
    pub pki: ServerPki,
    /// The datastore.
    pub store: Store,
    /// The API (also usable in-process through [`ApiServer::service`]).
    pub api: ApiServer,
    /// The bound HTTPS listener (taken by [`ControlPlane::serve`]).
    listener: TcpListener,
    /// Address the API listens on.
    pub listen_address: SocketAddr,
    /// URL local clients use (`https://127.0.0.1:PORT`).
    pub local_url: String,
    /// URL other machines reach the server at (the `skiff agent --server` of the banner).
    pub join_url: String,
    /// Whether Secrets are encrypted at rest.
    pub encrypted: bool,
    /// The address pods and other machines reach the API at (the `kubernetes` Service's
    /// endpoint): the advertised address, else the bind address, else the host's primary one.
    pub advertised_ip: Option<IpAddr>,
    /// Held while the control plane runs: one server per data directory.
    _lock: DataDirLock,
}

pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
}

impl ControlPlane {
    /// Creates directories and certificates, opens the store, creates the system objects,
    /// binds the API port and writes the admin kubeconfig.
    pub async fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let started = Instant::now();
        let paths = ServerPaths::new(&config.data_dir);
        // Permissions and the lock come before any write: a second server on a live data
        // directory must leave the first one's files untouched.
        secure_dir(&config.data_dir)?;
        secure_dir(&paths.root)?;
        let lock = DataDirLock::acquire(&paths.root)?;
        if let Some(db_dir) = paths.database.parent() {
            secure_dir(db_dir)?;
        }

        // Bound to every address without an advertised one: agents will dial the host's
        // primary address (the banner says so), so the serving certificate must name it.
        let detected = (config.advertise_address.is_none() && config.bind_address.is_unspecified())
            .then(crate::banner::primary_ip)
            .flatten();
        let mut names = ServingNames::new(
            host_name().as_deref().unwrap_or(&config.node_name),
            [
                Some(config.bind_address),
                config.advertise_address,
                detected,
                // The `kubernetes` Service's address, as upstream's serving certificate has it.
                Some(IpAddr::V4(config.service_cidr.first())),
            ]
            .into_iter()
            .flatten(),
        );
        if !config.node_name.trim().is_empty() {
            names.dns.insert(config.node_name.trim().to_lowercase());
        }
        let pki = ServerPki::load_or_create(&paths.tls, &names)?;

        let encryption = EncryptionFiles::new(&paths).prepare(config.secrets_encryption)?;
        let encrypted = encryption.is_some();
        let database = paths.database.clone();
        let options = StoreOptions {
            encryption,
            ..StoreOptions::default()
        };
        let store = tokio::task::spawn_blocking(move || Store::open(&database, options))
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?
            .map_err(|source| ServerError::Store {
                path: paths.database.clone(),
                source: Box::new(source),
            })?;
        tracing::info!(
            path = %paths.database.display(),
            revision = store.revision(),
            "datastore open"
        );

        let api = ApiServer::new(
            store.clone(),
            ApiConfig {
                // Admins may do everything; node identities only what the node authorizer allows.
                authorizer: Arc::new(UnionAuthorizer::new(vec![
                    Arc::new(GroupAuthorizer::masters()),
                    Arc::new(NodeAuthorizer::new(store.clone())),
                ])),
                service_cidr: config.service_cidr,
                node_port_range: config.service_node_port_range,
                // Filled by the node link: revoked node certificates get 401.
                node_certificates: Some(skiff_pki::NodeCertificates::default()),
                ..ApiConfig::default()
            },
        );
        api.bootstrap()
            .await
            .map_err(|e| ServerError::Bootstrap(Box::new(e)))?;

        let addr = SocketAddr::new(config.bind_address, config.https_listen_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let listen_address = listener.local_addr().unwrap_or(addr);
        api.ensure_kubernetes_service(listen_address.port())
            .await
            .map_err(|e| ServerError::Bootstrap(Box::new(e)))?;
        let advertised_ip = config
            .advertise_address
            .or((!config.bind_address.is_unspecified()).then_some(config.bind_address))
            .or(detected)
            .or_else(crate::banner::primary_ip);
        crate::system_services::ensure(&api, advertised_ip, listen_address.port())
            .await
            .map_err(|e| ServerError::Bootstrap(Box::new(e)))?;
        let local_ip = if config.bind_address.is_unspecified() || config.bind_address.is_loopback()
        {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            config.bind_address
        };
        let local_url = match local_ip {
            IpAddr::V4(ip) => format!("https://{ip}:{}", listen_address.port()),
            IpAddr::V6(ip) => format!("https://[{ip}]:{}", listen_address.port()),
        };
        pki.write_admin_kubeconfig(&paths.admin_kubeconfig, &local_url)?;
        let join_url = format!(
            "https://{}:{}",
            crate::banner::join_host(
                config.advertise_address,
                config.bind_address,
                detected,
                host_name().as_deref(),
            ),
            listen_address.port()
        );
        tracing::info!(
            address = %listen_address,
            kubeconfig = %paths.admin_kubeconfig.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "API server ready; use KUBECONFIG={}",
            paths.admin_kubeconfig.display()
        );
        Ok(ControlPlane {
            paths,
            pki,
            store,
            api,
            listener,
            listen_address,
            local_url,
            join_url,
            encrypted,
            advertised_ip,
            _lock: lock,
        })
    }

    /// Serves the API until `shutdown` resolves, then closes the store.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let tls = skiff_pki::server_config(
            self.pki.ca.cert_pem(),
            &self.pki.serving,
            &[b"h2", b"http/1.1"],
        )?;
        let result = self.api.serve(self.listener, Arc::new(tls), shutdown).await;
        self.store.close().await;
        tracing::info!("control plane stopped");
        result.map_err(ServerError::from)
    }
}
