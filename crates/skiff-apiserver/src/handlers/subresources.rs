//! Subresources other than status: `scale` (autoscaling/v1 Scale), pod `binding`, pod
//! `eviction` (pod `log` and `exec` are in `node`).

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::{json, Value};
use skiff_store::StoreError;
use skiff_types::validation;

use super::delete::{delete_object, DeleteOptions};
use super::meta;
use super::patch::{apply_patch, decode_patch};
use super::write::{self, Part};
use super::Call;
use crate::negotiate::{self, PatchKind};
use crate::objects::{meta_str, selector_string};
use crate::status::success_status;
use crate::{body, render, ApiError, Subject};

const MAX_ATTEMPTS: usize = 8;

/// The Scale of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(field) {
            metadata[field] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(object["spec"].get("selector")),
        },
    })
}

/// GET `.../scale`.
pub(super) fn get_scale(call: &Call) -> Result<Response<Body>, ApiError> {
    let (object, _) = meta::load(call, &call.key())?;
    Ok(render::json_value(StatusCode::OK, &scale_of(&object)))
}

/// PUT `.../scale`.
pub(super) async fn update_scale(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let mut scale = meta::decode_body(call, &bytes)?;
    meta::default_type_meta(&mut scale, "autoscaling/v1", "Scale");
    meta::check_type_meta(&scale, "autoscaling/v1", "Scale")?;
    validation::check_types_of("autoscaling/v1", "Scale", &scale).map_err(meta::decode_error)?;
    if meta_str(&scale, "name").is_some_and(|n| !n.is_empty() && n != call.name()) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            meta_str(&scale, "name").unwrap_or_default(),
            call.name()
        )));
    }
    apply_scale(call, |_| Ok(scale.clone())).await
}

/// PATCH `.../scale`: the patch applies to the Scale, whose replicas then go to the parent.
pub(super) async fn patch_scale(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let kind = negotiate::patch_kind(&call.headers)?;
    if kind == PatchKind::Apply {
        return Err(ApiError::unsupported_media_type(
            "server-side apply is not supported on the scale subresource; use a merge patch",
        ));
    }
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let patch = decode_patch(kind, &bytes)?;
    let info = call.info();
    let max_bytes = call.api.config().max_body_bytes;
    apply_scale(call, move |current| {
        // Scale has no merge-keyed lists: a strategic merge patch is a merge patch here.
        let kind = if kind == PatchKind::Strategic {
            PatchKind::Merge
        } else {
            kind
        };
        apply_patch(info, kind, current, &patch, max_bytes)
    })
    .await
}

/// Reads the Scale, lets `change` produce the new one, writes its replicas to the parent.
async fn apply_scale(
    call: &Call,
    change: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let key = call.key();
    let dry_run = call.query.dry_run()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (parent, _) = meta::load(call, &key)?;
        let current = scale_of(&parent);
        let new = change(&current)?;
        validation::check_types_of("autoscaling/v1", "Scale", &new).map_err(meta::decode_error)?;
        let replicas = match new["spec"].get("replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!("Scale.spec.replicas must be an integer, not {v}"))
            })?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                Subject { group: "autoscaling", kind: "Scale", name: call.name() },
                format!("Scale.autoscaling \"{}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0", call.name()),
                vec![crate::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        let pinned = meta_str(&new, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        let mut updated = parent.clone();
        updated["spec"]["replicas"] = json!(replicas);
        if let Some(rv) = &pinned {
            updated["metadata"]["resourceVersion"] = json!(rv);
        }
        match write::update_object(
            &call.api,
            info,
            &key,
            &parent,
            updated,
            Part::Main,
            dry_run,
            call.ownership(),
        )
        .await
        {
            Err(e) if e.reason == "Conflict" && pinned.is_none() && attempt < MAX_ATTEMPTS => {
                continue
            }
            Err(e) => return Err(e),
            Ok(result) => {
                return Ok(render::json_value(
                    StatusCode::OK,
                    &scale_of(&result.object),
                ))
            }
        }
    }
}

/// POST `pods/{name}/binding`: assigns the pod to a node (sets `spec.nodeName` and the
/// `PodScheduled` condition), once.
pub(super) async fn binding(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let mut binding = meta::decode_body(call, &bytes)?;
    meta::default_type_meta(&mut binding, "v1", "Binding");
    meta::check_type_meta(&binding, "v1", "Binding")?;
    validation::check_types_of("v1", "Binding", &binding).map_err(meta::decode_error)?;
    let name = call.name().to_string();
    if meta_str(&binding, "name").is_some_and(|n| !n.is_empty() && n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta_str(&binding, "name").unwrap_or_default()
        )));
    }
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    let binding_subject = Subject {
        group: "",
        kind: "Binding",
        name: &name,
    };
    if node.is_empty() {
        return Err(ApiError::invalid(
            binding_subject,
            format!("Binding \"{name}\" is invalid: target.name: Required value"),
            vec![crate::StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let target_kind = binding["target"]["kind"].as_str().unwrap_or("Node");
    if !target_kind.is_empty() && target_kind != "Node" {
        return Err(ApiError::invalid(
            binding_subject,
            format!("Binding \"{name}\" is invalid: target.kind: Unsupported value: {target_kind:?}: supported values: \"Node\""),
            Vec::new(),
        ));
    }
    let dry_run = call.query.dry_run()?;
    let key = call.key();
    let conflict_subject = Subject {
        group: "",
        kind: "pods/binding",
        name: &name,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut pod, _) = meta::load(call, &key)?;
        if let Some(uid) = binding["metadata"]["uid"]
            .as_str()
            .filter(|u| !u.is_empty())
        {
            if meta_str(&pod, "uid") != Some(uid) {
                return Err(ApiError::conflict(
                    conflict_subject,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&pod, "uid").unwrap_or_default()
                    ),
                ));
            }
        }
        if crate::objects::is_deleting(&pod) {
            return Err(ApiError::conflict(
                conflict_subject,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(
                conflict_subject,
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        set_scheduled_condition(&mut pod);
        if dry_run {
            return Ok(render::json_value(
                StatusCode::CREATED,
                &success_status(binding_subject, None),
            ));
        }
        match call.api.store().update(&key, pod).await {
            Ok(_) => {
                return Ok(render::json_value(
                    StatusCode::CREATED,
                    &success_status(binding_subject, None),
                ))
            }
            Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(call.store_error(e)),
        }
    }
}

fn set_scheduled_condition(pod: &mut Value) {
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": crate::objects::timestamp(0),
    });
    let status = &mut pod["status"];
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = &mut status["conditions"];
    match conditions.as_array_mut() {
        Some(list) => {
            list.retain(|c| c["type"] != "PodScheduled");
            list.push(condition);
        }
        None => *conditions = json!([condition]),
    }
}

/// POST `pods/{name}/eviction`: deletes the pod as its DeleteOptions say (no disruption
/// budgets are served, so evictions are always allowed).
pub(super) async fn eviction(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let mut eviction = meta::decode_body(call, &bytes)?;
    meta::default_type_meta(&mut eviction, "policy/v1", "Eviction");
    meta::check_type_meta(&eviction, "policy/v1", "Eviction")?;
    validation::check_types_of("policy/v1", "Eviction", &eviction).map_err(meta::decode_error)?;
    let opts = &eviction["deleteOptions"];
    let options = DeleteOptions {
        grace_period: opts["gracePeriodSeconds"].as_i64(),
        precondition_uid: opts["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_rv: opts["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run: call.query.dry_run()?,
        ..DeleteOptions::default()
    };
    let deleted = delete_object(&call.api, call.info(), &call.key(), &options).await?;
    Ok(render::json_value(
        StatusCode::CREATED,
        &success_status(
            Subject {
                group: "policy",
                kind: "Eviction",
                name: call.name(),
            },
            meta_str(&deleted, "uid"),
        ),
    ))
}
