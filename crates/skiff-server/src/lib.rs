//! Wiring of the store, API server, controllers and node sessions into the control plane.
//!
//! [`run`] starts everything in order — data directories, PKI, store, API bootstrap, HTTPS
//! listener, kubeconfig — then serves until shutdown. [`ControlPlane`] holds the pieces so
//! later parts (controllers, node sessions) can be started beside the API.

mod banner;
mod config;
mod control_plane;
mod controllers;
pub mod data_dir;
pub mod deploy;
pub mod event_ttl;
pub mod nodes;
pub mod secrets_encryption;
mod system_services;

pub use config::ServerConfig;
pub use control_plane::{ControlPlane, ServerPaths};
pub use controllers::{parse_duration, ControllerSettings};

/// Errors that stop the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A directory or file of the data directory could not be created or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory is unsafe or in use.
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    /// The secrets encryption keys are unusable.
    #[error("secrets encryption: {0}")]
    Encryption(#[from] secrets_encryption::EncryptionFileError),
    /// The certificates could not be created or loaded.
    #[error("PKI: {0}")]
    Pki(#[from] skiff_pki::PkiError),
    /// The datastore could not be opened.
    #[error("cannot open the datastore {path}: {source}")]
    Store {
        /// The database file.
        path: std::path::PathBuf,
        /// The cause.
        source: Box<skiff_store::StoreError>,
    },
    /// The system namespaces could not be created.
    #[error("cannot create the system objects: {0}")]
    Bootstrap(Box<skiff_apiserver::ApiError>),
    /// The API port could not be bound.
    #[error("cannot listen on {addr} (is another server running?): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error(transparent)]
    Serve(#[from] skiff_apiserver::ServeError),
    /// The node link could not start.
    #[error(transparent)]
    NodeLink(#[from] nodes::NodeLinkError),
    /// The scheduler and controllers could not start (a bad setting).
    #[error("controllers: {0}")]
    Controllers(#[from] skiff_controllers::Error),
    /// A background task of the control plane panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// What the server's own node agent needs to join its server.
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// `https://127.0.0.1:PORT` (or the bind address).
    pub server_url: String,
    /// The default join token.
    pub token: String,
}

/// A boxed future, for [`LocalAgent`].
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Starts the server's own node agent (the binary provides it: skiff-server does not depend on
/// the agent). It runs until the future it is given resolves, then returns.
pub type LocalAgent =
    Box<dyn FnOnce(LocalNode, BoxFuture<()>) -> BoxFuture<Result<(), String>> + Send>;

/// How often `DIR/server/manifests` is looked at.
const MANIFEST_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_with_local_agent(config, shutdown, None).await
}

/// Runs the control plane and, unless `--disable-agent`, the local node agent `local_agent`,
/// until `shutdown` resolves; the agent stops first.
pub async fn run_with_local_agent(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
    local_agent: Option<LocalAgent>,
) -> Result<(), ServerError> {
    let plane = ControlPlane::start(&config).await?;
    // Background upkeep of the store, stopped with the control plane.
    let mut upkeep = vec![
        event_ttl::spawn(plane.store.clone(), config.event_ttl),
        system_services::spawn(
            plane.api.clone(),
            plane.advertised_ip,
            plane.listen_address.port(),
        ),
    ];
    if plane.encrypted {
        upkeep.push(secrets_encryption::spawn_rotation_watcher(
            plane.store.clone(),
            secrets_encryption::EncryptionFiles::new(&plane.paths),
        ));
    }
    let controllers = controllers::start(
        &plane.api,
        controllers::config(&config.controllers, &config.cluster_cidr),
    )?;
    let mut link_settings = nodes::NodeLinkSettings::new(
        std::net::SocketAddr::new(config.bind_address, plane.listen_address.port()),
        &plane.paths.root,
        config.token.clone(),
    );
    link_settings.heartbeat_interval = config.node_heartbeat_interval;
    if !config.disable_agent {
        link_settings.control_plane_node = Some(config.node_name.clone());
    }
    link_settings.images = config.images.clone();
    // Nodes without a direct path to the API reach it through the link (the API tunnel):
    // their streams are spliced to this server's API listener, as local clients reach it.
    let api_local_ip = if config.bind_address.is_unspecified() || config.bind_address.is_loopback()
    {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        config.bind_address
    };
    link_settings.api_tunnel_target = Some(std::net::SocketAddr::new(
        api_local_ip,
        plane.listen_address.port(),
    ));
    link_settings.cluster_network = Some(skiff_link::proto::ClusterNetwork {
        cluster_cidr: config.cluster_cidr.clone(),
        backend: config.flannel_backend.clone(),
    });
    link_settings.service_network = Some(skiff_link::proto::service::ServiceNetwork {
        service_cidr: config.service_cidr.to_string(),
        // The tenth address (10.43.0.10 by default), where the kube-dns Service is.
        cluster_dns: config.service_cidr.nth(10).to_string(),
        cluster_domain: config.cluster_domain.clone(),
        node_port_range: config.service_node_port_range.to_string(),
    });
    // First start: the join token is created now, and the banner shows it.
    let first_start = !plane.paths.root.join("node-token").exists();
    let link = nodes::NodeLink::start(&plane.api, &plane.pki, link_settings).await?;
    let token = link.token().to_string();
    eprint!(
        "{}",
        banner::text(
            &plane.paths.admin_kubeconfig,
            &plane.join_url,
            if first_start {
                banner::TokenShown::Value(&token)
            } else {
                banner::TokenShown::File(link.token_path())
            },
        )
    );
    // Auto-deploy of DIR/server/manifests, as an admin-like identity of its own.
    let deployer = deploy::Deployer::start(
        kube::Client::new(
            plane.api.service(skiff_apiserver::Identity::new(
                deploy::DEPLOY_USER,
                [skiff_pki::ADMIN_GROUP],
            )),
            "default",
        ),
        deploy::DeploySettings {
            dir: deploy::manifests_dir(&plane.paths.root),
            prune: config.manifests_prune,
            interval: MANIFEST_POLL,
        },
    )
    .map_err(|source| ServerError::Io {
        action: "create directory",
        path: deploy::manifests_dir(&plane.paths.root),
        source,
    })?;
    // `kubectl logs` and `kubectl exec` reach nodes over their links.
    plane
        .api
        .set_node_proxy(std::sync::Arc::new(link.log_proxy()));
    // `kubectl top` reads the nodes' usage reports.
    plane.api.set_metrics_source(link.metrics_source());
    let agent = match (config.disable_agent, local_agent) {
        (true, _) => None,
        (false, None) => {
            tracing::warn!("no local node agent in this process; running the control plane only");
            None
        }
        (false, Some(start)) => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let node = LocalNode {
                server_url: plane.local_url.clone(),
                token: link.token().to_string(),
            };
            let mut stopped = stopped;
            let running = start(
                node,
                Box::pin(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }),
            );
            let task = tokio::spawn(async move {
                let result = running.await;
                if let Err(error) = &result {
                    tracing::error!(%error, "the local node agent stopped; the control plane keeps running");
                }
                result
            });
            Some((stop, task))
        }
    };
    // Nodes get their goodbye before the API and the store stop.
    let (stop_api, mut api_stopped) = tokio::sync::watch::channel(false);
    let api = tokio::spawn(plane.serve(async move {
        let _ = api_stopped.wait_for(|stop| *stop).await;
    }));
    shutdown.await;
    if let Some((stop, task)) = agent {
        let _ = stop.send(true);
        match tokio::time::timeout(std::time::Duration::from_secs(15), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(_))) => {}
            Ok(Err(error)) => tracing::error!(%error, "the local node agent panicked"),
            Err(_) => tracing::warn!("the local node agent did not stop in time"),
        }
    }
    deployer.shutdown().await;
    link.shutdown().await;
    controllers.shutdown().await;
    for task in upkeep {
        task.abort();
    }
    let _ = stop_api.send(true);
    api.await.map_err(|e| ServerError::Task(e.to_string()))?
}

pub use skiff_apiserver::{InvalidNodePortRange, InvalidServiceCidr, NodePortRange, ServiceCidr};
pub use skiff_types::KUBERNETES_VERSION;
