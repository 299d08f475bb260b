//! Server-initiated streams on a node's connection: one header frame each way, then raw bytes.
//! Logs today; exec and image transfer later use the same shape.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::proto::{decode, encode, FrameDecoder, LogRequest, StreamReply, StreamRequest};

/// Largest header frame of a stream.
const MAX_HEADER_LEN: usize = 64 * 1024;
/// Error code sent when a stream is abandoned.
const STREAM_ABORTED: u32 = 1;

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LogError {
    /// The pod or container is not on the node.
    #[error("{0}")]
    NotFound(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

/// A log's bytes, read on the agent side.
pub type LogReader = Box<dyn AsyncRead + Send + Unpin>;

/// Serves logs on the agent side; the node agent implements it over its log files.
pub trait LogProvider: Send + Sync + 'static {
    /// Opens the log `request` names.
    fn open_log(
        &self,
        request: LogRequest,
    ) -> Pin<Box<dyn Future<Output = Result<LogReader, LogError>> + Send + '_>>;
}

/// A provider for nodes that run no containers (hollow nodes, a bare link).
#[derive(Debug, Clone)]
pub struct NoLogs(pub String);

impl LogProvider for NoLogs {
    fn open_log(
        &self,
        request: LogRequest,
    ) -> Pin<Box<dyn Future<Output = Result<LogReader, LogError>> + Send + '_>> {
        let message = format!(
            "no log for container {} of pod {}/{}: {}",
            request.container, request.namespace, request.pod, self.0
        );
        Box::pin(async move { Err(LogError::NotFound(message)) })
    }
}

/// A log streamed from a node (server side): read it like a file.
pub struct LogStream {
    inner: tokio::io::Chain<std::io::Cursor<Bytes>, quinn::RecvStream>,
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream").finish_non_exhaustive()
    }
}

impl AsyncRead for LogStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Reads one header frame, returning it and any bytes that followed it.
async fn read_header(recv: &mut quinn::RecvStream) -> Result<(Bytes, Bytes), String> {
    let mut decoder = FrameDecoder::new(MAX_HEADER_LEN);
    loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            return Ok((frame, decoder.into_remaining()));
        }
        match recv.read_chunk(MAX_HEADER_LEN, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) => return Err("the stream ended before its header".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Opens a log stream on `connection` (server side).
pub(crate) async fn open_log(
    connection: &quinn::Connection,
    request: LogRequest,
) -> Result<LogStream, LogError> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| LogError::Failed(format!("cannot open a stream to the node: {e}")))?;
    let header = encode(&StreamRequest::Logs(request), MAX_HEADER_LEN)
        .map_err(|e| LogError::Failed(e.to_string()))?;
    send.write_all(&header)
        .await
        .map_err(|e| LogError::Failed(format!("cannot send the log request to the node: {e}")))?;
    let _ = send.finish();
    let (frame, rest) = read_header(&mut recv)
        .await
        .map_err(|e| LogError::Failed(format!("no answer from the node: {e}")))?;
    match decode::<StreamReply>(&frame) {
        Ok(StreamReply::Accepted) => Ok(LogStream {
            inner: std::io::Cursor::new(rest).chain(recv),
        }),
        Ok(StreamReply::Failed {
            not_found: true,
            message,
        }) => Err(LogError::NotFound(message)),
        Ok(StreamReply::Failed { message, .. }) => Err(LogError::Failed(message)),
        Err(e) => Err(LogError::Failed(format!("bad answer from the node: {e}"))),
    }
}

/// Serves one server-initiated stream (agent side).
pub(crate) async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    logs: &dyn LogProvider,
) {
    let request = match read_header(&mut recv).await {
        Ok((frame, _)) => decode::<StreamRequest>(&frame),
        Err(error) => {
            tracing::debug!(%error, "server stream without a header");
            let _ = send.reset(STREAM_ABORTED.into());
            return;
        }
    };
    let reply = |reply: &StreamReply| encode(reply, MAX_HEADER_LEN);
    match request {
        Ok(StreamRequest::Logs(request)) => match logs.open_log(request).await {
            Ok(mut reader) => {
                if let Ok(frame) = reply(&StreamReply::Accepted) {
                    if send.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                if let Err(error) = tokio::io::copy(&mut reader, &mut send).await {
                    tracing::debug!(%error, "log stream ended early");
                    let _ = send.reset(STREAM_ABORTED.into());
                    return;
                }
                let _ = send.finish();
            }
            Err(error) => {
                let failed = StreamReply::Failed {
                    not_found: matches!(error, LogError::NotFound(_)),
                    message: error.to_string(),
                };
                if let Ok(frame) = reply(&failed) {
                    let _ = send.write_all(&frame).await;
                }
                let _ = send.finish();
            }
        },
        Err(error) => {
            let failed = StreamReply::Failed {
                not_found: false,
                message: format!("unsupported stream request: {error}"),
            };
            if let Ok(frame) = reply(&failed) {
                let _ = send.write_all(&frame).await;
            }
            let _ = send.finish();
        }
    }
}
