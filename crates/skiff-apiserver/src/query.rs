//! Query string parameters of API requests.

use crate::ApiError;

/// Longest duration, in seconds, the API takes from a request (100 years). Larger
/// `timeoutSeconds`, `gracePeriodSeconds` or `sinceSeconds` are clamped to it: they mean
/// "forever" to the client, and a bounded value keeps every deadline computed from them
/// (`now + duration`, here or in the agents) from overflowing.
pub(crate) const MAX_DURATION_SECONDS: i64 = 100 * 365 * 24 * 60 * 60;

/// Decoded `key=value` pairs of a query string, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string (`a=1&b=x%20y`).
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query { pairs }
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All values of `key`.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` if present and not empty.
    pub(crate) fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// A boolean parameter: `true`/`1` → true, `false`/`0`/empty → false; others → 400.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") | Some("false") | Some("0") | Some("False") => Ok(false),
            Some("true") | Some("1") | Some("True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for query parameter {key}: {other:?} is not a boolean"
            ))),
        }
    }

    /// A non-negative integer parameter; malformed → 400 naming it.
    pub(crate) fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for query parameter {key}: {v:?} is not an integer"
                ))
            }),
        }
    }

    /// A duration in seconds (`timeoutSeconds`, `gracePeriodSeconds`...): malformed → 400;
    /// clamped to [`MAX_DURATION_SECONDS`] (negative values are left to the caller, whose
    /// messages differ per parameter).
    pub(crate) fn seconds(&self, key: &str) -> Result<Option<i64>, ApiError> {
        Ok(self.integer(key)?.map(clamp_seconds))
    }

    /// `dryRun=All` → true; absent → false; other values → 400 as upstream.
    pub(crate) fn dry_run(&self) -> Result<bool, ApiError> {
        let mut dry = false;
        for v in self.all("dryRun") {
            match v {
                "All" => dry = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: {other:?}: supported values: \"All\""
                    )))
                }
            }
        }
        Ok(dry)
    }

    /// `fieldValidation` (`Strict`, `Warn`, `Ignore`); default Warn as upstream.
    pub(crate) fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.non_empty("fieldValidation") {
            None => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}: supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// What to do about unknown fields in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    /// 400 with `strict decoding error: unknown field ...`.
    Strict,
    /// Accept, drop them, and answer with `Warning` headers.
    Warn,
    /// Accept and drop them silently.
    Ignore,
}

/// Clamps a duration in seconds from a request to [`MAX_DURATION_SECONDS`].
pub(crate) fn clamp_seconds(seconds: i64) -> i64 {
    seconds.min(MAX_DURATION_SECONDS)
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_kubectl_selectors() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29&limit=500&watch=1&x=%zz&y=%4",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a,b)"));
        assert_eq!(q.integer("limit").unwrap(), Some(500));
        assert!(q.flag("watch").unwrap());
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("y"), Some("%4"));
        assert!(Query::parse(Some("limit=abc")).integer("limit").is_err());
        assert!(Query::parse(Some("dryRun=Some")).dry_run().is_err());
        assert!(Query::parse(Some("dryRun=All")).dry_run().unwrap());
        let huge = Query::parse(Some("timeoutSeconds=9223372036854775807&g=-3"));
        assert_eq!(
            huge.seconds("timeoutSeconds").unwrap(),
            Some(MAX_DURATION_SECONDS)
        );
        assert_eq!(huge.seconds("g").unwrap(), Some(-3));
    }
}
