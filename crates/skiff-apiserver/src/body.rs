//! Request bodies: size limit (413), decoding JSON or YAML (400 when malformed).

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::negotiate::BodyFormat;
use crate::ApiError;

/// Upstream's limit on request bodies (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub(crate) async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// Decodes a body as a JSON value (`format` from `Content-Type`). Empty or malformed → 400
/// with the parser's position.
pub(crate) fn decode(bytes: &[u8], format: BodyFormat) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match format {
        BodyFormat::Json => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        BodyFormat::Yaml => decode_yaml(bytes),
        BodyFormat::Protobuf => crate::protobuf::decode_body(bytes).map_err(|e| {
            ApiError::bad_request(format!("the protobuf request body cannot be decoded: {e}"))
        }),
    }
}

/// Decodes YAML (JSON is YAML too) into a JSON value.
pub(crate) fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not UTF-8: {e}")))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))
}

/// Decodes a body that must hold a JSON object (create, update, apply).
pub(crate) fn decode_object(bytes: &[u8], format: BodyFormat) -> Result<Value, ApiError> {
    let value = decode(bytes, format)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body must be an object, not {}",
            json_type(&value)
        )));
    }
    Ok(value)
}

/// The JSON type name of a value, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_errors_are_400_with_position() {
        let e = decode(b"{\"a\": ", BodyFormat::Json).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = decode_object(b"[1,2]", BodyFormat::Json).unwrap_err();
        assert!(e.message.contains("must be an object, not an array"));
        let v = decode_object(b"kind: Pod\nmetadata:\n  name: x\n", BodyFormat::Yaml).unwrap();
        assert_eq!(v["metadata"]["name"], "x");
        let e = decode(b"a: [", BodyFormat::Yaml).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(decode(b"  ", BodyFormat::Json).unwrap_err().code, 400);
    }
}
