//! Steps shared by the writing verbs: decoding bodies, type metadata, unknown fields,
//! validation errors, namespace lifecycle, system metadata on updates, warnings.

use axum::body::Body;
use http::{HeaderValue, Response};
use serde_json::{json, Value};
use skiff_store::Key;
use skiff_types::registry::ResourceInfo;
use skiff_types::validation::{self, DecodeError, ValidationErrors};

use super::Call;
use crate::negotiate;
use crate::objects::{self, meta_str};
use crate::query::FieldValidation;
use crate::status::{StatusCause, Subject};
use crate::{body, ApiError, ApiServer};

/// Decodes a create/update body (JSON or YAML by `Content-Type`) into an object.
pub(super) fn decode_body(call: &Call, bytes: &[u8]) -> Result<Value, ApiError> {
    let format = negotiate::body_format(&call.headers)?;
    body::decode_object(bytes, format)
}

/// Takes a body's missing `apiVersion` and `kind` from the URL, as upstream's decoder does
/// with the endpoint's default group, version and kind (create, update).
pub(super) fn default_type_meta(object: &mut Value, api_version: &str, kind: &str) {
    let Some(fields) = object.as_object_mut() else {
        return;
    };
    for (field, value) in [("apiVersion", api_version), ("kind", kind)] {
        let missing = match fields.get(field) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if missing {
            fields.insert(field.to_string(), json!(value));
        }
    }
}

/// Checks `apiVersion` and `kind` of a body against what the endpoint takes, as upstream's
/// decoder does (400 when missing or different).
pub(super) fn check_type_meta(
    object: &Value,
    api_version: &str,
    kind: &str,
) -> Result<(), ApiError> {
    let got_kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let got_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if got_kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in the request body (expected kind {kind:?})"
        )));
    }
    if got_version.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in the request body (expected apiVersion {api_version:?})"
        )));
    }
    if got_version != api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({got_version}) does not match the expected API version ({api_version})"
        )));
    }
    if got_kind != kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({got_kind}) does not match the expected kind ({kind})"
        )));
    }
    Ok(())
}

/// A decode error of upstream's form → 400.
pub(super) fn decode_error(error: DecodeError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

/// Type checks `object` (400 on wrong JSON types) and handles unknown fields as the
/// `fieldValidation` parameter says: Strict → 400; Warn → dropped, returned as warnings;
/// Ignore → dropped.
pub(super) fn check_fields(
    call: &Call,
    info: &ResourceInfo,
    object: &mut Value,
) -> Result<Vec<String>, ApiError> {
    validation::check_types(info, object).map_err(decode_error)?;
    let mode = call.query.field_validation()?;
    let unknown = validation::unknown_fields(info, object);
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        FieldValidation::Strict => Err(decode_error(validation::strict_error(info, &unknown))),
        FieldValidation::Warn => {
            validation::prune_unknown_fields(info, object);
            Ok(validation::unknown_field_warnings(&unknown))
        }
        FieldValidation::Ignore => {
            validation::prune_unknown_fields(info, object);
            Ok(Vec::new())
        }
    }
}

/// 422 Invalid from validation errors, with upstream's message and causes.
pub(super) fn invalid(info: &ResourceInfo, name: &str, errors: &ValidationErrors) -> ApiError {
    let causes = errors
        .causes()
        .into_iter()
        .map(|(reason, message, field)| StatusCause {
            reason: reason.to_string(),
            message,
            field,
        })
        .collect();
    ApiError::invalid(
        Subject {
            group: info.group,
            kind: info.kind,
            name,
        },
        errors.message(&info.qualified_kind(), name),
        causes,
    )
}

/// A single-field 422 (for checks the API server makes itself).
pub(super) fn invalid_field(
    info: &ResourceInfo,
    name: &str,
    field: &str,
    reason: &str,
    detail: String,
) -> ApiError {
    let message = format!(
        "{} \"{name}\" is invalid: {field}: {detail}",
        info.qualified_kind()
    );
    ApiError::invalid(
        Subject {
            group: info.group,
            kind: info.kind,
            name,
        },
        message,
        vec![StatusCause {
            reason: reason.to_string(),
            message: detail,
            field: field.to_string(),
        }],
    )
}

/// Adds upstream-style `Warning` headers.
pub(super) fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        let text = format!("299 - {}", Value::String(warning.clone()));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
    response
}

/// For creates in namespace `namespace`: it must exist (404) and not be terminating (403).
pub(super) fn check_namespace_open(api: &ApiServer, namespace: &str) -> Result<(), ApiError> {
    let key = Key::new("namespaces", None, namespace);
    let Some(ns) = api.store().get(&key) else {
        return Err(ApiError::not_found(Subject {
            group: "",
            kind: "namespaces",
            name: namespace,
        }));
    };
    let value: Value = serde_json::from_slice(ns.json()).unwrap_or(Value::Null);
    if objects::is_deleting(&value) {
        let mut error = ApiError::forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        ));
        error.details_mut().causes.push(StatusCause {
            reason: "NamespaceTerminating".into(),
            message: format!("namespace {namespace} is being terminated"),
            field: "metadata.namespace".into(),
        });
        return Err(error.about(Subject {
            group: "",
            kind: "namespaces",
            name: namespace,
        }));
    }
    Ok(())
}

/// Fills in or checks `metadata.namespace` against the URL (400 when they differ) and
/// `metadata.name` against the URL on updates.
pub(super) fn check_namespace_and_name(
    call: &Call,
    object: &mut Value,
    url_name: Option<&str>,
) -> Result<(), ApiError> {
    let info = call.info();
    if info.namespaced {
        let url_ns = call.namespace().unwrap_or_default();
        match meta_str(object, "namespace") {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => objects::set_meta(object, "namespace", json!(url_ns)),
        }
    } else if meta_str(object, "namespace").is_some_and(|ns| !ns.is_empty()) {
        // Upstream clears the namespace of cluster-scoped objects.
        objects::remove_meta(object, "namespace");
    }
    if let Some(url_name) = url_name {
        match meta_str(object, "name") {
            Some(name) if !name.is_empty() && name != url_name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({url_name})"
                )))
            }
            _ => objects::set_meta(object, "name", json!(url_name)),
        }
    }
    Ok(())
}

/// System metadata an update cannot change, carried over from the stored object as
/// upstream's `BeforeUpdate` does: creationTimestamp, generation (the store bumps it),
/// deletionTimestamp and deletionGracePeriodSeconds; uid when the client sent none.
pub(super) fn carry_system_metadata(old: &Value, new: &mut Value) {
    for field in [
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.get("metadata").and_then(|m| m.get(field)) {
            Some(v) => objects::set_meta(new, field, v.clone()),
            None => {
                objects::remove_meta(new, field);
            }
        }
    }
    if meta_str(new, "uid").is_none_or(str::is_empty) {
        if let Some(uid) = old.get("metadata").and_then(|m| m.get("uid")) {
            objects::set_meta(new, "uid", uid.clone());
        }
    }
}

/// The stored object `key`, decoded.
pub(super) fn load(call: &Call, key: &Key) -> Result<(Value, u64), ApiError> {
    let stored = call
        .api
        .store()
        .get(key)
        .ok_or_else(|| ApiError::not_found(call.subject(&key.name)))?;
    let value = serde_json::from_slice(stored.json())
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))?;
    Ok((value, stored.revision()))
}

/// Whether an update that leaves the object with a deletion timestamp, no finalizers and a
/// zero grace period should delete it (upstream `ShouldDeleteDuringUpdate`).
pub(super) fn should_delete_after_update(old: &Value, new: &Value) -> bool {
    objects::is_deleting(old)
        && !objects::finalizers(old).is_empty()
        && objects::finalizers(new).is_empty()
        && objects::deletion_grace(old).unwrap_or(0) == 0
}
