//! Acceptance 2 of issue 2: the `kube` crate, an independent client, drives the API over real
//! HTTPS with the admin kubeconfig: create, get, list with selectors and pagination, watch
//! from a resourceVersion (and 410 after compaction), the three patch kinds, conflict on a
//! stale update, delete.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;
use skiff_tests::inproc::TestApi;

fn pod(name: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
    }))
    .expect("valid pod")
}

#[tokio::test]
async fn create_get_list_with_selectors_and_pages() {
    let server = TestApi::start().await;
    let pods: Api<Pod> = Api::namespaced(server.kube().await, "default");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        let created = pods
            .create(
                &PostParams::default(),
                &pod(&format!("p{i}"), json!({"tier": tier, "n": i.to_string()})),
            )
            .await
            .expect("create pod");
        assert!(created.metadata.uid.is_some(), "uid is set");
        assert!(created.metadata.creation_timestamp.is_some());
        assert_eq!(
            created.status.and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
        let spec = created.spec.expect("spec");
        assert_eq!(
            spec.restart_policy.as_deref(),
            Some("Always"),
            "defaults applied"
        );
    }
    let p3 = pods.get("p3").await.expect("get p3");
    assert_eq!(p3.metadata.labels.unwrap()["tier"], "db");
    let err = pods.get("nope").await.expect_err("missing pod");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 404),
        "{err:?}"
    );

    let web = pods
        .list(&ListParams::default().labels("tier=web"))
        .await
        .expect("list");
    let names: Vec<_> = web
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["p0", "p2", "p4", "p6"]);
    let set = pods
        .list(&ListParams::default().labels("n in (1,5),tier!=web"))
        .await
        .expect("set-based selector");
    assert_eq!(set.items.len(), 2);
    let by_field = pods
        .list(&ListParams::default().fields("metadata.name=p5"))
        .await
        .expect("field selector");
    assert_eq!(by_field.items.len(), 1);

    // Pagination: pages of 3, consistent at the first page's revision even when a pod is
    // created between pages.
    let first = pods
        .list(&ListParams::default().limit(3))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    pods.create(&PostParams::default(), &pod("p00", json!({})))
        .await
        .expect("create during pagination");
    let mut all: Vec<String> = first
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let mut next = Some(token);
    while let Some(token) = next {
        let page = pods
            .list(&ListParams::default().limit(3).continue_token(&token))
            .await
            .expect("next page");
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        all.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        next = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(
        all,
        vec!["p0", "p1", "p2", "p3", "p4", "p5", "p6"],
        "p00 is not in the snapshot"
    );
    server.stop().await;
}

#[tokio::test]
async fn watch_from_resource_version_and_410_after_compaction() {
    let server = TestApi::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.kube().await, "default");
    let cm = |name: &str, v: &str| -> ConfigMap {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"v": v}}))
        .expect("configmap")
    };
    let a = maps
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .expect("create a");
    let from = a.metadata.resource_version.clone().expect("rv");
    maps.create(&PostParams::default(), &cm("b", "1"))
        .await
        .expect("create b");
    maps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .expect("patch a");
    maps.delete("b", &DeleteParams::default())
        .await
        .expect("delete b");

    let mut stream = maps
        .watch(&WatchParams::default().timeout(10), &from)
        .await
        .expect("watch")
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream
            .try_next()
            .await
            .expect("watch event")
            .expect("stream open")
        {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Modified(o) => seen.push(format!(
                "MODIFIED {} {}",
                o.metadata.name.unwrap(),
                o.data.unwrap()["v"]
            )),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(seen, vec!["ADDED b", "MODIFIED a 2", "DELETED b"]);
    // ... then live events.
    maps.create(&PostParams::default(), &cm("c", "1"))
        .await
        .expect("create c");
    match stream.try_next().await.expect("live event").expect("open") {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("c")),
        other => panic!("expected ADDED c, got {other:?}"),
    }
    drop(stream);

    // Compact everything: the old revision is gone.
    server
        .store
        .compact(server.store.revision())
        .await
        .expect("compact");
    let mut stream = maps
        .watch(&WatchParams::default().timeout(10), &from)
        .await
        .expect("watch request is answered")
        .boxed();
    match stream.try_next().await {
        Ok(Some(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410, "{e:?}");
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.contains("too old resource version"),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn three_patch_kinds_conflict_and_delete() {
    let server = TestApi::start().await;
    let deployments: Api<Deployment> = Api::namespaced(server.kube().await, "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox:1.36"}
                ]}
            }
        }
    }))
    .expect("deployment");
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));

    // Strategic merge: containers merge by name; the sidecar stays, env merges by name.
    let smp = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "image": "nginx:1.26", "env": [{"name": "B", "value": "2"}]}]}}}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .expect("strategic merge patch");
    let containers = patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .clone();
    assert_eq!(containers.len(), 2, "sidecar kept by the merge key");
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.26"));
    let mut env: Vec<_> = containers[0]
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    env.sort();
    assert_eq!(env, vec!["A", "B"], "env merged by name");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "spec change bumps generation"
    );

    // JSON merge patch: lists are replaced whole.
    let merge = json!({"metadata": {"labels": {"team": "edge"}}, "spec": {"replicas": 4}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(merge))
        .await
        .expect("merge patch");
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(4));
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["team"], "edge");

    // JSON patch (RFC 6902), including a failing test operation.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/metadata/annotations", "value": {"note": "x"}}
    ]))
    .expect("json patch");
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .expect("json patch");
    assert_eq!(patched.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(patched.metadata.annotations.as_ref().unwrap()["note"], "x");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))
            .unwrap();
    let err = deployments
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(failing))
        .await
        .expect_err("failing test op");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422),
        "{err:?}"
    );

    // Conflict: replacing with a stale resourceVersion.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().replicas = Some(7);
    let err = deployments
        .replace("web", &PostParams::default(), &stale)
        .await
        .expect_err("stale update");
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
            assert_eq!(
                e.message,
                "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
            );
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let current = deployments.get("web").await.expect("get");
    assert_eq!(
        current.spec.as_ref().unwrap().replicas,
        Some(1),
        "stale update changed nothing"
    );

    // Delete: gone afterwards.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let err = deployments.get("web").await.expect_err("deleted");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 404),
        "{err:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn in_process_service_serves_the_same_api() {
    let server = TestApi::start().await;
    let client = kube::Client::new(
        server.api.service(skiff_apiserver::Identity::admin()),
        "default",
    );
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("inproc", json!({"a": "b"})))
        .await
        .expect("create in-process");
    let over_https: Api<Pod> = Api::namespaced(server.kube().await, "default");
    let seen = over_https.get("inproc").await.expect("visible over HTTPS");
    assert_eq!(seen.metadata.labels.unwrap()["a"], "b");
    let names: Vec<_> = pods
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(names, vec!["inproc"]);
    server.stop().await;
}
