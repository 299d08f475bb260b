//! OpenAPI documents generated from k8s-openapi's `schemars` output and the resource registry:
//! `/openapi/v2` (one document) and `/openapi/v3` (an index plus one document per group
//! version). Schemas come from the Rust types; paths, operations and the
//! `x-kubernetes-group-version-kind` extensions come from the registry. Nothing is written by
//! hand beyond the list wrappers, which k8s-openapi does not describe.
//!
//! kubectl uses these to explain types (`kubectl explain`, v3), to learn that a kind supports
//! server-side field validation (the `fieldValidation` parameter of its PATCH operation, v3),
//! and to pick a patch strategy for `kubectl apply`. The PATCH operations deliberately do not
//! list `application/strategic-merge-patch+json` among their request types: k8s-openapi's
//! schemas carry no `x-kubernetes-patch-merge-key` extensions, and without them kubectl would
//! compute list-replacing patches from the schema; with the type absent it falls back to its
//! compiled-in Go types, which carry the upstream merge keys. The server accepts strategic
//! merge patches all the same.

use bytes::Bytes;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};
use skiff_types::registry::{self, ResourceInfo};

use crate::discovery::subresources_of;

/// The rendered documents.
#[derive(Debug, Clone)]
pub(crate) struct OpenApiDocs {
    /// `/openapi/v2`, JSON.
    pub v2: Bytes,
    /// `/openapi/v2`, gnostic protobuf (definitions only).
    pub v2_protobuf: Bytes,
    /// `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL": ...}}}`.
    pub v3_index: Bytes,
    /// `(path below /openapi/v3/, hash, document)`: `("apis/apps/v1", "ABC...", {...})`.
    pub v3: Vec<(String, String, Bytes)>,
}

impl OpenApiDocs {
    /// Generates every document (tens of milliseconds; done once, on first use).
    pub(crate) fn generate() -> Self {
        let mut v3 = Vec::new();
        let mut index = Map::new();
        for (group, version) in registry::group_versions() {
            let path = gv_path(group, version);
            let doc = v3_document(group, version);
            let bytes = Bytes::from(doc.to_string());
            let hash = hex_upper(&Sha512::digest(&bytes));
            index.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            );
            v3.push((path, hash, bytes));
        }
        let v2 = v2_document();
        OpenApiDocs {
            v2_protobuf: Bytes::from(crate::openapi_pb::encode(&v2)),
            v2: Bytes::from(v2.to_string()),
            v3_index: Bytes::from(json!({"paths": index}).to_string()),
            v3,
        }
    }

    /// The v3 document at `path` (`api/v1`, `apis/apps/v1`) and its hash.
    pub(crate) fn v3_document(&self, path: &str) -> Option<(&str, &Bytes)> {
        self.v3
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.as_str(), b))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Adds the schema of the type behind `(group, version, kind)` to `gen`; returns its
/// definition name, or `None` for kinds skiff has no Rust type for.
fn add_kind(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, discovery, networking, policy,
    };
    fn add<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
        let _ = gen.subschema_for::<T>();
        T::schema_name().into_owned()
    }
    Some(match (group, version, kind) {
        ("", "v1", "Pod") => add::<core::v1::Pod>(gen),
        ("", "v1", "Namespace") => add::<core::v1::Namespace>(gen),
        ("", "v1", "Node") => add::<core::v1::Node>(gen),
        ("", "v1", "Event") => add::<core::v1::Event>(gen),
        ("", "v1", "ConfigMap") => add::<core::v1::ConfigMap>(gen),
        ("", "v1", "Secret") => add::<core::v1::Secret>(gen),
        ("", "v1", "Service") => add::<core::v1::Service>(gen),
        ("", "v1", "ServiceAccount") => add::<core::v1::ServiceAccount>(gen),
        ("", "v1", "Binding") => add::<core::v1::Binding>(gen),
        ("", "v1", "Endpoints") => add::<core::v1::Endpoints>(gen),
        ("apps", "v1", "Deployment") => add::<apps::v1::Deployment>(gen),
        ("apps", "v1", "ReplicaSet") => add::<apps::v1::ReplicaSet>(gen),
        ("apps", "v1", "DaemonSet") => add::<apps::v1::DaemonSet>(gen),
        ("apps", "v1", "StatefulSet") => add::<apps::v1::StatefulSet>(gen),
        ("apps", "v1", "ControllerRevision") => add::<apps::v1::ControllerRevision>(gen),
        ("batch", "v1", "Job") => add::<batch::v1::Job>(gen),
        ("batch", "v1", "CronJob") => add::<batch::v1::CronJob>(gen),
        ("coordination.k8s.io", "v1", "Lease") => add::<coordination::v1::Lease>(gen),
        ("discovery.k8s.io", "v1", "EndpointSlice") => add::<discovery::v1::EndpointSlice>(gen),
        ("networking.k8s.io", "v1", "NetworkPolicy") => add::<networking::v1::NetworkPolicy>(gen),
        ("autoscaling", "v1", "Scale") => add::<autoscaling::v1::Scale>(gen),
        ("policy", "v1", "Eviction") => add::<policy::v1::Eviction>(gen),
        _ => return None,
    })
}

/// Common definitions every document needs; returns (Status, DeleteOptions, WatchEvent, Patch).
fn add_common(gen: &mut SchemaGenerator) -> [String; 5] {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut names = [
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
    let _ = gen.subschema_for::<meta::Status>();
    names[0] = meta::Status::schema_name().into_owned();
    let _ = gen.subschema_for::<meta::DeleteOptions>();
    names[1] = meta::DeleteOptions::schema_name().into_owned();
    let _ = gen.subschema_for::<meta::WatchEvent<k8s_openapi::api::core::v1::Pod>>();
    names[2] = <meta::WatchEvent<k8s_openapi::api::core::v1::Pod> as JsonSchema>::schema_name()
        .into_owned();
    let _ = gen.subschema_for::<meta::Patch>();
    names[3] = meta::Patch::schema_name().into_owned();
    let _ = gen.subschema_for::<meta::ListMeta>();
    names[4] = meta::ListMeta::schema_name().into_owned();
    names
}

/// How references and parameters are spelled in the two OpenAPI versions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn reference(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Flavor::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }

    fn settings(self) -> SchemaSettings {
        let mut settings = SchemaSettings::openapi3();
        settings.meta_schema = None;
        if self == Flavor::V2 {
            settings.definitions_path = "/definitions".into();
        }
        settings
    }
}

struct Names {
    status: String,
    delete_options: String,
    watch_event: String,
    patch: String,
    list_meta: String,
}

/// Definitions and paths for the resources of one group version, into `defs` and `paths`.
fn describe_group_version(
    flavor: Flavor,
    gen: &mut SchemaGenerator,
    group: &str,
    version: &str,
    names: &Names,
    paths: &mut Map<String, Value>,
    gvks: &mut Vec<(String, Value)>,
) {
    for info in registry::resources_in(group, version) {
        let Some(def) = add_kind(gen, info.group, info.version, info.kind) else {
            tracing::warn!(kind = info.kind, "no schema for kind; left out of openapi");
            continue;
        };
        let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
        gvks.push((def.clone(), gvk.clone()));
        let list_def = format!("{def}List");
        gen.definitions_mut().insert(
            list_def.clone(),
            json!({
                "description": format!("{} is a list of {}.", info.list_kind, info.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                    "items": {"type": "array", "description": format!("List of {}.", info.plural), "items": flavor.reference(&def)},
                    "metadata": flavor.reference(&names.list_meta),
                },
                "required": ["items"],
            }),
        );
        gvks.push((
            list_def.clone(),
            json!({"group": info.group, "version": info.version, "kind": info.list_kind}),
        ));
        resource_paths(flavor, gen, info, &def, &list_def, names, paths);
    }
}

fn v3_document(group: &str, version: &str) -> Value {
    let flavor = Flavor::V3;
    let mut gen = flavor.settings().into_generator();
    let [status, delete_options, watch_event, patch, list_meta] = add_common(&mut gen);
    let names = Names {
        status,
        delete_options,
        watch_event,
        patch,
        list_meta,
    };
    let mut paths = Map::new();
    let mut gvks = Vec::new();
    describe_group_version(
        flavor, &mut gen, group, version, &names, &mut paths, &mut gvks,
    );
    let mut defs = gen.take_definitions(true);
    add_gvk_extensions(&mut defs, &gvks);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": skiff_types::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": defs},
    })
}

fn v2_document() -> Value {
    let flavor = Flavor::V2;
    let mut gen = flavor.settings().into_generator();
    let [status, delete_options, watch_event, patch, list_meta] = add_common(&mut gen);
    let names = Names {
        status,
        delete_options,
        watch_event,
        patch,
        list_meta,
    };
    let mut paths = Map::new();
    let mut gvks = Vec::new();
    for (group, version) in registry::group_versions() {
        describe_group_version(
            flavor, &mut gen, group, version, &names, &mut paths, &mut gvks,
        );
    }
    let mut defs = gen.take_definitions(true);
    add_gvk_extensions(&mut defs, &gvks);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": skiff_types::KUBERNETES_VERSION},
        "paths": paths,
        "definitions": defs,
    })
}

fn add_gvk_extensions(defs: &mut Map<String, Value>, gvks: &[(String, Value)]) {
    for (def, gvk) in gvks {
        let Some(schema) = defs.get_mut(def).and_then(Value::as_object_mut) else {
            continue;
        };
        let entry = schema
            .entry("x-kubernetes-group-version-kind")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            if !list.contains(gvk) {
                list.push(gvk.clone());
            }
        }
    }
}

fn camel(s: &str) -> String {
    s.split(['.', '-'])
        .filter(|p| !p.is_empty() && *p != "k8s" && *p != "io")
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// Query parameters by operation: `(name, type, description)`.
const LIST_PARAMS: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
];
const WRITE_PARAMS: &[(&str, &str, &str)] = &[
    ("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
    ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
    ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict."),
];
const PATCH_PARAMS: &[(&str, &str, &str)] = &[
    ("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people."),
];
const DELETE_PARAMS: &[(&str, &str, &str)] = &[
    ("dryRun", "string", "When present, indicates that modifications should not be persisted."),
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
    ("propagationPolicy", "string", "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'."),
];

fn params(flavor: Flavor, path_params: &[&str], query: &[&[(&str, &str, &str)]]) -> Value {
    let mut out = Vec::new();
    for p in path_params {
        let description = format!("{p} of the object");
        out.push(match flavor {
            Flavor::V2 => json!({"name": p, "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": description}),
            Flavor::V3 => json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}, "description": description}),
        });
    }
    for (name, ty, description) in query.iter().flat_map(|q| q.iter()) {
        out.push(match flavor {
            Flavor::V2 => json!({"name": name, "in": "query", "type": ty, "uniqueItems": true, "description": description}),
            Flavor::V3 => json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}, "description": description}),
        });
    }
    Value::Array(out)
}

fn responses(flavor: Flavor, codes: &[(&str, &str)], schema: &Value, stream: bool) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        let r = match flavor {
            Flavor::V2 => json!({"description": description, "schema": schema}),
            Flavor::V3 => {
                let mut content = Map::new();
                content.insert("application/json".into(), json!({"schema": schema}));
                content.insert("application/yaml".into(), json!({"schema": schema}));
                if stream {
                    content.insert(
                        "application/json;stream=watch".into(),
                        json!({"schema": schema}),
                    );
                }
                json!({"description": description, "content": content})
            }
        };
        out.insert(code.to_string(), r);
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

#[allow(clippy::too_many_arguments)]
fn operation(
    flavor: Flavor,
    id: String,
    action: &str,
    gvk: &Value,
    parameters: Value,
    body: Option<(&[&str], Value)>,
    responses: Value,
    description: String,
) -> Value {
    let mut op = json!({
        "description": description,
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "responses": responses,
        "parameters": parameters,
    });
    if let Some((types, schema)) = body {
        match flavor {
            Flavor::V2 => {
                if let Some(list) = op["parameters"].as_array_mut() {
                    list.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                    );
                }
                op["consumes"] = json!(types);
            }
            Flavor::V3 => {
                let content: Map<String, Value> = types
                    .iter()
                    .map(|t| (t.to_string(), json!({"schema": schema})))
                    .collect();
                op["requestBody"] = json!({"required": true, "content": content});
            }
        }
    }
    op
}

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];
const BODY_TYPES: &[&str] = &["application/json", "application/yaml"];

fn resource_paths(
    flavor: Flavor,
    gen: &mut SchemaGenerator,
    info: &ResourceInfo,
    def: &str,
    list_def: &str,
    names: &Names,
    paths: &mut Map<String, Value>,
) {
    let prefix = format!("/{}", gv_path(info.group, info.version));
    let group_camel = if info.group.is_empty() {
        "Core".to_string()
    } else {
        camel(info.group)
    };
    let gv = format!("{group_camel}{}", camel(info.version));
    let scope = if info.namespaced { "Namespaced" } else { "" };
    let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let obj = flavor.reference(def);
    let list = flavor.reference(list_def);
    let status = flavor.reference(&names.status);
    let (collection, item, ns_params): (String, String, Vec<&str>) = if info.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", info.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", info.plural),
            vec!["namespace"],
        )
    } else {
        (
            format!("{prefix}/{}", info.plural),
            format!("{prefix}/{}/{{name}}", info.plural),
            vec![],
        )
    };
    let mut item_params = ns_params.clone();
    item_params.insert(0, "name");
    let kind = info.kind;

    let mut c = Map::new();
    c.insert(
        "get".into(),
        operation(
            flavor,
            format!("list{gv}{scope}{kind}"),
            "list",
            &gvk,
            params(flavor, &ns_params, &[LIST_PARAMS]),
            None,
            responses(flavor, &[("200", "OK")], &list, true),
            format!("list or watch objects of kind {kind}"),
        ),
    );
    c.insert(
        "post".into(),
        operation(
            flavor,
            format!("create{gv}{scope}{kind}"),
            "post",
            &gvk,
            params(flavor, &ns_params, &[WRITE_PARAMS]),
            Some((BODY_TYPES, obj.clone())),
            responses(
                flavor,
                &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                &obj,
                false,
            ),
            format!("create a {kind}"),
        ),
    );
    if info.has_verb("deletecollection") {
        c.insert(
            "delete".into(),
            operation(
                flavor,
                format!("deletecollection{gv}{scope}{kind}"),
                "deletecollection",
                &gvk,
                params(flavor, &ns_params, &[DELETE_PARAMS, LIST_PARAMS]),
                Some((BODY_TYPES, flavor.reference(&names.delete_options))),
                responses(flavor, &[("200", "OK")], &status, false),
                format!("delete collection of {kind}"),
            ),
        );
    }
    paths.insert(collection, Value::Object(c));

    let mut i = Map::new();
    i.insert(
        "get".into(),
        operation(
            flavor,
            format!("read{gv}{scope}{kind}"),
            "get",
            &gvk,
            params(flavor, &item_params, &[]),
            None,
            responses(flavor, &[("200", "OK")], &obj, false),
            format!("read the specified {kind}"),
        ),
    );
    i.insert(
        "put".into(),
        operation(
            flavor,
            format!("replace{gv}{scope}{kind}"),
            "put",
            &gvk,
            params(flavor, &item_params, &[WRITE_PARAMS]),
            Some((BODY_TYPES, obj.clone())),
            responses(flavor, &[("200", "OK"), ("201", "Created")], &obj, false),
            format!("replace the specified {kind}"),
        ),
    );
    i.insert(
        "patch".into(),
        operation(
            flavor,
            format!("patch{gv}{scope}{kind}"),
            "patch",
            &gvk,
            params(flavor, &item_params, &[WRITE_PARAMS, PATCH_PARAMS]),
            Some((PATCH_TYPES, flavor.reference(&names.patch))),
            responses(flavor, &[("200", "OK"), ("201", "Created")], &obj, false),
            format!("partially update the specified {kind}"),
        ),
    );
    i.insert(
        "delete".into(),
        operation(
            flavor,
            format!("delete{gv}{scope}{kind}"),
            "delete",
            &gvk,
            params(flavor, &item_params, &[DELETE_PARAMS]),
            Some((BODY_TYPES, flavor.reference(&names.delete_options))),
            responses(
                flavor,
                &[("200", "OK"), ("202", "Accepted")],
                &status,
                false,
            ),
            format!("delete a {kind}"),
        ),
    );
    paths.insert(item.clone(), Value::Object(i));

    if info.namespaced {
        let mut all = Map::new();
        all.insert(
            "get".into(),
            operation(
                flavor,
                format!("list{gv}{kind}ForAllNamespaces"),
                "list",
                &gvk,
                params(flavor, &[], &[LIST_PARAMS]),
                None,
                responses(flavor, &[("200", "OK")], &list, true),
                format!("list or watch objects of kind {kind}"),
            ),
        );
        paths.insert(format!("{prefix}/{}", info.plural), Value::Object(all));
    }

    for sub in subresources_of(info) {
        let sub_camel = camel(sub);
        let path = format!("{item}/{sub}");
        let mut s = Map::new();
        match sub {
            "status" | "scale" => {
                let (sub_gvk, schema) = if sub == "scale" {
                    match add_kind(gen, "autoscaling", "v1", "Scale") {
                        Some(scale) => (
                            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
                            flavor.reference(&scale),
                        ),
                        None => continue,
                    }
                } else {
                    (gvk.clone(), obj.clone())
                };
                s.insert(
                    "get".into(),
                    operation(
                        flavor,
                        format!("read{gv}{scope}{kind}{sub_camel}"),
                        "get",
                        &sub_gvk,
                        params(flavor, &item_params, &[]),
                        None,
                        responses(flavor, &[("200", "OK")], &schema, false),
                        format!("read {sub} of the specified {kind}"),
                    ),
                );
                s.insert(
                    "put".into(),
                    operation(
                        flavor,
                        format!("replace{gv}{scope}{kind}{sub_camel}"),
                        "put",
                        &sub_gvk,
                        params(flavor, &item_params, &[WRITE_PARAMS]),
                        Some((BODY_TYPES, schema.clone())),
                        responses(flavor, &[("200", "OK"), ("201", "Created")], &schema, false),
                        format!("replace {sub} of the specified {kind}"),
                    ),
                );
                s.insert(
                    "patch".into(),
                    operation(
                        flavor,
                        format!("patch{gv}{scope}{kind}{sub_camel}"),
                        "patch",
                        &sub_gvk,
                        params(flavor, &item_params, &[WRITE_PARAMS, PATCH_PARAMS]),
                        Some((PATCH_TYPES, flavor.reference(&names.patch))),
                        responses(flavor, &[("200", "OK"), ("201", "Created")], &schema, false),
                        format!("partially update {sub} of the specified {kind}"),
                    ),
                );
            }
            "binding" => {
                let Some(binding) = add_kind(gen, "", "v1", "Binding") else {
                    continue;
                };
                let schema = flavor.reference(&binding);
                s.insert(
                    "post".into(),
                    operation(
                        flavor,
                        format!("create{gv}{scope}{kind}Binding"),
                        "post",
                        &json!({"group": "", "version": "v1", "kind": "Binding"}),
                        params(flavor, &item_params, &[WRITE_PARAMS]),
                        Some((BODY_TYPES, schema.clone())),
                        responses(flavor, &[("200", "OK"), ("201", "Created")], &schema, false),
                        format!("create binding of a {kind}"),
                    ),
                );
            }
            "eviction" => {
                let Some(eviction) = add_kind(gen, "policy", "v1", "Eviction") else {
                    continue;
                };
                let schema = flavor.reference(&eviction);
                s.insert(
                    "post".into(),
                    operation(
                        flavor,
                        format!("create{gv}{scope}{kind}Eviction"),
                        "post",
                        &json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
                        params(flavor, &item_params, &[WRITE_PARAMS]),
                        Some((BODY_TYPES, schema.clone())),
                        responses(flavor, &[("200", "OK"), ("201", "Created")], &schema, false),
                        format!("create eviction of a {kind}"),
                    ),
                );
            }
            "log" => {
                let text = json!({"type": "string"});
                s.insert(
                    "get".into(),
                    operation(
                        flavor,
                        format!("read{gv}{scope}{kind}Log"),
                        "get",
                        &gvk,
                        params(
                            flavor,
                            &item_params,
                            &[&[
                                (
                                    "container",
                                    "string",
                                    "The container for which to stream logs.",
                                ),
                                ("follow", "boolean", "Follow the log stream of the pod."),
                                (
                                    "tailLines",
                                    "integer",
                                    "If set, the number of lines from the end of the logs to show.",
                                ),
                            ]],
                        ),
                        None,
                        responses(flavor, &[("200", "OK")], &text, false),
                        format!("read log of the specified {kind}"),
                    ),
                );
            }
            "finalize" => {
                s.insert(
                    "put".into(),
                    operation(
                        flavor,
                        format!("replace{gv}{kind}Finalize"),
                        "put",
                        &gvk,
                        params(flavor, &item_params, &[WRITE_PARAMS]),
                        Some((BODY_TYPES, obj.clone())),
                        responses(flavor, &[("200", "OK"), ("201", "Created")], &obj, false),
                        format!("replace finalize of the specified {kind}"),
                    ),
                );
            }
            _ => continue,
        }
        paths.insert(path, Value::Object(s));
    }
    let _ = &names.watch_event;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(docs: &OpenApiDocs, path: &str) -> Value {
        serde_json::from_slice(docs.v3_document(path).unwrap().1).unwrap()
    }

    #[test]
    fn v3_documents_describe_kinds_with_gvk_and_field_validation() {
        let docs = OpenApiDocs::generate();
        let core = doc(&docs, "api/v1");
        let pod = &core["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert!(
            core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
                .is_object()
        );
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_none());
        let apps = doc(&docs, "apis/apps/v1");
        assert!(apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());
        assert!(
            apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
                .is_object()
        );
        assert!(apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
        // Every $ref resolves within its own document.
        for (path, _, bytes) in &docs.v3 {
            let text = std::str::from_utf8(bytes).unwrap();
            let d: Value = serde_json::from_str(text).unwrap();
            for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = &r[..r.find('"').unwrap()];
                assert!(
                    d["components"]["schemas"].get(name).is_some(),
                    "{path}: dangling $ref {name}"
                );
            }
        }
        let index: Value = serde_json::from_slice(&docs.v3_index).unwrap();
        assert!(index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1?hash="));
    }

    #[test]
    fn v2_document_has_definitions_with_gvk() {
        let docs = OpenApiDocs::generate();
        let v2: Value = serde_json::from_slice(&docs.v2).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert_eq!(
            v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]
                [0]["kind"],
            "Deployment"
        );
        let text = std::str::from_utf8(&docs.v2).unwrap();
        assert!(
            !text.contains("#/components/schemas/"),
            "v2 must reference #/definitions/"
        );
        assert!(text.contains("\"$ref\":\"#/definitions/io.k8s.api.core.v1.PodSpec\""));
    }
}
