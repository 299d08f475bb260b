//! The API tunnel end to end on loopback: an agent-opened stream spliced to a TCP listener
//! standing in for the API, the per-node limit (refused beyond it, accepted again once a
//! tunnel closed), a server that offers no tunnel, idle tunnels closed, and prompt failure
//! without a session.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Cluster;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_link::proto::tunnel::TunnelRefusal;
use skiff_link::quic::{
    AgentLink, AgentLinkConfig, AgentLinkEvent, ApiTunnelSettings, NoLogs, NodeSession, TunnelError,
};
use skiff_link::session::SessionConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const ANSWER: Duration = Duration::from_secs(10);

/// A TCP echo server standing in for the API listener: answers every byte, closes its side
/// when the client closed its own.
async fn echo_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

struct Connected {
    link: Arc<AgentLink>,
    _events: mpsc::Receiver<AgentLinkEvent>,
    _session: NodeSession,
    _server: skiff_link::quic::LinkServer,
    _dir: tempfile::TempDir,
}

async fn connect(tunnel: Option<ApiTunnelSettings>) -> Connected {
    let cluster = Cluster::new();
    let (server, mut sessions, addr) = cluster
        .start_with_tunnel(0, SessionConfig::default(), tunnel)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node {
        metadata: ObjectMeta {
            name: Some("edge-1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut config = AgentLinkConfig::new(
        &format!("https://{addr}"),
        Some(cluster.token.to_string()),
        dir.path().to_path_buf(),
        node,
    );
    config.connect_timeout = Duration::from_secs(2);
    let (link, events) = AgentLink::start(config, None, Arc::new(NoLogs("test".into())))
        .await
        .unwrap();
    let session = tokio::time::timeout(ANSWER, sessions.recv())
        .await
        .expect("a session")
        .expect("server running");
    assert!(link.wait_connected(ANSWER).await, "the link connects");
    Connected {
        link: Arc::new(link),
        _events: events,
        _session: session,
        _server: server,
        _dir: dir,
    }
}

/// A local TCP pair: the test's end, and the end handed to the tunnel (as the agent hands a
/// pod's connection).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Opens a tunnel and splices it to a fresh TCP pair; returns the test's end.
async fn spliced(link: &AgentLink, idle: Duration) -> TcpStream {
    let tunnel = link.open_api_tunnel(ANSWER).await.expect("tunnel accepted");
    let (client, pod_side) = tcp_pair().await;
    tokio::spawn(async move {
        let _ = tunnel.splice(pod_side, idle).await;
    });
    client
}

async fn round_trip(tcp: &mut TcpStream, text: &[u8]) {
    tcp.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(ANSWER, tcp.read_exact(&mut back))
        .await
        .expect("the echo within 10 s")
        .unwrap();
    assert_eq!(back, text);
}

#[tokio::test]
async fn a_tunnel_carries_bytes_both_ways_and_half_closes() {
    let api = echo_listener().await;
    let node = connect(Some(ApiTunnelSettings::new(api))).await;
    let mut tcp = spliced(&node.link, Duration::from_secs(60)).await;
    round_trip(&mut tcp, b"GET /version HTTP/1.1\r\n\r\n").await;
    // A larger body than one splice buffer, through QUIC flow control.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = tcp.into_split();
    let sent = body.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        // Half-close: the echo server sees the end and closes its side.
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(ANSWER, r.read_to_end(&mut back))
        .await
        .expect("the echo ends after the half-close")
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), body.len());
    assert!(back == body, "the bytes come back unchanged");
}

#[tokio::test]
async fn tunnels_beyond_the_per_node_limit_are_refused_until_one_closes() {
    let api = echo_listener().await;
    let mut settings = ApiTunnelSettings::new(api);
    settings.max_streams = 2;
    let node = connect(Some(settings)).await;
    let mut first = spliced(&node.link, Duration::from_secs(60)).await;
    let mut second = spliced(&node.link, Duration::from_secs(60)).await;
    round_trip(&mut first, b"one").await;
    round_trip(&mut second, b"two").await;
    match node.link.open_api_tunnel(ANSWER).await {
        Err(TunnelError::Refused {
            code: TunnelRefusal::TooManyStreams,
            message,
        }) => assert!(message.contains("edge-1"), "{message}"),
        other => panic!("a third tunnel must be refused, got {other:?}"),
    }
    // The refused ones leave the others working.
    round_trip(&mut first, b"still").await;
    // Closing one frees its place.
    drop(first);
    let deadline = Instant::now() + ANSWER;
    loop {
        match node.link.open_api_tunnel(ANSWER).await {
            Ok(_) => break,
            Err(TunnelError::Refused {
                code: TunnelRefusal::TooManyStreams,
                ..
            }) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("a tunnel after one closed: {other}"),
        }
    }
    round_trip(&mut second, b"two again").await;
}

#[tokio::test]
async fn a_server_without_a_tunnel_refuses_with_a_reason() {
    let node = connect(None).await;
    match node.link.open_api_tunnel(ANSWER).await {
        Err(TunnelError::Refused {
            code: TunnelRefusal::Unavailable,
            ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_api_is_refused_with_a_reason() {
    // A port nothing listens on.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let node = connect(Some(ApiTunnelSettings::new(closed))).await;
    match node.link.open_api_tunnel(ANSWER).await {
        Err(TunnelError::Refused {
            code: TunnelRefusal::ApiUnreachable,
            ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_tunnels_are_closed_by_the_server() {
    let api = echo_listener().await;
    let mut settings = ApiTunnelSettings::new(api);
    settings.idle_timeout = Duration::from_millis(300);
    let node = connect(Some(settings)).await;
    let mut tcp = spliced(&node.link, Duration::from_secs(60)).await;
    round_trip(&mut tcp, b"hello").await;
    // Nothing moves: the server ends the tunnel, and the agent's side sees the end.
    let mut buf = [0u8; 16];
    let ended = tokio::time::timeout(ANSWER, tcp.read(&mut buf)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "an idle tunnel ends within 10 s: {ended:?}"
    );
}

#[tokio::test]
async fn without_a_session_a_tunnel_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new();
    let (server, _sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let node = Node {
        metadata: ObjectMeta {
            name: Some("edge-2".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut config = AgentLinkConfig::new(
        &format!("https://{addr}"),
        Some(cluster.token.to_string()),
        dir.path().to_path_buf(),
        node,
    );
    config.connect_timeout = Duration::from_secs(2);
    let (link, _events) = AgentLink::start(config, None, Arc::new(NoLogs("test".into())))
        .await
        .unwrap();
    assert!(link.wait_connected(ANSWER).await);
    server.shutdown().await;
    drop(server);
    let deadline = Instant::now() + ANSWER;
    loop {
        let started = Instant::now();
        let result = link.open_api_tunnel(ANSWER).await;
        if let Err(TunnelError::Unavailable(_)) = result {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "refused promptly, not after {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(Instant::now() < deadline, "still a session: {result:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
