//! Field errors with the exact wording of upstream's `k8s.io/apimachinery/pkg/util/validation/field`.

use std::fmt;

use serde_json::Value;

/// Why a field is invalid (upstream `field.ErrorType`, which is also `StatusCause.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A value that was looked up does not exist.
    NotFound,
    /// A required value is missing.
    Required,
    /// A value that must be unique appears twice.
    Duplicate,
    /// A malformed value (failed pattern, out of range...).
    Invalid,
    /// A value outside an enumeration.
    NotSupported,
    /// A well-formed value that is not allowed here (e.g. an immutable field changed).
    Forbidden,
    /// A value longer than allowed (the value is not echoed).
    TooLong,
    /// A list with more items than allowed.
    TooMany,
    /// A value shorter than allowed.
    TooShort,
    /// A list with fewer items than allowed.
    TooFew,
    /// A value of the wrong JSON type.
    TypeInvalid,
    /// A server-side failure unrelated to the input.
    Internal,
}

impl FieldErrorKind {
    /// The machine-readable reason, as upstream's `StatusCause.type` (`FieldValueRequired`...).
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::TooShort => "FieldValueTooShort",
            FieldErrorKind::TooFew => "FieldValueTooFew",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorKind::Internal => "InternalError",
        }
    }

    /// The human-readable phrase upstream prints (`Required value`, `Invalid value`...).
    pub fn phrase(&self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::TooShort => "Too short",
            FieldErrorKind::TooFew => "Too few",
            FieldErrorKind::Internal => "Internal error",
        }
    }
}

/// One invalid field: `spec.containers[0].image: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.containers[0].image`.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
    /// The offending value, when upstream echoes it (`None` = omitted).
    pub value: Option<Value>,
    /// Further explanation, may be empty.
    pub detail: String,
    /// The value as upstream prints it when that is not JSON-like (Go's `%#v` of a struct or
    /// map, e.g. `map[string]string{"app":"web"}`); overrides `value` in messages.
    pub rendered: Option<String>,
}

impl FieldError {
    /// `Required value` error.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }

    /// `Invalid value` error echoing `value`.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value.into()), detail)
    }

    /// `Forbidden` error.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }

    /// `Duplicate value` error.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value.into()), "")
    }

    /// `Not found` error.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorKind::NotFound, field, Some(value.into()), "")
    }

    /// `Unsupported value` error listing the supported values, quoted, as upstream.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(value.into()),
            detail,
        )
    }

    /// `Too long` error: `may not be more than N bytes` (1.33 wording).
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            format!("may not be more than {max} bytes"),
        )
    }

    /// `Too many` error: `must have at most N items` (1.33 wording).
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Self::new(
            FieldErrorKind::TooMany,
            field,
            Some(Value::from(actual)),
            format!("must have at most {max} items"),
        )
    }

    /// `Invalid value` error for a value of the wrong JSON type.
    pub fn type_invalid(
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(FieldErrorKind::TypeInvalid, field, value, detail)
    }

    /// Any kind of error.
    pub fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
            rendered: None,
        }
    }

    /// `Invalid value` error whose value prints as `rendered` (Go syntax, see [`FieldError::rendered`]).
    pub fn invalid_rendered(
        field: impl Into<String>,
        value: Value,
        rendered: String,
        detail: impl Into<String>,
    ) -> Self {
        let mut e = Self::new(FieldErrorKind::Invalid, field, Some(value), detail);
        e.rendered = Some(rendered);
        e
    }

    /// The message without the field name (upstream `ErrorBody`, used as `StatusCause.message`).
    pub fn body(&self) -> String {
        let mut s = match self.kind {
            FieldErrorKind::Required
            | FieldErrorKind::Forbidden
            | FieldErrorKind::TooLong
            | FieldErrorKind::TooShort
            | FieldErrorKind::Internal => self.kind.phrase().to_string(),
            _ => match (&self.rendered, &self.value) {
                (Some(r), _) => format!("{}: {}", self.kind.phrase(), r),
                (None, None) => self.kind.phrase().to_string(),
                (None, Some(value)) => format!("{}: {}", self.kind.phrase(), render_value(value)),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value as upstream does: strings quoted Go-style, numbers and booleans bare,
/// anything else as JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Quotes a string like Go's `%q` / `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() => {
                let n = c as u32;
                if n < 0x80 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// All the field errors of one object; non-empty when returned from a validation function.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The upstream message of the 422 `Status`:
    /// `Pod "web" is invalid: spec.containers[0].image: Required value`, or with several errors
    /// `Deployment.apps "x" is invalid: [a: ..., b: ...]` (duplicates dropped, order kept).
    /// `kind` is the group-qualified kind (`Pod`, `Deployment.apps`, see
    /// [`crate::registry::ResourceInfo::qualified_kind`]).
    pub fn message(&self, kind: &str, name: &str) -> String {
        let mut seen: Vec<String> = Vec::new();
        for e in &self.0 {
            let m = e.to_string();
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        let quoted = go_quote(name);
        match seen.len() {
            0 => format!("{kind} {quoted} is invalid"),
            1 => format!("{kind} {quoted} is invalid: {}", seen[0]),
            _ => format!("{kind} {quoted} is invalid: [{}]", seen.join(", ")),
        }
    }

    /// `(reason, message, field)` triples for `Status.details.causes`, as upstream builds them.
    pub fn causes(&self) -> Vec<(&'static str, String, String)> {
        self.0
            .iter()
            .map(|e| (e.kind.reason(), e.body(), e.field.clone()))
            .collect()
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Turns an error list into `Ok(())` when empty.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        match parts.len() {
            1 => f.write_str(&parts[0]),
            _ => write!(f, "[{}]", parts.join(", ")),
        }
    }
}

impl std::error::Error for ValidationErrors {}

/// A field path being built while walking an object: `spec.containers[0].image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A root path, e.g. `metadata` or `spec`.
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    /// `self.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return FieldPath(name.to_string());
        }
        let mut s = String::with_capacity(self.0.len() + 1 + name.len());
        s.push_str(&self.0);
        s.push('.');
        s.push_str(name);
        FieldPath(s)
    }

    /// `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        let mut s = String::with_capacity(self.0.len() + 4);
        s.push_str(&self.0);
        s.push('[');
        push_usize(&mut s, i);
        s.push(']');
        FieldPath(s)
    }

    /// `self[key]` (map entries, as upstream's `Path.Key`).
    pub fn key(&self, key: &str) -> Self {
        let mut s = String::with_capacity(self.0.len() + 2 + key.len());
        s.push_str(&self.0);
        s.push('[');
        s.push_str(key);
        s.push(']');
        FieldPath(s)
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends the decimal digits of `n` without the formatting machinery.
fn push_usize(s: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(char::from(d));
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> String {
        p.0.clone()
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_match_upstream_wording() {
        assert_eq!(
            FieldError::required("spec.containers[0].image", "").to_string(),
            "spec.containers[0].image: Required value"
        );
        assert_eq!(
            FieldError::invalid("metadata.name", "Web", "a lowercase RFC 1123 subdomain")
                .to_string(),
            "metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"
        );
        assert_eq!(
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0")
                .to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::not_supported("spec.restartPolicy", "Sometimes", &["Always", "OnFailure", "Never"])
                .to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            FieldError::too_many("spec.x", 3, 1).to_string(),
            "spec.x: Too many: 3: must have at most 1 items"
        );
        assert_eq!(
            FieldError::duplicate("spec.containers[1].name", "web").to_string(),
            "spec.containers[1].name: Duplicate value: \"web\""
        );
        assert_eq!(
            FieldError::forbidden("spec", "pod updates may not change fields").to_string(),
            "spec: Forbidden: pod updates may not change fields"
        );
        assert_eq!(
            FieldError::invalid("spec.selector", json!({"matchLabels": {"a": "b"}}), "x").body(),
            "Invalid value: {\"matchLabels\":{\"a\":\"b\"}}: x"
        );
    }

    #[test]
    fn reasons_match_status_cause_types() {
        assert_eq!(FieldErrorKind::Required.reason(), "FieldValueRequired");
        assert_eq!(FieldErrorKind::Invalid.reason(), "FieldValueInvalid");
        assert_eq!(
            FieldErrorKind::NotSupported.reason(),
            "FieldValueNotSupported"
        );
        assert_eq!(FieldErrorKind::Internal.reason(), "InternalError");
    }

    #[test]
    fn messages_aggregate_and_deduplicate() {
        let one = ValidationErrors(vec![FieldError::required("spec.containers[0].image", "")]);
        assert_eq!(
            one.message("Pod", "web"),
            "Pod \"web\" is invalid: spec.containers[0].image: Required value"
        );
        let two = ValidationErrors(vec![
            FieldError::required("spec.selector", ""),
            FieldError::required("spec.selector", ""),
            FieldError::invalid("spec.replicas", -1, "must be greater than or equal to 0"),
        ]);
        assert_eq!(
            two.message("Deployment.apps", "x"),
            "Deployment.apps \"x\" is invalid: [spec.selector: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]"
        );
        assert_eq!(two.causes().len(), 3);
        assert_eq!(two.causes()[0].0, "FieldValueRequired");
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    #[test]
    fn paths_build_like_upstream() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("image");
        assert_eq!(p.as_str(), "spec.containers[0].image");
        assert_eq!(
            FieldPath::new("metadata")
                .child("labels")
                .key("a/b")
                .as_str(),
            "metadata.labels[a/b]"
        );
    }
}
