//! NodeRestriction for a node's own Node object, as upstream's admission plugin
//! (`plugin/pkg/admission/noderestriction`): a node may register with labels only from the
//! kubelet's allowed set, and may afterwards change neither its taints, nor labels outside that
//! set, nor what the cluster assigns it (`spec.podCIDR(s)`, `spec.unschedulable`). A node that
//! could would steer workloads to itself (remove a `NoSchedule` taint, add a
//! `node-role.kubernetes.io/control-plane` label) or hijack another node's pod traffic (claim
//! its pod CIDR).

use std::collections::BTreeSet;

use serde_json::Value;

/// Labels a kubelet may set on its Node (upstream `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: [&str; 12] = [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "node.kubernetes.io/windows-build",
];

/// Label namespaces (and their subdomains) a kubelet may use freely.
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The namespace no node may ever set (it marks nodes for workload isolation).
const NODE_RESTRICTION_NAMESPACE: &str = "node-restriction.kubernetes.io";

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
}

/// Whether a kubelet may set label `key` (upstream `IsKubeletLabel`).
fn is_kubelet_label(key: &str) -> bool {
    if KUBELET_LABELS.contains(&key) {
        return true;
    }
    let namespace = label_namespace(key);
    KUBELET_LABEL_NAMESPACES
        .iter()
        .any(|allowed| in_namespace(namespace, allowed))
}

/// Whether `key` is forbidden to nodes: the `node-restriction.kubernetes.io` namespace, and
/// `kubernetes.io`/`k8s.io` labels that are not kubelet labels (so `node-role.kubernetes.io/*`
/// is refused, `example.com/rack` is not).
pub fn is_forbidden_node_label(key: &str) -> bool {
    let namespace = label_namespace(key);
    if in_namespace(namespace, NODE_RESTRICTION_NAMESPACE) {
        return true;
    }
    let kubernetes = in_namespace(namespace, "kubernetes.io") || in_namespace(namespace, "k8s.io");
    kubernetes && !is_kubelet_label(key)
}

/// The forbidden labels among those `new` adds or changes (or `old` had and `new` drops)
/// compared with `old`, sorted.
pub fn forbidden_label_changes(new: &Value, old: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let new = new.as_object().unwrap_or(&empty);
    let old = old.and_then(Value::as_object).unwrap_or(&empty);
    let mut changed: BTreeSet<&String> = BTreeSet::new();
    for (key, value) in new {
        if old.get(key) != Some(value) {
            changed.insert(key);
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) {
            changed.insert(key);
        }
    }
    changed
        .into_iter()
        .filter(|key| is_forbidden_node_label(key))
        .cloned()
        .collect()
}

/// Upstream's create check: the forbidden labels a node registers with, as its message.
pub fn check_node_create(node: &str, object: &Value) -> Result<(), String> {
    let forbidden = forbidden_label_changes(&object["metadata"]["labels"], None);
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "node {node:?} is not allowed to set the following labels: {}",
            forbidden.join(", ")
        ))
    }
}

/// Upstream's update checks, plus the fields the server assigns (`podCIDR(s)`,
/// `unschedulable`): what `node` may not change from `old` to `new` on its own Node.
pub fn check_node_update(node: &str, old: &Value, new: &Value) -> Result<(), String> {
    let spec = |object: &Value, field: &str| {
        let value = object["spec"][field].clone();
        // Absent, null, false and empty lists mean the same (omitempty).
        match value {
            Value::Bool(false) => Value::Null,
            Value::Array(ref items) if items.is_empty() => Value::Null,
            Value::String(ref text) if text.is_empty() => Value::Null,
            other => other,
        }
    };
    if spec(old, "taints") != spec(new, "taints") {
        return Err(format!("node {node:?} is not allowed to modify taints"));
    }
    for field in ["podCIDR", "podCIDRs"] {
        if spec(old, field) != spec(new, field) {
            return Err(format!("node {node:?} is not allowed to modify {field}"));
        }
    }
    if spec(old, "unschedulable") != spec(new, "unschedulable") {
        return Err(format!(
            "node {node:?} is not allowed to modify unschedulable"
        ));
    }
    let forbidden =
        forbidden_label_changes(&new["metadata"]["labels"], Some(&old["metadata"]["labels"]));
    if !forbidden.is_empty() {
        return Err(format!(
            "node {node:?} is not allowed to modify labels: {}",
            forbidden.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_policy_matches_upstream() {
        for allowed in [
            "kubernetes.io/hostname",
            "kubernetes.io/arch",
            "beta.kubernetes.io/os",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/anything",
            "kubelet.kubernetes.io/x",
            "sub.kubelet.kubernetes.io/x",
            "topology.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region",
            "example.com/rack",
            "plain",
        ] {
            assert!(!is_forbidden_node_label(allowed), "{allowed}");
        }
        for forbidden in [
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/master",
            "node-restriction.kubernetes.io/pool",
            "example.node-restriction.kubernetes.io/pool",
            "kubernetes.io/role",
            "k8s.io/x",
            "foo.k8s.io/x",
        ] {
            assert!(is_forbidden_node_label(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn updates_may_not_touch_taints_cidrs_or_restricted_labels() {
        let old = json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1", "node-role.kubernetes.io/worker": "true"}},
            "spec": {"podCIDR": "10.42.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]}});
        assert!(check_node_update("n1", &old, &old).is_ok());
        let mut new = old.clone();
        new["metadata"]["labels"]["example.com/rack"] = json!("r1");
        new["metadata"]["labels"]["kubernetes.io/hostname"] = json!("other");
        assert!(check_node_update("n1", &old, &new).is_ok());
        let mut new = old.clone();
        new["spec"]["taints"] = json!([]);
        assert_eq!(
            check_node_update("n1", &old, &new).unwrap_err(),
            "node \"n1\" is not allowed to modify taints"
        );
        let mut new = old.clone();
        new["spec"]["podCIDR"] = json!("10.42.2.0/24");
        assert!(check_node_update("n1", &old, &new)
            .unwrap_err()
            .contains("modify podCIDR"));
        let mut new = old.clone();
        new["spec"]["unschedulable"] = json!(true);
        assert!(check_node_update("n1", &old, &new)
            .unwrap_err()
            .contains("modify unschedulable"));
        // Removing a restricted label is a modification too.
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"kubernetes.io/hostname": "n1"});
        assert_eq!(
            check_node_update("n1", &old, &new).unwrap_err(),
            "node \"n1\" is not allowed to modify labels: node-role.kubernetes.io/worker"
        );
        let create = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "a": "b"}}});
        assert_eq!(
            check_node_create("n1", &create).unwrap_err(),
            "node \"n1\" is not allowed to set the following labels: node-role.kubernetes.io/control-plane"
        );
    }
}
