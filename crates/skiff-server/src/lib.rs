//! Wiring of the store, API server, controllers and node sessions into the control plane.

mod config;

pub use config::ServerConfig;

/// Errors that stop the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A piece of the control plane is not built yet.
    #[error("{0} is not yet available in this build of skiff")]
    NotAvailable(&'static str),
}

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let _ = (config, shutdown);
    Err(ServerError::NotAvailable("the control plane"))
}

pub use skiff_types::KUBERNETES_VERSION;
