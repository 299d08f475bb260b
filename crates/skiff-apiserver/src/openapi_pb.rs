//! `/openapi/v2` as protobuf (gnostic's `openapi_v2.Document`), which kubectl 1.28's `apply`
//! asks for (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and cannot do
//! without. The JSON document is translated field by field; the paths are left out (kubectl
//! reads kinds, their schemas and `x-kubernetes-*` extensions from the definitions, and falls
//! back to its built-in patch metadata without paths).

use serde_json::{Map, Value};

/// What clients put in `Accept` for the protobuf document.
pub(crate) const ACCEPT_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// Content type of the answer (the accept type is not a valid MIME type for Go's parser, so
/// upstream answers with this one too).
pub(crate) const CONTENT_TYPE: &str = "application/octet-stream";

/// Whether `Accept` asks for the protobuf form.
pub(crate) fn wanted(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let family = ACCEPT_TYPE.split('@').next().unwrap_or(ACCEPT_TYPE);
            t.trim().starts_with(family)
        })
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn key(&mut self, tag: u32, wire: u8) {
        self.varint((u64::from(tag) << 3) | u64::from(wire));
    }
    fn bytes(&mut self, tag: u32, b: &[u8]) {
        self.key(tag, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn string(&mut self, tag: u32, s: &str) {
        self.bytes(tag, s.as_bytes());
    }
    fn message(&mut self, tag: u32, m: Writer) {
        self.bytes(tag, &m.0);
    }
    fn int(&mut self, tag: u32, v: i64) {
        self.key(tag, 0);
        self.varint(v as u64);
    }
    fn bool(&mut self, tag: u32, v: bool) {
        self.key(tag, 0);
        self.varint(u64::from(v));
    }
    fn double(&mut self, tag: u32, v: f64) {
        self.key(tag, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// `Any { yaml }`: JSON is YAML.
fn any(value: &Value) -> Writer {
    let mut w = Writer::default();
    w.string(2, &value.to_string());
    w
}

fn named_any(name: &str, value: &Value) -> Writer {
    let mut w = Writer::default();
    w.string(1, name);
    w.message(2, any(value));
    w
}

fn schema(s: &Map<String, Value>) -> Writer {
    let mut w = Writer::default();
    let str_field = |w: &mut Writer, tag, key: &str| {
        if let Some(v) = s.get(key).and_then(Value::as_str) {
            w.string(tag, v);
        }
    };
    str_field(&mut w, 1, "$ref");
    str_field(&mut w, 2, "format");
    str_field(&mut w, 3, "title");
    str_field(&mut w, 4, "description");
    if let Some(v) = s.get("default") {
        w.message(5, any(v));
    }
    for (tag, key) in [(6, "multipleOf"), (7, "maximum"), (9, "minimum")] {
        if let Some(v) = s.get(key).and_then(Value::as_f64) {
            w.double(tag, v);
        }
    }
    for (tag, key) in [
        (8, "exclusiveMaximum"),
        (10, "exclusiveMinimum"),
        (16, "uniqueItems"),
        (27, "readOnly"),
    ] {
        if let Some(v) = s.get(key).and_then(Value::as_bool) {
            w.bool(tag, v);
        }
    }
    for (tag, key) in [
        (11, "maxLength"),
        (12, "minLength"),
        (14, "maxItems"),
        (15, "minItems"),
        (17, "maxProperties"),
        (18, "minProperties"),
    ] {
        if let Some(v) = s.get(key).and_then(Value::as_i64) {
            w.int(tag, v);
        }
    }
    str_field(&mut w, 13, "pattern");
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            w.string(19, r);
        }
    }
    for e in s
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(20, any(e));
    }
    match s.get("additionalProperties") {
        Some(Value::Object(sub)) => {
            let mut item = Writer::default();
            item.message(1, schema(sub));
            w.message(21, item);
        }
        Some(Value::Bool(b)) => {
            let mut item = Writer::default();
            item.bool(2, *b);
            w.message(21, item);
        }
        _ => {}
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut item = Writer::default();
        for t in types {
            item.string(1, t);
        }
        w.message(22, item);
    }
    match s.get("items") {
        Some(Value::Object(sub)) => {
            let mut item = Writer::default();
            item.message(1, schema(sub));
            w.message(23, item);
        }
        Some(Value::Array(subs)) => {
            let mut item = Writer::default();
            for sub in subs.iter().filter_map(Value::as_object) {
                item.message(1, schema(sub));
            }
            w.message(23, item);
        }
        _ => {}
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(sub) = sub.as_object() {
            w.message(24, schema(sub));
        }
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let mut p = Writer::default();
        for (name, sub) in props {
            if let Some(sub) = sub.as_object() {
                let mut named = Writer::default();
                named.string(1, name);
                named.message(2, schema(sub));
                p.message(1, named);
            }
        }
        w.message(25, p);
    }
    if let Some(v) = s.get("example") {
        w.message(30, any(v));
    }
    for (key, value) in s {
        if key.starts_with("x-") {
            w.message(31, named_any(key, value));
        }
    }
    w
}

/// Encodes the JSON v2 document as gnostic protobuf.
pub(crate) fn encode(document: &Value) -> Vec<u8> {
    let mut doc = Writer::default();
    doc.string(1, document["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Writer::default();
    info.string(
        1,
        document["info"]["title"].as_str().unwrap_or("Kubernetes"),
    );
    info.string(2, document["info"]["version"].as_str().unwrap_or_default());
    doc.message(2, info);
    doc.message(8, Writer::default());
    let mut definitions = Writer::default();
    for (name, s) in document["definitions"].as_object().into_iter().flatten() {
        if let Some(s) = s.as_object() {
            let mut named = Writer::default();
            named.string(1, name);
            named.message(2, schema(s));
            definitions.message(1, named);
        }
    }
    doc.message(9, definitions);
    doc.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_definitions_with_extensions() {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "definitions": {"io.k8s.api.core.v1.Pod": {
                "type": "object",
                "properties": {"spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]}}});
        let bytes = encode(&doc);
        // Document.swagger = "2.0": tag 1, wire type 2, length 3.
        assert_eq!(&bytes[..5], b"\x0a\x032.0");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("io.k8s.api.core.v1.Pod"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains("#/definitions/io.k8s.api.core.v1.PodSpec"));
    }

    #[test]
    fn protobuf_accept_is_recognised() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::ACCEPT, ACCEPT_TYPE.parse().unwrap());
        assert!(wanted(&h));
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wanted(&h));
    }
}
