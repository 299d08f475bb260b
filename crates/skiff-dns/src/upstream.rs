//! One forwarded question: to each upstream in turn over UDP (a fresh socket, so a random
//! source port, and a random ID), over TCP when the answer comes back truncated, within one
//! time budget for all of them.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// The EDNS payload size we offer upstreams and clients (the DNS flag day 2020 value: fits
/// every path's MTU without fragmentation).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("no upstream resolvers are configured")]
    NoUpstreams,
    #[error("no upstream answered in time (last error: {0})")]
    Unanswered(String),
}

/// Asks the upstreams `query` with recursion desired; the first usable answer wins. SERVFAIL
/// and REFUSED move on to the next upstream (and are returned if none does better).
pub(crate) async fn forward(
    upstreams: &[SocketAddr],
    query: &Query,
    budget: Duration,
) -> Result<Message, ForwardError> {
    if upstreams.is_empty() {
        return Err(ForwardError::NoUpstreams);
    }
    let deadline = Instant::now() + budget;
    let mut last_error = String::from("none tried");
    let mut fallback = None;
    for (i, upstream) in upstreams.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Each remaining upstream gets an equal share of what is left.
        let share = (deadline - now) / (upstreams.len() - i) as u32;
        match tokio::time::timeout(share, exchange(*upstream, query)).await {
            Ok(Ok(response)) => match response.metadata.response_code {
                ResponseCode::ServFail | ResponseCode::Refused => {
                    last_error = format!("{upstream}: {}", response.metadata.response_code);
                    fallback = Some(response);
                }
                _ => return Ok(response),
            },
            Ok(Err(e)) => last_error = format!("{upstream}: {e}"),
            Err(_) => last_error = format!("{upstream}: timed out"),
        }
    }
    fallback.ok_or(ForwardError::Unanswered(last_error))
}

/// One upstream: UDP, then TCP if the UDP answer is truncated.
async fn exchange(upstream: SocketAddr, query: &Query) -> std::io::Result<Message> {
    let id: u16 = rand::random();
    let mut request = Message::new(id, MessageType::Query, OpCode::Query);
    request.metadata.recursion_desired = true;
    request.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(std::io::Error::other)?;

    let response = exchange_udp(upstream, &bytes, id, query).await?;
    if !response.metadata.truncation {
        return Ok(response);
    }
    exchange_tcp(upstream, &bytes, id, query).await
}

async fn exchange_udp(
    upstream: SocketAddr,
    request: &[u8],
    id: u16,
    query: &Query,
) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything that is not the answer to this question (a late or forged datagram) is
        // ignored; the caller's timeout ends the wait.
        if let Some(response) = matching(&buf[..n], id, query) {
            return Ok(response);
        }
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    request: &[u8],
    id: u16,
    query: &Query,
) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&(request.len() as u16).to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    matching(&buf, id, query)
        .ok_or_else(|| std::io::Error::other("upstream TCP answer does not match the question"))
}

/// The response in `bytes` if it answers `query` under `id`.
fn matching(bytes: &[u8], id: u16, query: &Query) -> Option<Message> {
    let response = Message::from_vec(bytes).ok()?;
    let same_question = response.queries.len() == 1
        && response.queries[0].query_type() == query.query_type()
        && response.queries[0].query_class() == query.query_class()
        && response.queries[0].name().eq_ignore_root(query.name());
    (response.metadata.id == id
        && response.metadata.message_type == MessageType::Response
        && same_question)
        .then_some(response)
}
