//! Generates `src/protobuf/table.rs`: the protobuf field numbers of the Kubernetes types the
//! API server decodes from `application/vnd.kubernetes.protobuf` request bodies (kubectl 1.32+
//! sends those for typed-client commands such as `kubectl create namespace`).
//!
//! The numbers are read from the prost code of the `k8s-pb` crate (generated from upstream's
//! `generated.proto` files); the JSON names come from k8s-openapi's schemas (proto field names
//! are the JSON names upstream, prost snake-cases them). Usage:
//!
//! ```sh
//! cargo info k8s-pb@0.9.0 >/dev/null   # makes cargo download the crate's sources
//! cargo run -p skiff-apiserver --example gen_protobuf_table -- \
//!     ~/.cargo/registry/src/index.crates.io-*/k8s-pb-0.9.0/src \
//!     > crates/skiff-apiserver/src/protobuf/table.rs
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use serde_json::Value;

/// Packages whose messages may be reachable from the served kinds.
const PACKAGES: &[&str] = &[
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/coordination/v1",
    "api/policy/v1",
    "api/discovery/v1",
    "api/networking/v1",
    "api/autoscaling/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/runtime",
];

/// Messages decoded from request bodies (and everything they reach).
const ROOTS: &[&str] = &[
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.Namespace",
    "io.k8s.api.core.v1.Node",
    "io.k8s.api.core.v1.Event",
    "io.k8s.api.core.v1.ConfigMap",
    "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.core.v1.ServiceAccount",
    "io.k8s.api.core.v1.Binding",
    "io.k8s.api.core.v1.Endpoints",
    "io.k8s.api.discovery.v1.EndpointSlice",
    "io.k8s.api.networking.v1.NetworkPolicy",
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.ReplicaSet",
    "io.k8s.api.apps.v1.DaemonSet",
    "io.k8s.api.apps.v1.ControllerRevision",
    "io.k8s.api.batch.v1.Job",
    "io.k8s.api.coordination.v1.Lease",
    "io.k8s.api.policy.v1.Eviction",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.runtime.Unknown",
];

#[derive(Debug, Clone)]
struct Field {
    tag: u32,
    snake: String,
    /// `string`, `bytes`, `bool`, `int32`, `int64`, `message`, `map`.
    kind: String,
    repeated: bool,
    /// For messages: the full name; for maps: the value kind or message name.
    target: Option<String>,
    map_value: Option<String>,
}

fn package_of(rel: &str) -> String {
    format!("io.k8s.{}", rel.replace('/', "."))
}

/// Resolves a Rust type path written inside module `module` (`api::core::v1`) to a full
/// message name.
fn resolve(module: &[&str], path: &str) -> String {
    let mut parts: Vec<&str> = module.to_vec();
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut rest = Vec::new();
    for s in segments {
        if s == "super" {
            parts.pop();
        } else {
            rest.push(s);
        }
    }
    if rest.len() == 1 {
        return format!("io.k8s.{}.{}", module.join("."), rest[0]);
    }
    parts.extend(rest);
    format!("io.k8s.{}", parts.join("."))
}

const CONTAINERS: &[&str] = &[
    "::core::option::Option",
    "::prost::alloc::vec::Vec",
    "::prost::alloc::string::String",
    "::prost::alloc::collections::BTreeMap",
    "u8",
    "i32",
    "i64",
    "bool",
    "String",
    "Option",
    "Vec",
];

fn last_type(decl: &str) -> Option<String> {
    let ty = decl.split_once(':').map(|(_, t)| t)?;
    ty.split(|c: char| c == '<' || c == '>' || c == ',' || c.is_whitespace())
        .rfind(|t| !t.is_empty() && !CONTAINERS.contains(t))
        .map(str::to_string)
}

fn parse_file(root: &Path, rel: &str, out: &mut BTreeMap<String, Vec<Field>>) {
    let text = std::fs::read_to_string(root.join(rel).join("mod.rs"))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"));
    let module: Vec<&str> = rel.split('/').collect();
    let package = package_of(rel);
    let lines: Vec<&str> = text.lines().collect();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            current = Some(format!("{package}.{name}"));
            out.entry(current.clone().unwrap_or_default()).or_default();
        } else if line == "}" {
            current = None;
        } else if let (Some(msg), Some(attr)) = (
            current.clone(),
            line.strip_prefix("#[prost(")
                .and_then(|r| r.strip_suffix(")]")),
        ) {
            let mut decl = String::new();
            let mut j = i + 1;
            while j < lines.len() {
                decl.push_str(lines[j].trim());
                decl.push(' ');
                if lines[j].trim_end().ends_with(',')
                    && decl.matches('<').count() == decl.matches('>').count()
                {
                    break;
                }
                j += 1;
            }
            let snake = decl
                .trim()
                .strip_prefix("pub ")
                .and_then(|d| d.split(':').next())
                .unwrap_or_default()
                .trim()
                .trim_start_matches("r#")
                .to_string();
            let tag: u32 = attr
                .split("tag = \"")
                .nth(1)
                .and_then(|t| t.split('"').next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no tag in {attr}"));
            let repeated = attr.contains("repeated");
            let first = attr.split([',', ' ']).next().unwrap_or_default();
            let mut field = Field {
                tag,
                snake,
                kind: first.to_string(),
                repeated,
                target: None,
                map_value: None,
            };
            if first == "message" {
                field.target = last_type(&decl).map(|t| resolve(&module, &t));
            } else if attr.starts_with("btree_map") {
                field.kind = "map".into();
                let value = attr
                    .split('"')
                    .nth(1)
                    .and_then(|kv| kv.split(", ").nth(1))
                    .unwrap_or_default()
                    .to_string();
                if value == "message" {
                    field.target = last_type(&decl).map(|t| resolve(&module, &t));
                }
                field.map_value = Some(value);
            } else if first == "bytes" {
                field.kind = "bytes".into();
            }
            out.entry(msg).or_default().push(field);
            i = j;
        }
        i += 1;
    }
}

fn json_names() -> BTreeMap<String, Vec<String>> {
    use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, policy};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    fn add<T: JsonSchema>(g: &mut SchemaGenerator) {
        let _ = g.subschema_for::<T>();
    }
    add::<core::v1::Pod>(&mut gen);
    add::<core::v1::Namespace>(&mut gen);
    add::<core::v1::Node>(&mut gen);
    add::<core::v1::Event>(&mut gen);
    add::<core::v1::ConfigMap>(&mut gen);
    add::<core::v1::Secret>(&mut gen);
    add::<core::v1::Service>(&mut gen);
    add::<core::v1::ServiceAccount>(&mut gen);
    add::<core::v1::Binding>(&mut gen);
    add::<apps::v1::Deployment>(&mut gen);
    add::<apps::v1::ReplicaSet>(&mut gen);
    add::<apps::v1::DaemonSet>(&mut gen);
    add::<apps::v1::ControllerRevision>(&mut gen);
    add::<batch::v1::Job>(&mut gen);
    add::<coordination::v1::Lease>(&mut gen);
    add::<policy::v1::Eviction>(&mut gen);
    add::<autoscaling::v1::Scale>(&mut gen);
    add::<meta::DeleteOptions>(&mut gen);
    gen.take_definitions(false)
        .into_iter()
        .map(|(name, schema)| {
            let props = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            (name, props)
        })
        .collect()
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: gen_protobuf_table <k8s-pb src directory>"),
    );
    let mut messages = BTreeMap::new();
    for package in PACKAGES {
        parse_file(&root, package, &mut messages);
    }
    // k8s-pb spells acronyms in Rust style (`PodIp`, `CephFsVolumeSource`): match the
    // schemas' message names case-insensitively.
    let names: BTreeMap<String, Vec<String>> = json_names()
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    // Embedded Go structs without a schema of their own (`VolumeSource` in `Volume`) take
    // their JSON names from the schema of the message that inlines them.
    let mut names = names;
    for (parent, fields) in &messages {
        let Some(parent_props) = names.get(&parent.to_lowercase()).cloned() else {
            continue;
        };
        for f in fields {
            let Some(target) = &f.target else { continue };
            let named_after_type =
                normalize(target.rsplit('.').next().unwrap_or_default()) == normalize(&f.snake);
            let unnamed = !parent_props
                .iter()
                .any(|p| normalize(p) == normalize(&f.snake));
            if f.kind == "message" && named_after_type && unnamed {
                names
                    .entry(target.to_lowercase())
                    .or_insert_with(|| parent_props.clone());
            }
        }
    }
    let mut reachable = BTreeSet::new();
    let mut queue: Vec<String> = ROOTS.iter().map(|s| s.to_string()).collect();
    while let Some(name) = queue.pop() {
        if !reachable.insert(name.clone()) {
            continue;
        }
        let fields = messages
            .get(&name)
            .unwrap_or_else(|| panic!("message {name} not found"));
        for f in fields {
            if let Some(t) = &f.target {
                queue.push(t.clone());
            }
        }
    }
    println!(
        "// @generated by `cargo run -p skiff-apiserver --example gen_protobuf_table` from the"
    );
    println!(
        "// prost code of k8s-pb 0.9.0 (field numbers) and k8s-openapi's schemas (JSON names)."
    );
    println!("// Do not edit; regenerate.");
    println!();
    println!("use super::{{Field, Kind}};");
    println!();
    println!("/// Protobuf fields of every message reachable from the served kinds, by full name.");
    println!("#[rustfmt::skip]");
    println!("pub(super) static MESSAGES: &[(&str, &[Field])] = &[");
    for name in &reachable {
        let props = names.get(&name.to_lowercase());
        println!("    (\"{name}\", &[");
        for f in &messages[name] {
            let found = props.and_then(|p| {
                p.iter()
                    .find(|p| normalize(p) == normalize(&f.snake))
                    .cloned()
            });
            // A message field the schema does not name is an embedded Go struct whose fields
            // are inlined into the parent's JSON (`LocalObjectReference` in `ConfigMapEnvSource`).
            let named_after_type = f.target.as_ref().is_some_and(|t| {
                normalize(t.rsplit('.').next().unwrap_or_default()) == normalize(&f.snake)
            });
            let inline =
                found.is_none() && f.kind == "message" && props.is_some() && named_after_type
                    || found.is_none()
                        && f.kind == "message"
                        && match (props, f.target.as_ref().and_then(|t| messages.get(t))) {
                            (Some(props), Some(target)) => target.iter().all(|tf| {
                                props.iter().any(|p| normalize(p) == normalize(&tf.snake))
                            }),
                            _ => false,
                        };
            let json = found.unwrap_or_else(|| {
                if !inline {
                    eprintln!(
                        "note: {name}.{} not in k8s-openapi's schema; using camelCase",
                        f.snake
                    );
                }
                lower_camel(&f.snake)
            });
            let kind = match (f.kind.as_str(), &f.target, f.map_value.as_deref()) {
                ("message", Some(t), _) => format!("Kind::Message(\"{t}\")"),
                ("map", Some(t), _) => format!("Kind::MapOfMessage(\"{t}\")"),
                ("map", None, Some("string")) => "Kind::MapOfString".to_string(),
                ("map", None, Some("bytes")) => "Kind::MapOfBytes".to_string(),
                ("string", _, _) => "Kind::String".to_string(),
                ("bytes", _, _) => "Kind::Bytes".to_string(),
                ("bool", _, _) => "Kind::Bool".to_string(),
                ("int32", _, _) => "Kind::Int32".to_string(),
                ("int64", _, _) => "Kind::Int64".to_string(),
                (other, _, v) => panic!("{name}.{}: unsupported kind {other} {v:?}", f.snake),
            };
            let kind = if inline {
                kind.replace("Kind::Message(", "Kind::Inline(")
            } else {
                kind
            };
            println!(
                "        Field {{ tag: {}, json: \"{json}\", kind: {kind}, repeated: {} }},",
                f.tag, f.repeated
            );
        }
        println!("    ]),");
    }
    println!("];");
}
