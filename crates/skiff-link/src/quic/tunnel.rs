//! The API tunnel ([`crate::proto::tunnel`]): agent-opened streams the server splices to its
//! own API listener, one per pod connection to the `kubernetes` Service on a node without a
//! direct path to the API.
//!
//! Server side ([`serve_agent_streams`]): runs once a node's session is open; accepts the
//! node's streams, reads one header frame each (bounded size and time), refuses beyond
//! [`ApiTunnelSettings::max_streams`] concurrent tunnels of the node, connects to the API
//! listener and splices. Agent side ([`open_api_tunnel`]): opens a stream, sends the request,
//! reads the answer. Both sides splice with [`splice`]: fixed buffers, QUIC flow control
//! (nothing is buffered beyond one read per direction), and an idle timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::VarInt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::proto::tunnel::{
    AgentStreamReply, AgentStreamRequest, TunnelRefusal, MAX_AGENT_STREAM_HEADER,
};
use crate::proto::{decode, encode, FrameDecoder};

/// Error code of a tunnel stream abandoned by either side.
const TUNNEL_ABORTED: u32 = 2;
/// Bytes read per direction at once while splicing.
const SPLICE_BUFFER: usize = 16 * 1024;
/// Bidirectional streams an agent may have open beyond its tunnels and control stream, so that
/// one stream too many is answered with a refusal instead of waiting for QUIC credit.
const STREAM_SLACK: u32 = 4;
/// At most one "too many tunnels" warning per node this often (the rest are counted).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// What the server offers as the API tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTunnelSettings {
    /// The API listener to splice to (the local API port).
    pub target: SocketAddr,
    /// Most tunnel streams one node may have open at once (more are refused).
    pub max_streams: usize,
    /// A tunnel with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Time a node has to send a stream's header frame.
    pub header_timeout: Duration,
    /// Time allowed to connect to the API listener.
    pub connect_timeout: Duration,
}

impl ApiTunnelSettings {
    /// Defaults for `target`: 64 streams per node, closed after 15 minutes idle (longer than
    /// a watch without events; clients reconnect a closed watch).
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            max_streams: 64,
            idle_timeout: Duration::from_secs(15 * 60),
            header_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a tunnel could not be opened (agent side).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TunnelError {
    /// There is no session (or it speaks a protocol version without tunnels).
    #[error("no link session offers the API tunnel: {0}")]
    Unavailable(String),
    /// The server refused.
    #[error("the server refused the API tunnel ({code:?}): {message}")]
    Refused {
        /// Machine-readable reason.
        code: TunnelRefusal,
        /// The server's explanation.
        message: String,
    },
    /// The stream failed.
    #[error("API tunnel stream failed: {0}")]
    Stream(String),
}

/// An accepted tunnel (agent side): splice it to the pod's connection with
/// [`ApiTunnelStream::splice`].
pub struct ApiTunnelStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    leftover: Bytes,
}

impl std::fmt::Debug for ApiTunnelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTunnelStream").finish_non_exhaustive()
    }
}

impl ApiTunnelStream {
    /// Carries bytes both ways between the tunnel and `tcp` until both sides finished, one
    /// failed, or nothing moved for `idle`.
    pub async fn splice(self, tcp: TcpStream, idle: Duration) -> Result<SpliceStats, SpliceEnd> {
        let (tcp_read, tcp_write) = tcp.into_split();
        let ApiTunnelStream {
            mut send,
            recv,
            leftover,
        } = self;
        let quic_read = std::io::Cursor::new(leftover).chain(recv);
        let result = splice(tcp_read, &mut send, quic_read, tcp_write, idle).await;
        if result.is_err() {
            let _ = send.reset(VarInt::from_u32(TUNNEL_ABORTED));
        }
        result
    }
}

/// Bytes carried by a [`splice`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpliceStats {
    /// From the first reader to the first writer (agent: pod → server; server: node → API).
    pub forward: u64,
    /// The other way.
    pub backward: u64,
}

/// Why a splice ended early.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SpliceEnd {
    /// Nothing moved either way for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// A read or write failed.
    #[error("{0}")]
    Failed(String),
}

/// Copies `a_read` → `a_write` and `b_read` → `b_write` at once, each with one fixed buffer;
/// a direction that reaches the end shuts its writer down (half-close) while the other goes
/// on. Ends when both finished, one failed, or nothing moved for `idle`.
pub async fn splice<R1, W1, R2, W2>(
    a_read: R1,
    a_write: W1,
    b_read: R2,
    b_write: W2,
    idle: Duration,
) -> Result<SpliceStats, SpliceEnd>
where
    R1: AsyncRead + Unpin,
    W1: AsyncWrite + Unpin,
    R2: AsyncRead + Unpin,
    W2: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let activity = AtomicU64::new(0);
    let pumps = async {
        tokio::try_join!(
            pump(a_read, a_write, &activity, started),
            pump(b_read, b_write, &activity, started)
        )
    };
    let watchdog = async {
        loop {
            let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
            let due = last + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        }
    };
    tokio::select! {
        result = pumps => result
            .map(|(forward, backward)| SpliceStats { forward, backward })
            .map_err(|e| SpliceEnd::Failed(e.to_string())),
        _ = watchdog => Err(SpliceEnd::Idle(idle)),
    }
}

async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut reader: R,
    mut writer: W,
    activity: &AtomicU64,
    started: Instant,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; SPLICE_BUFFER];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            writer.shutdown().await?;
            return Ok(total);
        }
        writer.write_all(&buf[..n]).await?;
        total += n as u64;
        activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Reads one header frame (at most [`MAX_AGENT_STREAM_HEADER`] bytes) and what followed it.
async fn read_header(recv: &mut quinn::RecvStream) -> Result<(Bytes, Bytes), String> {
    let mut decoder = FrameDecoder::new(MAX_AGENT_STREAM_HEADER);
    loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            return Ok((frame, decoder.into_remaining()));
        }
        match recv.read_chunk(MAX_AGENT_STREAM_HEADER, true).await {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) => return Err("the stream ended before its header".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Opens an API tunnel on `connection` (agent side).
pub(crate) async fn open_api_tunnel(
    connection: &quinn::Connection,
    timeout: Duration,
) -> Result<ApiTunnelStream, TunnelError> {
    let exchange = async {
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| TunnelError::Unavailable(e.to_string()))?;
        let header = encode(&AgentStreamRequest::ApiTunnel, MAX_AGENT_STREAM_HEADER)
            .map_err(|e| TunnelError::Stream(e.to_string()))?;
        send.write_all(&header)
            .await
            .map_err(|e| TunnelError::Stream(e.to_string()))?;
        let (frame, leftover) = read_header(&mut recv)
            .await
            .map_err(|e| TunnelError::Stream(format!("no answer from the server: {e}")))?;
        match decode::<AgentStreamReply>(&frame) {
            Ok(AgentStreamReply::Accepted) => Ok(ApiTunnelStream {
                send,
                recv,
                leftover,
            }),
            Ok(AgentStreamReply::Refused { code, message }) => {
                Err(TunnelError::Refused { code, message })
            }
            Err(e) => Err(TunnelError::Stream(format!(
                "bad answer from the server: {e}"
            ))),
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(TunnelError::Stream(
            "the server did not answer the tunnel request in time".into(),
        )),
    }
}

/// Per-node state of the server's acceptor.
struct NodeTunnels {
    node: Arc<str>,
    settings: Option<Arc<ApiTunnelSettings>>,
    permits: Arc<Semaphore>,
    refusals: Mutex<(Option<Instant>, u64)>,
}

impl NodeTunnels {
    /// Logs a refusal for too many streams, at most once per [`REFUSAL_LOG_EVERY`].
    fn log_too_many(&self, max: usize) {
        let Ok(mut guard) = self.refusals.lock() else {
            return;
        };
        let (last, suppressed) = &mut *guard;
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY) {
            tracing::warn!(node = %self.node, max_streams = max, suppressed = *suppressed, "refusing an API tunnel stream: the node has the most open at once");
            *last = Some(now);
            *suppressed = 0;
        } else {
            *suppressed += 1;
        }
    }
}

/// Accepts the streams node `node` opens on `connection` until the connection ends (server
/// side, once the node's session is open). Without `settings` every tunnel is refused.
pub(crate) async fn serve_agent_streams(
    connection: quinn::Connection,
    node: Arc<str>,
    settings: Option<Arc<ApiTunnelSettings>>,
) {
    let max = settings.as_ref().map(|s| s.max_streams).unwrap_or(0);
    // The control stream, the tunnels, and a few more to be told "too many".
    connection.set_max_concurrent_bi_streams(VarInt::from_u32(
        1 + u32::try_from(max).unwrap_or(u32::MAX / 2).min(u32::MAX / 2) + STREAM_SLACK,
    ));
    let state = Arc::new(NodeTunnels {
        node,
        settings,
        permits: Arc::new(Semaphore::new(max)),
        refusals: Mutex::new((None, 0)),
    });
    while let Ok((send, recv)) = connection.accept_bi().await {
        let state = state.clone();
        tokio::spawn(async move { serve_one(state, send, recv).await });
    }
}

async fn refuse(mut send: quinn::SendStream, code: TunnelRefusal, message: String) {
    let reply = AgentStreamReply::Refused { code, message };
    if let Ok(frame) = encode(&reply, MAX_AGENT_STREAM_HEADER) {
        let _ = send.write_all(&frame).await;
    }
    let _ = send.finish();
}

async fn serve_one(
    state: Arc<NodeTunnels>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let header_timeout = state
        .settings
        .as_ref()
        .map(|s| s.header_timeout)
        .unwrap_or(Duration::from_secs(10));
    let (request, leftover) =
        match tokio::time::timeout(header_timeout, read_header(&mut recv)).await {
            Ok(Ok((frame, rest))) => (decode::<AgentStreamRequest>(&frame), rest),
            Ok(Err(error)) => {
                tracing::debug!(node = %state.node, %error, "node stream without a valid header");
                let _ = send.reset(VarInt::from_u32(TUNNEL_ABORTED));
                let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
                return;
            }
            Err(_) => {
                tracing::debug!(node = %state.node, "node stream sent no header in time");
                let _ = send.reset(VarInt::from_u32(TUNNEL_ABORTED));
                let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
                return;
            }
        };
    match request {
        Ok(AgentStreamRequest::ApiTunnel) => {}
        Err(error) => {
            let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
            return refuse(
                send,
                TunnelRefusal::BadRequest,
                format!("unsupported stream request: {error}"),
            )
            .await;
        }
    }
    let Some(settings) = state.settings.clone() else {
        let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
        return refuse(
            send,
            TunnelRefusal::Unavailable,
            "this server offers no API tunnel".into(),
        )
        .await;
    };
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        state.log_too_many(settings.max_streams);
        let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
        return refuse(
            send,
            TunnelRefusal::TooManyStreams,
            format!(
                "node {} already has {} API tunnel streams open",
                state.node, settings.max_streams
            ),
        )
        .await;
    };
    let tcp = match tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect(settings.target),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => {
            tracing::warn!(node = %state.node, target = %settings.target, %error, "API tunnel: cannot connect to the API listener");
            let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
            return refuse(
                send,
                TunnelRefusal::ApiUnreachable,
                format!("cannot connect to the API at {}: {error}", settings.target),
            )
            .await;
        }
        Err(_) => {
            let _ = recv.stop(VarInt::from_u32(TUNNEL_ABORTED));
            return refuse(
                send,
                TunnelRefusal::ApiUnreachable,
                format!("connecting to the API at {} timed out", settings.target),
            )
            .await;
        }
    };
    let _ = tcp.set_nodelay(true);
    let Ok(frame) = encode(&AgentStreamReply::Accepted, MAX_AGENT_STREAM_HEADER) else {
        return;
    };
    if send.write_all(&frame).await.is_err() {
        return;
    }
    let (tcp_read, tcp_write) = tcp.into_split();
    let node_read = std::io::Cursor::new(leftover).chain(recv);
    match splice(
        node_read,
        tcp_write,
        tcp_read,
        &mut send,
        settings.idle_timeout,
    )
    .await
    {
        Ok(stats) => {
            tracing::debug!(node = %state.node, up = stats.forward, down = stats.backward, "API tunnel closed")
        }
        Err(end) => {
            tracing::debug!(node = %state.node, %end, "API tunnel ended early");
            let _ = send.reset(VarInt::from_u32(TUNNEL_ABORTED));
        }
    }
}
