//! The agent's error type.

use std::path::PathBuf;

/// Errors that stop the agent, or that one of its parts reports.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is unusable.
    #[error("invalid --{field}: {reason}")]
    InvalidConfig {
        /// The flag (config key) at fault.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory could not be used.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The agent's local database failed.
    #[error("local state {path}: {message}")]
    State {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The image store could not be opened or used.
    /// The data directory is not private (see `skiff_pki::secure_dir`).
    #[error(transparent)]
    Private(#[from] skiff_pki::PrivateDirError),
    #[error(transparent)]
    Image(#[from] skiff_image::ImageError),
    /// The container runtime could not be started.
    #[error(transparent)]
    Runtime(#[from] skiff_runtime::RuntimeError),
    /// The pod network could not be set up.
    #[error(transparent)]
    Network(#[from] skiff_net::NetError),
    /// The link to the server could not be started (join refused, bad token, ...).
    #[error(transparent)]
    Link(#[from] skiff_link::quic::LinkError),
    /// Facts about the machine could not be read.
    #[error("cannot read {what}: {reason}")]
    Machine {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}
