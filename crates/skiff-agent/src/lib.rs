//! The node agent: pod workers, probes, status reporting and local state for offline operation.

mod config;

pub use config::AgentConfig;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A piece of the agent is not built yet.
    #[error("{0} is not yet available in this build of skiff")]
    NotAvailable(&'static str),
}

/// Runs the node agent until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let _ = (config, shutdown);
    Err(AgentError::NotAvailable("the node agent"))
}
