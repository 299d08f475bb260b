//! create (POST) and update (PUT) of objects and their status, and namespace finalize.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_store::{Key, Object, Preconditions};
use skiff_types::registry::ResourceInfo;
use skiff_types::{defaults, strategy, validation, wire_fields};

use super::meta::{self, check_fields, invalid};
use super::Call;
use crate::apply::Ownership;
use crate::negotiate;
use crate::objects::{self, meta_str};
use crate::{body, render, ApiError, ApiServer};

/// POST to a collection.
pub(super) async fn create(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let output = negotiate::output(&call.headers)?;
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let dry_run = call.query.dry_run()?;
    let mut object = meta::decode_body(call, &bytes)?;
    meta::default_type_meta(&mut object, &info.api_version(), info.kind);
    meta::check_type_meta(&object, &info.api_version(), info.kind)?;
    let warnings = check_fields(call, info, &mut object)?;
    meta::check_namespace_and_name(call, &mut object, None)?;
    call.admit(&object)?;
    let created = create_object(
        &call.api,
        info,
        call.namespace(),
        object,
        dry_run,
        call.ownership(),
    )
    .await?;
    let response = created.respond(StatusCode::CREATED, info, output, &call.query)?;
    Ok(meta::with_warnings(response, &warnings))
}

/// What a write produced: the stored object (answered with its stored bytes), or the object a
/// dry run would have stored.
pub(crate) enum Written {
    Stored(Object),
    Preview(Value),
}

impl Written {
    /// The response carrying the object in the representation the client asked for.
    pub(crate) fn respond(
        &self,
        code: StatusCode,
        info: &ResourceInfo,
        output: negotiate::Output,
        query: &crate::query::Query,
    ) -> Result<Response<Body>, ApiError> {
        match self {
            Written::Stored(object) => render::object(code, info, object.json(), output, query),
            Written::Preview(value) => render::object_value(code, info, value, output, query),
        }
    }
}

/// Creates `object` of resource `info` (namespace and type metadata already checked): name
/// generation, namespace lifecycle, system metadata, strategy, defaults, validation, store.
/// Returns what was stored (or would be, with `dry_run`).
pub(crate) async fn create_object(
    api: &ApiServer,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    object: Value,
    dry_run: bool,
    ownership: Ownership<'_>,
) -> Result<Written, ApiError> {
    create_object_named(
        api,
        info,
        namespace,
        object,
        dry_run,
        ownership,
        objects::generate_name,
    )
    .await
}

/// Names tried for one `generateName` before giving up (upstream retries a collision too).
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// [`create_object`] with the `generateName` suffix source given (tests force collisions).
pub(crate) async fn create_object_named(
    api: &ApiServer,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    mut object: Value,
    dry_run: bool,
    ownership: Ownership<'_>,
    mut generate: impl FnMut(&str) -> String,
) -> Result<Written, ApiError> {
    let prefix = meta_str(&object, "name")
        .filter(|n| !n.is_empty())
        .is_none()
        .then(|| meta_str(&object, "generateName").filter(|n| !n.is_empty()))
        .flatten()
        .map(str::to_string);
    let name = match meta_str(&object, "name").filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => match prefix.as_deref() {
            Some(prefix) => {
                let name = generate(prefix);
                objects::set_meta(&mut object, "name", json!(name));
                name
            }
            None => {
                return Err(meta::invalid_field(
                    info,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required".into(),
                ))
            }
        },
    };
    if let Some(ns) = namespace.filter(|_| info.namespaced) {
        meta::check_namespace_open(api, ns)?;
    }
    if meta_str(&object, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    for field in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "creationTimestamp",
    ] {
        objects::remove_meta(&mut object, field);
    }
    objects::set_meta(&mut object, "uid", json!(uuid::Uuid::new_v4().to_string()));
    strategy::prepare_for_create(info, &mut object);
    defaults::apply_defaults(info, &mut object);
    if let Err(errors) = validation::validate_create(info, &object) {
        return Err(invalid(info, &name, &errors));
    }
    // Held until the Service is stored, so no other create takes its address meanwhile.
    let _reserved = assign_service_allocations(api, info, &name, None, &mut object, dry_run)?;
    wire_fields::fill_zero_fields(&info.api_version(), info.kind, &mut object);
    crate::apply::record_update(info, None, &mut object, ownership);
    if dry_run {
        objects::set_meta(
            &mut object,
            "creationTimestamp",
            json!(objects::timestamp(0)),
        );
        objects::set_meta(&mut object, "generation", json!(1));
        return Ok(Written::Preview(object));
    }
    let mut key = Key::new(
        info.storage_name(),
        namespace.filter(|_| info.namespaced),
        name,
    );
    let mut attempt = 1;
    let stored = loop {
        match api.store().create(&key, object.clone()).await {
            Ok(stored) => break stored,
            // A generated name that is taken: another suffix, as upstream.
            Err(skiff_store::StoreError::AlreadyExists { .. }) if prefix.is_some() => {
                if attempt >= GENERATE_NAME_ATTEMPTS {
                    return Err(generate_name_conflict(info, &key.name));
                }
                attempt += 1;
                let name = generate(prefix.as_deref().unwrap_or_default());
                objects::set_meta(&mut object, "name", json!(name));
                key = Key::new(
                    info.storage_name(),
                    namespace.filter(|_| info.namespaced),
                    name,
                );
            }
            Err(e) => return Err(super::write_error(api, info, e)),
        }
    };
    Ok(Written::Stored(stored))
}

/// Upstream's 409 when no generated name was free (`NewGenerateNameConflict`).
fn generate_name_conflict(info: &ResourceInfo, name: &str) -> ApiError {
    let resource = if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    };
    let mut error = ApiError::new(
        409,
        "AlreadyExists",
        format!(
            "{resource} \"{name}\" already exists, the server was not able to generate a unique name for the object"
        ),
    )
    .about(crate::Subject {
        group: info.group,
        kind: info.plural,
        name,
    });
    error.details_mut().retry_after_seconds = Some(1);
    error
}

/// What a Service holds until it is stored: its cluster IPs and node ports, so no other write
/// takes them meanwhile.
type ServiceReservations = (
    Option<crate::service_ips::Reservation>,
    Option<crate::node_ports::Reservation>,
);

/// Allocates or checks a Service's cluster IPs, then its node ports (other kinds: nothing to
/// do).
fn assign_service_allocations(
    api: &ApiServer,
    info: &'static ResourceInfo,
    name: &str,
    old: Option<&Value>,
    object: &mut Value,
    dry_run: bool,
) -> Result<ServiceReservations, ApiError> {
    if !(info.group.is_empty() && info.kind == "Service") {
        return Ok((None, None));
    }
    let cluster_ips = api
        .service_ips()
        .assign(api.store(), old, object, dry_run)
        .map_err(|error| match error {
            crate::service_ips::AssignError::Invalid(errors) => invalid(info, name, &errors),
            crate::service_ips::AssignError::Full => {
                ApiError::internal("failed to allocate a serviceIP: range is full")
            }
        })?;
    let node_ports = api
        .node_ports()
        .assign(api.store(), old, object, dry_run)
        .map_err(|error| match error {
            crate::node_ports::AssignError::Invalid(errors) => invalid(info, name, &errors),
            crate::node_ports::AssignError::Full => {
                ApiError::internal("failed to allocate a nodePort: range is full")
            }
        })?;
    Ok((cluster_ips, node_ports))
}

pub(super) fn parse_stored(stored: &Object) -> Result<Value, ApiError> {
    serde_json::from_slice(stored.json())
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))
}

/// What an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The main resource: status changes are ignored.
    Main,
    /// The `status` subresource: only status changes count.
    Status,
}

impl Part {
    pub(crate) fn of(subresource: Option<&str>) -> Part {
        if subresource == Some("status") {
            Part::Status
        } else {
            Part::Main
        }
    }
}

/// Outcome of [`update_object`]: the stored object, or its last state when the update
/// removed the last finalizer of an object being deleted (which is then gone).
pub(crate) struct Updated {
    pub object: Value,
}

/// Updates the stored object `old` (at `old_revision`) to `new` (type metadata, namespace and
/// name already checked): system metadata, strategy for `part`, defaults, validation, store
/// with the resourceVersion precondition (`new`'s own, or `old_revision` when it has none).
#[allow(clippy::too_many_arguments)] // the write's parts; a struct would only rename them
pub(crate) async fn update_object(
    api: &ApiServer,
    info: &'static ResourceInfo,
    key: &Key,
    old: &Value,
    mut new: Value,
    part: Part,
    dry_run: bool,
    ownership: Ownership<'_>,
) -> Result<Updated, ApiError> {
    meta::carry_system_metadata(old, &mut new);
    if meta_str(&new, "resourceVersion").is_none_or(str::is_empty) {
        if let Some(rv) = old.get("metadata").and_then(|m| m.get("resourceVersion")) {
            objects::set_meta(&mut new, "resourceVersion", rv.clone());
        }
    }
    match part {
        Part::Main => strategy::prepare_for_update(info, old, &mut new),
        Part::Status => strategy::prepare_for_status_update(info, old, &mut new),
    }
    if part == Part::Main && info.group.is_empty() && info.kind == "Service" {
        crate::node_ports::drop_on_type_change(old, &mut new);
    }
    defaults::apply_defaults(info, &mut new);
    // Zero-valued fields upstream always writes; also on the stored object compared against,
    // which may predate them.
    let api_version = info.api_version();
    wire_fields::fill_zero_fields(&api_version, info.kind, &mut new);
    let mut old_filled = old.clone();
    wire_fields::fill_zero_fields(&api_version, info.kind, &mut old_filled);
    let old = &old_filled;
    crate::apply::record_update(info, Some(old), &mut new, ownership);
    let result = match part {
        Part::Main => validation::validate_update(info, old, &new),
        Part::Status => validation::validate_status_update(info, old, &new),
    };
    if let Err(errors) = result {
        return Err(invalid(info, &key.name, &errors));
    }
    let _reserved = match part {
        Part::Main => {
            assign_service_allocations(api, info, &key.name, Some(old), &mut new, dry_run)?
        }
        Part::Status => (None, None),
    };
    if dry_run {
        return Ok(Updated { object: new });
    }
    if meta_str(&new, "resourceVersion") != meta_str(old, "resourceVersion") {
        // Stale before it reaches the store: answer without queuing a write.
        return Err(ApiError::stale(crate::Subject {
            group: info.group,
            kind: info.plural,
            name: &key.name,
        }));
    }
    let delete_now = meta::should_delete_after_update(old, &new);
    let stored = api
        .store()
        .update(key, new)
        .await
        .map_err(|e| super::write_error(api, info, e))?;
    if delete_now {
        let uid = meta_str(old, "uid").map(str::to_string);
        if let Some(deleted) = finish_deletion(api, info, key, uid, &stored).await? {
            return Ok(Updated {
                object: parse_stored(&deleted)?,
            });
        }
    }
    Ok(Updated {
        object: parse_stored(&stored)?,
    })
}

/// Removes an object whose deletion has no finalizers left (`stored` is its latest state).
/// Another write may land between the update and the delete (a controller's status update,
/// say): then the object is re-read and removed if it is still being deleted without
/// finalizers — upstream does both in one atomic step. `None` if a finalizer came back.
async fn finish_deletion(
    api: &ApiServer,
    info: &'static ResourceInfo,
    key: &Key,
    uid: Option<String>,
    stored: &Object,
) -> Result<Option<Object>, ApiError> {
    let mut revision = stored.revision();
    for _ in 0..8 {
        let preconditions = Preconditions {
            uid: uid.clone(),
            resource_version: Some(revision),
        };
        match api.store().delete(key, preconditions).await {
            Ok(deleted) => return Ok(Some(deleted)),
            Err(skiff_store::StoreError::Conflict { .. }) => {
                let Some(current) = api.store().get(key) else {
                    return Ok(None);
                };
                let value = parse_stored(&current)?;
                if !objects::is_deleting(&value) || !objects::finalizers(&value).is_empty() {
                    return Ok(None);
                }
                revision = current.revision();
            }
            Err(skiff_store::StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(super::write_error(api, info, e)),
        }
    }
    Err(ApiError::internal(format!(
        "{} {:?} kept changing while its deletion finished; it will be retried",
        info.plural, key.name
    )))
}

/// PUT of an object or its status.
pub(super) async fn update(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let output = negotiate::output(&call.headers)?;
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let dry_run = call.query.dry_run()?;
    let mut object = meta::decode_body(call, &bytes)?;
    meta::default_type_meta(&mut object, &info.api_version(), info.kind);
    meta::check_type_meta(&object, &info.api_version(), info.kind)?;
    let warnings = check_fields(call, info, &mut object)?;
    meta::check_namespace_and_name(call, &mut object, Some(call.name()))?;
    let key = call.key();
    let (old, _) = meta::load(call, &key)?;
    let part = Part::of(call.request.subresource.as_deref());
    call.admit(&object)?;
    let updated = update_object(
        &call.api,
        info,
        &key,
        &old,
        object,
        part,
        dry_run,
        call.ownership(),
    )
    .await?;
    let response =
        render::object_value(StatusCode::OK, info, &updated.object, output, &call.query)?;
    Ok(meta::with_warnings(response, &warnings))
}

/// PUT `/api/v1/namespaces/{name}/finalize`: only `spec.finalizers` changes. When the
/// namespace is being deleted and no finalizer is left, it is deleted (the namespace
/// controller empties the namespace first, then finalizes it, as upstream).
pub(super) async fn finalize(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let dry_run = call.query.dry_run()?;
    let mut object = meta::decode_body(call, &bytes)?;
    meta::default_type_meta(&mut object, &info.api_version(), info.kind);
    meta::check_type_meta(&object, &info.api_version(), info.kind)?;
    meta::check_namespace_and_name(call, &mut object, Some(call.name()))?;
    let key = call.key();
    let (old, _) = meta::load(call, &key)?;
    let mut new = old.clone();
    let finalizers = object
        .get("spec")
        .and_then(|s| s.get("finalizers"))
        .cloned()
        .unwrap_or_else(|| json!([]));
    if !finalizers.is_array()
        || finalizers
            .as_array()
            .is_some_and(|l| l.iter().any(|f| !f.is_string()))
    {
        return Err(meta::invalid_field(
            info,
            &key.name,
            "spec.finalizers",
            "FieldValueInvalid",
            format!("Invalid value: {finalizers}: must be a list of strings"),
        ));
    }
    new["spec"]["finalizers"] = finalizers;
    if let Some(rv) = meta_str(&object, "resourceVersion").filter(|rv| !rv.is_empty()) {
        objects::set_meta(&mut new, "resourceVersion", json!(rv));
    }
    if dry_run {
        return render::object_value(
            StatusCode::OK,
            info,
            &new,
            negotiate::Output::Json,
            &call.query,
        );
    }
    let stored = call
        .api
        .store()
        .update(&key, new)
        .await
        .map_err(|e| call.store_error(e))?;
    let value = parse_stored(&stored)?;
    let spec_empty = value["spec"]["finalizers"]
        .as_array()
        .is_none_or(|l| l.is_empty());
    if objects::is_deleting(&value) && spec_empty && objects::finalizers(&value).is_empty() {
        let deleted = call
            .api
            .store()
            .delete(
                &key,
                Preconditions {
                    uid: meta_str(&value, "uid").map(str::to_string),
                    resource_version: Some(stored.revision()),
                },
            )
            .await
            .map_err(|e| call.store_error(e))?;
        return Ok(render::json_bytes(StatusCode::OK, deleted.json().to_vec()));
    }
    Ok(render::json_bytes(StatusCode::OK, stored.json().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::{Store, StoreOptions};

    const TEST_OWNER: Ownership<'static> = Ownership::Update {
        manager: "test",
        subresource: "",
    };

    fn configmap() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"generateName": "cm-", "namespace": "default"}})
    }

    #[tokio::test]
    async fn generated_name_collisions_retry_then_409() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb"), StoreOptions::default()).unwrap();
        let api = ApiServer::new(store, crate::ApiConfig::default());
        api.bootstrap().await.unwrap();
        let info = skiff_types::registry::find("", "v1", "configmaps").unwrap();
        let always = |prefix: &str| format!("{prefix}taken");
        create_object_named(
            &api,
            info,
            Some("default"),
            configmap(),
            false,
            TEST_OWNER,
            always,
        )
        .await
        .expect("first use of the name");

        // Taken twice, then free: the create retries and succeeds under the third name.
        let mut tries = 0;
        let third_free = |prefix: &str| {
            tries += 1;
            if tries < 3 {
                format!("{prefix}taken")
            } else {
                format!("{prefix}free")
            }
        };
        let created = create_object_named(
            &api,
            info,
            Some("default"),
            configmap(),
            false,
            TEST_OWNER,
            third_free,
        )
        .await
        .expect("retried");
        let Written::Stored(object) = created else {
            panic!("not stored")
        };
        assert_eq!(object.key().name, "cm-free");

        // Always taken: 409 AlreadyExists with upstream's message after the attempts.
        let mut calls = 0;
        let taken = |prefix: &str| {
            calls += 1;
            format!("{prefix}taken")
        };
        let error = create_object_named(
            &api,
            info,
            Some("default"),
            configmap(),
            false,
            TEST_OWNER,
            taken,
        )
        .await
        .err()
        .expect("conflict");
        assert_eq!((error.code, error.reason), (409, "AlreadyExists"));
        assert_eq!(
            error.message,
            "configmaps \"cm-taken\" already exists, the server was not able to generate a unique name for the object"
        );
        assert_eq!(calls, GENERATE_NAME_ATTEMPTS);
        assert_eq!(api.store().count("configmaps", Some("default")), 2);
    }
}
