//! delete and deletecollection: graceful deletion of pods bound to nodes, finalizers,
//! propagation policies (`orphan` / `foregroundDeletion` finalizers for the garbage
//! collector), namespaces going Terminating, preconditions, dry runs.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_store::{Key, ListOptions, Preconditions};
use skiff_types::registry::ResourceInfo;

use super::read::{field_selector, label_selector};
use super::write::parse_stored;
use super::Call;
use crate::bootstrap::UNDELETABLE_NAMESPACES;
use crate::negotiate::{self, BodyFormat};
use crate::objects::{self, meta_str};
use crate::{body, render, ApiError, ApiServer, Subject};

/// Finalizer asking the garbage collector to orphan dependents.
pub(super) const ORPHAN_FINALIZER: &str = "orphan";
/// Finalizer asking the garbage collector to delete dependents first.
pub(super) const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Grace period of pods that do not say (upstream `DefaultTerminationGracePeriodSeconds`).
const DEFAULT_POD_GRACE: i64 = 30;
const MAX_ATTEMPTS: usize = 8;

/// `DeleteOptions` from the body and the query string.
#[derive(Debug, Clone, Default)]
pub(super) struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// Reads delete options from an optional body (JSON or YAML `DeleteOptions`) and the query.
pub(super) async fn delete_options(call: &Call, body: Body) -> Result<DeleteOptions, ApiError> {
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let mut options = DeleteOptions {
        dry_run: call.query.dry_run()?,
        ..DeleteOptions::default()
    };
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let format = if call.headers.contains_key(http::header::CONTENT_TYPE) {
            negotiate::body_format(&call.headers)?
        } else {
            BodyFormat::Json
        };
        let value = body::decode_object(&bytes, format)?;
        if let Some(kind) = value.get("kind").and_then(Value::as_str) {
            if kind != "DeleteOptions" {
                return Err(ApiError::bad_request(format!(
                    "the body of a delete must be DeleteOptions, not {kind}"
                )));
            }
        }
        options.grace_period = int_field(&value, "gracePeriodSeconds")?;
        if let Some(p) = value.get("propagationPolicy").and_then(Value::as_str) {
            options.propagation = Some(parse_propagation(p)?);
        }
        if value.get("orphanDependents").and_then(Value::as_bool) == Some(true)
            && options.propagation.is_none()
        {
            options.propagation = Some(Propagation::Orphan);
        }
        if let Some(pre) = value.get("preconditions") {
            options.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            options.precondition_rv = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(dry) = value.get("dryRun").and_then(Value::as_array) {
            for v in dry {
                match v.as_str() {
                    Some("All") => options.dry_run = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {other:?}: supported values: \"All\""
                        )))
                    }
                }
            }
        }
    }
    if let Some(g) = call.query.seconds("gracePeriodSeconds")? {
        options.grace_period = Some(g);
    }
    // Agents turn the grace period into a deadline (`now + grace`): keep it bounded.
    options.grace_period = options.grace_period.map(crate::query::clamp_seconds);
    if let Some(p) = call.query.non_empty("propagationPolicy") {
        options.propagation = Some(parse_propagation(p)?);
    }
    if call.query.flag("orphanDependents")? && options.propagation.is_none() {
        options.propagation = Some(Propagation::Orphan);
    }
    if options.grace_period.is_some_and(|g| g < 0) {
        return Err(ApiError::invalid(
            Subject { group: "meta.k8s.io", kind: "DeleteOptions", name: "" },
            "DeleteOptions.meta.k8s.io \"\" is invalid: gracePeriodSeconds: Invalid value: must be greater than or equal to 0".into(),
            Vec::new(),
        ));
    }
    Ok(options)
}

fn int_field(value: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match value.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("DeleteOptions.{field} must be an integer, not {v}"))
        }),
    }
}

fn parse_propagation(value: &str) -> Result<Propagation, ApiError> {
    match value {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// DELETE of one object.
pub(super) async fn delete(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let options = delete_options(call, body).await?;
    let info = call.info();
    if info.group.is_empty()
        && info.kind == "Namespace"
        && UNDELETABLE_NAMESPACES.contains(&call.name())
    {
        return Err(ApiError::forbidden(format!(
            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
            call.name()
        ))
        .about(call.subject(call.name())));
    }
    let outcome = delete_object(&call.api, info, &call.key(), &options).await?;
    Ok(render::json_bytes(StatusCode::OK, outcome.to_string()))
}

/// Deletes (or starts deleting) the object at `key` as `options` say; returns the object's
/// last state (deleted) or its new state (deletion pending).
pub(super) async fn delete_object(
    api: &ApiServer,
    info: &'static ResourceInfo,
    key: &Key,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let subject = Subject {
        group: info.group,
        kind: info.plural,
        name: &key.name,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let stored = api
            .store()
            .get(key)
            .ok_or_else(|| ApiError::not_found(subject))?;
        let current = parse_stored(&stored)?;
        let uid = meta_str(&current, "uid").unwrap_or_default().to_string();
        if let Some(want) = &options.precondition_uid {
            if *want != uid {
                return Err(ApiError::conflict(
                    subject,
                    &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
                ));
            }
        }
        if let Some(want) = &options.precondition_rv {
            let have = meta_str(&current, "resourceVersion").unwrap_or_default();
            if want != have {
                return Err(ApiError::conflict(
                    subject,
                    &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {have}"),
                ));
            }
        }
        let plan = plan(info, &current, options);
        let result = match plan {
            Plan::Remove => {
                if options.dry_run {
                    return Ok(current);
                }
                api.store()
                    .delete(
                        key,
                        Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: Some(stored.revision()),
                        },
                    )
                    .await
                    .map(|deleted| parse_stored(&deleted))
            }
            Plan::Unchanged => return Ok(current),
            Plan::Mark(marked) => {
                if options.dry_run {
                    return Ok(marked);
                }
                api.store()
                    .update(key, marked)
                    .await
                    .map(|o| parse_stored(&o))
            }
        };
        match result {
            Ok(value) => return value,
            Err(skiff_store::StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(super::write_error(api, info, e)),
        }
    }
}

enum Plan {
    /// Remove the object from the store now.
    Remove,
    /// Store this state (deletionTimestamp, finalizers, grace period) and keep the object.
    Mark(Value),
    /// Deletion is already under way and nothing changes.
    Unchanged,
}

fn plan(info: &ResourceInfo, current: &Value, options: &DeleteOptions) -> Plan {
    let is_pod = info.group.is_empty() && info.kind == "Pod";
    let is_namespace = info.group.is_empty() && info.kind == "Namespace";
    let grace = if is_pod {
        pod_grace(current, options.grace_period)
    } else {
        0
    };
    let mut finalizers = objects::finalizers(current);
    let mut changed_finalizers = false;
    let (add, remove) = match options.propagation {
        Some(Propagation::Orphan) => (Some(ORPHAN_FINALIZER), Some(FOREGROUND_FINALIZER)),
        Some(Propagation::Foreground) => (Some(FOREGROUND_FINALIZER), Some(ORPHAN_FINALIZER)),
        Some(Propagation::Background) => (None, Some(ORPHAN_FINALIZER)),
        None => (None, None),
    };
    if !objects::is_deleting(current) {
        if let Some(remove) = remove {
            let before = finalizers.len();
            finalizers.retain(|f| f != remove);
            changed_finalizers |= before != finalizers.len();
        }
        if let Some(add) = add {
            if !finalizers.iter().any(|f| f == add) {
                finalizers.push(add.to_string());
                changed_finalizers = true;
            }
        }
    }
    let spec_finalizers = is_namespace
        && current["spec"]["finalizers"]
            .as_array()
            .is_some_and(|l| !l.is_empty());
    if objects::is_deleting(current) {
        // Already being deleted: only a shorter grace period (or the node's final 0) matters.
        let existing = objects::deletion_grace(current).unwrap_or(0);
        if finalizers.is_empty() && !spec_finalizers && grace == 0 {
            return Plan::Remove;
        }
        if grace < existing {
            let mut marked = current.clone();
            objects::set_meta(
                &mut marked,
                "deletionTimestamp",
                json!(objects::timestamp(grace)),
            );
            objects::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
            return Plan::Mark(marked);
        }
        return Plan::Unchanged;
    }
    if finalizers.is_empty() && grace == 0 && !spec_finalizers {
        return Plan::Remove;
    }
    let mut marked = current.clone();
    objects::set_meta(
        &mut marked,
        "deletionTimestamp",
        json!(objects::timestamp(grace)),
    );
    objects::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
    if changed_finalizers {
        objects::set_meta(&mut marked, "finalizers", json!(finalizers));
    }
    if is_namespace {
        marked["status"]["phase"] = json!("Terminating");
    }
    Plan::Mark(marked)
}

/// The grace period of a pod's deletion: 0 when it never reached a node or has finished;
/// else the request's, or the pod's `terminationGracePeriodSeconds`, or 30.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(DEFAULT_POD_GRACE)
        .clamp(0, crate::query::MAX_DURATION_SECONDS)
}

/// DELETE of a collection: deletes every object matching the selectors, returns them.
pub(super) async fn delete_collection(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let options = delete_options(call, body).await?;
    let list_options = ListOptions {
        label_selector: label_selector(&call.query)?,
        field_selector: field_selector(&call.query)?,
        ..ListOptions::default()
    };
    let page = call
        .api
        .store()
        .list(&info.storage_name(), call.namespace(), &list_options)
        .map_err(|e| call.store_error(e))?;
    let mut items = Vec::with_capacity(page.items.len());
    for object in &page.items {
        match delete_object(&call.api, info, object.key(), &options).await {
            Ok(value) => items.push(value),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": info.list_kind,
        "apiVersion": info.api_version(),
        "metadata": {"resourceVersion": call.api.store().revision().to_string()},
        "items": items,
    });
    Ok(render::json_value(StatusCode::OK, &list))
}
