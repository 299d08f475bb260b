//! Settings of `skiff agent`, filled in by the binary from flags, environment and config file.

use std::path::PathBuf;

/// Everything `skiff agent` is told on start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Root of all state (`DIR/agent/...`).
    pub data_dir: PathBuf,
    /// URL of the server (`https://HOST:PORT`).
    pub server: String,
    /// Join token.
    pub token: String,
    /// Node name.
    pub node_name: String,
    /// Node labels (`K=V`).
    pub node_labels: Vec<String>,
    /// Node taints (`K=V:EFFECT`).
    pub node_taints: Vec<String>,
    /// Pod capacity.
    pub max_pods: u32,
}
