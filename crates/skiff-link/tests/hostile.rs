//! Hostile peers: malformed, oversized and unknown frames close only the offending connection,
//! with a reason; a stream flood is capped by QUIC stream limits; everyone else keeps working.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_link::proto::{CloseCode, ALPN};
use skiff_link::quic::{AgentLink, AgentLinkConfig, NoLogs, NodeEvent, NodeSession};
use skiff_link::session::SessionConfig;
use tokio::sync::mpsc;

/// A raw QUIC connection authenticated as node `name`, speaking whatever the test writes.
async fn raw_node(cluster: &Cluster, addr: SocketAddr, name: &str) -> quinn::Connection {
    let pair = cluster
        .ca()
        .issue_client(&skiff_pki::node_identity(name))
        .unwrap();
    let tls = skiff_pki::client_config(&cluster.ca_pem, Some(&pair), &[ALPN]).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint
        .connect_with(config, addr, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// Waits for the server to close `connection`; returns its code and reason.
async fn closed_by_server(connection: &quinn::Connection) -> (u64, String) {
    let error = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .expect("the server closes the connection within 10 s");
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => (
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => panic!("expected an application close, got {other}"),
    }
}

async fn good_agent(cluster: &Cluster, addr: SocketAddr, dir: &std::path::Path) -> AgentLink {
    let node = Node {
        metadata: ObjectMeta {
            name: Some("good".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut config = AgentLinkConfig::new(
        &format!("https://{addr}"),
        Some(cluster.token.to_string()),
        dir.to_path_buf(),
        node,
    );
    config.session.heartbeat_interval = Duration::from_millis(100);
    let (link, _events) = AgentLink::start(config, None, Arc::new(NoLogs("none".into())))
        .await
        .unwrap();
    link
}

async fn expect_heartbeat(session: &mut NodeSession) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), session.next_event()).await {
            Ok(Some(NodeEvent::Heartbeat)) => return,
            Ok(Some(NodeEvent::Closed(reason))) => panic!("good session closed: {reason}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("good session ended"),
            Err(_) => panic!("no heartbeat from the good agent"),
        }
    }
}

async fn setup() -> (
    Cluster,
    SocketAddr,
    skiff_link::quic::LinkServer,
    mpsc::UnboundedReceiver<NodeSession>,
    NodeSession,
    AgentLink,
    tempfile::TempDir,
) {
    let cluster = Cluster::new();
    let config = SessionConfig {
        heartbeat_interval: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    let (server, mut sessions, addr) = cluster.start(0, config).await;
    let dir = tempfile::tempdir().unwrap();
    let link = good_agent(&cluster, addr, dir.path()).await;
    let session = tokio::time::timeout(Duration::from_secs(10), sessions.recv())
        .await
        .unwrap()
        .unwrap();
    (cluster, addr, server, sessions, session, link, dir)
}

#[tokio::test]
async fn malformed_frame_closes_only_the_offender() {
    let (cluster, addr, _server, _sessions, mut good, link, _dir) = setup().await;
    let evil = raw_node(&cluster, addr, "evil").await;
    let (mut send, _recv) = evil.open_bi().await.unwrap();
    let garbage = b"{not json at all";
    send.write_all(&(garbage.len() as u32).to_be_bytes())
        .await
        .unwrap();
    send.write_all(garbage).await.unwrap();
    let (code, reason) = closed_by_server(&evil).await;
    assert_eq!(code, CloseCode::ProtocolViolation as u64);
    assert!(reason.contains("malformed frame"), "{reason}");
    expect_heartbeat(&mut good).await;
    link.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_closes_only_the_offender() {
    let (cluster, addr, _server, _sessions, mut good, link, _dir) = setup().await;
    let evil = raw_node(&cluster, addr, "evil").await;
    let (mut send, _recv) = evil.open_bi().await.unwrap();
    send.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
    let (code, reason) = closed_by_server(&evil).await;
    assert_eq!(code, CloseCode::ProtocolViolation as u64);
    assert!(reason.contains("exceeds the limit"), "{reason}");
    expect_heartbeat(&mut good).await;
    link.shutdown().await;
}

#[tokio::test]
async fn unknown_message_type_closes_only_the_offender() {
    let (cluster, addr, _server, _sessions, mut good, link, _dir) = setup().await;
    let evil = raw_node(&cluster, addr, "evil").await;
    let (mut send, _recv) = evil.open_bi().await.unwrap();
    let body = br#"{"type":"becomeAdmin"}"#;
    send.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    send.write_all(body).await.unwrap();
    let (code, reason) = closed_by_server(&evil).await;
    assert_eq!(code, CloseCode::ProtocolViolation as u64);
    assert!(reason.contains("becomeAdmin"), "{reason}");
    expect_heartbeat(&mut good).await;
    link.shutdown().await;
}

#[tokio::test]
async fn silent_connection_is_closed_after_the_handshake_timeout() {
    let cluster = Cluster::new();
    let config = SessionConfig {
        handshake_timeout: Duration::from_millis(300),
        ..SessionConfig::default()
    };
    let (_server, _sessions, addr) = cluster.start(0, config).await;
    let evil = raw_node(&cluster, addr, "evil").await;
    let (code, _) = closed_by_server(&evil).await;
    assert_eq!(code, CloseCode::HandshakeTimeout as u64);
}

#[tokio::test]
async fn stream_flood_is_capped_and_the_server_keeps_serving() {
    let (cluster, addr, _server, _sessions, mut good, link, _dir) = setup().await;
    let evil = raw_node(&cluster, addr, "evil").await;
    // The first stream is the control stream; QUIC flow control refuses more.
    let (mut first, _r) = evil.open_bi().await.unwrap();
    first.write_all(&[0, 0]).await.unwrap();
    let mut blocked = 0;
    for _ in 0..50 {
        if tokio::time::timeout(Duration::from_millis(20), evil.open_bi())
            .await
            .is_err()
        {
            blocked += 1;
        }
    }
    assert_eq!(blocked, 50, "streams beyond the limit must not open");
    expect_heartbeat(&mut good).await;
    link.shutdown().await;
}

#[tokio::test]
async fn a_non_node_certificate_is_refused() {
    let cluster = Cluster::new();
    let (_server, _sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let pair = cluster
        .ca()
        .issue_client(&skiff_pki::Identity::admin())
        .unwrap();
    let tls = skiff_pki::client_config(&cluster.ca_pem, Some(&pair), &[ALPN]).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            addr,
            "localhost",
        )
        .unwrap()
        .await
        .unwrap();
    let (code, reason) = closed_by_server(&connection).await;
    assert_eq!(code, CloseCode::Refused as u64);
    assert!(reason.contains("not a node identity"), "{reason}");
}
