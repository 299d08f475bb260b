//! Property tests of the protobuf request decoder: any body is JSON or an error, never a panic;
//! and a valid encoding of a generated object (every message, field kind, packed and unpacked
//! repeated scalars, maps, inline structs and special types reachable from the served kinds)
//! decodes to the JSON the object stands for.
//!
//! Long run: `PROPTEST_CASES=20000 cargo test -p skiff-apiserver --lib protobuf::fuzz`.

use base64::Engine;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

/// Random choices read from a tape proptest generates and shrinks (an exhausted tape reads 0:
/// the smallest object).
struct Tape {
    choices: Vec<u32>,
    at: usize,
}

impl Tape {
    fn next(&mut self, n: u32) -> u32 {
        let v = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next(items.len() as u32) as usize]
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
    varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
}

fn bytes_field(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    key(out, tag, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

const STRINGS: &[&str] = &[
    "web",
    "a",
    "kube-system",
    "é☃ ünïcode",
    "0",
    "x y\nz",
    "\u{0}",
];
const QUANTITIES: &[&str] = &["250m", "1Gi", "0", "1.5", "128974848", "1e3"];
/// `(seconds, nanos, Time JSON, MicroTime JSON)`.
const TIMES: &[(i64, i32, &str, &str)] = &[
    (
        1_700_000_000,
        0,
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20.000000Z",
    ),
    (
        0,
        123_456_000,
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00.123456Z",
    ),
    (-1, 0, "1969-12-31T23:59:59Z", "1969-12-31T23:59:59.000000Z"),
];

/// A generated scalar or message value: its wire form (wire type + bytes) and its JSON.
struct Encoded {
    wire_type: u8,
    bytes: Vec<u8>,
    json: Value,
}

fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Encodes a message body for special messages, or `None` for ordinary ones.
fn special_value(name: &str, tape: &mut Tape) -> Option<(Vec<u8>, Value)> {
    let mut out = Vec::new();
    let json = match short(name) {
        "Time" | "MicroTime" => {
            if tape.next(6) == 0 {
                // Go's zero time: `null`, which means "unset".
                key(&mut out, 1, 0);
                varint(&mut out, GO_ZERO_TIME_SECONDS as u64);
                Value::Null
            } else {
                let (seconds, nanos, time, micro) = *tape.pick(TIMES);
                if seconds != 0 {
                    key(&mut out, 1, 0);
                    varint(&mut out, seconds as u64);
                }
                if nanos != 0 {
                    key(&mut out, 2, 0);
                    varint(&mut out, nanos as i64 as u64);
                }
                Value::from(if short(name) == "Time" { time } else { micro })
            }
        }
        "Quantity" => {
            let q = *tape.pick(QUANTITIES);
            bytes_field(&mut out, 1, q.as_bytes());
            Value::from(q)
        }
        "IntOrString" => {
            if tape.next(2) == 0 {
                let v = tape.next(200_000) as i32 - 100_000;
                if v != 0 {
                    key(&mut out, 2, 0);
                    varint(&mut out, i64::from(v) as u64);
                }
                Value::from(v)
            } else {
                let s = format!("{}%", tape.next(101));
                key(&mut out, 1, 0);
                varint(&mut out, 1);
                bytes_field(&mut out, 3, s.as_bytes());
                Value::from(s)
            }
        }
        "RawExtension" | "FieldsV1" => {
            let v = json!({"f:metadata": {"f:name": {}}, "n": tape.next(100)});
            bytes_field(&mut out, 1, v.to_string().as_bytes());
            v
        }
        _ => return None,
    };
    Some((out, json))
}

/// Generates a message of type `name`: its bytes and its JSON object.
fn message(name: &str, tape: &mut Tape, depth: usize) -> (Vec<u8>, Map<String, Value>) {
    let mut out = Vec::new();
    let mut object = Map::new();
    let fields = messages().get(name).copied().unwrap_or(&[]);
    for field in fields {
        // Deeper messages set fewer fields, so objects stay small.
        if tape.next(3 + depth as u32) != 0 {
            continue;
        }
        match field.kind {
            Kind::Inline(inner) => {
                if depth >= 6 {
                    continue;
                }
                let (bytes, inner_object) = message(inner, tape, depth + 1);
                if inner_object.keys().any(|k| object.contains_key(k)) {
                    continue;
                }
                bytes_field(&mut out, field.tag, &bytes);
                object.extend(inner_object);
            }
            Kind::MapOfString | Kind::MapOfBytes | Kind::MapOfMessage(_) => {
                let value_kind = match field.kind {
                    Kind::MapOfString => Kind::String,
                    Kind::MapOfBytes => Kind::Bytes,
                    Kind::MapOfMessage(m) => Kind::Message(m),
                    other => other,
                };
                if matches!(value_kind, Kind::Message(_)) && depth >= 6 {
                    continue;
                }
                let mut map = Map::new();
                for i in 0..=tape.next(3) {
                    let k = format!("{}{i}", tape.pick(STRINGS));
                    let Some(v) = scalar_value(value_kind, tape, depth) else {
                        continue;
                    };
                    let mut entry = Vec::new();
                    bytes_field(&mut entry, 1, k.as_bytes());
                    key(&mut entry, 2, v.wire_type);
                    entry.extend(v.bytes);
                    bytes_field(&mut out, field.tag, &entry);
                    map.insert(k, v.json);
                }
                if !map.is_empty() {
                    object.insert(field.json.to_owned(), Value::Object(map));
                }
            }
            kind if field.repeated => {
                let count = 1 + tape.next(3);
                let packed =
                    matches!(kind, Kind::Int32 | Kind::Int64 | Kind::Bool) && tape.next(2) == 0;
                let mut items = Vec::new();
                let mut packed_bytes = Vec::new();
                for _ in 0..count {
                    let Some(v) = scalar_value(kind, tape, depth) else {
                        continue;
                    };
                    if packed {
                        packed_bytes.extend(&v.bytes);
                    } else {
                        key(&mut out, field.tag, v.wire_type);
                        out.extend(&v.bytes);
                    }
                    items.push(v.json);
                }
                if packed && !packed_bytes.is_empty() {
                    bytes_field(&mut out, field.tag, &packed_bytes);
                }
                if !items.is_empty() {
                    object.insert(field.json.to_owned(), Value::Array(items));
                }
            }
            kind => {
                let Some(v) = scalar_value(kind, tape, depth) else {
                    continue;
                };
                key(&mut out, field.tag, v.wire_type);
                out.extend(&v.bytes);
                // Empty strings and null times are Go's "unset".
                if v.json.as_str() != Some("") && !v.json.is_null() {
                    object.insert(field.json.to_owned(), v.json);
                }
            }
        }
    }
    (out, object)
}

/// One value of a field of `kind`, or `None` when the message is too deep to go on.
fn scalar_value(kind: Kind, tape: &mut Tape, depth: usize) -> Option<Encoded> {
    let mut bytes = Vec::new();
    let (wire_type, json) = match kind {
        Kind::String => {
            let s = *tape.pick(STRINGS);
            varint(&mut bytes, s.len() as u64);
            bytes.extend(s.as_bytes());
            (2, Value::from(s))
        }
        Kind::Bytes => {
            let raw: Vec<u8> = (0..tape.next(6)).map(|_| tape.next(256) as u8).collect();
            varint(&mut bytes, raw.len() as u64);
            bytes.extend(&raw);
            (
                2,
                Value::from(base64::engine::general_purpose::STANDARD.encode(&raw)),
            )
        }
        Kind::Bool => {
            let b = tape.next(2) == 1;
            varint(&mut bytes, u64::from(b));
            (0, Value::Bool(b))
        }
        Kind::Int32 => {
            let v = *tape.pick(&[0, 1, -1, 80, i32::MAX, i32::MIN, 30]);
            // Go writes negative int32 sign-extended to 64 bits.
            varint(&mut bytes, i64::from(v) as u64);
            (0, Value::from(v))
        }
        Kind::Int64 => {
            let v = *tape.pick(&[0, 1, -1, 1 << 40, i64::MAX, i64::MIN]);
            varint(&mut bytes, v as u64);
            (0, Value::from(v))
        }
        Kind::Message(name) => {
            let (body, json) = match special_value(name, tape) {
                Some(special) => special,
                None if depth >= 6 => return None,
                None => {
                    let (body, object) = message(name, tape, depth + 1);
                    (body, Value::Object(object))
                }
            };
            varint(&mut bytes, body.len() as u64);
            bytes.extend(body);
            (2, json)
        }
        Kind::Inline(_) | Kind::MapOfString | Kind::MapOfBytes | Kind::MapOfMessage(_) => {
            return None
        }
    };
    Some(Encoded {
        wire_type,
        bytes,
        json,
    })
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut body = MAGIC.to_vec();
    bytes_field(&mut body, 1, &type_meta);
    bytes_field(&mut body, 2, raw);
    body
}

/// Top-level kinds kubectl may send as protobuf.
const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "Node"),
    ("v1", "Event"),
    ("v1", "ServiceAccount"),
    ("v1", "Binding"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "ControllerRevision"),
    ("batch/v1", "Job"),
    ("coordination.k8s.io/v1", "Lease"),
    ("policy/v1", "Eviction"),
    ("autoscaling/v1", "Scale"),
    ("v1", "DeleteOptions"),
];

/// Bodies that look like protobuf: a valid envelope around noise, or noise after the magic.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..256),
        vec(any::<u8>(), 0..256).prop_map(|noise| [MAGIC, &noise].concat()),
        (prop::sample::select(KINDS), vec(any::<u8>(), 0..256))
            .prop_map(|((v, k), raw)| envelope(v, k, &raw)),
        // A generated object with bytes flipped or cut.
        (
            prop::sample::select(KINDS),
            vec(any::<u32>(), 0..300),
            vec((any::<usize>(), any::<u8>()), 0..4),
            any::<usize>(),
        )
            .prop_map(|((v, k), choices, flips, cut)| {
                let name = message_name(v, k).unwrap_or_default();
                let (raw, _) = message(&name, &mut Tape { choices, at: 0 }, 0);
                let mut body = envelope(v, k, &raw);
                let len = body.len();
                for (at, b) in flips {
                    body[at % len] = b;
                }
                body.truncate(len - cut % (len / 2 + 1));
                body
            }),
    ]
}

/// The fuzz budget; failures are kept in `proptest-regressions/protobuf/fuzz.txt` (committed,
/// replayed before new cases).
fn config(cases: u32) -> ProptestConfig {
    skiff_testkit::fuzz::config(cases, None)
}

proptest! {
    #![proptest_config(config(256))]

    /// Any body is decoded or refused with an error, never a panic.
    #[test]
    fn arbitrary_bodies_never_panic(body in hostile_body()) {
        if let Ok(value) = decode_body(&body) {
            prop_assert!(value.is_object());
        }
    }

    /// A generated object's encoding decodes to the JSON it was generated with.
    #[test]
    fn generated_objects_decode_to_their_json(
        (api_version, kind) in prop::sample::select(KINDS),
        choices in vec(any::<u32>(), 0..400),
    ) {
        let name = message_name(api_version, kind);
        prop_assert!(name.is_some(), "{} {} not served", api_version, kind);
        let name = name.unwrap_or_default();
        let (raw, mut expected) = message(&name, &mut Tape { choices, at: 0 }, 0);
        expected.insert("apiVersion".into(), Value::from(api_version));
        expected.insert("kind".into(), Value::from(kind));
        prop_assert_eq!(
            decode_body(&envelope(api_version, kind, &raw)),
            Ok(Value::Object(expected))
        );
    }
}

#[test]
fn depth_limit_and_overlong_lengths_are_errors() {
    assert!(decode_message("io.k8s.api.core.v1.Pod", &[], MAX_DEPTH + 1).is_err());
    // A length prefix that claims more than the body holds.
    let mut body = envelope("v1", "Pod", &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(decode_body(&body).is_err());
    body.truncate(MAGIC.len() + 2);
    assert!(decode_body(&body).is_err());
}
