//! API errors as Kubernetes `Status` objects with upstream reasons, codes and messages.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

/// One entry of `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    /// Machine-readable reason (`FieldValueRequired`, `FieldValueInvalid`, ...).
    pub reason: String,
    /// Human-readable description.
    pub message: String,
    /// Field path (`spec.containers[0].image`).
    pub field: String,
}

/// A failed request, rendered as a `Status` object. Every handler error ends up here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Upstream `StatusReason` (`NotFound`, `AlreadyExists`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message, upstream wording where there is one.
    pub message: String,
    /// `details`, when there are any.
    pub details: Option<Box<Details>>,
}

/// The `details` of a `Status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (a resource plural for most errors, as upstream).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after_seconds: Option<u32>,
}

/// What `details` should name: the resource (plural, group) and the object name.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Group of the resource (`""` for core).
    pub group: &'a str,
    /// Resource plural (`pods`) or kind, as upstream puts it in `details.kind`.
    pub kind: &'a str,
    /// Object name.
    pub name: &'a str,
}

impl<'a> Subject<'a> {
    /// `pods "web"` / `deployments.apps "web"`: how upstream names an object in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{} \"{}\"", self.kind, self.name)
        } else {
            format!("{}.{} \"{}\"", self.kind, self.group, self.name)
        }
    }
}

impl ApiError {
    /// An error with a code, reason and message and no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// The details, created if missing.
    pub fn details_mut(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }

    /// The causes listed in the details.
    pub fn causes(&self) -> &[StatusCause] {
        self.details
            .as_deref()
            .map(|d| d.causes.as_slice())
            .unwrap_or(&[])
    }

    /// Adds a cause.
    pub fn with_cause(mut self, cause: StatusCause) -> Self {
        self.details_mut().causes.push(cause);
        self
    }

    /// Adds `details` naming `subject`.
    pub fn about(mut self, subject: Subject<'_>) -> Self {
        let details = self.details_mut();
        if !subject.name.is_empty() {
            details.name = Some(subject.name.to_string());
        }
        details.group = Some(subject.group.to_string());
        details.kind = Some(subject.kind.to_string());
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    /// 404 NotFound for an object: `pods "web" not found`.
    pub fn not_found(subject: Subject<'_>) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} not found", subject.qualified()),
        )
        .about(subject)
    }

    /// 404 NotFound for a path that names nothing served.
    pub fn no_route() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(406, "NotAcceptable", message)
    }

    /// 409 AlreadyExists: `pods "web" already exists`.
    pub fn already_exists(subject: Subject<'_>) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} already exists", subject.qualified()),
        )
        .about(subject)
    }

    /// 409 Conflict: `Operation cannot be fulfilled on pods "web": <message>`.
    pub fn conflict(subject: Subject<'_>, message: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}: {message}",
                subject.qualified()
            ),
        )
        .about(subject)
    }

    /// 409 Conflict for a stale resourceVersion, with upstream's message.
    pub fn stale(subject: Subject<'_>) -> Self {
        ApiError::conflict(
            subject,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 410 Gone (Expired) for a compacted resourceVersion.
    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 422 Invalid with causes.
    pub fn invalid(subject: Subject<'_>, message: String, causes: Vec<StatusCause>) -> Self {
        let mut e = ApiError::new(422, "Invalid", message).about(subject);
        e.details_mut().causes = causes;
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// 504 Timeout.
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        let d = self.details.as_deref().cloned().unwrap_or_default();
        if let Some(name) = &d.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = d.group.as_ref().filter(|g| !g.is_empty()) {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &d.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !d.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    d.causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect(),
                ),
            );
        }
        if let Some(s) = d.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(s));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }

    /// The `Status` as kube-apiserver writes it: fields in its Go types' order and a final
    /// newline (clients compare error texts byte for byte, e.g. the Python client's
    /// `FailToCreateError`).
    pub fn status_body(&self) -> String {
        #[derive(serde::Serialize)]
        struct Cause<'a> {
            reason: &'a str,
            message: &'a str,
            field: &'a str,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireDetails<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            group: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            kind: Option<&'a str>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            causes: Vec<Cause<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_seconds: Option<u32>,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireStatus<'a> {
            kind: &'static str,
            api_version: &'static str,
            metadata: serde_json::Map<String, Value>,
            status: &'static str,
            message: &'a str,
            reason: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<WireDetails<'a>>,
            code: u16,
        }
        let details = self.details.as_deref().map(|d| WireDetails {
            // Upstream's fields are `omitempty`: the core group is left out.
            name: d.name.as_deref().filter(|v| !v.is_empty()),
            group: d.group.as_deref().filter(|v| !v.is_empty()),
            kind: d.kind.as_deref().filter(|v| !v.is_empty()),
            causes: d
                .causes
                .iter()
                .map(|c| Cause {
                    reason: &c.reason,
                    message: &c.message,
                    field: &c.field,
                })
                .collect(),
            retry_after_seconds: d.retry_after_seconds,
        });
        let details = details.filter(|d| {
            d.name.is_some()
                || d.group.is_some()
                || d.kind.is_some()
                || !d.causes.is_empty()
                || d.retry_after_seconds.is_some()
        });
        let status = WireStatus {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details,
            code: self.code,
        };
        let mut body = serde_json::to_string(&status).unwrap_or_default();
        body.push('\n');
        body
    }

    /// The HTTP response carrying the `Status`.
    pub fn into_response(self) -> http::Response<axum::body::Body> {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Bytes::from(self.status_body());
        let mut response = http::Response::new(axum::body::Body::from(body));
        *response.status_mut() = code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.details.as_ref().and_then(|d| d.retry_after_seconds) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        ApiError::into_response(self)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A `Status` reporting success (returned by some deletes).
pub(crate) fn success_status(subject: Subject<'_>, uid: Option<&str>) -> Value {
    let mut details = json!({"name": subject.name, "group": subject.group, "kind": subject.kind});
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_are_byte_for_byte_upstreams() {
        let error = ApiError::already_exists(Subject {
            group: "apps",
            kind: "deployments",
            name: "triple-nginx",
        });
        assert_eq!(
            error.status_body(),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
                r#""message":"deployments.apps \"triple-nginx\" already exists","#,
                r#""reason":"AlreadyExists","details":{"name":"triple-nginx","group":"apps","#,
                r#""kind":"deployments"},"code":409}"#,
                "\n"
            )
        );
        let parsed: Value = serde_json::from_str(&error.status_body()).unwrap();
        assert_eq!(parsed, error.status());
        let core = ApiError::already_exists(Subject {
            group: "",
            kind: "services",
            name: "mock-2",
        });
        assert!(core
            .status_body()
            .contains(r#""details":{"name":"mock-2","kind":"services"},"code":409}"#));
        let bare = ApiError::bad_request("no");
        assert!(!bare.status_body().contains("details"));
    }
}
