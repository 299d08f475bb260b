//! Authorization hooks as a node authorizer would use them: `authorize` sees the request,
//! `admit` sees the object about to be stored (with its name, also on create).

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use skiff_apiserver::{ApiConfig, ApiServer, Attributes, Authorizer, Decision, Identity};
use skiff_store::{Store, StoreOptions};
use tower::ServiceExt;

/// Lets `system:node:<name>` create and update only the Node named `<name>`.
struct OwnNodeOnly;

impl Authorizer for OwnNodeOnly {
    fn authorize(&self, a: &Attributes<'_>) -> Decision {
        if a.resource == "nodes" {
            Decision::Allow
        } else {
            Decision::Deny("nodes only".into())
        }
    }

    fn admit(&self, a: &Attributes<'_>, object: &Value) -> Decision {
        let own = a.identity.user.strip_prefix("system:node:");
        let name = object["metadata"]["name"].as_str();
        if own.is_some() && own == name && a.name == name {
            Decision::Allow
        } else {
            Decision::Deny(format!("node {own:?} may not write node {name:?}"))
        }
    }
}

async fn call(
    api: &ApiServer,
    who: &Identity,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = api.service(who.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn admit_sees_the_object_and_its_name_on_create() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb"), StoreOptions::default()).unwrap();
    let api = ApiServer::new(
        store,
        ApiConfig {
            authorizer: Arc::new(OwnNodeOnly),
            ..ApiConfig::default()
        },
    );
    let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    let edge1 = Identity::new("system:node:edge-1", ["system:nodes"]);

    let (status, body) = call(&api, &edge1, "POST", "/api/v1/nodes", node("edge-2")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may not write node Some(\"edge-2\")"),
        "{body}"
    );
    let (status, body) = call(&api, &edge1, "POST", "/api/v1/nodes", node("edge-1")).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = call(
        &api,
        &edge1,
        "GET",
        "/api/v1/namespaces/default/pods",
        Value::Null,
    )
    .await;
    assert_eq!(status, 403, "authorize refuses other resources");
    let patch = json!({"metadata": {"labels": {"a": "b"}}});
    let request = Request::builder()
        .method("PATCH")
        .uri("/api/v1/nodes/edge-1")
        .header("content-type", "application/merge-patch+json")
        .body(Body::from(patch.to_string()))
        .unwrap();
    let response = api.service(edge1.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
