//! The write path of `kubectl apply` through skiff-types, as the API server drives it: create a
//! Deployment from a manifest, apply it again with a changed image and replica count (the
//! strategic merge patch kubectl sends), scale it with a merge patch, then list it as a table.

use serde_json::{json, Value};
use skiff_types::defaults::apply_defaults;
use skiff_types::patch::{json_merge_patch, json_patch, strategic_merge};
use skiff_types::registry::find_by_kind;
use skiff_types::strategy::{prepare_for_create, prepare_for_update};
use skiff_types::table::{table_at, IncludeObject};
use skiff_types::validation::{check_types, unknown_fields, validate_create, validate_update};

fn manifest(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": 0.5, "memory": "128Mi"}}}]}
            }
        }
    })
}

/// What the store would do on top: uid, timestamps, resourceVersion, generation.
fn stored(mut object: Value, resource_version: u64, generation: i64) -> Value {
    object["metadata"]["uid"] = json!("0b7c4f2e-1111-4222-8333-444455556666");
    object["metadata"]["creationTimestamp"] = json!("2025-06-01T11:00:00Z");
    object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
    object["metadata"]["generation"] = json!(generation);
    object
}

#[test]
fn create_apply_scale_and_list_a_deployment() {
    let info = find_by_kind("apps/v1", "Deployment").expect("deployments are served");

    // kubectl apply (create): type check, strict fields, prepare, default, validate.
    let mut created = manifest("nginx:1.25", 2);
    check_types(info, &created).expect("well typed");
    assert!(unknown_fields(info, &created).is_empty());
    prepare_for_create(info, &mut created);
    apply_defaults(info, &mut created);
    validate_create(info, &created).expect("valid");
    assert_eq!(
        created["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"], "500m",
        "quantities are stored in canonical form"
    );
    let stored_v1 = stored(created, 10, 1);

    // kubectl apply (update): the three-way strategic merge patch kubectl computes.
    let patch = json!({
        "spec": {
            "replicas": 5,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"image": "nginx:1.27", "name": "web"}]
            }}
        }
    });
    let mut updated = strategic_merge(info, &stored_v1, &patch).expect("patch applies");
    check_types(info, &updated).expect("still well typed");
    prepare_for_update(info, &stored_v1, &mut updated);
    apply_defaults(info, &mut updated);
    validate_update(info, &stored_v1, &updated).expect("valid update");
    assert_eq!(updated["spec"]["replicas"], 5);
    let container = &updated["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(updated["metadata"]["uid"], stored_v1["metadata"]["uid"]);
    let stored_v2 = stored(updated, 11, 2);

    // kubectl scale (merge patch on the main resource here; the /scale subresource is the
    // API server's).
    let scaled = json_merge_patch(&stored_v2, &json!({"spec": {"replicas": 1}}));
    validate_update(info, &stored_v2, &scaled).expect("scale");
    assert_eq!(scaled["spec"]["replicas"], 1);

    // A JSON patch changing the selector is refused with upstream's message.
    let bad = json_patch(
        &stored_v2,
        &json!([{"op": "replace", "path": "/spec/selector/matchLabels/app", "value": "api"}]),
    )
    .expect("patch applies");
    let err = validate_update(info, &stored_v2, &bad).expect_err("selector is immutable");
    assert!(err.message(&info.qualified_kind(), "web").contains("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"api\"}"));

    // kubectl get deploy
    let mut with_status = stored_v2.clone();
    with_status["status"] =
        json!({"replicas": 5, "readyReplicas": 4, "updatedReplicas": 5, "availableReplicas": 4});
    let now = "2025-06-01T12:00:00Z".parse().expect("time");
    let table = table_at(
        info,
        &[with_status],
        json!({"resourceVersion": "11"}),
        IncludeObject::Metadata,
        now,
    );
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["web", "4/5", 5, 4, "60m", "web", "nginx:1.27", "app=web"])
    );
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "web");
}
