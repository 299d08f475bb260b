//! The UDP and TCP servers: hostile input in, bounded work out.
//!
//! - A datagram that does not parse is dropped, with a rate-limited log line.
//! - A TCP message longer than [`MAX_TCP_QUERY`] closes the connection unread; a connection
//!   idle (or trickling) for `tcp_idle_timeout` is closed; at most `max_tcp_connections` are
//!   open, more are closed on accept.
//! - At most `max_in_flight` forwarded queries run at once; more get SERVFAIL (or the cache's
//!   stale answer) at once, so a flood of uncached names cannot grow tasks and sockets.
//! - Local answers run inline inside `catch_unwind`, forwarded ones and TCP connections in
//!   their own tasks, and each serving loop under a supervisor that restarts it: one bad query
//!   costs at most its own answer.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};

use crate::resolve::{Resolver, Step};
use crate::upstream::EDNS_PAYLOAD;

/// The longest query accepted over TCP. A question is at most ~300 bytes; an OPT record with
/// cookies and padding stays well under this. Longer length prefixes close the connection
/// before anything is read.
pub const MAX_TCP_QUERY: usize = 4096;

/// Datagrams longer than this are not DNS queries (read into a buffer this size; a longer one
/// is cut and then fails to parse).
const MAX_UDP_QUERY: usize = 4096;

/// Limits and shared state of the serving loops.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) resolver: Resolver,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) tcp_slots: Arc<Semaphore>,
    pub(crate) tcp_idle_timeout: Duration,
    pub(crate) malformed: RateLimitedLog,
    pub(crate) overload: RateLimitedLog,
}

/// What a packet became.
enum Prepared {
    Drop,
    Reply(Vec<u8>),
    Forward {
        response: Box<Message>,
        query: hickory_proto::op::Query,
        limit: usize,
    },
}

impl Server {
    /// Parses and answers what can be answered without the network; never panics out (a panic
    /// in the lookup is caught and logged, and the packet dropped).
    fn prepare(&self, packet: &[u8], peer: SocketAddr, udp: bool) -> Prepared {
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let request = match Message::from_vec(packet) {
                Ok(request) => request,
                Err(e) => {
                    self.malformed.warn(format_args!(
                        "cluster DNS: dropped a malformed message from {peer}: {e}"
                    ));
                    return Prepared::Drop;
                }
            };
            let limit = if udp {
                usize::from(request.max_payload().min(EDNS_PAYLOAD)).max(512)
            } else {
                usize::from(u16::MAX)
            };
            match self.resolver.answer_local(&request) {
                Step::Drop => Prepared::Drop,
                Step::Reply(response) => Prepared::Reply(encode(&response, limit)),
                Step::Forward { response, query } => Prepared::Forward {
                    response: Box::new(response),
                    query,
                    limit,
                },
            }
        }));
        caught.unwrap_or_else(|_| {
            tracing::error!(%peer, "cluster DNS: answering a query panicked; dropped it");
            Prepared::Drop
        })
    }

    /// Forwarded work needs a slot; without one the answer is SERVFAIL now.
    fn overloaded(&self, response: &mut Message) {
        self.overload.warn(format_args!(
            "cluster DNS: too many forwarded queries in flight; answering SERVFAIL"
        ));
        response.metadata.response_code = ResponseCode::ServFail;
    }
}

/// The response's bytes within `limit`: whole, or else the header and question with the TC bit
/// (the client retries over TCP).
pub(crate) fn encode(response: &Message, limit: usize) -> Vec<u8> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        Ok(_) => response.truncate().to_vec().unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cluster DNS: could not encode a response; SERVFAIL");
            let mut failed = Message::new(
                response.metadata.id,
                hickory_proto::op::MessageType::Response,
                response.metadata.op_code,
            );
            failed.metadata.response_code = ResponseCode::ServFail;
            failed.queries = response.queries.clone();
            failed.to_vec().unwrap_or_default()
        }
    }
}

/// Runs `serve` again whenever it panics, until it returns (shutdown).
pub(crate) fn supervise<F, Fut>(what: &'static str, serve: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(serve()).await {
                Err(e) if e.is_panic() => {
                    tracing::error!("cluster DNS: the {what} loop panicked; restarting it");
                }
                _ => return,
            }
        }
    });
}

/// The UDP loop of one socket.
pub(crate) async fn serve_udp(
    server: Arc<Server>,
    socket: Arc<UdpSocket>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_UDP_QUERY];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(e) => {
                    server.overload.warn(format_args!("cluster DNS: UDP receive failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match server.prepare(&buf[..n], peer, true) {
            Prepared::Drop => {}
            Prepared::Reply(bytes) => {
                let _ = socket.send_to(&bytes, peer).await;
            }
            Prepared::Forward {
                mut response,
                query,
                limit,
            } => match server.in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let server = server.clone();
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        let response = server.resolver.answer_remote(*response, query).await;
                        let _ = socket.send_to(&encode(&response, limit), peer).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    server.overloaded(&mut response);
                    let _ = socket.send_to(&encode(&response, limit), peer).await;
                }
            },
        }
    }
}

/// The TCP accept loop of one listener.
pub(crate) async fn serve_tcp(
    server: Arc<Server>,
    listener: Arc<TcpListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    server.overload.warn(format_args!("cluster DNS: TCP accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = server.tcp_slots.clone().try_acquire_owned() else {
            server.overload.warn(format_args!(
                "cluster DNS: too many TCP connections; closed one from {peer}"
            ));
            drop(stream);
            continue;
        };
        let server = server.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut shutdown = shutdown;
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = connection(&server, stream, peer) => {}
            }
            drop(slot);
        });
    }
}

/// One TCP connection: length-prefixed queries answered in order until the client closes, goes
/// idle, or sends something too long or malformed.
async fn connection(server: &Server, mut stream: TcpStream, peer: SocketAddr) {
    let idle = server.tcp_idle_timeout;
    loop {
        let read = tokio::time::timeout(idle, async {
            let len = usize::from(stream.read_u16().await?);
            if len > MAX_TCP_QUERY {
                return Err(std::io::Error::other(format!(
                    "a {len}-byte message (at most {MAX_TCP_QUERY})"
                )));
            }
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            Ok(buf)
        })
        .await;
        let packet = match read {
            Ok(Ok(packet)) => packet,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Ok(Err(e)) => {
                server.malformed.warn(format_args!(
                    "cluster DNS: closed the TCP connection from {peer}: {e}"
                ));
                return;
            }
            Err(_) => return,
        };
        let bytes = match server.prepare(&packet, peer, false) {
            Prepared::Drop => return,
            Prepared::Reply(bytes) => bytes,
            Prepared::Forward {
                mut response,
                query,
                limit,
            } => match server.in_flight.clone().try_acquire_owned() {
                Ok(_permit) => {
                    let response = server.resolver.answer_remote(*response, query).await;
                    encode(&response, limit)
                }
                Err(_) => {
                    server.overloaded(&mut response);
                    encode(&response, limit)
                }
            },
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        match tokio::time::timeout(idle, stream.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// A warning logged at most once per interval, with the count of those held back: a flood of
/// bad packets must not become a flood of log lines.
#[derive(Debug)]
pub(crate) struct RateLimitedLog {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimitedLog {
    pub(crate) fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Logs `message` unless one was logged within the interval; returns whether it did.
    pub(crate) fn warn(&self, message: std::fmt::Arguments<'_>) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        *last = Some(now);
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(suppressed, "{message}");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::response_to;

    #[test]
    fn the_log_is_rate_limited() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        assert!(log.warn(format_args!("first")));
        for _ in 0..1000 {
            assert!(!log.warn(format_args!("again")));
        }
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn an_oversized_answer_is_truncated_to_the_question() {
        let request = {
            let mut m = Message::new(
                7,
                hickory_proto::op::MessageType::Query,
                hickory_proto::op::OpCode::Query,
            );
            m.add_query(hickory_proto::op::Query::query(
                hickory_proto::rr::Name::from_ascii("big.example.").unwrap(),
                hickory_proto::rr::RecordType::A,
            ));
            m
        };
        let mut response = response_to(&request);
        for i in 0..100u8 {
            response.add_answer(hickory_proto::rr::Record::from_rdata(
                request.queries[0].name().clone(),
                5,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(10, 0, 0, i)),
            ));
        }
        let full = encode(&response, 65535);
        assert!(full.len() > 512);
        let cut = Message::from_vec(&encode(&response, 512)).unwrap();
        assert!(cut.metadata.truncation);
        assert!(cut.answers.is_empty());
        assert_eq!(cut.queries, request.queries);
        assert_eq!(cut.metadata.id, 7);
    }
}
