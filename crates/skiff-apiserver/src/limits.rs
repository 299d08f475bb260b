//! Limits that keep one client from exhausting the server: connection timeouts and caps (the
//! serve loop applies them) and upstream's in-flight request limits (`--max-requests-inflight`,
//! `--max-mutating-requests-inflight`), applied per request.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{ApiError, Authenticated};

/// Connection and request limits of the HTTPS server. Defaults follow kube-apiserver.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// HTTP/1 request headers, once they start, must be complete within this (upstream's
    /// `ReadHeaderTimeout` is 32 s).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress that receives nothing for this long is
    /// closed, also one that never sends a request (upstream's `IdleTimeout` is 90 s).
    pub idle_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Non-mutating requests in flight at most (0: no limit); more → 429.
    pub max_requests_inflight: usize,
    /// Mutating requests in flight at most (0: no limit); more → 429.
    pub max_mutating_requests_inflight: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4096,
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            http2_max_concurrent_streams: 250,
        }
    }
}

/// Upstream's answer when the in-flight limit is reached.
const TOO_MANY_REQUESTS: &str = "Too many requests, please try again later.";

/// The two in-flight pools; a request holds its permit until its handler returns.
pub(crate) struct InFlight {
    readonly: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

impl InFlight {
    pub(crate) fn new(limits: &ServeLimits) -> InFlight {
        let pool = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        InFlight {
            readonly: pool(limits.max_requests_inflight),
            mutating: pool(limits.max_mutating_requests_inflight),
        }
    }

    /// A permit for this request, `None` when it is not limited (long-running, or from
    /// `system:masters` as upstream), or 429 with `Retry-After: 1` when its pool is full.
    pub(crate) fn admit(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        identity: Option<&Authenticated>,
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if is_long_running(path, query)
            || identity.is_some_and(|i| i.0.groups.iter().any(|g| g == skiff_pki::ADMIN_GROUP))
        {
            return Ok(None);
        }
        let pool = if is_mutating(method) {
            &self.mutating
        } else {
            &self.readonly
        };
        let Some(pool) = pool else {
            return Ok(None);
        };
        match pool.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                let mut error = ApiError::new(429, "TooManyRequests", TOO_MANY_REQUESTS);
                error.details_mut().retry_after_seconds = Some(1);
                Err(error)
            }
        }
    }
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Requests upstream exempts from the in-flight limits: watches and proxy requests, and the
/// `attach`, `exec`, `log`, `portforward` and `proxy` subresources.
pub(crate) fn is_long_running(path: &str, query: Option<&str>) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let legacy_watch = matches!(
        segments.as_slice(),
        ["api", _, "watch", ..] | ["apis", _, _, "watch", ..]
    );
    let watch_param = crate::query::Query::parse(query)
        .flag("watch")
        .unwrap_or(false);
    let streaming = segments.contains(&"proxy")
        || segments
            .last()
            .is_some_and(|s| matches!(*s, "attach" | "exec" | "log" | "portforward"));
    legacy_watch || watch_param || streaming
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_pki::Identity;

    fn user() -> Authenticated {
        Authenticated(Arc::new(Identity::new("alice", ["devs"])))
    }

    #[test]
    fn long_running_requests_are_recognised() {
        assert!(is_long_running("/api/v1/pods", Some("watch=true")));
        assert!(is_long_running("/api/v1/watch/namespaces/a/pods", None));
        assert!(is_long_running(
            "/api/v1/namespaces/a/pods/p/exec",
            Some("command=ls")
        ));
        assert!(is_long_running("/api/v1/namespaces/a/pods/p/log", None));
        assert!(!is_long_running("/api/v1/namespaces/a/pods/p", None));
        assert!(!is_long_running(
            "/apis/apps/v1/deployments",
            Some("limit=5")
        ));
    }

    #[test]
    fn full_pools_answer_429_with_retry_after_and_masters_pass() {
        let limits = ServeLimits {
            max_requests_inflight: 1,
            max_mutating_requests_inflight: 1,
            ..ServeLimits::default()
        };
        let inflight = InFlight::new(&limits);
        let who = user();
        let held = inflight
            .admit(&Method::POST, "/api/v1/namespaces/a/pods", None, Some(&who))
            .unwrap();
        assert!(held.is_some());
        let refused = inflight
            .admit(
                &Method::PATCH,
                "/api/v1/namespaces/a/pods/x",
                None,
                Some(&who),
            )
            .unwrap_err();
        assert_eq!((refused.code, refused.reason), (429, "TooManyRequests"));
        let response = refused.into_response();
        assert_eq!(response.headers()["retry-after"], "1");
        // The read-only pool is separate; watches and admins are not limited.
        assert!(inflight
            .admit(&Method::GET, "/api/v1/pods", None, Some(&who))
            .unwrap()
            .is_some());
        assert!(inflight
            .admit(
                &Method::POST,
                "/api/v1/namespaces/a/pods",
                None,
                Some(&Authenticated(Arc::new(Identity::admin())))
            )
            .unwrap()
            .is_none());
        drop(held);
        assert!(inflight
            .admit(&Method::POST, "/api/v1/namespaces/a/pods", None, Some(&who))
            .unwrap()
            .is_some());
    }
}
