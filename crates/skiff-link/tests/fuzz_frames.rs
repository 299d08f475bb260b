//! Property tests of the node link's framing: the decoders never panic on any bytes, never hand
//! out a frame over their limit (and refuse an oversized announcement before its body arrives),
//! and encode → decode gives back every generated message, however the bytes are split.
//!
//! `PROPTEST_CASES=100000 cargo test -p skiff-link --test fuzz_frames` runs a long session;
//! the seeds in `tests/corpus/` (made by `tests/corpus/generate.py`) are replayed every run.

use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use skiff_link::proto::exec::{ExecFrameDecoder, MAX_EXEC_FRAME};
use skiff_link::proto::image::{BlobHeader, ImageWant};
use skiff_link::proto::policy::{PodPolicy, PolicyPeer, PolicyPort, PolicyRule};
use skiff_link::proto::service::{ServiceKey, ServicePortSummary, ServiceSummary};
use skiff_link::proto::{
    decode, encode, AgentMessage, FrameDecoder, FrameError, Hello, JoinRequest, NodeSummary,
    ObjectKind, ObjectRef, ObjectResult, PodChange, PodRef, PodStatusUpdate, RefusalCode,
    ServerMessage, StatusFailure, StreamReply, DEFAULT_MAX_FRAME_LEN,
};

/// What a run of the decoder over some bytes produced.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every complete frame was returned; `rest` bytes wait for more.
    Frames { frames: Vec<Vec<u8>>, rest: usize },
    /// A frame announced more than the limit.
    TooLarge { len: usize },
}

/// Feeds `data` to a decoder limited to `max` in the given piece sizes, taking frames as they
/// complete, and checks what the decoder promises about each.
fn run_decoder(data: &[u8], pieces: &[usize], max: usize) -> Outcome {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut sizes = pieces.iter().copied().cycle();
    loop {
        if !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            decoder.push(&rest[..n]);
            rest = &rest[n..];
        }
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame of {} over {max}", frame.len());
                    // Whatever the payload, decoding is an answer, never a panic.
                    let _ = decode::<AgentMessage>(&frame);
                    let _ = decode::<ServerMessage>(&frame);
                    let _ = decode::<StreamReply>(&frame);
                    let _ = decode::<ImageWant>(&frame);
                    let _ = decode::<BlobHeader>(&frame);
                    frames.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max: limit }) => {
                    assert_eq!(limit, max);
                    assert!(len > max, "refused {len} within the limit {max}");
                    return Outcome::TooLarge { len };
                }
                Err(other) => panic!("the splitter only refuses sizes, got {other}"),
            }
        }
        if rest.is_empty() {
            return Outcome::Frames {
                frames,
                rest: decoder.buffered(),
            };
        }
    }
}

/// The reference splitter: what the frames of `data` are, computed in one pass.
fn reference_split(data: &[u8], max: usize) -> Outcome {
    let mut frames = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            return Outcome::TooLarge { len };
        }
        if rest.len() < 4 + len {
            break;
        }
        frames.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    Outcome::Frames {
        frames,
        rest: rest.len(),
    }
}

/// Bytes that look like a frame stream more often than pure noise does: runs of valid frames
/// with random payloads, random length prefixes, and raw noise.
fn frame_soup() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(|payload| {
            let mut out = (payload.len() as u32).to_be_bytes().to_vec();
            out.extend(payload);
            out
        }),
        any::<u32>().prop_map(|len| len.to_be_bytes().to_vec()),
        vec(any::<u8>(), 0..32),
        Just(br#"{"type":"heartbeat","seq":1}"#.to_vec()).prop_map(|p| {
            let mut out = (p.len() as u32).to_be_bytes().to_vec();
            out.extend(p);
            out
        }),
    ];
    vec(chunk, 0..12).prop_map(|chunks| chunks.concat())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z0-9.-]{0,20}"]
}

fn pod_ref() -> impl Strategy<Value = PodRef> {
    (text(), text(), text()).prop_map(|(namespace, name, uid)| PodRef {
        namespace,
        name,
        uid,
    })
}

fn meta() -> impl Strategy<Value = ObjectMeta> {
    (
        prop::option::of(text()),
        prop::option::of(btree_map(text(), text(), 0..3)),
    )
        .prop_map(|(name, labels)| ObjectMeta {
            name,
            labels,
            ..ObjectMeta::default()
        })
}

fn pod() -> impl Strategy<Value = Pod> {
    (meta(), prop::option::of(text())).prop_map(|(metadata, phase)| Pod {
        metadata,
        status: Some(PodStatus {
            phase,
            ..PodStatus::default()
        }),
        ..Pod::default()
    })
}

/// JSON without floats (a float may not survive text and back bit for bit).
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            btree_map(text(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            text(),
            prop::option::of(any::<u64>()),
            text()
        )
            .prop_map(
                |(min_version, max_version, node_name, resume_revision, agent_version)| {
                    AgentMessage::Hello(Hello {
                        min_version,
                        max_version,
                        node_name,
                        resume_revision,
                        agent_version,
                    })
                }
            ),
        (text(), text(), text(), text(), text(), text()).prop_map(|(a, b, c, d, e, f)| {
            AgentMessage::Join(JoinRequest {
                token_id: a,
                token_secret: b,
                node_name: c,
                node_password: d,
                csr_pem: e,
                agent_version: f,
            })
        }),
        meta().prop_map(|metadata| AgentMessage::Register {
            node: Box::new(Node {
                metadata,
                ..Node::default()
            })
        }),
        any::<u64>().prop_map(|seq| AgentMessage::Heartbeat { seq }),
        (
            any::<u64>(),
            vec((pod_ref(), prop::option::of(text())), 0..3)
        )
            .prop_map(|(batch, updates)| {
                AgentMessage::PodStatuses {
                    batch,
                    updates: updates
                        .into_iter()
                        .map(|(pod, phase)| PodStatusUpdate {
                            pod,
                            status: PodStatus {
                                phase,
                                ..PodStatus::default()
                            },
                        })
                        .collect(),
                }
            }),
        vec(pod_ref(), 0..4).prop_map(|pods| AgentMessage::PodsTerminated { pods }),
        text().prop_map(|csr_pem| AgentMessage::RenewCertificate { csr_pem }),
        text().prop_map(|reason| AgentMessage::Goodbye { reason }),
        Just(AgentMessage::WatchNodes),
        Just(AgentMessage::WatchServices),
        Just(AgentMessage::WatchPolicies),
        (any::<u64>(), vec(object_ref(), 0..4))
            .prop_map(|(request, refs)| AgentMessage::GetObjects { request, refs }),
        (any::<u64>(), text())
            .prop_map(|(request, reference)| AgentMessage::FetchImage { request, reference }),
    ]
}

fn object_ref() -> impl Strategy<Value = ObjectRef> {
    (any::<bool>(), text(), text()).prop_map(|(secret, namespace, name)| ObjectRef {
        kind: if secret {
            ObjectKind::Secret
        } else {
            ObjectKind::ConfigMap
        },
        namespace,
        name,
    })
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let code = prop_oneof![
        Just(RefusalCode::UnsupportedVersion),
        Just(RefusalCode::InvalidToken),
        Just(RefusalCode::NameTaken),
        Just(RefusalCode::Forbidden),
        Just(RefusalCode::Internal),
        Just(RefusalCode::Unknown),
    ];
    prop_oneof![
        (any::<u32>(), any::<u64>(), text()).prop_map(|(version, ms, server_version)| {
            ServerMessage::Welcome {
                version,
                heartbeat_interval_ms: ms,
                server_version,
                services: None,
            }
        }),
        (code, text()).prop_map(|(code, message)| ServerMessage::Refused { code, message }),
        (text(), text()).prop_map(|(certificate_pem, ca_pem)| ServerMessage::Joined {
            certificate_pem,
            ca_pem
        }),
        any::<u64>().prop_map(|seq| ServerMessage::HeartbeatAck { seq }),
        (any::<u64>(), vec(pod(), 0..3), any::<bool>()).prop_map(|(revision, pods, last)| {
            ServerMessage::PodSnapshot {
                revision,
                pods,
                last,
            }
        }),
        (
            any::<u64>(),
            vec(
                prop_oneof![
                    pod().prop_map(|p| PodChange::Upsert { pod: Box::new(p) }),
                    pod_ref().prop_map(|pod| PodChange::Removed { pod }),
                ],
                0..3
            ),
            any::<bool>()
        )
            .prop_map(|(revision, changes, last)| ServerMessage::PodChanges {
                revision,
                changes,
                last
            }),
        (any::<u64>(), vec((pod_ref(), text()), 0..3)).prop_map(|(batch, failures)| {
            ServerMessage::StatusAck {
                batch,
                failures: failures
                    .into_iter()
                    .map(|(pod, message)| StatusFailure { pod, message })
                    .collect(),
            }
        }),
        (
            any::<bool>(),
            vec((text(), prop::option::of(text()), vec(text(), 0..2)), 0..3),
            vec(text(), 0..2)
        )
            .prop_map(|(full, nodes, removed)| ServerMessage::Nodes {
                network: None,
                full,
                nodes: nodes
                    .into_iter()
                    .map(|(name, internal_ip, pod_cidrs)| NodeSummary {
                        name,
                        internal_ip,
                        pod_cidrs,
                    })
                    .collect(),
                removed,
            }),
        (
            any::<bool>(),
            vec((text(), text(), vec(text(), 0..2), any::<u16>()), 0..3),
            any::<bool>()
        )
            .prop_map(|(full, services, last)| ServerMessage::Services {
                full,
                services: services
                    .into_iter()
                    .map(|(namespace, name, cluster_ips, port)| ServiceSummary {
                        key: ServiceKey { namespace, name },
                        cluster_ips,
                        ports: vec![ServicePortSummary {
                            name: String::new(),
                            protocol: "TCP".into(),
                            port,
                            node_port: None,
                        }],
                        ..Default::default()
                    })
                    .collect(),
                removed: Vec::new(),
                last,
            }),
        (
            vec(
                (
                    text(),
                    any::<u32>(),
                    any::<u8>(),
                    prop::option::of(any::<u16>())
                ),
                0..3
            ),
            any::<bool>()
        )
            .prop_map(|(pods, last)| ServerMessage::Policies {
                pods: pods
                    .into_iter()
                    .map(|(name, ip, bits, port)| PodPolicy {
                        namespace: "default".into(),
                        name,
                        ip: ip.into(),
                        ingress: Some(vec![PolicyRule {
                            peers: Some(vec![PolicyPeer {
                                cidr: format!("{}/{}", std::net::Ipv4Addr::from(ip), bits % 33)
                                    .parse()
                                    .unwrap(),
                                except: Vec::new(),
                            }]),
                            ports: vec![PolicyPort {
                                port,
                                ..Default::default()
                            }],
                        }]),
                        egress: None,
                    })
                    .collect(),
                last,
            }),
        (
            any::<u64>(),
            vec(
                (
                    object_ref(),
                    prop::option::of(json()),
                    prop::option::of(text())
                ),
                0..3
            )
        )
            .prop_map(|(request, results)| ServerMessage::Objects {
                request,
                results: results
                    .into_iter()
                    .map(|(reference, object, error)| ObjectResult {
                        reference,
                        // `null` reads back as "no object", so it is not a distinct value.
                        object: object.filter(|o| !o.is_null()),
                        error,
                    })
                    .collect(),
            }),
    ]
}

/// Encodes all messages, feeds the bytes in the given pieces, decodes every frame.
fn round_trip<T>(messages: &[T], pieces: &[usize]) -> Vec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut wire = Vec::new();
    for m in messages {
        wire.extend_from_slice(&encode(m, DEFAULT_MAX_FRAME_LEN).expect("encodes"));
    }
    let Outcome::Frames { frames, rest } = run_decoder(&wire, pieces, DEFAULT_MAX_FRAME_LEN) else {
        panic!("own frames refused as too large");
    };
    assert_eq!(rest, 0, "bytes left over");
    frames
        .iter()
        .map(|f| decode::<T>(f).expect("own frame decodes"))
        .collect()
}

/// The fuzz budget; failures are kept in `proptest-regressions/fuzz_frames.txt` (committed, replayed
/// before new cases).
fn config(cases: u32) -> ProptestConfig {
    skiff_testkit::fuzz::config(
        cases,
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz_frames.txt"
        )),
    )
}

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes, in any pieces, under any limit: the decoder returns exactly the frames a
    /// one-pass reference finds, refuses exactly the first oversized announcement, and never
    /// panics.
    #[test]
    fn decoder_agrees_with_reference_on_any_bytes(
        data in prop_oneof![frame_soup(), vec(any::<u8>(), 0..256)],
        pieces in vec(1usize..48, 1..8),
        max in prop_oneof![Just(DEFAULT_MAX_FRAME_LEN), 0usize..80],
    ) {
        prop_assert_eq!(run_decoder(&data, &pieces, max), reference_split(&data, max));
    }

    /// An announcement over 4 MiB is refused as soon as its 4 length bytes are in, without
    /// waiting for (or buffering room for) the body; one at or under the limit waits.
    #[test]
    fn four_mib_limit_is_enforced_at_the_prefix(len in prop_oneof![
        Just(DEFAULT_MAX_FRAME_LEN as u32),
        Just(DEFAULT_MAX_FRAME_LEN as u32 + 1),
        Just(u32::MAX),
        any::<u32>(),
    ]) {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_LEN);
        prop_assert_eq!(DEFAULT_MAX_FRAME_LEN, 4 << 20);
        decoder.push(&len.to_be_bytes()[..3]);
        prop_assert_eq!(decoder.next_frame(), Ok(None));
        decoder.push(&len.to_be_bytes()[3..]);
        let got = decoder.next_frame();
        if len as usize > DEFAULT_MAX_FRAME_LEN {
            prop_assert_eq!(got, Err(FrameError::TooLarge {
                len: len as usize,
                max: DEFAULT_MAX_FRAME_LEN,
            }));
        } else if len == 0 {
            prop_assert_eq!(got.map(|f| f.map(|b| b.len())), Ok(Some(0)));
        } else {
            prop_assert_eq!(got, Ok(None));
            prop_assert_eq!(decoder.buffered(), 4);
        }
    }

    /// Encoding refuses exactly the messages whose payload is over the limit.
    #[test]
    fn encode_respects_the_limit(message in agent_message(), max in 0usize..400) {
        let payload = serde_json::to_vec(&message).expect("serialises");
        match encode(&message, max) {
            Ok(frame) => {
                prop_assert!(payload.len() <= max);
                prop_assert_eq!(&frame[4..], &payload[..]);
            }
            Err(FrameError::TooLarge { len, max: limit }) => {
                prop_assert_eq!((len, limit), (payload.len(), max));
                prop_assert!(len > max);
            }
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }

    /// Agent messages survive encode → split anywhere → decode.
    #[test]
    fn agent_messages_round_trip(
        messages in vec(agent_message(), 1..5),
        pieces in vec(1usize..200, 1..6),
    ) {
        prop_assert_eq!(round_trip(&messages, &pieces), messages);
    }

    /// Server messages survive encode → split anywhere → decode.
    #[test]
    fn server_messages_round_trip(
        messages in vec(server_message(), 1..4),
        pieces in vec(1usize..200, 1..6),
    ) {
        prop_assert_eq!(round_trip(&messages, &pieces), messages);
    }

    /// The exec channel splitter never panics and never returns more than its limit.
    #[test]
    fn exec_decoder_never_panics(data in prop_oneof![frame_soup(), vec(any::<u8>(), 0..256)]) {
        let mut decoder = ExecFrameDecoder::new();
        decoder.push(&data);
        loop {
            match decoder.next_frame() {
                Ok(Some((_, payload))) => prop_assert!(payload.len() <= MAX_EXEC_FRAME),
                Ok(None) => break,
                Err(FrameError::TooLarge { len, .. }) => {
                    prop_assert!(len > MAX_EXEC_FRAME);
                    break;
                }
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
        }
    }
}

/// Replays the hand-picked seeds of `tests/corpus/`: the file name says what the decoder must
/// make of it (`frames-N-…` = N frames, nothing left; `toolarge-…`; `partial-…` = waits).
#[test]
fn corpus_seeds_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let data = std::fs::read(&path).expect("read seed");
        for pieces in [&[1][..], &[7, 3], &[4096]] {
            let got = run_decoder(&data, pieces, DEFAULT_MAX_FRAME_LEN);
            assert_eq!(got, reference_split(&data, DEFAULT_MAX_FRAME_LEN), "{name}");
            match name.split('-').collect::<Vec<_>>().as_slice() {
                ["frames", n, ..] => {
                    let Outcome::Frames { frames, rest } = &got else {
                        panic!("{name}: {got:?}")
                    };
                    assert_eq!(frames.len().to_string(), *n, "{name}");
                    assert_eq!(*rest, 0, "{name}");
                }
                ["toolarge", ..] => assert!(matches!(got, Outcome::TooLarge { .. }), "{name}"),
                ["partial", ..] => assert!(
                    matches!(&got, Outcome::Frames { rest, .. } if *rest > 0),
                    "{name}: {got:?}"
                ),
                _ => panic!("{name}: corpus names start with frames-N, toolarge or partial"),
            }
        }
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} seeds in {}", dir.display());
}
