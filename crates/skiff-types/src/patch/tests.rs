use super::*;
use crate::registry::find;
use serde_json::json;

fn deployments() -> &'static ResourceInfo {
    find("apps", "v1", "deployments").expect("deployments")
}

#[test]
fn kubectl_apply_changes_image_and_replicas() {
    let original = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "sidecar", "image": "busybox"}]}}}});
    let patch = json!({"spec": {"replicas": 5, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:1.27", "name": "web"}]}}}});
    let merged = strategic_merge(deployments(), &original, &patch).expect("patch applies");
    assert_eq!(merged["spec"]["replicas"], 5);
    let containers = &merged["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    assert_eq!(
        containers[1],
        json!({"name": "sidecar", "image": "busybox"})
    );
}
