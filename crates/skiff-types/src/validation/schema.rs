//! Type checking of raw objects against the OpenAPI schemas that k8s-openapi generates, as
//! upstream's decoder does: values of the wrong JSON type (400 `cannot unmarshal ...`),
//! malformed quantities, timestamps and base64 data, and unknown fields
//! (`fieldValidation=Strict`: `strict decoding error: unknown field "spec.foo"`).
//!
//! Missing fields are not errors here (Go decodes them as zero values); validation reports
//! required fields with upstream's messages.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use k8s_openapi::schemars::SchemaGenerator;
use serde_json::{Map, Value};

use crate::quantity::Quantity;
use crate::registry::ResourceInfo;

const QUANTITY_DEF: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const DEFS_PREFIX: &str = "#/$defs/";

/// An object that cannot be decoded as its kind: upstream answers 400 with
/// `Deployment in version "v1" cannot be handled as a Deployment: <detail>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Kind of the object.
    pub kind: String,
    /// Version of the object's API group.
    pub version: String,
    /// What is wrong, as upstream words it.
    pub detail: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in version \"{}\" cannot be handled as a {}: {}",
            self.kind, self.version, self.kind, self.detail
        )
    }
}

impl std::error::Error for DecodeError {}

struct Schemas {
    defs: Map<String, Value>,
    roots: HashMap<&'static str, String>,
}

macro_rules! roots {
    ($gen:ident, $roots:ident, $( $name:literal => $ty:ty ),* $(,)?) => {
        $(
            let _ = $gen.subschema_for::<$ty>();
            $roots.insert($name, <$ty as k8s_openapi::schemars::JsonSchema>::schema_name().into_owned());
        )*
    };
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, policy};
        let mut gen = SchemaGenerator::default();
        let mut roots = HashMap::new();
        roots!(gen, roots,
            "v1/Pod" => core::v1::Pod,
            "v1/Namespace" => core::v1::Namespace,
            "v1/Node" => core::v1::Node,
            "v1/Event" => core::v1::Event,
            "v1/ConfigMap" => core::v1::ConfigMap,
            "v1/Secret" => core::v1::Secret,
            "v1/Service" => core::v1::Service,
            "v1/ServiceAccount" => core::v1::ServiceAccount,
            "v1/Binding" => core::v1::Binding,
            "apps/v1/Deployment" => apps::v1::Deployment,
            "apps/v1/ReplicaSet" => apps::v1::ReplicaSet,
            "apps/v1/DaemonSet" => apps::v1::DaemonSet,
            "apps/v1/ControllerRevision" => apps::v1::ControllerRevision,
            "batch/v1/Job" => batch::v1::Job,
            "coordination.k8s.io/v1/Lease" => coordination::v1::Lease,
            "autoscaling/v1/Scale" => autoscaling::v1::Scale,
            "policy/v1/Eviction" => policy::v1::Eviction,
        );
        Schemas {
            defs: gen.take_definitions(false),
            roots,
        }
    })
}

fn root_schema(api_version: &str, kind: &str) -> Option<&'static Value> {
    let s = schemas();
    let name = s.roots.get(format!("{api_version}/{kind}").as_str())?;
    s.defs.get(name)
}

/// One step of a path inside an object.
#[derive(Debug, Clone)]
enum Seg {
    Field(String),
    Index(usize),
    Key(String),
}

fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => out.push_str(&format!("[{k}]")),
        }
    }
    out
}

/// Go's view of a path: field names only (`spec.template.spec.containers.image`).
fn go_path(path: &[Seg]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Seg::Field(f) => Some(f.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// What the walk found.
#[derive(Default)]
struct Findings {
    type_errors: Vec<String>,
    unknown: Vec<Vec<Seg>>,
}

struct Walker<'a> {
    defs: &'a Map<String, Value>,
    findings: Findings,
}

fn short_name(def: &str) -> &str {
    def.rsplit('.').next().unwrap_or(def)
}

/// Go type of a schema, for `cannot unmarshal` messages (`int32`, `[]v1.Container`...).
fn go_type(schema: &Value, depth: usize) -> String {
    if depth > 4 {
        return "interface {}".to_string();
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix(DEFS_PREFIX).unwrap_or(r);
        let mut parts = name.rsplit('.');
        let ty = parts.next().unwrap_or(name);
        let pkg = parts.next().unwrap_or("");
        return match (pkg, ty) {
            ("resource", "Quantity") => "resource.Quantity".to_string(),
            ("intstr", "IntOrString") => "intstr.IntOrString".to_string(),
            _ => format!("{pkg}.{ty}"),
        };
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "string".to_string(),
        Some("boolean") => "bool".to_string(),
        Some("number") => "float64".to_string(),
        Some("integer") => match schema.get("format").and_then(Value::as_str) {
            Some("int32") => "int32".to_string(),
            _ => "int64".to_string(),
        },
        Some("array") => format!(
            "[]{}",
            schema
                .get("items")
                .map_or("interface {}".to_string(), |i| go_type(i, depth + 1))
        ),
        Some("object") => match schema.get("additionalProperties") {
            Some(ap) if ap.is_object() => format!("map[string]{}", go_type(ap, depth + 1)),
            _ => "map[string]interface {}".to_string(),
        },
        _ => "interface {}".to_string(),
    }
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(_) => "bool".to_string(),
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => format!("number {n}"),
        Value::Number(_) => "number".to_string(),
        Value::String(_) => "string".to_string(),
        Value::Array(_) => "array".to_string(),
        Value::Object(_) => "object".to_string(),
    }
}

impl<'a> Walker<'a> {
    fn resolve(&self, mut schema: &'a Value) -> (&'a Value, Option<&'a str>) {
        let mut def = None;
        for _ in 0..8 {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.strip_prefix(DEFS_PREFIX).unwrap_or(r);
                    match self.defs.get_key_value(name) {
                        Some((k, s)) => {
                            def = Some(k.as_str());
                            schema = s;
                        }
                        None => break,
                    }
                }
                None => break,
            }
        }
        (schema, def)
    }

    fn mismatch(&mut self, v: &Value, field_schema: &Value, path: &[Seg], parent: &str) {
        let msg = format!(
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            json_kind(v),
            parent,
            go_path(path),
            go_type(field_schema, 0)
        );
        self.findings.type_errors.push(msg);
    }

    fn walk(&mut self, v: &Value, field_schema: &'a Value, path: &mut Vec<Seg>, parent: &str) {
        if v.is_null() {
            return;
        }
        let (schema, def) = self.resolve(field_schema);
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            match v {
                Value::String(s) => {
                    if def == Some(QUANTITY_DEF) {
                        if let Err(e) = Quantity::parse(s) {
                            self.findings.type_errors.push(e.to_string());
                        }
                    }
                }
                Value::Number(n) => {
                    if def != Some(QUANTITY_DEF) && !(n.is_i64() || n.is_u64()) {
                        self.mismatch(v, field_schema, path, parent);
                    }
                }
                _ => self.mismatch(v, field_schema, path, parent),
            }
            return;
        }
        let ty = schema.get("type").and_then(Value::as_str);
        match (ty, v) {
            (Some("string"), Value::String(s)) => {
                match schema.get("format").and_then(Value::as_str) {
                    Some("date-time") if s.parse::<jiff::Timestamp>().is_err() => {
                        self.findings.type_errors.push(format!(
                            "parsing time \"{s}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"{s}\" as \"2006\""
                        ));
                    }
                    Some("byte") => {
                        if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
                            let at = match e {
                                base64::DecodeError::InvalidByte(i, _) => i,
                                base64::DecodeError::InvalidLength(i) => i,
                                base64::DecodeError::InvalidLastSymbol(i, _) => i,
                                base64::DecodeError::InvalidPadding => s.len(),
                            };
                            self.findings
                                .type_errors
                                .push(format!("illegal base64 data at input byte {at}"));
                        }
                    }
                    _ => {}
                }
            }
            (Some("string"), _) => self.mismatch(v, field_schema, path, parent),
            (Some("boolean"), Value::Bool(_)) => {}
            (Some("boolean"), _) => self.mismatch(v, field_schema, path, parent),
            (Some("number"), Value::Number(_)) => {}
            (Some("number"), _) => self.mismatch(v, field_schema, path, parent),
            (Some("integer"), Value::Number(n)) => {
                let in_range = match schema.get("format").and_then(Value::as_str) {
                    Some("int32") => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                    _ => n.is_i64(),
                };
                if !in_range {
                    self.mismatch(v, field_schema, path, parent);
                }
            }
            (Some("integer"), _) => self.mismatch(v, field_schema, path, parent),
            (Some("array"), Value::Array(items)) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        self.walk(item, item_schema, path, parent);
                        path.pop();
                    }
                }
            }
            (Some("array"), _) => self.mismatch(v, field_schema, path, parent),
            (Some("object"), Value::Object(map)) => {
                let struct_name = def.map(short_name).unwrap_or(parent);
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties").filter(|a| a.is_object());
                if props.is_none() && additional.is_none() {
                    return; // free-form (RawExtension, FieldsV1)
                }
                for (k, child) in map {
                    if let Some(prop) = props.and_then(|p| p.get(k)) {
                        path.push(Seg::Field(k.clone()));
                        self.walk(child, prop, path, struct_name);
                        path.pop();
                    } else if let Some(ap) = additional {
                        path.push(Seg::Key(k.clone()));
                        self.walk(child, ap, path, struct_name);
                        path.pop();
                    } else {
                        let mut p = path.clone();
                        p.push(Seg::Field(k.clone()));
                        self.findings.unknown.push(p);
                    }
                }
            }
            (Some("object"), _) => self.mismatch(v, field_schema, path, parent),
            _ => {}
        }
    }
}

fn walk_object(api_version: &str, kind: &str, object: &Value) -> Option<Findings> {
    let root = root_schema(api_version, kind)?;
    let mut walker = Walker {
        defs: &schemas().defs,
        findings: Findings::default(),
    };
    let mut path = Vec::new();
    walker.walk(object, root, &mut path, kind);
    Some(walker.findings)
}

/// Checks that every field of `object` has the JSON type its schema declares (and that
/// quantities, timestamps and base64 data parse), as upstream's decoder does before any
/// validation. Unknown fields are not errors here; see [`unknown_fields`].
pub fn check_types(info: &ResourceInfo, object: &Value) -> Result<(), DecodeError> {
    check_types_of(&info.api_version(), info.kind, object)
}

/// [`check_types`] for any kind with a schema: the served resources plus `autoscaling/v1`
/// `Scale`, `v1` `Binding` and `policy/v1` `Eviction` (subresource bodies).
pub fn check_types_of(api_version: &str, kind: &str, object: &Value) -> Result<(), DecodeError> {
    let (_, version) = crate::registry::split_api_version(api_version);
    let error = |detail: String| DecodeError {
        kind: kind.to_string(),
        version: version.to_string(),
        detail,
    };
    if !object.is_object() {
        return Err(error(format!(
            "json: cannot unmarshal {} into Go value of type struct",
            json_kind(object)
        )));
    }
    match walk_object(api_version, kind, object) {
        Some(findings) => match findings.type_errors.into_iter().next() {
            Some(first) => Err(error(first)),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// Paths of the fields of `object` that its schema does not know, in upstream's form
/// (`spec.replica`, `spec.template.spec.containers[0].imagee`).
pub fn unknown_fields(info: &ResourceInfo, object: &Value) -> Vec<String> {
    unknown_fields_of(&info.api_version(), info.kind, object)
}

/// [`unknown_fields`] for any kind with a schema.
pub fn unknown_fields_of(api_version: &str, kind: &str, object: &Value) -> Vec<String> {
    walk_object(api_version, kind, object)
        .map(|f| f.unknown.iter().map(|p| display_path(p)).collect())
        .unwrap_or_default()
}

/// The 400 error upstream gives under `fieldValidation=Strict` for these unknown fields:
/// `strict decoding error: unknown field "spec.a", unknown field "spec.b"`.
pub fn strict_error(info: &ResourceInfo, unknown: &[String]) -> DecodeError {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    DecodeError {
        kind: info.kind.to_string(),
        version: info.version.to_string(),
        detail: format!("strict decoding error: {}", fields.join(", ")),
    }
}

/// The warnings upstream returns under `fieldValidation=Warn`: `unknown field "spec.a"`.
pub fn unknown_field_warnings(unknown: &[String]) -> Vec<String> {
    unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect()
}

/// Removes the fields the schema does not know, as upstream's decoder drops them
/// (`fieldValidation=Ignore` or `Warn`). Returns the removed paths.
pub fn prune_unknown_fields(info: &ResourceInfo, object: &mut Value) -> Vec<String> {
    let Some(findings) = walk_object(&info.api_version(), info.kind, object) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for path in &findings.unknown {
        if remove_path(object, path) {
            removed.push(display_path(path));
        }
    }
    removed
}

fn remove_path(object: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = object;
    for seg in parents {
        let next = match (seg, cur) {
            (Seg::Field(f) | Seg::Key(f), Value::Object(m)) => m.get_mut(f),
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Seg::Field(f), Value::Object(m)) => m.remove(f).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    fn deploy() -> &'static ResourceInfo {
        find("apps", "v1", "deployments").expect("deployments")
    }

    #[test]
    fn well_typed_objects_pass() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
              "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx",
                "resources": {"limits": {"cpu": 1, "memory": "128Mi"}}, "ports": [{"containerPort": 80}]}]}}}});
        assert_eq!(check_types(deploy(), &d), Ok(()));
        assert!(unknown_fields(deploy(), &d).is_empty());
    }

    #[test]
    fn wrong_types_name_the_go_field() {
        let d = json!({"spec": {"replicas": "3"}});
        let err = check_types(deploy(), &d).expect_err("string replicas");
        assert_eq!(
            err.to_string(),
            "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        let d =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": 5}]}}}});
        assert_eq!(
            check_types(deploy(), &d).map_err(|e| e.detail),
            Err("json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string".to_string())
        );
        let d = json!({"metadata": {"labels": {"a": true}}});
        assert_eq!(
            check_types(deploy(), &d).map_err(|e| e.detail),
            Err("json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.labels of type string".to_string())
        );
        let d = json!({"spec": {"template": {"spec": {"containers": {}}}}});
        assert_eq!(
            check_types(deploy(), &d).map_err(|e| e.detail),
            Err("json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container".to_string())
        );
        let d = json!({"spec": {"replicas": 1.5}});
        assert!(check_types(deploy(), &d).is_err());
        let d = json!({"spec": {"replicas": 3_000_000_000u64}});
        assert!(check_types(deploy(), &d).is_err());
    }

    #[test]
    fn bad_quantities_timestamps_and_base64_are_decode_errors() {
        let pods = find("", "v1", "pods").expect("pods");
        let p = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "abc"}}}]}});
        assert_eq!(
            check_types(pods, &p).map_err(|e| e.to_string()),
            Err("Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string())
        );
        let p = json!({"metadata": {"creationTimestamp": "yesterday"}});
        assert!(check_types(pods, &p).is_err());
        let secrets = find("", "v1", "secrets").expect("secrets");
        let s = json!({"data": {"k": "not base64!"}});
        assert_eq!(
            check_types(secrets, &s).map_err(|e| e.detail),
            Err("illegal base64 data at input byte 3".to_string())
        );
        assert_eq!(
            check_types(secrets, &json!({"data": {"k": "aGVsbG8="}})),
            Ok(())
        );
    }

    #[test]
    fn unknown_fields_are_listed_with_indices() {
        let d = json!({"spec": {"replica": 3, "template": {"spec": {"containers": [{"name": "a", "imagee": "x"}]}}}});
        assert_eq!(
            unknown_fields(deploy(), &d),
            vec![
                "spec.replica".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
        assert_eq!(
            strict_error(deploy(), &unknown_fields(deploy(), &d)).to_string(),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].imagee\""
        );
    }

    #[test]
    fn pruning_drops_unknown_fields_only() {
        let mut d = json!({"metadata": {"name": "x", "bogus": 1}, "spec": {"replicas": 2, "foo": {"bar": 1}}});
        let removed = prune_unknown_fields(deploy(), &mut d);
        assert_eq!(
            removed,
            vec!["metadata.bogus".to_string(), "spec.foo".to_string()]
        );
        assert_eq!(
            d,
            json!({"metadata": {"name": "x"}, "spec": {"replicas": 2}})
        );
    }

    #[test]
    fn free_form_fields_accept_anything() {
        let revs = find("apps", "v1", "controllerrevisions").expect("revisions");
        let r = json!({"revision": 1, "data": {"spec": {"template": {"anything": [1, "x"]}}}});
        assert_eq!(check_types(revs, &r), Ok(()));
        assert!(unknown_fields(revs, &r).is_empty());
    }

    #[test]
    fn subresource_bodies_have_schemas() {
        let scale =
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": "x"}});
        assert!(check_types_of("autoscaling/v1", "Scale", &scale).is_err());
        let binding = json!({"target": {"kind": "Node", "name": "n1"}});
        assert_eq!(check_types_of("v1", "Binding", &binding), Ok(()));
        assert!(check_types_of("v1", "Binding", &json!([])).is_err());
    }
}
