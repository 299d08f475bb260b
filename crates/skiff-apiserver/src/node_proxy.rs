//! Reaching the nodes for `pods/log` and `pods/exec`. The API server does not know how nodes
//! are connected: the control plane plugs in a [`NodeProxy`] (in skiff, the node link).

use std::future::Future;
use std::pin::Pin;

/// Bytes coming from a node.
pub type NodeReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;
/// Bytes going to a node.
pub type NodeWriter = Pin<Box<dyn tokio::io::AsyncWrite + Send>>;
/// A boxed future borrowing the proxy.
pub type ProxyFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What `kubectl logs` asks for (`PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLogOptions {
    /// Container name (resolved by the API server).
    pub container: String,
    /// Keep streaming.
    pub follow: bool,
    /// The previous instance of the container.
    pub previous: bool,
    /// Prefix lines with their timestamps.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines of the last N seconds.
    pub since_seconds: Option<i64>,
    /// Stop after N bytes.
    pub limit_bytes: Option<i64>,
}

/// What `kubectl exec` asks for (`PodExecOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodExecOptions {
    /// Container name (resolved by the API server).
    pub container: String,
    /// argv.
    pub command: Vec<String>,
    /// Attach standard input.
    pub stdin: bool,
    /// Attach standard output.
    pub stdout: bool,
    /// Attach standard error.
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// Why a node could not serve the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeProxyError {
    /// The node has no connection to the server (503).
    #[error("{0}")]
    NodeNotConnected(String),
    /// The pod or container is not there, or not in a state to serve this (400, as upstream).
    #[error("{0}")]
    NotFound(String),
    /// Anything else (500).
    #[error("{0}")]
    Failed(String),
}

/// Opens log and exec streams on nodes.
///
/// An exec stream carries channel frames both ways: one channel byte, a 4-byte big-endian
/// payload length, the payload. The channels are those of Kubernetes' remote-command
/// protocol (`v5.channel.k8s.io`): 0 stdin, 1 stdout, 2 stderr, 3 the final `metav1.Status`,
/// 4 terminal size, 255 close; the API server relays WebSocket messages as such frames.
pub trait NodeProxy: Send + Sync + 'static {
    /// Streams a container's log from `node`.
    fn pod_logs<'a>(
        &'a self,
        node: &'a str,
        namespace: &'a str,
        pod: &'a str,
        options: PodLogOptions,
    ) -> ProxyFuture<'a, Result<NodeReader, NodeProxyError>>;

    /// Starts a command in a container on `node`; returns the node's frames and a sink for ours.
    fn pod_exec<'a>(
        &'a self,
        node: &'a str,
        namespace: &'a str,
        pod: &'a str,
        options: PodExecOptions,
    ) -> ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>>;

    /// Opens one TCP connection to `port` inside the pod's network namespace (its loopback,
    /// as the kubelet's port-forward does); returns the connection's bytes both ways. A port
    /// nobody listens on is [`NodeProxyError::Failed`] naming the port.
    fn pod_port_forward<'a>(
        &'a self,
        node: &'a str,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        let _ = (node, namespace, pod);
        Box::pin(async move {
            Err(NodeProxyError::Failed(format!(
                "unable to do port forwarding to port {port}: this node proxy cannot forward ports"
            )))
        })
    }

    /// Opens an HTTP/1.1 connection to the node's own endpoints (`nodes/proxy`: `/healthz`,
    /// `/pods`, `/stats/summary`, `/metrics/resource`, …), carried over the node link so the
    /// node never listens on a port for it.
    fn node_http<'a>(
        &'a self,
        node: &'a str,
    ) -> ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        Box::pin(async move {
            Err(NodeProxyError::Failed(format!(
                "node {node:?} cannot be proxied by this node proxy"
            )))
        })
    }
}
