//! Wiring of the store, API server, controllers and node sessions into the control plane.
//!
//! [`run`] starts everything in order — data directories, PKI, store, API bootstrap, HTTPS
//! listener, kubeconfig — then serves until shutdown. [`ControlPlane`] holds the pieces so
//! later parts (controllers, node sessions) can be started beside the API.

mod config;
mod control_plane;
mod controllers;
pub mod nodes;

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

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let plane = ControlPlane::start(&config).await?;
    let controllers = controllers::start(
        &plane.api,
        controllers::config(&config.controllers, &config.cluster_cidr),
    )?;
    let link = nodes::NodeLink::start(
        &plane.api,
        &plane.pki,
        nodes::NodeLinkSettings::new(
            std::net::SocketAddr::new(config.bind_address, plane.listen_address.port()),
            &plane.paths.root,
            config.token.clone(),
        ),
    )
    .await?;
    if !config.disable_agent {
        tracing::warn!(
            "the local node agent is not available in this build yet; running the control plane only (pass --disable-agent to silence this)"
        );
    }
    // Nodes get their goodbye before the API and the store stop.
    let (stop_api, mut api_stopped) = tokio::sync::watch::channel(false);
    let api = tokio::spawn(plane.serve(async move {
        let _ = api_stopped.wait_for(|stop| *stop).await;
    }));
    shutdown.await;
    link.shutdown().await;
    controllers.shutdown().await;
    let _ = stop_api.send(true);
    api.await.map_err(|e| ServerError::Task(e.to_string()))?
}

pub use skiff_types::KUBERNETES_VERSION;
