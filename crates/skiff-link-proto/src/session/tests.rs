//! Session tests on a simulated clock: both sides are driven in memory, bytes are moved between
//! them by hand, and time only advances when the test says so.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::{Rng, RngCore, SeedableRng};

use super::*;
use crate::proto::service::{ServiceKey, ServiceNetwork, ServiceSummary};
use crate::proto::{
    AgentMessage, JoinRequest, PodChange, PodRef, PodStatusUpdate, RefusalCode, ServerMessage,
    PROTOCOL_VERSION,
};

fn config() -> SessionConfig {
    SessionConfig {
        heartbeat_interval: Duration::from_secs(10),
        missed_heartbeats: 3,
        handshake_timeout: Duration::from_secs(5),
        max_frame_len: 64 * 1024,
        services: Some(service_network()),
    }
}

fn service_network() -> ServiceNetwork {
    ServiceNetwork {
        service_cidr: "10.43.0.0/16".into(),
        cluster_dns: "10.43.0.10".into(),
        cluster_domain: "cluster.local".into(),
        node_port_range: "30000-32767".into(),
    }
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn pod(name: &str, padding: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            annotations: Some([("pad".to_string(), "p".repeat(padding))].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Moves every queued byte from the agent to the server and back until both are quiet.
fn pump(agent: &mut AgentSession, server: &mut ServerSession, now: Instant) {
    loop {
        let mut moved = false;
        while let Some(bytes) = agent.poll_transmit() {
            server.handle_bytes(&bytes, now);
            moved = true;
        }
        while let Some(bytes) = server.poll_transmit() {
            agent.handle_bytes(&bytes, now);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn agent_events(agent: &mut AgentSession) -> Vec<AgentEvent> {
    std::iter::from_fn(|| agent.poll_event()).collect()
}

fn server_events(server: &mut ServerSession) -> Vec<ServerEvent> {
    std::iter::from_fn(|| server.poll_event()).collect()
}

fn established(now: Instant) -> (AgentSession, ServerSession) {
    let mut agent = AgentSession::new("n1", None, Some(node("n1")), config(), now);
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), now);
    pump(&mut agent, &mut server, now);
    (agent, server)
}

#[test]
fn handshake_registers_the_node() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    assert!(agent.is_established() && server.is_established());
    let events = server_events(&mut server);
    assert!(
        matches!(&events[0], ServerEvent::Opened { node_name, version: PROTOCOL_VERSION, resume_revision: None, .. } if node_name == "n1")
    );
    let ServerEvent::Node(NodeEvent::Register(node)) = &events[1] else {
        panic!("expected Register, got {events:?}")
    };
    assert_eq!(node.metadata.name.as_deref(), Some("n1"));
    server.registered("uid-1".into()).unwrap();
    pump(&mut agent, &mut server, t0);
    let events = agent_events(&mut agent);
    assert!(
        matches!(&events[0], AgentEvent::Established { version: PROTOCOL_VERSION, heartbeat_interval, services: Some(services) } if *heartbeat_interval == Duration::from_secs(10) && *services == service_network())
    );
    assert_eq!(
        events[1],
        AgentEvent::Registered {
            uid: "uid-1".into()
        }
    );
}

#[test]
fn session_name_must_match_the_certificate() {
    let t0 = Instant::now();
    let mut agent = AgentSession::new("n2", None, None, config(), t0);
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    pump(&mut agent, &mut server, t0);
    assert!(server.is_closed() && agent.is_closed());
    let Some(CloseReason::Refused { code, message }) = agent.close_reason() else {
        panic!("expected a refusal, got {:?}", agent.close_reason())
    };
    assert_eq!(*code, RefusalCode::Forbidden);
    assert!(
        message.contains("\"n1\"") && message.contains("\"n2\""),
        "{message}"
    );
}

#[test]
fn anonymous_peers_may_only_join() {
    let t0 = Instant::now();
    let mut agent = AgentSession::new("n1", None, None, config(), t0);
    let mut server = ServerSession::new(PeerIdentity::Anonymous, config(), t0);
    pump(&mut agent, &mut server, t0);
    assert!(matches!(
        agent.close_reason(),
        Some(CloseReason::Refused { code: RefusalCode::Forbidden, message }) if message.contains("join with a token")
    ));
}

#[test]
fn version_mismatch_is_refused() {
    let t0 = Instant::now();
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    let hello = AgentMessage::Hello(crate::proto::Hello {
        min_version: 7,
        max_version: 9,
        node_name: "n1".into(),
        resume_revision: None,
        agent_version: "9.9".into(),
    });
    server.handle_bytes(&crate::proto::encode(&hello, 1024).unwrap(), t0);
    let reply: ServerMessage = crate::proto::decode(&server.poll_transmit().unwrap()[4..]).unwrap();
    let ServerMessage::Refused { code, message } = reply else {
        panic!("expected a refusal")
    };
    assert_eq!(code, RefusalCode::UnsupportedVersion);
    assert!(message.contains("7..=9"), "{message}");
}

#[test]
fn join_exchange_grants_a_certificate() {
    let t0 = Instant::now();
    let request = JoinRequest {
        token_id: "abcdef".into(),
        token_secret: "0123456789abcdef".into(),
        node_name: "n1".into(),
        node_password: "pw".into(),
        csr_pem: "CSR".into(),
        agent_version: "0".into(),
    };
    let mut agent = AgentSession::join(request.clone(), config(), t0);
    let mut server = ServerSession::new(PeerIdentity::Anonymous, config(), t0);
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::JoinRequested(request)]
    );
    server.grant_join("CERT".into(), "CA".into());
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        agent_events(&mut agent),
        vec![
            AgentEvent::Joined {
                certificate_pem: "CERT".into(),
                ca_pem: "CA".into()
            },
            AgentEvent::Closed(CloseReason::Completed)
        ]
    );
}

#[test]
fn join_refusal_reaches_the_agent() {
    let t0 = Instant::now();
    let request = JoinRequest {
        token_id: "abcdef".into(),
        token_secret: "wrong".into(),
        node_name: "n1".into(),
        node_password: "pw".into(),
        csr_pem: "CSR".into(),
        agent_version: "0".into(),
    };
    let mut agent = AgentSession::join(request, config(), t0);
    let mut server = ServerSession::new(PeerIdentity::Anonymous, config(), t0);
    pump(&mut agent, &mut server, t0);
    server.refuse(RefusalCode::InvalidToken, "token abcdef: wrong secret");
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        agent.close_reason(),
        Some(&CloseReason::Refused {
            code: RefusalCode::InvalidToken,
            message: "token abcdef: wrong secret".into()
        })
    );
}

#[test]
fn heartbeats_flow_on_the_simulated_clock() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    server_events(&mut server);
    assert_eq!(agent.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    for i in 1..=5u64 {
        let now = t0 + Duration::from_secs(10 * i);
        agent.handle_timeout(now);
        pump(&mut agent, &mut server, now);
        server.handle_timeout(now);
        agent.handle_timeout(now);
        assert_eq!(
            server_events(&mut server),
            vec![ServerEvent::Node(NodeEvent::Heartbeat)]
        );
        assert!(agent.is_established() && server.is_established());
    }
}

#[test]
fn silent_agent_is_declared_dead_by_the_server() {
    let t0 = Instant::now();
    let (_agent, mut server) = established(t0);
    server_events(&mut server);
    let deadline = server.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(30));
    server.handle_timeout(deadline - Duration::from_millis(1));
    assert!(server.is_established());
    server.handle_timeout(deadline);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Closed(CloseReason::PeerDead {
            silent_for: Duration::from_secs(30)
        })]
    );
    let (code, _) = server.close_reason().unwrap().close_code();
    assert_eq!(code, crate::proto::CloseCode::PeerDead);
}

#[test]
fn silent_server_is_declared_dead_by_the_agent() {
    let t0 = Instant::now();
    let (mut agent, _server) = established(t0);
    agent_events(&mut agent);
    // Heartbeats go out but nothing comes back.
    let mut now = t0;
    while !agent.is_closed() {
        now = agent.poll_timeout().unwrap();
        agent.handle_timeout(now);
        while agent.poll_transmit().is_some() {}
    }
    assert_eq!(now, t0 + Duration::from_secs(30));
    assert!(matches!(
        agent.close_reason(),
        Some(CloseReason::PeerDead { .. })
    ));
}

#[test]
fn handshake_times_out() {
    let t0 = Instant::now();
    let mut agent = AgentSession::new("n1", None, None, config(), t0);
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    assert_eq!(agent.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    agent.handle_timeout(t0 + Duration::from_secs(4));
    server.handle_timeout(t0 + Duration::from_secs(4));
    assert!(!agent.is_closed() && !server.is_closed());
    agent.handle_timeout(t0 + Duration::from_secs(5));
    server.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(agent.close_reason(), Some(&CloseReason::HandshakeTimeout));
    assert_eq!(server.close_reason(), Some(&CloseReason::HandshakeTimeout));
}

#[test]
fn snapshot_then_changes_then_resume_from_the_revision() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    agent_events(&mut agent);
    // A snapshot larger than one frame arrives in parts but is delivered once, whole.
    let pods: Vec<Pod> = (0..20).map(|i| pod(&format!("p{i}"), 10_000)).collect();
    server.send_snapshot(100, pods.clone()).unwrap();
    let mut frames = 0;
    while let Some(bytes) = server.poll_transmit() {
        frames += 1;
        agent.handle_bytes(&bytes, t0);
    }
    assert!(frames > 1, "the snapshot should need several frames");
    assert_eq!(
        agent_events(&mut agent),
        vec![AgentEvent::Pods(DesiredPods::Snapshot {
            revision: 100,
            pods
        })]
    );
    assert_eq!(agent.revision(), Some(100));

    let removed = PodRef {
        namespace: "default".into(),
        name: "p0".into(),
        uid: "uid-p0".into(),
    };
    server
        .send_changes(
            105,
            vec![PodChange::Removed {
                pod: removed.clone(),
            }],
        )
        .unwrap();
    server.send_bookmark(110).unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        agent_events(&mut agent),
        vec![AgentEvent::Pods(DesiredPods::Changes {
            revision: 105,
            changes: vec![PodChange::Removed { pod: removed }]
        })]
    );
    assert_eq!(agent.revision(), Some(110));

    // The next session resumes from the bookmark's revision.
    let t1 = t0 + Duration::from_secs(60);
    let mut agent2 = AgentSession::new("n1", agent.revision(), None, config(), t1);
    let mut server2 = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t1);
    pump(&mut agent2, &mut server2, t1);
    assert!(matches!(
        server_events(&mut server2)[0],
        ServerEvent::Opened {
            resume_revision: Some(110),
            ..
        }
    ));
}

#[test]
fn a_partial_change_batch_does_not_advance_the_revision() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    agent_events(&mut agent);
    server.send_snapshot(10, vec![]).unwrap();
    pump(&mut agent, &mut server, t0);
    let changes: Vec<PodChange> = (0..20)
        .map(|i| PodChange::Upsert {
            pod: Box::new(pod(&format!("q{i}"), 10_000)),
        })
        .collect();
    server.send_changes(50, changes).unwrap();
    // Deliver only the first part, then the connection drops.
    let first = server.poll_transmit().unwrap();
    agent.handle_bytes(&first, t0);
    assert_eq!(agent.revision(), Some(10));
}

#[test]
fn statuses_are_batched_and_acknowledged() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    server_events(&mut server);
    agent_events(&mut agent);
    let update = PodStatusUpdate {
        pod: PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u".into(),
        },
        status: PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        },
    };
    let batch = agent.send_statuses(vec![update.clone()]).unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Node(NodeEvent::PodStatuses {
            batch,
            updates: vec![update]
        })]
    );
    server.ack_statuses(batch, vec![]).unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        agent_events(&mut agent),
        vec![AgentEvent::StatusAck {
            batch,
            failures: vec![]
        }]
    );
}

#[test]
fn sending_before_the_session_is_established_fails() {
    let t0 = Instant::now();
    let mut agent = AgentSession::new("n1", None, None, config(), t0);
    assert!(agent.send_statuses(vec![]).is_err());
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    assert!(server.send_bookmark(1).is_err());
}

#[test]
fn oversized_frame_closes_the_session_with_a_reason() {
    let t0 = Instant::now();
    let (_agent, mut server) = established(t0);
    server_events(&mut server);
    server.handle_bytes(&(1u32 << 30).to_be_bytes(), t0);
    let Some(CloseReason::ProtocolViolation(reason)) = server.close_reason() else {
        panic!("expected a violation")
    };
    assert!(reason.contains("exceeds the limit"), "{reason}");
}

#[test]
fn unknown_message_type_closes_the_session_with_a_reason() {
    let t0 = Instant::now();
    let (_agent, mut server) = established(t0);
    let body = br#"{"type":"formatDisk"}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    server.handle_bytes(&frame, t0);
    let Some(CloseReason::ProtocolViolation(reason)) = server.close_reason() else {
        panic!("expected a violation")
    };
    assert!(reason.contains("formatDisk"), "{reason}");
}

#[test]
fn unexpected_message_in_state_is_a_violation() {
    let t0 = Instant::now();
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    server.handle_bytes(
        &crate::proto::encode(&AgentMessage::Heartbeat { seq: 1 }, 1024).unwrap(),
        t0,
    );
    let Some(CloseReason::ProtocolViolation(reason)) = server.close_reason() else {
        panic!("expected a violation")
    };
    assert!(reason.contains("unexpected heartbeat"), "{reason}");
}

#[test]
fn random_bytes_close_sessions_but_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let t0 = Instant::now();
    for round in 0..500 {
        let (mut agent, mut server) = established(t0);
        let mut data = vec![0u8; rng.random_range(0..2048)];
        rng.fill_bytes(&mut data);
        if round % 2 == 0 {
            // Make a plausible length prefix so the JSON decoder sees random payloads too.
            let len = (data.len().saturating_sub(4)) as u32;
            if data.len() >= 4 {
                data[..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        for piece in data.chunks(rng.random_range(1..64)) {
            server.handle_bytes(piece, t0);
            agent.handle_bytes(piece, t0);
        }
        server.handle_timeout(t0 + Duration::from_secs(1));
        agent.handle_timeout(t0 + Duration::from_secs(1));
        // Whatever happened, both sides still produce well-formed output or are closed.
        while let Some(bytes) = server.poll_transmit() {
            assert!(crate::proto::decode::<ServerMessage>(&bytes[4..]).is_ok());
        }
    }
}

#[test]
fn random_valid_messages_survive_random_fragmentation() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let t0 = Instant::now();
    let (agent, mut server) = established(t0);
    server_events(&mut server);
    let mut expected = Vec::new();
    let mut wire = Vec::new();
    for i in 0..300u64 {
        let message = match rng.random_range(0..3) {
            0 => AgentMessage::Heartbeat { seq: i },
            1 => AgentMessage::PodsTerminated {
                pods: vec![PodRef {
                    namespace: "ns".into(),
                    name: format!("p{i}"),
                    uid: "x".repeat(rng.random_range(0..500)),
                }],
            },
            _ => AgentMessage::Register {
                node: Box::new(node(&format!("n{i}"))),
            },
        };
        wire.extend_from_slice(&crate::proto::encode(&message, 64 * 1024).unwrap());
        expected.push(message);
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(300));
        server.handle_bytes(&rest[..n], t0);
        rest = &rest[n..];
    }
    let events = server_events(&mut server);
    assert_eq!(events.len(), expected.len());
    for (event, message) in events.iter().zip(&expected) {
        match (event, message) {
            (ServerEvent::Node(NodeEvent::Heartbeat), AgentMessage::Heartbeat { .. }) => {}
            (
                ServerEvent::Node(NodeEvent::PodsTerminated(a)),
                AgentMessage::PodsTerminated { pods },
            ) => {
                assert_eq!(a, pods)
            }
            (ServerEvent::Node(NodeEvent::Register(a)), AgentMessage::Register { node }) => {
                assert_eq!(a, node)
            }
            other => panic!("mismatch: {other:?}"),
        }
    }
    let _ = agent;
}

#[test]
fn image_requests_reach_the_server() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    server_events(&mut server);
    agent.fetch_image(7, "busybox:1.36").unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Node(NodeEvent::FetchImage {
            request: 7,
            reference: "busybox:1.36".into()
        })]
    );
    assert!(server.is_established());
}

#[test]
fn a_services_list_larger_than_a_frame_arrives_whole_in_one_update() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    server_events(&mut server);
    agent.watch_services().unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Node(NodeEvent::WatchServices)]
    );
    agent_events(&mut agent);
    // 64 KiB frames (`config`): 2,000 summaries of ~100 bytes need several parts.
    let services: Vec<ServiceSummary> = (0..2000)
        .map(|i| ServiceSummary {
            key: ServiceKey {
                namespace: "default".into(),
                name: format!("service-{i:05}"),
            },
            cluster_ips: vec![format!("10.43.{}.{}", i / 250, i % 250)],
            ..Default::default()
        })
        .collect();
    let gone = ServiceKey {
        namespace: "default".into(),
        name: "old".into(),
    };
    server
        .send_services(true, services.clone(), vec![gone.clone()])
        .unwrap();
    let mut frames = 0;
    while let Some(frame) = server.poll_transmit() {
        frames += 1;
        agent.handle_bytes(&frame, t0);
    }
    assert!(frames > 1, "one frame cannot hold them: {frames}");
    assert_eq!(
        agent_events(&mut agent),
        vec![AgentEvent::Services(crate::session::ServicesUpdate {
            full: true,
            services,
            removed: vec![gone],
        })]
    );
}

fn pod_policy(i: usize) -> crate::proto::policy::PodPolicy {
    use crate::proto::policy::{PodPolicy, PolicyPeer, PolicyPort, PolicyRule};
    PodPolicy {
        namespace: "default".into(),
        name: format!("web-{i:05}"),
        ip: std::net::Ipv4Addr::new(10, 42, (i / 250) as u8, (i % 250) as u8),
        ingress: Some(vec![PolicyRule {
            peers: Some(vec![PolicyPeer {
                cidr: "10.42.7.0/24".parse().unwrap(),
                except: vec!["10.42.7.128/25".parse().unwrap()],
            }]),
            ports: vec![PolicyPort {
                port: Some(80),
                ..Default::default()
            }],
        }]),
        egress: Some(vec![]),
    }
}

#[test]
fn a_policy_set_larger_than_a_frame_arrives_whole_and_replaces_the_last() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    server_events(&mut server);
    agent.watch_policies().unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Node(NodeEvent::WatchPolicies)]
    );
    agent_events(&mut agent);
    // 64 KiB frames (`config`): 2,000 pods of ~250 bytes need several parts.
    let set: Vec<_> = (0..2000).map(pod_policy).collect();
    server.send_policies(set.clone()).unwrap();
    let mut frames = 0;
    while let Some(frame) = server.poll_transmit() {
        frames += 1;
        agent.handle_bytes(&frame, t0);
        if frames == 1 {
            assert_eq!(
                agent_events(&mut agent),
                vec![],
                "a partial set is not applied"
            );
        }
    }
    assert!(frames > 1, "one frame cannot hold them: {frames}");
    assert_eq!(agent_events(&mut agent), vec![AgentEvent::Policies(set)]);
    // An empty set (the last policy deleted) is sent, and arrives, as such.
    server.send_policies(Vec::new()).unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(agent_events(&mut agent), vec![AgentEvent::Policies(vec![])]);
}

#[test]
fn watch_policies_needs_protocol_version_four() {
    let t0 = Instant::now();
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    let hello = AgentMessage::Hello(crate::proto::Hello {
        min_version: 1,
        max_version: crate::proto::policy::POLICY_PROTOCOL_VERSION - 1,
        node_name: "n1".into(),
        resume_revision: None,
        agent_version: "0.3".into(),
    });
    server.handle_bytes(&crate::proto::encode(&hello, 1024).unwrap(), t0);
    assert!(server.is_established());
    server.handle_bytes(
        &crate::proto::encode(&AgentMessage::WatchPolicies, 1024).unwrap(),
        t0,
    );
    let Some(CloseReason::ProtocolViolation(reason)) = server.close_reason() else {
        panic!("expected a violation, got {:?}", server.close_reason())
    };
    assert!(reason.contains("unexpected watchPolicies"), "{reason}");
}

fn usage_report() -> crate::proto::usage::UsageReport {
    use crate::proto::usage::{ContainerUsage, PodUsage, UsageReport, UsageSample};
    UsageReport {
        timestamp_ms: 1_700_000_000_000,
        node: Some(UsageSample {
            cpu_ns: 5_000_000_000,
            memory_bytes: 1 << 30,
        }),
        pods: vec![PodUsage {
            pod: PodRef {
                namespace: "default".into(),
                name: "burn".into(),
                uid: "u1".into(),
            },
            containers: vec![ContainerUsage {
                name: "main".into(),
                started_ms: Some(1_699_999_990_000),
                usage: UsageSample {
                    cpu_ns: 1_000_000,
                    memory_bytes: 4096,
                },
            }],
        }],
    }
}

#[test]
fn usage_reports_reach_the_server_at_version_five() {
    let t0 = Instant::now();
    let (mut agent, mut server) = established(t0);
    server_events(&mut server);
    agent.send_usage(usage_report()).unwrap();
    pump(&mut agent, &mut server, t0);
    assert_eq!(
        server_events(&mut server),
        vec![ServerEvent::Node(NodeEvent::ResourceUsage(usage_report()))]
    );
    assert!(server.is_established());
}

#[test]
fn usage_reports_need_protocol_version_five() {
    // An agent of protocol 4 never sends them; one that did would break the protocol (an
    // old server does not know the message at all and closes the same way).
    let t0 = Instant::now();
    let mut server = ServerSession::new(PeerIdentity::Node("n1".into()), config(), t0);
    let hello = AgentMessage::Hello(crate::proto::Hello {
        min_version: 1,
        max_version: crate::proto::usage::USAGE_PROTOCOL_VERSION - 1,
        node_name: "n1".into(),
        resume_revision: None,
        agent_version: "0.4".into(),
    });
    server.handle_bytes(&crate::proto::encode(&hello, 1024).unwrap(), t0);
    assert!(server.is_established());
    server.handle_bytes(
        &crate::proto::encode(&AgentMessage::ResourceUsage(usage_report()), 4096).unwrap(),
        t0,
    );
    let Some(CloseReason::ProtocolViolation(reason)) = server.close_reason() else {
        panic!("expected a violation, got {:?}", server.close_reason())
    };
    assert!(reason.contains("unexpected resourceUsage"), "{reason}");
}
