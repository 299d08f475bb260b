//! The quinn driver end to end on loopback: joining (and each way it is refused), sessions,
//! desired state and statuses, logs, reconnect after a server restart, migration to a new
//! socket, certificate renewal, and hostile peers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_link::proto::{LogRequest, PodRef, PodStatusUpdate, RefusalCode};
use skiff_link::quic::{
    AgentLink, AgentLinkConfig, AgentLinkEvent, LinkError, LinkState, LogError, LogProvider,
    NodeEvent, NodeSession,
};
use skiff_link::session::{DesiredPods, SessionConfig};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("zone".to_string(), "lab".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn agent_config(
    addr: SocketAddr,
    token: Option<String>,
    dir: &Path,
    name: &str,
) -> AgentLinkConfig {
    let mut config = AgentLinkConfig::new(
        &format!("https://{addr}"),
        token,
        dir.to_path_buf(),
        node(name),
    );
    config.backoff =
        skiff_link::quic::Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    config.connect_timeout = Duration::from_secs(2);
    config
}

struct Logs;

impl LogProvider for Logs {
    fn open_log(
        &self,
        request: LogRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<skiff_link::quic::LogReader, LogError>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            if request.pod == "web" {
                let text = format!("hello from {}\nsecond line\n", request.container);
                Ok(Box::new(std::io::Cursor::new(text.into_bytes()))
                    as skiff_link::quic::LogReader)
            } else {
                Err(LogError::NotFound(format!("pod {} not found", request.pod)))
            }
        })
    }
}

async fn next_session(rx: &mut mpsc::UnboundedReceiver<NodeSession>) -> NodeSession {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a node session within 10 s")
        .expect("server running")
}

async fn next_event(session: &mut NodeSession) -> NodeEvent {
    tokio::time::timeout(Duration::from_secs(10), session.next_event())
        .await
        .expect("a node event within 10 s")
        .expect("session open")
}

async fn next_agent_event(rx: &mut mpsc::Receiver<AgentLinkEvent>) -> AgentLinkEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an agent event within 10 s")
        .expect("link running")
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn join_then_session_desired_state_statuses_and_logs() {
    let cluster = Cluster::new();
    let (_server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (link, mut events) = AgentLink::start(
        agent_config(addr, Some(cluster.token.to_string()), dir.path(), "edge-1"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap();
    // Credentials are on disk, the key private.
    let key = dir.path().join("tls/node.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dir.path().join("node-password").exists());

    let mut session = next_session(&mut sessions).await;
    assert_eq!(session.node_name, "edge-1");
    assert_eq!(session.resume_revision, None);
    let NodeEvent::Register(registered) = next_event(&mut session).await else {
        panic!("expected registration")
    };
    assert_eq!(registered.metadata.labels.unwrap()["zone"], "lab");
    let sender = session.sender();
    sender.registered("node-uid".into()).unwrap();
    assert!(matches!(
        next_agent_event(&mut events).await,
        AgentLinkEvent::Connected { .. }
    ));
    assert_eq!(
        next_agent_event(&mut events).await,
        AgentLinkEvent::Registered {
            uid: "node-uid".into()
        }
    );
    assert_eq!(link.state(), LinkState::Connected);

    sender.send_snapshot(7, vec![pod("web")]).unwrap();
    let AgentLinkEvent::Pods(DesiredPods::Snapshot { revision: 7, pods }) =
        next_agent_event(&mut events).await
    else {
        panic!("expected a snapshot")
    };
    assert_eq!(pods[0].metadata.name.as_deref(), Some("web"));

    link.report_statuses(vec![PodStatusUpdate {
        pod: PodRef {
            namespace: "default".into(),
            name: "web".into(),
            uid: "uid-web".into(),
        },
        status: PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        },
    }]);
    let NodeEvent::PodStatuses { batch, updates } = next_event(&mut session).await else {
        panic!("expected statuses")
    };
    assert_eq!(updates[0].status.phase.as_deref(), Some("Running"));
    sender.ack_statuses(batch, vec![]).unwrap();

    // kubectl logs path: a server-initiated stream served by the agent's provider.
    let mut log = sender
        .open_log(LogRequest {
            namespace: "default".into(),
            pod: "web".into(),
            container: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut text = String::new();
    log.read_to_string(&mut text).await.unwrap();
    assert_eq!(text, "hello from c1\nsecond line\n");
    let missing = sender
        .open_log(LogRequest {
            namespace: "default".into(),
            pod: "nope".into(),
            container: "c".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing, LogError::NotFound("pod nope not found".into()));

    link.shutdown().await;
    assert!(matches!(
        next_event(&mut session).await,
        NodeEvent::Closed(_)
    ));
}

#[tokio::test]
async fn wrong_token_secret_is_refused_and_no_certificate_is_written() {
    let cluster = Cluster::new();
    let (_server, _sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bad = cluster.token.clone();
    bad.secret = "not-the-secret".into();
    let err = AgentLink::start(
        agent_config(addr, Some(bad.to_string()), dir.path(), "n"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap_err();
    let LinkError::JoinRefused { code, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*code, RefusalCode::InvalidToken);
    assert!(message.contains("wrong secret"), "{message}");
    assert!(!dir.path().join("tls/node.crt").exists());
}

#[tokio::test]
async fn unknown_and_expired_tokens_are_refused() {
    let cluster = Cluster::new();
    let (_server, _sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut unknown = cluster.token.clone();
    unknown.id = "zzzzzz".into();
    let err = AgentLink::start(
        agent_config(addr, Some(unknown.to_string()), dir.path(), "n"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("zzzzzz is unknown or was revoked"),
        "{err}"
    );
    let mut expired = cluster.token.clone();
    expired.id = "xpired".into();
    expired.secret = "0123456789abcdef".into();
    let err = AgentLink::start(
        agent_config(addr, Some(expired.to_string()), dir.path(), "n"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap_err();
    let LinkError::JoinRefused { code, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*code, RefusalCode::ExpiredToken);
    assert!(message.contains("expired at 2020-01-01"), "{message}");
    assert!(!dir.path().join("tls/node.crt").exists());
}

#[tokio::test]
async fn a_server_with_another_ca_is_refused_by_the_pin() {
    let cluster = Cluster::new();
    let impostor = Cluster::new();
    let (_server, _sessions, addr) = impostor.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let err = AgentLink::start(
        agent_config(addr, Some(cluster.token.to_string()), dir.path(), "n"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap_err();
    let LinkError::PinMismatch { reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(reason.contains("does not match the token"), "{reason}");
    assert!(!dir.path().join("tls/node.crt").exists());
}

#[tokio::test]
async fn taking_over_another_nodes_name_is_refused() {
    let cluster = Cluster::new();
    let (_server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let first = tempfile::tempdir().unwrap();
    let (link, _events) = AgentLink::start(
        agent_config(
            addr,
            Some(cluster.token.to_string()),
            first.path(),
            "shared-name",
        ),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap();
    let _session = next_session(&mut sessions).await;
    let second = tempfile::tempdir().unwrap();
    let err = AgentLink::start(
        agent_config(
            addr,
            Some(cluster.token.to_string()),
            second.path(),
            "shared-name",
        ),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap_err();
    let LinkError::JoinRefused { code, message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*code, RefusalCode::NameTaken);
    assert!(message.contains("already taken"), "{message}");
    assert!(!second.path().join("tls/node.crt").exists());
    // The rightful owner can join again (same password) after losing its certificate.
    link.shutdown().await;
    std::fs::remove_dir_all(first.path().join("tls")).unwrap();
    let (again, _events) = AgentLink::start(
        agent_config(
            addr,
            Some(cluster.token.to_string()),
            first.path(),
            "shared-name",
        ),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap();
    assert!(again.wait_connected(Duration::from_secs(10)).await);
    again.shutdown().await;
}

#[tokio::test]
async fn restarted_server_is_rejoined_within_seconds_resuming_the_revision() {
    let cluster = Cluster::new();
    let (server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (link, mut events) = AgentLink::start(
        agent_config(addr, Some(cluster.token.to_string()), dir.path(), "edge-r"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap();
    let session = next_session(&mut sessions).await;
    session.sender().send_snapshot(41, vec![]).unwrap();
    loop {
        if let AgentLinkEvent::Pods(_) = next_agent_event(&mut events).await {
            break;
        }
    }
    // The server goes away (dropping it ends every session).
    drop(session);
    drop(server);
    let started = std::time::Instant::now();
    let (_server2, mut sessions2, _) = cluster.start(addr.port(), SessionConfig::default()).await;
    let session = next_session(&mut sessions2).await;
    let elapsed = started.elapsed();
    assert_eq!(session.resume_revision, Some(41));
    assert!(
        elapsed < Duration::from_secs(5),
        "reconnect took {elapsed:?}"
    );
    assert!(link.wait_connected(Duration::from_secs(5)).await);
    link.shutdown().await;
}

#[tokio::test]
async fn graceful_server_shutdown_says_goodbye_and_agents_come_back() {
    let cluster = Cluster::new();
    let (server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (link, mut events) = AgentLink::start(
        agent_config(addr, Some(cluster.token.to_string()), dir.path(), "edge-g"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap();
    let session = next_session(&mut sessions).await;
    assert!(link.wait_connected(Duration::from_secs(5)).await);
    server.shutdown().await;
    drop(server);
    drop(session);
    loop {
        if let AgentLinkEvent::Disconnected { reason } = next_agent_event(&mut events).await {
            assert!(reason.contains("shutting down"), "{reason}");
            break;
        }
    }
    let (_server2, mut sessions2, _) = cluster.start(addr.port(), SessionConfig::default()).await;
    let _ = next_session(&mut sessions2).await;
    assert!(link.wait_connected(Duration::from_secs(5)).await);
    link.shutdown().await;
}

#[tokio::test]
async fn rebinding_the_agent_socket_keeps_the_session() {
    let cluster = Cluster::new();
    let config = SessionConfig {
        heartbeat_interval: Duration::from_millis(200),
        ..SessionConfig::default()
    };
    let (_server, mut sessions, addr) = cluster.start(0, config).await;
    let dir = tempfile::tempdir().unwrap();
    let (link, mut events) = AgentLink::start(
        agent_config(addr, Some(cluster.token.to_string()), dir.path(), "edge-m"),
        None,
        Arc::new(Logs),
    )
    .await
    .unwrap();
    let mut session = next_session(&mut sessions).await;
    let sender = session.sender();
    let before = sender.remote_address();
    let old_local = link.local_addr().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let new_local = socket.local_addr().unwrap();
    link.rebind(socket).unwrap();
    assert_ne!(old_local.port(), new_local.port());
    // Heartbeats keep flowing over the new path, and the server sees the new address.
    let mut heartbeats = 0;
    while heartbeats < 5 {
        match next_event(&mut session).await {
            NodeEvent::Heartbeat => heartbeats += 1,
            NodeEvent::Closed(reason) => panic!("session closed after rebinding: {reason}"),
            _ => {}
        }
    }
    assert_eq!(sender.remote_address().port(), new_local.port());
    assert_ne!(sender.remote_address(), before);
    // The same session still delivers desired state.
    sender.send_snapshot(3, vec![pod("after-move")]).unwrap();
    loop {
        match next_agent_event(&mut events).await {
            AgentLinkEvent::Pods(DesiredPods::Snapshot { pods, .. }) => {
                assert_eq!(pods[0].metadata.name.as_deref(), Some("after-move"));
                break;
            }
            AgentLinkEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
            _ => {}
        }
    }
    link.shutdown().await;
}

#[tokio::test]
async fn certificates_are_renewed_before_expiry() {
    let cluster = Cluster::new();
    let (_server, mut sessions, addr) = cluster.start(0, SessionConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = agent_config(addr, Some(cluster.token.to_string()), dir.path(), "edge-c");
    // Every certificate is "close to expiry" with this setting.
    config.renew_before = Duration::from_secs(10 * 365 * 24 * 3600);
    let before = std::fs::read_to_string(dir.path().join("tls/node.crt")).ok();
    assert!(before.is_none());
    let (link, mut events) = AgentLink::start(config, None, Arc::new(Logs))
        .await
        .unwrap();
    let first = std::fs::read_to_string(dir.path().join("tls/node.crt")).unwrap();
    let mut session = next_session(&mut sessions).await;
    let csr = loop {
        if let NodeEvent::RenewCertificate { csr_pem } = next_event(&mut session).await {
            break csr_pem;
        }
    };
    let renewed = cluster
        .ca()
        .sign_csr(&csr, &skiff_pki::node_identity("edge-c"))
        .unwrap();
    session
        .sender()
        .certificate_renewed(renewed.clone())
        .unwrap();
    loop {
        if next_agent_event(&mut events).await == AgentLinkEvent::CertificateRenewed {
            break;
        }
    }
    let second = std::fs::read_to_string(dir.path().join("tls/node.crt")).unwrap();
    assert_ne!(first, second);
    assert_eq!(second, renewed);
    link.shutdown().await;
}

#[tokio::test]
async fn an_agent_started_before_the_server_joins_once_it_is_up() {
    let cluster = Cluster::new();
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = agent_config(addr, Some(cluster.token.to_string()), dir.path(), "early");
    let starting = tokio::spawn(AgentLink::start(config, None, Arc::new(Logs)));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !starting.is_finished(),
        "the join must wait for the server, not fail"
    );
    let (_server, mut sessions, _) = cluster.start(port, SessionConfig::default()).await;
    let (link, _events) = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("joined once the server was up")
        .unwrap()
        .unwrap();
    assert_eq!(next_session(&mut sessions).await.node_name, "early");
    link.shutdown().await;
}
