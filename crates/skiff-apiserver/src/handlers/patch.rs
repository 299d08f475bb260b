//! PATCH: JSON patch, JSON merge patch, strategic merge patch and server-side apply, on objects and their status. The patched object then goes through the same update
//! path as a PUT (strategy, defaults, validation, optimistic concurrency). Patches that do not
//! pin a resourceVersion are retried when another write slips in between, as upstream.

use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::Value;
use skiff_types::patch::{self, PatchError};
use skiff_types::registry::ResourceInfo;

use super::meta::{self, check_fields};
use super::write::{self, Part};
use super::Call;
use crate::apply::Ownership;
use crate::negotiate::{self, PatchKind};
use crate::objects::meta_str;
use crate::{body, render, ApiError};

/// Attempts before a patch gives up on concurrent writers.
const MAX_ATTEMPTS: usize = 8;

/// Decodes a patch body: JSON for the three patch kinds, YAML (or JSON) for apply.
pub(super) fn decode_patch(kind: PatchKind, bytes: &[u8]) -> Result<Value, ApiError> {
    let value = match kind {
        PatchKind::Apply => body::decode_yaml(bytes)?,
        _ => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "error decoding patch: the patch is not valid JSON: {e}"
            ))
        })?,
    };
    match (kind, &value) {
        (PatchKind::Json, Value::Array(_)) => Ok(value),
        (PatchKind::Json, other) => Err(ApiError::bad_request(format!(
            "error decoding patch: a JSON patch must be an array of operations, not {}",
            body::json_type(other)
        ))),
        (_, Value::Object(_)) => Ok(value),
        (_, other) => Err(ApiError::bad_request(format!(
            "error decoding patch: the patch must be a JSON object, not {}",
            body::json_type(other)
        ))),
    }
}

/// Applies a patch of `kind` to `current`. `max_bytes` (the request body limit) bounds what
/// a patch may grow: the bytes JSON patch `copy` operations duplicate (upstream's
/// `AccumulatedCopySizeLimit`), and the patched object itself (413), so repeated patches
/// cannot grow an object past what a create could have sent.
pub(super) fn apply_patch(
    info: &ResourceInfo,
    kind: PatchKind,
    current: &Value,
    patch: &Value,
    max_bytes: usize,
) -> Result<Value, ApiError> {
    let result = match kind {
        PatchKind::Json => patch::json_patch_limited(current, patch, max_bytes),
        PatchKind::Merge => Ok(patch::json_merge_patch(current, patch)),
        PatchKind::Strategic | PatchKind::Apply => patch::strategic_merge(info, current, patch),
    };
    let patched = result.map_err(patch_error)?;
    let size = patch::encoded_len(&patched);
    if size > max_bytes {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: the patched object is {size} bytes, limit is {max_bytes}"
            ),
        ));
    }
    Ok(patched)
}

fn patch_error(error: PatchError) -> ApiError {
    match error.status_code() {
        422 => ApiError::new(422, "Invalid", error.to_string()),
        413 => ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: {error}"),
        ),
        _ => ApiError::bad_request(error.to_string()),
    }
}

/// Whether the patch itself sets `metadata.resourceVersion` (a precondition: no retries).
fn pins_resource_version(kind: PatchKind, patch: &Value) -> bool {
    match kind {
        PatchKind::Json => patch.as_array().is_some_and(|ops| {
            ops.iter().any(|op| {
                op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
            })
        }),
        _ => patch
            .get("metadata")
            .and_then(|m| m.get("resourceVersion"))
            .is_some_and(|rv| !rv.is_null()),
    }
}

/// PATCH of an object or its status.
pub(super) async fn patch(call: &Call, body: Body) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let output = negotiate::output(&call.headers)?;
    let kind = negotiate::patch_kind(&call.headers)?;
    let bytes = body::read(&call.headers, body, call.api.config().max_body_bytes).await?;
    let dry_run = call.query.dry_run()?;
    let patch = decode_patch(kind, &bytes)?;
    let part = Part::of(call.request.subresource.as_deref());
    if kind == PatchKind::Apply {
        return apply(call, patch, part, dry_run, output).await;
    }
    let pinned = pins_resource_version(kind, &patch);
    let key = call.key();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (current, _) = meta::load(call, &key)?;
        let mut patched = apply_patch(
            info,
            kind,
            &current,
            &patch,
            call.api.config().max_body_bytes,
        )?;
        if !patched.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        meta::check_type_meta(&patched, &info.api_version(), info.kind)?;
        let warnings = check_fields(call, info, &mut patched)?;
        meta::check_namespace_and_name(call, &mut patched, Some(call.name()))?;
        call.admit(&patched)?;
        let ownership = call.ownership();
        match write::update_object(
            &call.api, info, &key, &current, patched, part, dry_run, ownership,
        )
        .await
        {
            Err(e) if e.reason == "Conflict" && !pinned && attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(e),
            Ok(updated) => {
                let response = render::object_value(
                    StatusCode::OK,
                    info,
                    &updated.object,
                    output,
                    &call.query,
                )?;
                return Ok(meta::with_warnings(response, &warnings));
            }
        }
    }
}

/// Server-side apply (upstream's field manager): the applied configuration is merged into
/// the live object (created when absent) with structured-merge-diff semantics, the manager's
/// `Apply` entry becomes the configuration's fields, fields it stopped applying are removed
/// unless another manager owns them, and changing another manager's field is a 409 conflict
/// unless `force=true` (see [`crate::apply`]).
async fn apply(
    call: &Call,
    mut applied: Value,
    part: Part,
    dry_run: bool,
    output: negotiate::Output,
) -> Result<Response<Body>, ApiError> {
    let info = call.info();
    let Some(manager) = call.query.non_empty("fieldManager") else {
        return Err(ApiError::invalid(
            call.subject(""),
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into(),
            vec![crate::StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }],
        ));
    };
    let force = call.query.flag("force")?;
    let subresource = call.request.subresource.as_deref().unwrap_or_default();
    meta::check_type_meta(&applied, &info.api_version(), info.kind)?;
    meta::check_namespace_and_name(call, &mut applied, Some(call.name()))?;
    call.admit(&applied)?;
    if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
        for system in ["uid", "creationTimestamp", "generation"] {
            meta.remove(system);
        }
    }
    let pinned = meta_str(&applied, "resourceVersion").is_some_and(|rv| !rv.is_empty());
    let key = call.key();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(stored) = call.api.store().get(&key) else {
            if part == Part::Status {
                return Err(ApiError::not_found(call.subject(&key.name)));
            }
            let mut object =
                crate::apply::apply(info, None, applied.clone(), manager, subresource, force)?;
            let warnings = check_fields(call, info, &mut object)?;
            let created = write::create_object(
                &call.api,
                info,
                call.namespace(),
                object,
                dry_run,
                Ownership::Recorded,
            )
            .await;
            match created {
                Err(e) if e.reason == "AlreadyExists" && attempt < MAX_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok(created) => {
                    let response =
                        created.respond(StatusCode::CREATED, info, output, &call.query)?;
                    return Ok(meta::with_warnings(response, &warnings));
                }
            }
        };
        let current = write::parse_stored(&stored)?;
        let mut patched = crate::apply::apply(
            info,
            Some(&current),
            applied.clone(),
            manager,
            subresource,
            force,
        )?;
        let size = skiff_types::patch::encoded_len(&patched);
        let max_bytes = call.api.config().max_body_bytes;
        if size > max_bytes {
            return Err(ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!(
                    "Request entity too large: the patched object is {size} bytes, limit is {max_bytes}"
                ),
            ));
        }
        let warnings = check_fields(call, info, &mut patched)?;
        match write::update_object(
            &call.api,
            info,
            &key,
            &current,
            patched,
            part,
            dry_run,
            Ownership::Recorded,
        )
        .await
        {
            Err(e) if e.reason == "Conflict" && !pinned && attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(e),
            Ok(updated) => {
                let response = render::object_value(
                    StatusCode::OK,
                    info,
                    &updated.object,
                    output,
                    &call.query,
                )?;
                return Ok(meta::with_warnings(response, &warnings));
            }
        }
    }
}
