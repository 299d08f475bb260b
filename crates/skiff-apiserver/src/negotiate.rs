//! Content negotiation: which representation a client accepts (`Accept`), and what a request
//! body is (`Content-Type`).

use http::HeaderMap;

use crate::ApiError;

/// A parsed media type: `application/json;as=Table;v=v1;g=meta.k8s.io`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaType {
    /// `application/json` (lower case, no parameters).
    pub essence: String,
    /// Parameters, names lower case.
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// Parses one media type; `None` if it has no `/`.
    pub(crate) fn parse(text: &str) -> Option<MediaType> {
        let mut parts = text.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        if !essence.contains('/') {
            return None;
        }
        let params = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                ))
            })
            .collect();
        Some(MediaType { essence, params })
    }

    /// The value of parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Representations of objects the server can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The object (or list) as JSON.
    Json,
    /// A `meta.k8s.io` `Table` of the given version (`v1` or `v1beta1`).
    Table(TableVersion),
    /// `PartialObjectMetadata` (or its list), `meta.k8s.io/v1`.
    Metadata,
}

/// Version of `meta.k8s.io` tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableVersion {
    /// `meta.k8s.io/v1`.
    V1,
    /// `meta.k8s.io/v1beta1`.
    V1beta1,
}

impl TableVersion {
    /// `apiVersion` of the table.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            TableVersion::V1 => "meta.k8s.io/v1",
            TableVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

const JSON_TYPES: &[&str] = &["application/json", "application/*", "*/*"];

/// Chooses the representation from `Accept`, in the client's order of preference. No header or
/// an empty one means JSON. Only protobuf or other unknown types → 406.
pub(crate) fn output(headers: &HeaderMap) -> Result<Output, ApiError> {
    let values: Vec<&str> = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.iter().all(|v| v.trim().is_empty()) {
        return Ok(Output::Json);
    }
    for offer in values.iter().flat_map(|v| v.split(',')) {
        let Some(media) = MediaType::parse(offer) else {
            continue;
        };
        if !JSON_TYPES.contains(&media.essence.as_str()) {
            continue;
        }
        match (media.param("as"), media.param("g"), media.param("v")) {
            (None, _, _) => return Ok(Output::Json),
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => {
                return Ok(Output::Table(TableVersion::V1))
            }
            (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                return Ok(Output::Table(TableVersion::V1beta1))
            }
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1"),
            ) => return Ok(Output::Metadata),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io (asked for {})",
        values.join(",")
    )))
}

/// Whether the client accepts plain JSON (used by endpoints with one representation).
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let mut any = false;
    for value in headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for offer in value.split(',') {
            if offer.trim().is_empty() {
                continue;
            }
            any = true;
            if let Some(media) = MediaType::parse(offer) {
                if JSON_TYPES.contains(&media.essence.as_str()) && media.param("as").is_none() {
                    return true;
                }
            }
        }
    }
    !any
}

/// What a request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/vnd.kubernetes.protobuf` (kubectl 1.32+ typed-client writes).
    Protobuf,
}

/// Patch kinds, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; JSON is YAML).
    Apply,
}

fn content_type(headers: &HeaderMap) -> Option<MediaType> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(MediaType::parse)
}

fn content_type_text(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The format of a create/update body; unknown types → 415. No or an empty `Content-Type` is
/// JSON: upstream then takes the first supported media type.
pub(crate) fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    if content_type_text(headers).trim().is_empty() {
        return Ok(BodyFormat::Json);
    }
    match content_type(headers).map(|m| m.essence) {
        Some(e) if e == "application/json" => Ok(BodyFormat::Json),
        Some(e) if e == "application/yaml" || e == "application/x-yaml" => Ok(BodyFormat::Yaml),
        Some(e) if e == "application/vnd.kubernetes.protobuf" => Ok(BodyFormat::Protobuf),
        _ => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({:?}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
            content_type_text(headers)
        ))),
    }
}

/// The kind of a PATCH body; other types → 415 naming the accepted ones.
pub(crate) fn patch_kind(headers: &HeaderMap) -> Result<PatchKind, ApiError> {
    match content_type(headers).map(|m| m.essence).as_deref() {
        Some("application/json-patch+json") => Ok(PatchKind::Json),
        Some("application/merge-patch+json") => Ok(PatchKind::Merge),
        Some("application/strategic-merge-patch+json") => Ok(PatchKind::Strategic),
        Some("application/apply-patch+yaml") => Ok(PatchKind::Apply),
        _ => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
            content_type_text(headers)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn kubectl_get_asks_for_tables() {
        let h = accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json");
        assert_eq!(output(&h).unwrap(), Output::Table(TableVersion::V1));
        let h = accept("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json");
        assert_eq!(output(&h).unwrap(), Output::Table(TableVersion::V1beta1));
    }

    #[test]
    fn protobuf_falls_back_to_json_or_406() {
        let h = accept("application/vnd.kubernetes.protobuf, */*");
        assert_eq!(output(&h).unwrap(), Output::Json);
        let h = accept("application/vnd.kubernetes.protobuf");
        assert_eq!(output(&h).unwrap_err().code, 406);
        assert_eq!(output(&HeaderMap::new()).unwrap(), Output::Json);
    }

    #[test]
    fn metadata_and_unknown_as() {
        let h = accept("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io");
        assert_eq!(output(&h).unwrap(), Output::Metadata);
        let h = accept("application/json;as=Whatever;v=v1;g=meta.k8s.io,application/json");
        assert_eq!(output(&h).unwrap(), Output::Json);
    }

    #[test]
    fn body_types() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(body_format(&h).unwrap(), BodyFormat::Json);
        h.insert(
            http::header::CONTENT_TYPE,
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        assert_eq!(body_format(&h).unwrap(), BodyFormat::Protobuf);
        h.insert(
            http::header::CONTENT_TYPE,
            "application/cbor".parse().unwrap(),
        );
        let e = body_format(&h).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("application/cbor"));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/strategic-merge-patch+json".parse().unwrap(),
        );
        assert_eq!(patch_kind(&h).unwrap(), PatchKind::Strategic);
        h.remove(http::header::CONTENT_TYPE);
        assert_eq!(patch_kind(&h).unwrap_err().code, 415);
        assert_eq!(
            body_format(&h).unwrap(),
            BodyFormat::Json,
            "no Content-Type"
        );
        h.insert(http::header::CONTENT_TYPE, "".parse().unwrap());
        assert_eq!(
            body_format(&h).unwrap(),
            BodyFormat::Json,
            "empty Content-Type"
        );
    }
}
