//! Server-initiated streams on a node's connection: one header frame each way, then raw bytes
//! (logs) or channel frames (exec, [`crate::proto::exec`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use crate::proto::exec::{self as channels, ExecFrameDecoder, TerminalSize};
use crate::proto::{
    decode, encode, ExecRequest, FrameDecoder, LogRequest, PortForwardRequest, StreamReply,
    StreamRequest,
};

/// How long a port-forward connection may carry nothing either way before it is closed (the
/// kubelet's default `streamingConnectionIdleTimeout`).
pub const PORT_FORWARD_IDLE: std::time::Duration = std::time::Duration::from_secs(4 * 3600);

/// Largest header frame of a stream (an image offer carries a whole manifest).
const MAX_HEADER_LEN: usize = super::images::MAX_OFFER_FRAME;
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

/// Writes a process's standard input (agent side).
pub type ExecWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A process started for an exec, as the agent hands it to the link.
pub struct ExecIo {
    /// Its standard input (when asked for).
    pub stdin: Option<ExecWriter>,
    /// Its standard output (or the terminal's output).
    pub stdout: Option<LogReader>,
    /// Its standard error (not with a terminal).
    pub stderr: Option<LogReader>,
    /// Resizes the terminal.
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    /// Resolves to the exit code (or why it is unknown) once the process ended.
    pub exit: Pin<Box<dyn Future<Output = Result<i32, String>> + Send>>,
}

impl std::fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo").finish_non_exhaustive()
    }
}

/// Serves logs (and exec) on the agent side; the node agent implements it over its runtime.
pub trait LogProvider: Send + Sync + 'static {
    /// Opens the log `request` names.
    fn open_log(
        &self,
        request: LogRequest,
    ) -> Pin<Box<dyn Future<Output = Result<LogReader, LogError>> + Send + '_>>;

    /// Starts the command `request` names in a container.
    fn open_exec(
        &self,
        request: ExecRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ExecIo, LogError>> + Send + '_>> {
        let message = format!(
            "exec in container {} of pod {}/{} is not supported on this node",
            request.container, request.namespace, request.pod
        );
        Box::pin(async move { Err(LogError::NotFound(message)) })
    }

    /// Serves the node's own HTTP endpoints on a node HTTP stream (`nodes/proxy`,
    /// [`super::node_http`]); `None` (the default) refuses the stream.
    fn node_http(&self) -> Option<super::node_http::NodeHttpHandler> {
        None
    }

    /// Connects to `request.port` on the pod's loopback inside its network namespace.
    fn open_port_forward(
        &self,
        request: PortForwardRequest,
    ) -> Pin<Box<dyn Future<Output = Result<tokio::net::TcpStream, LogError>> + Send + '_>> {
        let message = format!(
            "unable to do port forwarding to port {} of pod {}/{}: not supported on this node",
            request.port, request.namespace, request.pod
        );
        Box::pin(async move { Err(LogError::Failed(message)) })
    }
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

impl LogStream {
    pub(crate) fn from_parts(
        inner: tokio::io::Chain<std::io::Cursor<Bytes>, quinn::RecvStream>,
    ) -> Self {
        Self { inner }
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

/// An exec running on a node (server side): write channel frames with [`ExecStream::writer`],
/// read the node's frames from [`ExecStream::reader`].
pub struct ExecStream {
    reader: LogStream,
    writer: quinn::SendStream,
}

impl std::fmt::Debug for ExecStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecStream").finish_non_exhaustive()
    }
}

/// The sending half of an [`ExecStream`].
pub struct ExecSink(quinn::SendStream);

impl std::fmt::Debug for ExecSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSink").finish_non_exhaustive()
    }
}

impl ExecSink {
    pub(crate) fn from_send(send: quinn::SendStream) -> Self {
        Self(send)
    }
}

impl AsyncWrite for ExecSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

impl ExecStream {
    /// The two halves: the node's channel frames to read, and a sink for ours.
    pub fn into_split(self) -> (LogStream, ExecSink) {
        (self.reader, ExecSink(self.writer))
    }
}

/// One TCP connection in a pod, forwarded over the link (server side): the connection's bytes
/// to read, and a sink whose shutdown half-closes the connection.
pub struct PortForwardStream {
    reader: LogStream,
    writer: quinn::SendStream,
}

impl std::fmt::Debug for PortForwardStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwardStream").finish_non_exhaustive()
    }
}

impl PortForwardStream {
    /// The two halves: the pod's bytes to read, and a sink for ours.
    pub fn into_split(self) -> (LogStream, ExecSink) {
        (self.reader, ExecSink(self.writer))
    }
}

/// Opens a port-forward stream on `connection` (server side).
pub(crate) async fn open_port_forward(
    connection: &quinn::Connection,
    request: PortForwardRequest,
) -> Result<PortForwardStream, LogError> {
    let (rest, recv, send) = open_stream(
        connection,
        &StreamRequest::PortForward(request),
        "port-forward",
    )
    .await?;
    Ok(PortForwardStream {
        reader: LogStream {
            inner: std::io::Cursor::new(rest).chain(recv),
        },
        writer: send,
    })
}

/// Serves a port-forward stream (agent side): connects, answers, then splices the connection
/// and the stream with bounded buffers (QUIC flow control holds a reader that does not read).
async fn serve_port_forward(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    leftover: Bytes,
    request: PortForwardRequest,
    logs: &dyn LogProvider,
) {
    let tcp = match logs.open_port_forward(request).await {
        Ok(tcp) => tcp,
        Err(error) => {
            refuse(&mut send, &error).await;
            return;
        }
    };
    if !accept(&mut send).await {
        return;
    }
    let (tcp_read, tcp_write) = tcp.into_split();
    let quic_read = std::io::Cursor::new(leftover).chain(recv);
    // The server stops reading when its client went away: end the connection then, even if
    // the pod would keep it open and silent.
    let stopped = send.stopped();
    let spliced =
        super::tunnel::splice(tcp_read, &mut send, quic_read, tcp_write, PORT_FORWARD_IDLE);
    tokio::select! {
        result = spliced => {
            if let Err(error) = result {
                tracing::debug!(%error, "port-forward ended early");
                let _ = send.reset(STREAM_ABORTED.into());
            }
        }
        Ok(Some(_)) = stopped => {}
    }
}

/// Opens an exec stream on `connection` (server side).
pub(crate) async fn open_exec(
    connection: &quinn::Connection,
    request: ExecRequest,
) -> Result<ExecStream, LogError> {
    let (rest, recv, send) = open_stream(connection, &StreamRequest::Exec(request), "exec").await?;
    Ok(ExecStream {
        reader: LogStream {
            inner: std::io::Cursor::new(rest).chain(recv),
        },
        writer: send,
    })
}

/// Relays an exec between the server's stream and the process (agent side): stdin, resize
/// and close frames in; stdout and stderr frames out; the exit status last.
async fn relay_exec(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    leftover: Bytes,
    io: ExecIo,
    command: Vec<String>,
) {
    let ExecIo {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = io;
    // Input: frames from the server.
    let input = tokio::spawn(async move {
        let mut stdin = stdin;
        let mut decoder = ExecFrameDecoder::new();
        decoder.push(&leftover);
        loop {
            loop {
                match decoder.next_frame() {
                    Ok(Some((channels::STDIN, data))) => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Ok(Some((channels::RESIZE, data))) => {
                        if let (Some(resize), Ok(size)) =
                            (&resize, serde_json::from_slice::<TerminalSize>(&data))
                        {
                            resize(size.width, size.height);
                        }
                    }
                    Ok(Some((channels::CLOSE, data))) => {
                        if data.first() == Some(&channels::STDIN) {
                            if let Some(mut w) = stdin.take() {
                                let _ = w.shutdown().await;
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(%error, "bad exec frame from the server");
                        return;
                    }
                }
            }
            match recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => decoder.push(&chunk.bytes),
                // The server finished its side: no more input.
                Ok(None) | Err(_) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                    return;
                }
            }
        }
    });
    // Output: stdout and stderr pumped into frames, in the order read.
    let (frames, mut outgoing) = mpsc::channel::<Bytes>(16);
    for (channel, reader) in [(channels::STDOUT, stdout), (channels::STDERR, stderr)] {
        let Some(mut reader) = reader else { continue };
        let frames = frames.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if frames
                            .send(channels::encode_frame(channel, &buf[..n]))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(frames);
    let mut broken = false;
    while let Some(frame) = outgoing.recv().await {
        if !broken && send.write_all(&frame).await.is_err() {
            // The caller went away; keep draining so the process is not blocked on output.
            broken = true;
        }
    }
    let status = match exit.await {
        Ok(code) => channels::status_json(Some(code), None, &command),
        Err(message) => channels::status_json(None, Some(&message), &command),
    };
    if !broken {
        let _ = send
            .write_all(&channels::encode_frame(channels::STATUS, &status))
            .await;
        let _ = send.finish();
    }
    input.abort();
}

/// Reads one header frame, returning it and any bytes that followed it.
pub(crate) async fn read_header(recv: &mut quinn::RecvStream) -> Result<(Bytes, Bytes), String> {
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
    let (rest, recv, mut send) =
        open_stream(connection, &StreamRequest::Logs(request), "log").await?;
    let _ = send.finish();
    Ok(LogStream {
        inner: std::io::Cursor::new(rest).chain(recv),
    })
}

/// Opens a stream for `request` on `connection` (server side) and reads the node's answer:
/// what followed the answer, and both halves, once the node accepted.
pub(crate) async fn open_stream(
    connection: &quinn::Connection,
    request: &StreamRequest,
    what: &str,
) -> Result<(Bytes, quinn::RecvStream, quinn::SendStream), LogError> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| LogError::Failed(format!("cannot open a stream to the node: {e}")))?;
    let header = encode(request, MAX_HEADER_LEN).map_err(|e| LogError::Failed(e.to_string()))?;
    send.write_all(&header).await.map_err(|e| {
        LogError::Failed(format!("cannot send the {what} request to the node: {e}"))
    })?;
    let (frame, rest) = read_header(&mut recv)
        .await
        .map_err(|e| LogError::Failed(format!("no answer from the node: {e}")))?;
    match decode::<StreamReply>(&frame) {
        Ok(StreamReply::Accepted) => Ok((rest, recv, send)),
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
    images: &super::images::ImageWaiters,
) {
    let (request, leftover) = match read_header(&mut recv).await {
        Ok((frame, rest)) => (decode::<StreamRequest>(&frame), rest),
        Err(error) => {
            tracing::debug!(%error, "server stream without a header");
            let _ = send.reset(STREAM_ABORTED.into());
            return;
        }
    };
    match request {
        Ok(StreamRequest::Logs(request)) => match logs.open_log(request).await {
            Ok(mut reader) => {
                if !accept(&mut send).await {
                    return;
                }
                if let Err(error) = tokio::io::copy(&mut reader, &mut send).await {
                    tracing::debug!(%error, "log stream ended early");
                    let _ = send.reset(STREAM_ABORTED.into());
                    return;
                }
                let _ = send.finish();
            }
            Err(error) => {
                refuse(&mut send, &error).await;
            }
        },
        Ok(StreamRequest::Exec(request)) => {
            let command = request.command.clone();
            match logs.open_exec(request).await {
                Ok(io) => {
                    if !accept(&mut send).await {
                        return;
                    }
                    relay_exec(send, recv, leftover, io, command).await;
                }
                Err(error) => {
                    refuse(&mut send, &error).await;
                }
            }
        }
        Ok(StreamRequest::Image(offer)) => images.deliver(offer, send, recv, leftover),
        Ok(StreamRequest::NodeHttp) => {
            super::node_http::serve_node_http(send, recv, leftover, logs.node_http()).await
        }
        Ok(StreamRequest::PortForward(request)) => {
            serve_port_forward(send, recv, leftover, request, logs).await
        }
        Err(error) => {
            let error = LogError::Failed(format!("unsupported stream request: {error}"));
            refuse(&mut send, &error).await;
        }
    }
}

/// Answers a server stream that it is accepted (agent side); false when the server is gone.
pub(crate) async fn accept(send: &mut quinn::SendStream) -> bool {
    match encode(&StreamReply::Accepted, MAX_HEADER_LEN) {
        Ok(frame) => send.write_all(&frame).await.is_ok(),
        Err(_) => false,
    }
}

/// Answers a server stream with the failure `error` (agent side) and ends it.
pub(crate) async fn refuse(send: &mut quinn::SendStream, error: &LogError) {
    let failed = StreamReply::Failed {
        not_found: matches!(error, LogError::NotFound(_)),
        message: error.to_string(),
    };
    if let Ok(frame) = encode(&failed, MAX_HEADER_LEN) {
        let _ = send.write_all(&frame).await;
    }
    let _ = send.finish();
}
