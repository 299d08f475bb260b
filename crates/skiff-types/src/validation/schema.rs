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

/// FNV-1a: property names are short, a cheap hash beats string comparisons here.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Property name → schema node.
type PropMap = HashMap<String, usize, std::hash::BuildHasherDefault<Fnv>>;

/// What a schema node accepts, compiled once from the generated OpenAPI schemas.
#[derive(Debug)]
enum NodeKind {
    /// No constraint (`{}` schemas).
    Any,
    /// A string; `date-time` and `byte` formats are checked.
    Str { date_time: bool, byte: bool },
    /// An integer, 32-bit when `int32`.
    Int { int32: bool },
    /// Any number.
    Num,
    /// A boolean.
    Bool,
    /// A list of the given node.
    Array(usize),
    /// An object with known properties and optional map values.
    Object {
        props: PropMap,
        additional: Option<usize>,
    },
    /// An object without schema (RawExtension, FieldsV1).
    FreeObject,
    /// `x-kubernetes-int-or-string` (IntOrString, or Quantity when `quantity`).
    IntOrString { quantity: bool },
}

/// One compiled schema node.
#[derive(Debug)]
struct Node {
    kind: NodeKind,
    /// Go type of values of this node, for `cannot unmarshal` messages.
    go_type: String,
    /// Go struct name (`PodSpec`) when the node is a definition.
    struct_name: Option<String>,
}

struct Schemas {
    nodes: Vec<Node>,
    roots: HashMap<&'static str, usize>,
}

/// Compiles schemars output into [`Node`]s, resolving `$ref`s once.
struct Compiler<'a> {
    defs: &'a Map<String, Value>,
    nodes: Vec<Node>,
    by_def: HashMap<String, usize>,
}

impl Compiler<'_> {
    fn placeholder(&mut self) -> usize {
        self.nodes.push(Node {
            kind: NodeKind::Any,
            go_type: String::new(),
            struct_name: None,
        });
        self.nodes.len() - 1
    }

    fn compile_def(&mut self, name: &str) -> usize {
        if let Some(id) = self.by_def.get(name) {
            return *id;
        }
        let id = self.placeholder();
        self.by_def.insert(name.to_string(), id);
        let schema = self.defs.get(name).cloned().unwrap_or(Value::Null);
        let (kind, _) = self.compile_kind(&schema, Some(name));
        let mut parts = name.rsplit('.');
        let ty = parts.next().unwrap_or(name);
        let pkg = parts.next().unwrap_or("");
        self.nodes[id] = Node {
            kind,
            go_type: format!("{pkg}.{ty}"),
            struct_name: Some(ty.to_string()),
        };
        id
    }

    fn compile(&mut self, schema: &Value) -> usize {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix(DEFS_PREFIX).unwrap_or(r).to_string();
            return self.compile_def(&name);
        }
        let (kind, go_type) = self.compile_kind(schema, None);
        self.nodes.push(Node {
            kind,
            go_type,
            struct_name: None,
        });
        self.nodes.len() - 1
    }

    fn compile_kind(&mut self, schema: &Value, def: Option<&str>) -> (NodeKind, String) {
        if schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        {
            let quantity = def == Some(QUANTITY_DEF);
            let go = if quantity {
                "resource.Quantity"
            } else {
                "intstr.IntOrString"
            };
            return (NodeKind::IntOrString { quantity }, go.to_string());
        }
        let format = schema.get("format").and_then(Value::as_str);
        match schema.get("type").and_then(Value::as_str) {
            Some("string") => (
                NodeKind::Str {
                    date_time: format == Some("date-time"),
                    byte: format == Some("byte"),
                },
                "string".to_string(),
            ),
            Some("integer") => {
                let int32 = format == Some("int32");
                (
                    NodeKind::Int { int32 },
                    if int32 { "int32" } else { "int64" }.to_string(),
                )
            }
            Some("number") => (NodeKind::Num, "float64".to_string()),
            Some("boolean") => (NodeKind::Bool, "bool".to_string()),
            Some("array") => match schema.get("items") {
                Some(items) => {
                    let item = self.compile(items);
                    let go = format!("[]{}", self.nodes[item].go_type);
                    (NodeKind::Array(item), go)
                }
                None => (NodeKind::Any, "[]interface {}".to_string()),
            },
            Some("object") => {
                let additional = schema
                    .get("additionalProperties")
                    .filter(|a| a.is_object())
                    .map(|a| self.compile(a));
                let props: PropMap = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), self.compile(v)))
                    .collect();
                let go = match additional {
                    Some(a) => format!("map[string]{}", self.nodes[a].go_type),
                    None => "map[string]interface {}".to_string(),
                };
                if props.is_empty() && additional.is_none() {
                    (NodeKind::FreeObject, go)
                } else {
                    (NodeKind::Object { props, additional }, go)
                }
            }
            _ => (NodeKind::Any, "interface {}".to_string()),
        }
    }
}

macro_rules! roots {
    ($gen:ident, $names:ident, $( $name:literal => $ty:ty ),* $(,)?) => {
        $(
            let _ = $gen.subschema_for::<$ty>();
            $names.push(($name, <$ty as k8s_openapi::schemars::JsonSchema>::schema_name().into_owned()));
        )*
    };
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        use k8s_openapi::api::{
            apps, autoscaling, batch, coordination, core, discovery, networking, policy,
        };
        let mut gen = SchemaGenerator::default();
        let mut names: Vec<(&'static str, String)> = Vec::new();
        roots!(gen, names,
            "v1/Pod" => core::v1::Pod,
            "v1/Namespace" => core::v1::Namespace,
            "v1/Node" => core::v1::Node,
            "v1/Event" => core::v1::Event,
            "v1/ConfigMap" => core::v1::ConfigMap,
            "v1/Secret" => core::v1::Secret,
            "v1/Service" => core::v1::Service,
            "v1/ServiceAccount" => core::v1::ServiceAccount,
            "v1/Binding" => core::v1::Binding,
            "v1/Endpoints" => core::v1::Endpoints,
            "apps/v1/Deployment" => apps::v1::Deployment,
            "apps/v1/ReplicaSet" => apps::v1::ReplicaSet,
            "apps/v1/DaemonSet" => apps::v1::DaemonSet,
            "apps/v1/ControllerRevision" => apps::v1::ControllerRevision,
            "batch/v1/Job" => batch::v1::Job,
            "coordination.k8s.io/v1/Lease" => coordination::v1::Lease,
            "discovery.k8s.io/v1/EndpointSlice" => discovery::v1::EndpointSlice,
            "networking.k8s.io/v1/NetworkPolicy" => networking::v1::NetworkPolicy,
            "autoscaling/v1/Scale" => autoscaling::v1::Scale,
            "policy/v1/Eviction" => policy::v1::Eviction,
        );
        let defs = gen.take_definitions(false);
        let mut compiler = Compiler {
            defs: &defs,
            nodes: Vec::new(),
            by_def: HashMap::new(),
        };
        let roots = names
            .into_iter()
            .map(|(key, def)| (key, compiler.compile_def(&def)))
            .collect();
        Schemas {
            nodes: compiler.nodes,
            roots,
        }
    })
}

/// One step of a path inside an object, borrowing the object's keys.
#[derive(Debug, Clone, Copy)]
enum Seg<'v> {
    Field(&'v str),
    Index(usize),
    Key(&'v str),
}

fn display_path(path: &[Seg<'_>]) -> String {
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
fn go_path(path: &[Seg<'_>]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Seg::Field(f) => Some(*f),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// What the walk found.
#[derive(Default)]
struct Findings<'v> {
    type_errors: Vec<String>,
    unknown: Vec<Vec<Seg<'v>>>,
}

struct Walker<'v> {
    nodes: &'static [Node],
    findings: Findings<'v>,
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

impl<'v> Walker<'v> {
    fn mismatch(&mut self, v: &Value, node: usize, path: &[Seg<'_>], parent: &str) {
        let msg = format!(
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            json_kind(v),
            parent,
            go_path(path),
            self.nodes[node].go_type
        );
        self.findings.type_errors.push(msg);
    }

    fn walk(&mut self, v: &'v Value, id: usize, path: &mut Vec<Seg<'v>>, parent: &str) {
        if v.is_null() {
            return;
        }
        let nodes = self.nodes;
        let node = &nodes[id];
        match (&node.kind, v) {
            (NodeKind::Any, _) | (NodeKind::FreeObject, Value::Object(_)) => {}
            (NodeKind::IntOrString { quantity }, Value::String(s)) => {
                if *quantity {
                    if let Err(e) = Quantity::parse(s) {
                        self.findings.type_errors.push(e.to_string());
                    }
                }
            }
            (NodeKind::IntOrString { quantity }, Value::Number(n)) => {
                if !(*quantity || n.is_i64() || n.is_u64()) {
                    self.mismatch(v, id, path, parent);
                }
            }
            (NodeKind::Str { date_time, byte }, Value::String(s)) => {
                if *date_time && s.parse::<jiff::Timestamp>().is_err() {
                    self.findings.type_errors.push(format!(
                        "parsing time \"{s}\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"{s}\" as \"2006\""
                    ));
                }
                if *byte {
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
            }
            (NodeKind::Bool, Value::Bool(_)) | (NodeKind::Num, Value::Number(_)) => {}
            (NodeKind::Int { int32 }, Value::Number(n)) => {
                let in_range = if *int32 {
                    n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
                } else {
                    n.is_i64()
                };
                if !in_range {
                    self.mismatch(v, id, path, parent);
                }
            }
            (NodeKind::Array(item), Value::Array(items)) => {
                for (i, it) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    self.walk(it, *item, path, parent);
                    path.pop();
                }
            }
            (NodeKind::Object { props, additional }, Value::Object(map)) => {
                let struct_name = node.struct_name.as_deref().unwrap_or(parent);
                for (k, child) in map {
                    match props.get(k.as_str()) {
                        Some(prop) => {
                            path.push(Seg::Field(k));
                            self.walk(child, *prop, path, struct_name);
                            path.pop();
                        }
                        None => match additional {
                            Some(ap) => {
                                path.push(Seg::Key(k));
                                self.walk(child, *ap, path, struct_name);
                                path.pop();
                            }
                            None => {
                                let mut p = path.clone();
                                p.push(Seg::Field(k));
                                self.findings.unknown.push(p);
                            }
                        },
                    }
                }
            }
            _ => self.mismatch(v, id, path, parent),
        }
    }
}

fn walk_object<'v>(api_version: &str, kind: &str, object: &'v Value) -> Option<Findings<'v>> {
    let s = schemas();
    let root = *s.roots.get(format!("{api_version}/{kind}").as_str())?;
    let mut walker = Walker {
        nodes: &s.nodes,
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
    let paths: Vec<Vec<OwnedSeg>> = match walk_object(&info.api_version(), info.kind, object) {
        Some(findings) => findings
            .unknown
            .iter()
            .map(|p| p.iter().map(OwnedSeg::from).collect())
            .collect(),
        None => return Vec::new(),
    };
    let mut removed = Vec::new();
    for path in &paths {
        if remove_path(object, path) {
            let borrowed: Vec<Seg<'_>> = path.iter().map(OwnedSeg::as_seg).collect();
            removed.push(display_path(&borrowed));
        }
    }
    removed
}

/// An owned [`Seg`], to edit the object the path was found in.
enum OwnedSeg {
    Field(String),
    Index(usize),
    Key(String),
}

impl From<&Seg<'_>> for OwnedSeg {
    fn from(s: &Seg<'_>) -> Self {
        match s {
            Seg::Field(f) => OwnedSeg::Field((*f).to_string()),
            Seg::Index(i) => OwnedSeg::Index(*i),
            Seg::Key(k) => OwnedSeg::Key((*k).to_string()),
        }
    }
}

impl OwnedSeg {
    fn as_seg(&self) -> Seg<'_> {
        match self {
            OwnedSeg::Field(f) => Seg::Field(f),
            OwnedSeg::Index(i) => Seg::Index(*i),
            OwnedSeg::Key(k) => Seg::Key(k),
        }
    }
}

fn remove_path(object: &mut Value, path: &[OwnedSeg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = object;
    for seg in parents {
        let next = match (seg, cur) {
            (OwnedSeg::Field(f) | OwnedSeg::Key(f), Value::Object(m)) => m.get_mut(f),
            (OwnedSeg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (OwnedSeg::Field(f), Value::Object(m)) => m.remove(f).is_some(),
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
