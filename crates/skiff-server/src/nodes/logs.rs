//! Reaching a node's containers over its link — logs for `kubectl logs`, exec for
//! `kubectl exec`, port-forward for `kubectl port-forward` and the pod/service proxies — also
//! behind NAT: the API server's [`NodeProxy`].

use std::sync::Arc;

use skiff_apiserver::{
    NodeProxy, NodeProxyError, NodeReader, NodeWriter, PodExecOptions, PodLogOptions, ProxyFuture,
};
use skiff_link::proto::{ExecRequest, LogRequest, PortForwardRequest};
use skiff_link::quic::{LinkServer, LogError, LogStream, NodeSender};

/// Opens log and exec streams on connected nodes.
#[derive(Clone)]
pub struct NodeLogProxy {
    server: Arc<LinkServer>,
}

impl std::fmt::Debug for NodeLogProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLogProxy").finish_non_exhaustive()
    }
}

fn proxy_error(error: LogError) -> NodeProxyError {
    match error {
        LogError::NotFound(m) => NodeProxyError::NotFound(m),
        LogError::Failed(m) => NodeProxyError::Failed(m),
    }
}

impl NodeLogProxy {
    pub(crate) fn new(server: Arc<LinkServer>) -> Self {
        Self { server }
    }

    fn sender(&self, node: &str) -> Result<NodeSender, NodeProxyError> {
        self.server.node(node).ok_or_else(|| {
            NodeProxyError::NodeNotConnected(format!("node {node} is not connected to the server"))
        })
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

impl NodeProxy for NodeLogProxy {
    fn pod_logs<'a>(
        &'a self,
        node: &'a str,
        namespace: &'a str,
        pod: &'a str,
        options: PodLogOptions,
    ) -> ProxyFuture<'a, Result<NodeReader, NodeProxyError>> {
        Box::pin(async move {
            let sender = self.sender(node)?;
            let stream = sender
                .open_log(LogRequest {
                    namespace: namespace.to_string(),
                    pod: pod.to_string(),
                    container: options.container,
                    follow: options.follow,
                    previous: options.previous,
                    timestamps: options.timestamps,
                    tail_lines: options.tail_lines,
                    since_seconds: options.since_seconds,
                    limit_bytes: options.limit_bytes,
                })
                .await
                .map_err(proxy_error)?;
            Ok(Box::pin(stream) as NodeReader)
        })
    }

    fn pod_exec<'a>(
        &'a self,
        node: &'a str,
        namespace: &'a str,
        pod: &'a str,
        options: PodExecOptions,
    ) -> ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        Box::pin(async move {
            let sender = self.sender(node)?;
            let stream = sender
                .open_exec(ExecRequest {
                    namespace: namespace.to_string(),
                    pod: pod.to_string(),
                    container: options.container,
                    command: options.command,
                    stdin: options.stdin,
                    stdout: options.stdout,
                    stderr: options.stderr,
                    tty: options.tty,
                })
                .await
                .map_err(proxy_error)?;
            let (reader, writer) = stream.into_split();
            Ok(boxed(reader, writer))
        })
    }

    fn node_http<'a>(
        &'a self,
        node: &'a str,
    ) -> ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        Box::pin(async move {
            let sender = self.sender(node)?;
            let connection = sender.open_node_http().await.map_err(proxy_error)?;
            let (reader, writer) = connection.into_split();
            Ok(boxed(reader, writer))
        })
    }

    fn pod_port_forward<'a>(
        &'a self,
        node: &'a str,
        namespace: &'a str,
        pod: &'a str,
        port: u16,
    ) -> ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        Box::pin(async move {
            let sender = self.sender(node)?;
            let stream = sender
                .open_port_forward(PortForwardRequest {
                    namespace: namespace.to_string(),
                    pod: pod.to_string(),
                    port,
                })
                .await
                .map_err(proxy_error)?;
            let (reader, writer) = stream.into_split();
            Ok(boxed(reader, writer))
        })
    }
}

/// Both halves of a node stream, as the API server takes them.
fn boxed(
    reader: impl tokio::io::AsyncRead + Send + 'static,
    writer: impl tokio::io::AsyncWrite + Send + 'static,
) -> (NodeReader, NodeWriter) {
    (Box::pin(reader), Box::pin(writer))
}
