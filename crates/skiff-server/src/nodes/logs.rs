//! Reaching a node's container logs over its link (for `kubectl logs`), also behind NAT.

use std::sync::Arc;

use skiff_link::proto::LogRequest;
use skiff_link::quic::{LinkServer, LogError, LogStream};

/// Opens log streams on connected nodes.
#[derive(Clone)]
pub struct NodeLogProxy {
    server: Arc<LinkServer>,
}

impl std::fmt::Debug for NodeLogProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLogProxy").finish_non_exhaustive()
    }
}

impl NodeLogProxy {
    pub(crate) fn new(server: Arc<LinkServer>) -> Self {
        Self { server }
    }

    /// Streams a container log from `node`. A node without a session is
    /// `LogError::Failed("node N is not connected")`.
    pub async fn pod_logs(&self, node: &str, request: LogRequest) -> Result<LogStream, LogError> {
        let Some(sender) = self.server.node(node) else {
            return Err(LogError::Failed(format!("node {node} is not connected")));
        };
        sender.open_log(request).await
    }
}
