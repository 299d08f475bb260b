//! `/healthz`, `/livez` and `/readyz`: named checks with upstream's output (`[+]ping ok`,
//! `[-]store failed: reason withheld`, `?verbose`, `?exclude=<name>`, `/readyz/<name>` with
//! the reason). The `store` check fails after a store write failed for a reason other than the
//! request (a commit that hit a full disk, a closed store) until a later commit succeeds.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};
use skiff_store::{Store, StoreError};

use crate::query::Query;

/// One named health check (upstream's `healthz.HealthChecker`): `Ok` when healthy, else why
/// not. The server adds checks of its own parts with [`crate::ApiServer::add_health_check`].
#[derive(Clone)]
pub struct HealthCheck {
    name: String,
    check: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

impl HealthCheck {
    /// A check called `name` (lower case, no `/`, as it appears in `/readyz/<name>`).
    pub fn new(
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> HealthCheck {
        HealthCheck {
            name: name.into(),
            check: Arc::new(check),
        }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the check.
    pub fn check(&self) -> Result<(), String> {
        (self.check)()
    }
}

impl std::fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The last store failure seen by a write: failing until the store's revision moves past it
/// (a later commit succeeded).
#[derive(Default)]
pub(crate) struct StoreHealth {
    failure: Mutex<Option<(u64, String)>>,
}

impl StoreHealth {
    /// Notes a store error of a write, if it is the store's fault rather than the request's.
    pub(crate) fn note(&self, store: &Store, error: &StoreError) {
        if is_client_error(error) {
            return;
        }
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        *failure = Some((store.revision(), error.to_string()));
    }

    /// The `store` check.
    pub(crate) fn check(&self, store: &Store) -> Result<(), String> {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match failure.as_ref() {
            Some((revision, _)) if store.revision() > *revision => {
                *failure = None;
                Ok(())
            }
            Some((_, reason)) => Err(reason.clone()),
            None => Ok(()),
        }
    }
}

/// Errors that describe the request, not the store's health.
fn is_client_error(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::AlreadyExists { .. }
            | StoreError::NotFound { .. }
            | StoreError::Conflict { .. }
            | StoreError::Gone { .. }
            | StoreError::ContinueExpired { .. }
            | StoreError::TooLargeResourceVersion { .. }
            | StoreError::InvalidContinue { .. }
            | StoreError::InvalidObject { .. }
    )
}

/// Answers `/<endpoint>` (all checks) or `/<endpoint>/<name>` (one check) as upstream.
pub(crate) fn respond(
    endpoint: &str,
    only: Option<&str>,
    checks: &[HealthCheck],
    query: &Query,
) -> Response<Body> {
    if let Some(name) = only {
        return match checks.iter().find(|c| c.name() == name) {
            None => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
            Some(check) => match check.check() {
                Ok(()) => text(StatusCode::OK, "ok".into()),
                Err(reason) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal server error: {reason}\n"),
                ),
            },
        };
    }
    let mut excluded: Vec<&str> = query.all("exclude").collect();
    let mut output = String::new();
    let mut failed = Vec::new();
    for check in checks {
        if let Some(i) = excluded.iter().position(|e| *e == check.name()) {
            excluded.remove(i);
            output.push_str(&format!("[+]{} excluded: ok\n", check.name()));
            continue;
        }
        match check.check() {
            Ok(()) => output.push_str(&format!("[+]{} ok\n", check.name())),
            Err(reason) => {
                // The endpoint is public: the reason goes to the log and to /<endpoint>/<name>.
                output.push_str(&format!("[-]{} failed: reason withheld\n", check.name()));
                tracing::warn!(check = check.name(), %reason, "{endpoint} check failed");
                failed.push(check.name());
            }
        }
    }
    if !excluded.is_empty() {
        output.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            excluded
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !failed.is_empty() {
        output.push_str(&format!("{endpoint} check failed\n"));
        return text(StatusCode::INTERNAL_SERVER_ERROR, output);
    }
    if query.get("verbose").is_none() {
        return text(StatusCode::OK, "ok".into());
    }
    output.push_str(&format!("{endpoint} check passed\n"));
    text(StatusCode::OK, output)
}

fn text(code: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: Response<Body>) -> (u16, String) {
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn upstream_output() {
        let checks = vec![
            HealthCheck::new("ping", || Ok(())),
            HealthCheck::new("store", || Err("disk full".into())),
        ];
        let (code, text) = body(respond("readyz", None, &checks, &Query::parse(None))).await;
        assert_eq!(code, 500);
        assert_eq!(
            text,
            "[+]ping ok\n[-]store failed: reason withheld\nreadyz check failed\n"
        );
        let (code, text) = body(respond(
            "readyz",
            Some("store"),
            &checks,
            &Query::parse(None),
        ))
        .await;
        assert_eq!(
            (code, text.as_str()),
            (500, "internal server error: disk full\n")
        );
        let q = Query::parse(Some("verbose&exclude=store&exclude=nope"));
        let (code, text) = body(respond("livez", None, &checks, &q)).await;
        assert_eq!(code, 200);
        assert_eq!(
            text,
            "[+]ping ok\n[+]store excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nlivez check passed\n"
        );
        let q = Query::parse(Some("exclude=store"));
        assert_eq!(
            body(respond("livez", None, &checks, &q)).await,
            (200, "ok".into())
        );
    }
}
