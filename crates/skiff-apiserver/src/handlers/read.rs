//! get and list.

use axum::body::Body;
use http::{Response, StatusCode};
use skiff_store::{FieldSelector, LabelSelector, ListOptions, ResourceVersionMatch};

use super::Call;
use crate::query::Query;
use crate::{negotiate, render, ApiError};

/// GET of one object (or its status, which is the whole object as upstream).
pub(super) fn get(call: &Call) -> Result<Response<Body>, ApiError> {
    let output = negotiate::output(&call.headers)?;
    let key = call.key();
    let object = call
        .api
        .store()
        .get(&key)
        .ok_or_else(|| ApiError::not_found(call.subject(&key.name)))?;
    render::object(
        StatusCode::OK,
        call.info(),
        object.json(),
        output,
        &call.query,
    )
}

/// Parses `labelSelector` (400 naming the bad part).
pub(crate) fn label_selector(query: &Query) -> Result<Option<LabelSelector>, ApiError> {
    query
        .non_empty("labelSelector")
        .map(|s| {
            LabelSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid labelSelector {s:?}: {e}")))
        })
        .transpose()
}

/// Parses `fieldSelector` (400 naming the bad part).
pub(crate) fn field_selector(query: &Query) -> Result<Option<FieldSelector>, ApiError> {
    query
        .non_empty("fieldSelector")
        .map(|s| {
            FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid fieldSelector {s:?}: {e}")))
        })
        .transpose()
}

/// Parses `resourceVersion`: absent or empty → None; otherwise a decimal revision.
pub(super) fn resource_version(query: &Query) -> Result<Option<u64>, ApiError> {
    match query.non_empty("resourceVersion") {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resourceVersion {v:?}: must be a decimal integer"
            ))
        }),
    }
}

/// List options from the query string, checked as upstream's `ValidateListOptions`.
pub(super) fn list_options(query: &Query) -> Result<ListOptions, ApiError> {
    let limit = query.integer("limit")?;
    if limit.is_some_and(|l| l < 0) {
        return Err(ApiError::bad_request(
            "limit: Invalid value: must be non-negative",
        ));
    }
    let resource_version = resource_version(query)?;
    let continue_token = query.non_empty("continue").map(str::to_string);
    let rv_match = match query.non_empty("resourceVersionMatch") {
        None => None,
        Some("NotOlderThan") => Some(ResourceVersionMatch::NotOlderThan),
        Some("Exact") => Some(ResourceVersionMatch::Exact),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
            )))
        }
    };
    if rv_match.is_some() && resource_version.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if rv_match == Some(ResourceVersionMatch::Exact) && resource_version == Some(0) {
        return Err(ApiError::bad_request(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        ));
    }
    if continue_token.is_some() && resource_version.is_some_and(|rv| rv != 0) {
        return Err(ApiError::bad_request(
            "resourceVersion: Forbidden: specifying resource version is not allowed when using continue",
        ));
    }
    // A plain resourceVersion on a list means "at least this revision" (legacy semantics
    // apply to rv=0 and unset: any/most recent; skiff always serves the latest state).
    let match_mode = rv_match.unwrap_or(ResourceVersionMatch::NotOlderThan);
    Ok(ListOptions {
        label_selector: label_selector(query)?,
        field_selector: field_selector(query)?,
        limit: limit.filter(|l| *l > 0).map(|l| l as usize),
        continue_token,
        resource_version,
        resource_version_match: match_mode,
    })
}

/// GET of a collection.
pub(super) fn list(call: &Call) -> Result<Response<Body>, ApiError> {
    let output = negotiate::output(&call.headers)?;
    let options = list_options(&call.query)?;
    let info = call.info();
    let page = call
        .api
        .store()
        .list(&info.storage_name(), call.namespace(), &options)
        .map_err(|e| call.store_error(e))?;
    render::list(info, &page, output, &call.query)
}
