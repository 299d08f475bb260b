//! The node HTTP stream (protocol version 5, `StreamRequest::NodeHttp`): `nodes/proxy`
//! reaches the node's own endpoints (`/healthz`, `/pods`, `/stats/summary`,
//! `/metrics/resource`) without the node listening on any port. The server opens a stream with
//! the header; the agent answers `Accepted` (or `Failed` when it serves no endpoints, as an
//! older agent does for an unknown request) and the rest of the stream is one HTTP/1.1
//! connection: the server is the client, the agent the server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::streams::{LogError, LogStream};
use crate::proto::StreamRequest;

/// One HTTP/1.1 connection carried by a link stream: read what the peer sent, write ours.
pub struct NodeHttpConnection {
    reader: tokio::io::Chain<std::io::Cursor<Bytes>, quinn::RecvStream>,
    writer: quinn::SendStream,
}

impl std::fmt::Debug for NodeHttpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHttpConnection").finish_non_exhaustive()
    }
}

impl NodeHttpConnection {
    pub(crate) fn new(leftover: Bytes, recv: quinn::RecvStream, send: quinn::SendStream) -> Self {
        Self {
            reader: std::io::Cursor::new(leftover).chain(recv),
            writer: send,
        }
    }

    /// The two halves: bytes from the peer, and a sink for ours.
    pub fn into_split(self) -> (LogStream, super::streams::ExecSink) {
        (
            LogStream::from_parts(self.reader),
            super::streams::ExecSink::from_send(self.writer),
        )
    }
}

impl AsyncRead for NodeHttpConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for NodeHttpConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.writer), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.writer), cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.writer), cx)
    }
}

/// Serves one node HTTP connection (agent side): the node's endpoints, with hyper's server.
pub type NodeHttpHandler =
    Arc<dyn Fn(NodeHttpConnection) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Opens a node HTTP stream on `connection` (server side).
pub(crate) async fn open_node_http(
    connection: &quinn::Connection,
) -> Result<NodeHttpConnection, LogError> {
    let (rest, recv, send) =
        super::streams::open_stream(connection, &StreamRequest::NodeHttp, "node HTTP").await?;
    Ok(NodeHttpConnection::new(rest, recv, send))
}

/// Answers a node HTTP stream (agent side): hands the connection to `handler`, or says the
/// node serves no endpoints.
pub(crate) async fn serve_node_http(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    leftover: Bytes,
    handler: Option<NodeHttpHandler>,
) {
    let Some(handler) = handler else {
        let error = LogError::NotFound("this node serves no HTTP endpoints".into());
        super::streams::refuse(&mut send, &error).await;
        return;
    };
    if !super::streams::accept(&mut send).await {
        return;
    }
    handler(NodeHttpConnection::new(leftover, recv, send)).await;
}
