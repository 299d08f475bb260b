//! A request must never take the server down: out-of-range durations from the query are
//! clamped (a huge `timeoutSeconds` once overflowed `now + timeout` and panicked, which the
//! release build's `panic = "abort"` turned into the end of the control plane), and a handler
//! that panics anyway answers 500 while the server keeps serving.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_apiserver::{ApiConfig, ApiServer, Attributes, Authorizer, Decision, Identity};
use skiff_store::{Store, StoreOptions};
use tower::ServiceExt;

/// Allows everything, but panics when asked about ConfigMaps (a stand-in for any handler bug).
struct PanicsOnConfigMaps;

impl Authorizer for PanicsOnConfigMaps {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if a.resource == "configmaps" {
            panic!("authorizer bug on {}", a.resource);
        }
        Decision::Allow
    }
}

fn api(dir: &tempfile::TempDir, authorizer: Arc<dyn Authorizer>) -> ApiServer {
    let store = Store::open(&dir.path().join("db.redb"), StoreOptions::default()).unwrap();
    ApiServer::new(
        store,
        ApiConfig {
            authorizer,
            ..ApiConfig::default()
        },
    )
}

async fn get(api: &ApiServer, path: &str) -> http::Response<Body> {
    let request = Request::builder().uri(path).body(Body::empty()).unwrap();
    api.service(Identity::admin())
        .oneshot(request)
        .await
        .expect("the service answers")
}

async fn json(response: http::Response<Body>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test]
async fn huge_watch_timeout_is_clamped_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir, Arc::new(skiff_apiserver::AlwaysAllow));
    for timeout in ["9223372036854775807", "18446744073709551", "3153600000000"] {
        let response = get(
            &api,
            &format!("/api/v1/pods?watch=1&timeoutSeconds={timeout}"),
        )
        .await;
        assert_eq!(response.status(), 200, "timeoutSeconds={timeout}");
        drop(response);
    }
    // An ordinary request still works afterwards.
    assert_eq!(get(&api, "/api/v1/namespaces").await.status(), 200);
}

#[tokio::test]
async fn a_handler_panic_is_a_500_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir, Arc::new(PanicsOnConfigMaps));
    for _ in 0..3 {
        let response = get(&api, "/api/v1/namespaces/default/configmaps").await;
        assert_eq!(response.status(), 500);
        let status = json(response).await;
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["reason"], "InternalError", "{status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .contains("This request caused apiserver to panic"),
            "{status}"
        );
        let other = get(&api, "/api/v1/namespaces/default/pods").await;
        assert_eq!(other.status(), 200, "other requests are unaffected");
    }
}
