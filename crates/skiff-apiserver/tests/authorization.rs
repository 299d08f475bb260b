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

async fn merge_patch(api: &ApiServer, who: &Identity, path: &str, patch: Value) -> (u16, Value) {
    let request = Request::builder()
        .method("PATCH")
        .uri(path)
        .header("content-type", "application/merge-patch+json")
        .body(Body::from(patch.to_string()))
        .unwrap();
    let response = api.service(who.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// NodeRestriction through the real node authorizer: a node may not lift its own taints, give
/// itself restricted labels, claim a pod CIDR or uncordon itself, nor touch another node.
#[tokio::test]
async fn node_restriction_guards_a_nodes_own_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb"), StoreOptions::default()).unwrap();
    let authorizer = skiff_apiserver::UnionAuthorizer::new(vec![
        Arc::new(skiff_apiserver::GroupAuthorizer::masters()),
        Arc::new(skiff_apiserver::NodeAuthorizer::new(store.clone())),
    ]);
    let api = ApiServer::new(
        store,
        ApiConfig {
            authorizer: Arc::new(authorizer),
            ..ApiConfig::default()
        },
    );
    let admin = Identity::admin();
    for name in ["edge-1", "edge-2"] {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"unschedulable": true,
                "taints": [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]}});
        let (status, body) = call(&api, &admin, "POST", "/api/v1/nodes", node).await;
        assert_eq!(status, 201, "{body}");
    }
    let edge1 = Identity::new("system:node:edge-1", ["system:nodes"]);
    let refused = |(status, body): (u16, Value), expected: &str| {
        assert_eq!(status, 403, "{body}");
        let message = body["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(expected), "{message}");
    };
    let own = "/api/v1/nodes/edge-1";
    refused(
        merge_patch(&api, &edge1, own, json!({"spec": {"taints": null}})).await,
        "node \"edge-1\" is not allowed to modify taints",
    );
    refused(
        merge_patch(
            &api,
            &edge1,
            own,
            json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "true"}}}),
        )
        .await,
        "is not allowed to modify labels: node-role.kubernetes.io/control-plane",
    );
    refused(
        merge_patch(&api, &edge1, own, json!({"spec": {"unschedulable": false}})).await,
        "is not allowed to modify unschedulable",
    );
    refused(
        merge_patch(
            &api,
            &edge1,
            own,
            json!({"spec": {"podCIDR": "10.42.9.0/24"}}),
        )
        .await,
        "is not allowed to modify podCIDR",
    );
    refused(
        merge_patch(
            &api,
            &edge1,
            "/api/v1/nodes/edge-2",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await,
        "is not allowed to modify node \"edge-2\"",
    );
    // Allowed labels, and the status, are the node's.
    let (status, body) = merge_patch(
        &api,
        &edge1,
        own,
        json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "z1", "example.com/rack": "r1"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = merge_patch(
        &api,
        &edge1,
        "/api/v1/nodes/edge-1/status",
        json!({"status": {"capacity": {"cpu": "2"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Nothing restricted changed.
    let (_, stored) = call(&api, &admin, "GET", own, Value::Null).await;
    assert_eq!(stored["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(stored["spec"]["unschedulable"], true);
    assert!(stored["spec"]["podCIDR"].is_null());
    // The administrator is not restricted.
    let (status, body) = merge_patch(&api, &admin, own, json!({"spec": {"taints": null}})).await;
    assert_eq!(status, 200, "{body}");
}
