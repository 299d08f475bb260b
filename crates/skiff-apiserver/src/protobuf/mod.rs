//! Decoding of `application/vnd.kubernetes.protobuf` request bodies into JSON objects.
//!
//! kubectl 1.32+ sends typed-client writes (`kubectl create namespace`, `kubectl create
//! deployment`, `kubectl run`, evictions from `kubectl drain`) as Kubernetes protobuf: the
//! magic `k8s\0`, then a `runtime.Unknown` carrying the apiVersion/kind and the object's bytes.
//! The field numbers of every message reachable from the served kinds are in [`table`]
//! (generated); special messages (Time, MicroTime, Quantity, IntOrString, RawExtension,
//! FieldsV1) become their JSON forms. The result goes through the same pipeline as JSON
//! bodies. Responses are always JSON (clients decode by the response's Content-Type).

mod table;
mod wire;

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value};

use wire::{Reader, WireValue};

/// The prefix of every Kubernetes protobuf body.
pub(crate) const MAGIC: &[u8] = b"k8s\x00";
/// Seconds of Go's zero `time.Time` relative to the Unix epoch.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;
/// Deepest message nesting accepted (the served types nest about a dozen levels).
const MAX_DEPTH: usize = 48;

/// A field of a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub tag: u32,
    pub json: &'static str,
    pub kind: Kind,
    pub repeated: bool,
}

/// The type of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Message(&'static str),
    /// An embedded Go struct: its fields go into the parent's JSON object.
    Inline(&'static str),
    MapOfString,
    MapOfBytes,
    MapOfMessage(&'static str),
}

/// A body that is not valid Kubernetes protobuf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ProtobufError(pub String);

fn err(message: impl Into<String>) -> ProtobufError {
    ProtobufError(message.into())
}

fn messages() -> &'static HashMap<&'static str, &'static [Field]> {
    static MAP: OnceLock<HashMap<&'static str, &'static [Field]>> = OnceLock::new();
    MAP.get_or_init(|| table::MESSAGES.iter().copied().collect())
}

/// The protobuf message name of `kind` in `api_version` (`apps/v1`, `Deployment` →
/// `io.k8s.api.apps.v1.Deployment`).
pub(crate) fn message_name(api_version: &str, kind: &str) -> Option<String> {
    if kind == "DeleteOptions" {
        return Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".into());
    }
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("core", api_version),
    };
    let package = group.strip_suffix(".k8s.io").unwrap_or(group);
    let name = format!("io.k8s.api.{package}.{version}.{kind}");
    messages().contains_key(name.as_str()).then_some(name)
}

/// Decodes a whole body: magic, `runtime.Unknown` envelope, then the object. The result has
/// `apiVersion` and `kind` from the envelope.
pub(crate) fn decode_body(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| {
        err("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")
    })?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(rest);
    while let Some((tag, value)) = reader.next_field()? {
        match (tag, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut r = Reader::new(type_meta);
                while let Some((tag, value)) = r.next_field()? {
                    match (tag, value) {
                        (1, WireValue::Bytes(b)) => api_version = utf8(b, "apiVersion")?,
                        (2, WireValue::Bytes(b)) => kind = utf8(b, "kind")?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = b,
            (3, WireValue::Bytes(b)) if !b.is_empty() => {
                return Err(err(format!(
                    "content encoding {:?} is not supported",
                    String::from_utf8_lossy(b)
                )))
            }
            _ => {}
        }
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err(err("the protobuf envelope names no apiVersion and kind"));
    }
    let name = message_name(&api_version, &kind).ok_or_else(|| {
        err(format!(
            "{kind} in {api_version} cannot be decoded from protobuf by this server"
        ))
    })?;
    let mut object = decode_message(&name, raw, 0)?;
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

fn utf8(bytes: &[u8], field: &str) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| err(format!("{field} is not UTF-8")))
}

/// Decodes the bytes of message `name` into a JSON object.
pub(crate) fn decode_message(
    name: &str,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(err("protobuf messages are nested too deeply"));
    }
    let fields = messages()
        .get(name)
        .ok_or_else(|| err(format!("no protobuf description of {name}")))?;
    let mut object = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        let Some(field) = fields.iter().find(|f| f.tag == tag) else {
            continue;
        };
        let path = || format!("{name}.{}", field.json);
        match field.kind {
            Kind::Inline(inner) => {
                let WireValue::Bytes(b) = value else {
                    return Err(err(format!("{}: expected an embedded message", path())));
                };
                object.extend(decode_message(inner, b, depth + 1)?);
            }
            Kind::MapOfString | Kind::MapOfBytes | Kind::MapOfMessage(_) => {
                let WireValue::Bytes(entry) = value else {
                    return Err(err(format!("{}: expected a map entry", path())));
                };
                let (key, value) = decode_map_entry(field.kind, entry, depth)
                    .map_err(|e| err(format!("{}: {}", path(), e.0)))?;
                let map = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
            _ if field.repeated => {
                let list = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else { continue };
                match (field.kind, value) {
                    // Packed scalars.
                    (Kind::Int32 | Kind::Int64 | Kind::Bool, WireValue::Bytes(b)) => {
                        let mut r = Reader::new(b);
                        while !r.is_empty() {
                            let v = r.varint()?;
                            list.push(
                                scalar(field.kind, WireValue::Varint(v), depth)
                                    .map_err(|e| err(format!("{}: {}", path(), e.0)))?,
                            );
                        }
                    }
                    (kind, value) => list.push(
                        scalar(kind, value, depth)
                            .map_err(|e| err(format!("{}: {}", path(), e.0)))?,
                    ),
                }
            }
            kind => {
                let v =
                    scalar(kind, value, depth).map_err(|e| err(format!("{}: {}", path(), e.0)))?;
                // Go writes plain (non-pointer) strings and times even when they hold the zero
                // value, which means "not set": leave them out so defaulting sees them missing.
                if v.as_str() == Some("") || v.is_null() {
                    continue;
                }
                object.insert(field.json.to_string(), v);
            }
        }
    }
    Ok(object)
}

fn decode_map_entry(
    kind: Kind,
    bytes: &[u8],
    depth: usize,
) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(bytes);
    while let Some((tag, v)) = reader.next_field()? {
        match (tag, v) {
            (1, WireValue::Bytes(b)) => key = utf8(b, "map key")?,
            (2, v) => {
                let value_kind = match kind {
                    Kind::MapOfString => Kind::String,
                    Kind::MapOfBytes => Kind::Bytes,
                    Kind::MapOfMessage(m) => Kind::Message(m),
                    other => other,
                };
                value = Some(scalar(value_kind, v, depth)?);
            }
            _ => {}
        }
    }
    let value = value.unwrap_or_else(|| match kind {
        Kind::MapOfMessage(m) => special_default(m),
        _ => Value::String(String::new()),
    });
    Ok((key, value))
}

fn special_default(message: &str) -> Value {
    match message.rsplit('.').next() {
        Some("Quantity") => Value::String("0".into()),
        _ => Value::Object(Map::new()),
    }
}

fn scalar(kind: Kind, value: WireValue<'_>, depth: usize) -> Result<Value, ProtobufError> {
    Ok(match (kind, value) {
        (Kind::String, WireValue::Bytes(b)) => Value::String(utf8(b, "string")?),
        (Kind::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Kind::Int32, WireValue::Varint(v)) => Value::from(v as i64 as i32),
        (Kind::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Kind::Message(name), WireValue::Bytes(b)) => special(name, b, depth)?,
        (kind, value) => {
            return Err(err(format!(
                "wire type {} does not fit a {kind:?} field",
                value.wire_type()
            )))
        }
    })
}

/// Messages whose JSON form is not an object of their fields.
fn special(name: &str, bytes: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let short = name.rsplit('.').next().unwrap_or(name);
    let object = decode_message(name, bytes, depth + 1)?;
    Ok(match short {
        "Time" | "MicroTime" => {
            let seconds = object.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            let nanos = object.get("nanos").and_then(Value::as_i64).unwrap_or(0);
            // Go's zero time (0001-01-01T00:00:00Z) is JSON null.
            if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                return Ok(Value::Null);
            }
            let ts = jiff::Timestamp::new(seconds, nanos as i32)
                .map_err(|e| err(format!("invalid time: {e}")))?;
            let text = if short == "Time" {
                ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
            };
            Value::String(text)
        }
        "Quantity" => object
            .get("string")
            .cloned()
            .unwrap_or_else(|| Value::String("0".into())),
        "IntOrString" => match object.get("type").and_then(Value::as_i64).unwrap_or(0) {
            0 => object.get("intVal").cloned().unwrap_or(Value::from(0)),
            _ => object
                .get("strVal")
                .cloned()
                .unwrap_or_else(|| Value::String(String::new())),
        },
        "RawExtension" | "FieldsV1" => match object.get("raw").and_then(Value::as_str) {
            Some(b64) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| err(e.to_string()))?;
                serde_json::from_slice(&raw)
                    .map_err(|e| err(format!("{short} is not JSON: {e}")))?
            }
            None => Value::Object(Map::new()),
        },
        _ => Value::Object(object),
    })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
