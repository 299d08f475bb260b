//! Stored objects: immutable, shared JSON bytes plus what selectors look at.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::Key;

/// An object as stored: its key, the revision that wrote it and its full JSON (with
/// `metadata.resourceVersion` equal to that revision). Cheap to clone (shared).
#[derive(Clone)]
pub struct Object(Arc<ObjectInner>);

struct ObjectInner {
    key: Key,
    revision: u64,
    json: Box<[u8]>,
    /// Labels and well-known fields, for selectors; filled on first use (or at write time).
    attrs: OnceLock<Attrs>,
}

impl Object {
    pub(crate) fn new(key: Key, revision: u64, json: Vec<u8>) -> Self {
        Object(Arc::new(ObjectInner {
            key,
            revision,
            json: json.into_boxed_slice(),
            attrs: OnceLock::new(),
        }))
    }

    /// Builds an object whose selectable attributes are taken from the value it was
    /// serialized from (saves parsing the JSON again when a selector looks at it).
    pub(crate) fn with_value(key: Key, revision: u64, json: Vec<u8>, value: &Value) -> Self {
        let attrs = OnceLock::new();
        let _ = attrs.set(Attrs::from_value(value));
        Object(Arc::new(ObjectInner {
            key,
            revision,
            json: json.into_boxed_slice(),
            attrs,
        }))
    }

    /// The full object as JSON, `resourceVersion` included.
    pub fn json(&self) -> &[u8] {
        &self.0.json
    }

    /// The object parsed into a JSON value.
    pub fn value(&self) -> Value {
        // The bytes were produced by serde_json from a Value (or read back from our own
        // database, checked on load), so they always parse.
        serde_json::from_slice(&self.0.json).unwrap_or(Value::Null)
    }

    /// Parses the object into a typed value (e.g. `k8s_openapi::api::core::v1::Pod`).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0.json)
    }

    /// The revision that wrote this state of the object (its `metadata.resourceVersion`).
    pub fn revision(&self) -> u64 {
        self.0.revision
    }

    /// The object's key.
    pub fn key(&self) -> &Key {
        &self.0.key
    }

    /// Whether two handles share the same stored state.
    pub fn ptr_eq(&self, other: &Object) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn attrs(&self) -> &Attrs {
        self.0.attrs.get_or_init(|| {
            let value: Value = serde_json::from_slice(&self.0.json).unwrap_or(Value::Null);
            Attrs::from_value(&value)
        })
    }

    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.attrs().label(key)
    }

    /// The value of a field selector path (`spec.nodeName`, `metadata.name`, ...), as
    /// upstream field sets render it; None when absent.
    pub fn field(&self, path: &str) -> Option<String> {
        match path {
            "metadata.name" => return Some(self.0.key.name.clone()),
            "metadata.namespace" => return Some(self.0.key.namespace.clone().unwrap_or_default()),
            _ => {}
        }
        match self.attrs().field(path) {
            FieldLookup::Known(v) => v.map(str::to_string),
            FieldLookup::Unknown => field_of_value(&self.value(), path),
        }
    }

    /// Returns a copy of this object with `metadata.resourceVersion` set to `revision`.
    pub(crate) fn with_revision(&self, revision: u64) -> Object {
        let mut value = self.value();
        set_resource_version(&mut value, revision);
        let json = serde_json::to_vec(&value).unwrap_or_else(|_| self.0.json.to_vec());
        let attrs = OnceLock::new();
        if let Some(a) = self.0.attrs.get() {
            let _ = attrs.set(a.clone());
        }
        Object(Arc::new(ObjectInner {
            key: self.0.key.clone(),
            revision,
            json: json.into_boxed_slice(),
            attrs,
        }))
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("key", &self.0.key)
            .field("revision", &self.0.revision)
            .field("json", &String::from_utf8_lossy(&self.0.json))
            .finish()
    }
}

pub(crate) fn set_resource_version(value: &mut Value, revision: u64) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_string(),
            Value::String(revision.to_string()),
        );
    }
}

/// Field paths whose values are kept beside the JSON so selectors need not parse it: the
/// upstream selectable fields of the built-in kinds.
const KNOWN_FIELDS: &[&str] = &[
    "spec.nodeName",
    "status.phase",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.restartPolicy",
    "spec.hostNetwork",
    "status.podIP",
    "status.nominatedNodeName",
    "spec.unschedulable",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "status.successful",
    "status.replicas",
    "spec.signerName",
];

pub(crate) enum FieldLookup<'a> {
    Known(Option<&'a str>),
    Unknown,
}

/// What selectors look at: labels (sorted by key) and the known fields that are present.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attrs {
    labels: Box<[(Box<str>, Box<str>)]>,
    fields: Box<[(u8, Box<str>)]>,
}

impl Attrs {
    fn from_value(value: &Value) -> Attrs {
        let labels = value
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                let mut v: Vec<(Box<str>, Box<str>)> = m
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str().into(), s.into())))
                    .collect();
                v.sort();
                v.into_boxed_slice()
            })
            .unwrap_or_default();
        let fields = KNOWN_FIELDS
            .iter()
            .enumerate()
            .filter_map(|(i, path)| {
                field_of_value(value, path).map(|v| (i as u8, v.into_boxed_str()))
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Attrs { labels, fields }
    }

    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_ref())
    }

    fn field(&self, path: &str) -> FieldLookup<'_> {
        match KNOWN_FIELDS.iter().position(|p| *p == path) {
            Some(i) => FieldLookup::Known(
                self.fields
                    .iter()
                    .find(|(id, _)| *id as usize == i)
                    .map(|(_, v)| v.as_ref()),
            ),
            None => FieldLookup::Unknown,
        }
    }
}

/// Walks a dotted path; scalars render as upstream field sets do (strings as is, booleans
/// `true`/`false`, numbers in decimal); objects, arrays and null count as absent.
pub(crate) fn field_of_value(value: &Value, path: &str) -> Option<String> {
    let mut v = value;
    for seg in path.split('.') {
        v = v.get(seg)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attrs_and_fields() {
        let v = json!({"metadata": {"name": "p", "labels": {"b": "2", "a": "1"}},
                       "spec": {"nodeName": "n1", "hostNetwork": true, "priority": 5},
                       "status": {"phase": "Running"}});
        let o = Object::new(
            Key::namespaced("pods", "d", "p"),
            3,
            serde_json::to_vec(&v).unwrap(),
        );
        assert_eq!(o.label("a"), Some("1"));
        assert_eq!(o.label("b"), Some("2"));
        assert_eq!(o.label("c"), None);
        assert_eq!(o.field("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(o.field("spec.hostNetwork").as_deref(), Some("true"));
        assert_eq!(o.field("spec.priority").as_deref(), Some("5"));
        assert_eq!(o.field("status.phase").as_deref(), Some("Running"));
        assert_eq!(o.field("status.podIP"), None);
        assert_eq!(o.field("metadata.namespace").as_deref(), Some("d"));
        assert_eq!(o.field("metadata.name").as_deref(), Some("p"));
        let o2 = o.with_revision(9);
        assert_eq!(o2.revision(), 9);
        assert_eq!(o2.value()["metadata"]["resourceVersion"], "9");
    }
}
