use super::*;
use crate::registry::find;

#[test]
fn pod_defaults_match_upstream() {
    let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    apply_defaults(find("", "v1", "pods").expect("pods"), &mut pod);
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
}
