//! Wire compatibility with kube-apiserver, checked with a raw HTTPS client: request bodies
//! without a Content-Type or type metadata, the zero-valued fields upstream's Go types always
//! write, and create/update/patch/delete semantics (resourceVersion on create, dryRun,
//! fieldValidation) on every writing verb.

use serde_json::{json, Value};
use skiff_tests::https::{HttpsClient, Reply};
use skiff_tests::inproc::TestApi;
use skiff_types::wire_fields;

const NS: &str = "default";

/// A minimal valid object of each served kind, and its collection path.
fn minimal(api_version: &str, kind: &str) -> (String, Value) {
    let template = json!({"metadata": {"labels": {"app": "w"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let selector = json!({"matchLabels": {"app": "w"}});
    let name = format!("wire-{}", kind.to_ascii_lowercase());
    let (body, path) = match kind {
        "ConfigMap" => (
            json!({"data": {"a": "b"}}),
            "api/v1/namespaces/default/configmaps",
        ),
        "Secret" => (
            json!({"stringData": {"a": "b"}}),
            "api/v1/namespaces/default/secrets",
        ),
        "ServiceAccount" => (json!({}), "api/v1/namespaces/default/serviceaccounts"),
        "Namespace" => (json!({}), "api/v1/namespaces"),
        "Node" => (json!({}), "api/v1/nodes"),
        "Pod" => (
            json!({"spec": template["spec"]}),
            "api/v1/namespaces/default/pods",
        ),
        "Service" => (
            json!({"spec": {"selector": {"app": "w"}, "ports": [{"port": 80}]}}),
            "api/v1/namespaces/default/services",
        ),
        "Event" => (
            json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
                   "reason": "Test", "message": "m", "type": "Normal"}),
            "api/v1/namespaces/default/events",
        ),
        "ControllerRevision" => (
            json!({"revision": 1, "data": {}}),
            "apis/apps/v1/namespaces/default/controllerrevisions",
        ),
        "DaemonSet" => (
            json!({"spec": {"selector": selector, "template": template}}),
            "apis/apps/v1/namespaces/default/daemonsets",
        ),
        "Deployment" => (
            json!({"spec": {"selector": selector, "template": template}}),
            "apis/apps/v1/namespaces/default/deployments",
        ),
        "ReplicaSet" => (
            json!({"spec": {"selector": selector, "template": template}}),
            "apis/apps/v1/namespaces/default/replicasets",
        ),
        "Job" => {
            let mut t = template.clone();
            t["spec"]["restartPolicy"] = json!("Never");
            (
                json!({"spec": {"template": t}}),
                "apis/batch/v1/namespaces/default/jobs",
            )
        }
        "Lease" => (
            json!({"spec": {"holderIdentity": "h"}}),
            "apis/coordination.k8s.io/v1/namespaces/default/leases",
        ),
        "Endpoints" => (
            json!({"subsets": [{"addresses": [{"ip": "10.42.0.9"}], "ports": [{"port": 80}]}]}),
            "api/v1/namespaces/default/endpoints",
        ),
        "EndpointSlice" => (
            json!({"addressType": "IPv4",
                   "endpoints": [{"addresses": ["10.42.0.9"], "conditions": {}}],
                   "ports": [{"port": 80}]}),
            "apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        ),
        "NetworkPolicy" => (
            json!({"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}),
            "apis/networking.k8s.io/v1/namespaces/default/networkpolicies",
        ),
        other => panic!("no minimal {other}: add one to wire_compat.rs"),
    };
    let mut object = body;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    object["metadata"] = json!({"name": name});
    (format!("/{path}"), object)
}

fn message(reply: &Reply) -> String {
    reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn every_served_kind_carries_upstreams_zero_valued_fields() {
    let server = TestApi::start().await;
    let admin = server.admin();
    for (api_version, kind) in wire_fields::kinds() {
        let (path, object) = minimal(api_version, kind);
        let created = admin.post_json(&path, &object).await;
        assert_eq!(created.status, 201, "{kind}: {}", created.text());
        let missing = wire_fields::missing_zero_fields(api_version, kind, &created.json());
        assert!(missing.is_empty(), "{kind} created without {missing:?}");
        let name = object["metadata"]["name"].as_str().unwrap();
        let read = admin.get(&format!("{path}/{name}")).await.json();
        let missing = wire_fields::missing_zero_fields(api_version, kind, &read);
        assert!(missing.is_empty(), "{kind} read back without {missing:?}");
    }

    // Spot checks against upstream's output.
    let ds = admin
        .get("/apis/apps/v1/namespaces/default/daemonsets/wire-daemonset")
        .await
        .json();
    for field in [
        "currentNumberScheduled",
        "desiredNumberScheduled",
        "numberMisscheduled",
        "numberReady",
    ] {
        assert!(ds["status"][field].is_number(), "{field}: {}", ds["status"]);
    }
    let rs = admin
        .get("/apis/apps/v1/namespaces/default/replicasets/wire-replicaset")
        .await
        .json();
    assert!(rs["status"]["replicas"].is_number(), "{}", rs["status"]);
    let svc = admin
        .get("/api/v1/namespaces/default/services/wire-service")
        .await
        .json();
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    let ns = admin.get("/api/v1/namespaces/wire-namespace").await.json();
    assert!(ns["spec"].is_object(), "{ns}");

    // A status written without the zero fields (as a sparse client would) gets them.
    let pod_path = "/api/v1/namespaces/default/pods/wire-pod";
    let mut pod = admin.get(pod_path).await.json();
    pod["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
    pod["status"]["containerStatuses"] = json!([{"name": "c"}]);
    let updated = admin.put_json(&format!("{pod_path}/status"), &pod).await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let status = &updated.json()["status"];
    let cs = &status["containerStatuses"][0];
    assert_eq!(
        (
            &cs["restartCount"],
            &cs["ready"],
            &cs["image"],
            &cs["imageID"]
        ),
        (&json!(0), &json!(false), &json!(""), &json!("")),
        "{status}"
    );
    assert_eq!((&cs["state"], &cs["lastState"]), (&json!({}), &json!({})));
    server.stop().await;
}

#[tokio::test]
async fn bodies_without_content_type_or_type_meta_follow_the_url() {
    let server = TestApi::start().await;
    let admin = server.admin();
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});

    // No Content-Type, and an empty one: JSON.
    let reply = admin.request("POST", cms, &[], cm.to_string()).await;
    assert_eq!(reply.status, 201, "no Content-Type: {}", reply.text());
    let mut b = cm.clone();
    b["metadata"]["name"] = json!("b");
    let reply = admin
        .request("POST", cms, &[("content-type", "")], b.to_string())
        .await;
    assert_eq!(reply.status, 201, "empty Content-Type: {}", reply.text());
    let mut put = reply.json();
    put["data"] = json!({"k": "v"});
    let reply = admin
        .request("PUT", &format!("{cms}/b"), &[], put.to_string())
        .await;
    assert_eq!(
        reply.status,
        200,
        "PUT without Content-Type: {}",
        reply.text()
    );

    // No apiVersion/kind: taken from the URL, on create and update.
    let bare = json!({"metadata": {"name": "bare"}, "data": {"x": "1"}});
    let reply = admin.post_json(cms, &bare).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        (&reply.json()["apiVersion"], &reply.json()["kind"]),
        (&json!("v1"), &json!("ConfigMap"))
    );
    let bare = json!({"metadata": {"name": "bare"}, "data": {"x": "2"}});
    let reply = admin.put_json(&format!("{cms}/bare"), &bare).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["data"]["x"], "2");

    // Disagreeing with the URL: upstream's 400s.
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let wrong = json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "d"}});
    let reply = admin.post_json(deployments, &wrong).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        message(&reply),
        "the API version in the data (v1) does not match the expected API version (apps/v1)"
    );
    let wrong = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let reply = admin.post_json(cms, &wrong).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(message(&reply).contains("Secret"), "{}", reply.text());
    assert_eq!(server.store.count("deployments", Some(NS)), 0);
    server.stop().await;
}

/// The store's revision and the ConfigMaps' stored bytes: compared before and after.
async fn state(admin: &HttpsClient) -> Value {
    admin
        .get("/api/v1/namespaces/default/configmaps")
        .await
        .json()
}

#[tokio::test]
async fn write_semantics_on_every_verb() {
    let server = TestApi::start().await;
    let admin = server.admin();
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    assert_eq!(admin.post_json(cms, &cm).await.status, 201);

    // resourceVersion on create: 400 as upstream.
    let mut pinned = cm.clone();
    pinned["metadata"] = json!({"name": "pinned", "resourceVersion": "5"});
    let reply = admin.post_json(cms, &pinned).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        message(&reply),
        "resourceVersion should not be set on objects to be created"
    );

    // dryRun=All on every verb: answers as if done, stores nothing.
    let before = state(&admin).await;
    let json_ct = [("content-type", "application/json")];
    let mut other = cm.clone();
    other["metadata"]["name"] = json!("dry");
    let reply = admin
        .request(
            "POST",
            &format!("{cms}?dryRun=All"),
            &json_ct,
            other.to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "create: {}", reply.text());
    let mut changed = admin.get(&format!("{cms}/c")).await.json();
    changed["data"]["a"] = json!("2");
    let reply = admin
        .request(
            "PUT",
            &format!("{cms}/c?dryRun=All"),
            &json_ct,
            changed.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "update: {}", reply.text());
    assert_eq!(reply.json()["data"]["a"], "2", "the would-be result");
    for (ct, patch) in [
        ("application/merge-patch+json", json!({"data": {"a": "3"}})),
        (
            "application/strategic-merge-patch+json",
            json!({"data": {"a": "3"}}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/data/a", "value": "3"}]),
        ),
    ] {
        let reply = admin
            .request(
                "PATCH",
                &format!("{cms}/c?dryRun=All"),
                &[("content-type", ct)],
                patch.to_string(),
            )
            .await;
        assert_eq!(reply.status, 200, "{ct}: {}", reply.text());
        assert_eq!(reply.json()["data"]["a"], "3", "{ct}");
    }
    let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "4"}});
    let reply = admin
        .request(
            "PATCH",
            &format!("{cms}/c?dryRun=All&fieldManager=t&force=true"),
            &[("content-type", "application/apply-patch+yaml")],
            apply.to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "apply: {}", reply.text());
    let reply = admin
        .request("DELETE", &format!("{cms}/c?dryRun=All"), &[], "")
        .await;
    assert_eq!(reply.status, 200, "delete: {}", reply.text());
    let reply = admin
        .request("DELETE", &format!("{cms}?dryRun=All"), &[], "")
        .await;
    assert_eq!(reply.status, 200, "deletecollection: {}", reply.text());
    assert_eq!(state(&admin).await, before, "dry runs stored nothing");

    // fieldValidation on create, update and every patch type.
    let mut unknown = cm.clone();
    unknown["metadata"]["name"] = json!("fv");
    unknown["bogus"] = json!(1);
    let current = |name: &str| format!("{cms}/{name}");
    for (mode, code, warns) in [
        ("Strict", 400, false),
        ("Warn", 201, true),
        ("Ignore", 201, false),
    ] {
        let mut body = unknown.clone();
        body["metadata"]["name"] = json!(format!("fv-{}", mode.to_ascii_lowercase()));
        let reply = admin
            .request(
                "POST",
                &format!("{cms}?fieldValidation={mode}"),
                &json_ct,
                body.to_string(),
            )
            .await;
        assert_eq!(reply.status, code, "create {mode}: {}", reply.text());
        assert_eq!(
            reply.headers.contains_key("warning"),
            warns,
            "create {mode}"
        );
    }
    let mut put = admin.get(&current("c")).await.json();
    put["bogus"] = json!(1);
    for (mode, code, warns) in [
        ("Strict", 400, false),
        ("Warn", 200, true),
        ("Ignore", 200, false),
    ] {
        let reply = admin
            .request(
                "PUT",
                &format!("{}?fieldValidation={mode}", current("c")),
                &json_ct,
                {
                    let mut p = put.clone();
                    p["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("resourceVersion");
                    p.to_string()
                },
            )
            .await;
        assert_eq!(reply.status, code, "update {mode}: {}", reply.text());
        assert_eq!(
            reply.headers.contains_key("warning"),
            warns,
            "update {mode}"
        );
    }
    for (ct, patch) in [
        ("application/merge-patch+json", json!({"bogus": 1})),
        (
            "application/strategic-merge-patch+json",
            json!({"bogus": 1}),
        ),
        (
            "application/json-patch+json",
            json!([{"op": "add", "path": "/bogus", "value": 1}]),
        ),
    ] {
        for (mode, code, warns) in [
            ("Strict", 400, false),
            ("Warn", 200, true),
            ("Ignore", 200, false),
        ] {
            let reply = admin
                .request(
                    "PATCH",
                    &format!("{}?fieldValidation={mode}", current("c")),
                    &[("content-type", ct)],
                    patch.to_string(),
                )
                .await;
            assert_eq!(reply.status, code, "{ct} {mode}: {}", reply.text());
            assert_eq!(reply.headers.contains_key("warning"), warns, "{ct} {mode}");
            if code == 400 {
                assert!(
                    message(&reply).contains("unknown field \"bogus\""),
                    "{}",
                    reply.text()
                );
            }
        }
    }
    let reply = admin
        .request(
            "PATCH",
            &format!("{}?fieldValidation=Sometimes", current("c")),
            &[("content-type", "application/merge-patch+json")],
            "{}",
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let stored = admin.get(&current("c")).await.json();
    assert!(
        stored.get("bogus").is_none(),
        "unknown fields are never stored: {stored}"
    );
    server.stop().await;
}
