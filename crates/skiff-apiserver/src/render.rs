//! Responses carrying objects, lists and tables, built from the stored JSON bytes without
//! re-encoding where possible.

use axum::body::Body;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use skiff_store::ListPage;
use skiff_types::registry::ResourceInfo;
use skiff_types::table::{self, IncludeObject};

use crate::negotiate::{Output, TableVersion};
use crate::query::Query;
use crate::ApiError;

/// A JSON response with `code` and `body`.
pub(crate) fn json_bytes(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON response with `code` and `value`.
pub(crate) fn json_value(code: StatusCode, value: &Value) -> Response<Body> {
    json_bytes(code, value.to_string())
}

/// `includeObject` for tables (default Metadata); invalid → 400.
pub(crate) fn include_object(query: &Query) -> Result<IncludeObject, ApiError> {
    match query.non_empty("includeObject") {
        None => Ok(IncludeObject::Metadata),
        Some(v) => IncludeObject::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "includeObject: unsupported value {v:?}: supported values: \"None\", \"Metadata\", \"Object\""
            ))
        }),
    }
}

fn table_value(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
    version: TableVersion,
) -> Value {
    let mut t = table::table(info, objects, list_meta, include);
    t["apiVersion"] = json!(version.api_version());
    t
}

/// `PartialObjectMetadata` of an object.
pub(crate) fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// One object in the representation the client asked for.
pub(crate) fn object(
    code: StatusCode,
    info: &ResourceInfo,
    bytes: &[u8],
    output: Output,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    match output {
        Output::Json => Ok(json_bytes(code, Bytes::copy_from_slice(bytes))),
        Output::Table(version) => {
            let value = parse(bytes)?;
            let rv = value
                .get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .cloned()
                .unwrap_or(Value::Null);
            let t = table_value(
                info,
                std::slice::from_ref(&value),
                json!({"resourceVersion": rv}),
                include_object(query)?,
                version,
            );
            Ok(json_value(code, &t))
        }
        Output::Metadata => Ok(json_value(code, &partial_metadata(&parse(bytes)?))),
    }
}

/// An object response from a value (results of writes).
pub(crate) fn object_value(
    code: StatusCode,
    info: &ResourceInfo,
    value: &Value,
    output: Output,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    match output {
        Output::Json => Ok(json_value(code, value)),
        _ => object(code, info, value.to_string().as_bytes(), output, query),
    }
}

fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}")))
}

fn list_meta(page: &ListPage) -> Value {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = &page.continue_token {
        meta["continue"] = json!(token);
    }
    if let Some(n) = page.remaining_item_count {
        meta["remainingItemCount"] = json!(n);
    }
    meta
}

/// A list page in the representation the client asked for.
pub(crate) fn list(
    info: &ResourceInfo,
    page: &ListPage,
    output: Output,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    match output {
        Output::Json => Ok(json_bytes(StatusCode::OK, list_json(info, page))),
        Output::Table(version) => {
            let objects = page
                .items
                .iter()
                .map(|o| parse(o.json()))
                .collect::<Result<Vec<_>, _>>()?;
            let t = table_value(
                info,
                &objects,
                list_meta(page),
                include_object(query)?,
                version,
            );
            Ok(json_value(StatusCode::OK, &t))
        }
        Output::Metadata => {
            let items = page
                .items
                .iter()
                .map(|o| parse(o.json()).map(|v| partial_metadata(&v)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json_value(
                StatusCode::OK,
                &json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta(page),
                    "items": items,
                }),
            ))
        }
    }
}

/// `{"kind":"PodList","apiVersion":"v1","metadata":{...},"items":[...]}` from stored bytes.
pub(crate) fn list_json(info: &ResourceInfo, page: &ListPage) -> Bytes {
    let size: usize = page.items.iter().map(|o| o.json().len() + 1).sum();
    let mut out = BytesMut::with_capacity(size + 256);
    out.put_slice(b"{\"kind\":");
    out.put_slice(json!(info.list_kind).to_string().as_bytes());
    out.put_slice(b",\"apiVersion\":");
    out.put_slice(json!(info.api_version()).to_string().as_bytes());
    out.put_slice(b",\"metadata\":");
    out.put_slice(list_meta(page).to_string().as_bytes());
    out.put_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(item.json());
    }
    out.put_slice(b"]}");
    out.freeze()
}
