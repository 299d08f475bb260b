//! `/metrics`: who may read it, and what requests leave in it.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use serde_json::json;
use skiff_apiserver::{
    ApiConfig, ApiServer, GroupAuthorizer, Identity, NodeAuthorizer, UnionAuthorizer,
};
use skiff_store::{Store, StoreOptions};
use tower::ServiceExt;

fn server(dir: &tempfile::TempDir) -> ApiServer {
    let store = Store::open(&dir.path().join("db.redb"), StoreOptions::default()).unwrap();
    // The production authorizer: administrators, then the node authorizer.
    let authorizer = UnionAuthorizer::new(vec![
        Arc::new(GroupAuthorizer::masters()),
        Arc::new(NodeAuthorizer::new(store.clone())),
    ]);
    ApiServer::new(
        store,
        ApiConfig {
            authorizer: Arc::new(authorizer),
            ..ApiConfig::default()
        },
    )
}

async fn send(
    api: &ApiServer,
    who: Option<&Identity>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = match who {
        Some(who) => api.service(who.clone()).oneshot(request).await.unwrap(),
        // The bare router: no authenticated identity, as a client without a certificate.
        None => api.router().oneshot(request).await.unwrap(),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The value of the sample `name{labels}` whose labels include every `want` pair.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        let all = want
            .iter()
            .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn admin_reads_counts_of_what_was_done() {
    let dir = tempfile::tempdir().unwrap();
    let api = server(&dir);
    api.bootstrap().await.unwrap();
    let admin = Identity::admin();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}});
    let (code, _, body) = send(
        &api,
        Some(&admin),
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &cm.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, _, _) = send(
        &api,
        Some(&admin),
        "POST",
        "/api/v1/namespaces/default/configmaps",
        &cm.to_string(),
    )
    .await;
    assert_eq!(code, 409);
    let (code, _, _) = send(&api, Some(&admin), "GET", "/api/v1/widgets", "").await;
    assert_eq!(code, 404);
    // A watch: counted, kept out of the latency histogram.
    let (code, _, _) = send(
        &api,
        Some(&admin),
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        "",
    )
    .await;
    assert_eq!(code, 200);

    let (code, content_type, text) = send(&api, Some(&admin), "GET", "/metrics", "").await;
    assert_eq!(code, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"));
    let create = [
        ("verb", "POST"),
        ("resource", "configmaps"),
        ("version", "v1"),
    ];
    let with = |code: &'static str| {
        let mut labels = create.to_vec();
        labels.push(("code", code));
        labels
    };
    assert_eq!(
        sample(&text, "apiserver_request_total", &with("201")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "apiserver_request_total", &with("409")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_request_total",
            &[("verb", "GET"), ("code", "404")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "apiserver_request_duration_seconds_count", &create),
        Some(2.0),
        "{text}"
    );
    let watch = [
        ("verb", "WATCH"),
        ("resource", "configmaps"),
        ("code", "200"),
    ];
    assert_eq!(
        sample(&text, "apiserver_request_total", &watch),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_request_duration_seconds_count",
            &watch[..2]
        ),
        None,
        "{text}"
    );
    // Store gauges of this API's store: bootstrap and the create wrote revisions.
    let revision = text
        .lines()
        .find_map(|l| l.strip_prefix("skiff_store_revision "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("store revision gauge");
    assert_eq!(revision, api.store().revision());
    assert!(text.contains("skiff_store_db_size_bytes "), "{text}");
    assert!(
        text.contains("skiff_store_commit_duration_seconds_count "),
        "{text}"
    );
}

#[tokio::test]
async fn anonymous_and_nodes_may_not_read_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let api = server(&dir);
    let (code, _, body) = send(&api, None, "GET", "/metrics", "").await;
    assert_eq!(code, 401, "{body}");
    let node = Identity::new("system:node:edge-1", ["system:nodes"]);
    let (code, _, body) = send(&api, Some(&node), "GET", "/metrics", "").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("User \\\"system:node:edge-1\\\" cannot get path \\\"/metrics\\\""),
        "{body}"
    );
    let (code, _, _) = send(&api, Some(&Identity::admin()), "POST", "/metrics", "").await;
    assert_eq!(code, 405);
}
