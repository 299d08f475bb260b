//! Node registration: create or update the Node from what the agent reports, and keep its
//! Ready condition fresh.

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_store::Key;

use super::error::{message, status_code};
use super::Shared;

/// Condition types the agent does not report get these defaults (all healthy).
const DEFAULT_CONDITIONS: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "skiff agent has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "skiff agent has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "skiff agent has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "skiff agent is posting ready status",
    ),
];

/// Creates or updates node `name` from the agent's `reported` Node; returns the Node's uid.
///
/// Labels the agent reports are merged into existing ones (through the API as the node, so
/// NodeRestriction refuses labels outside the kubelet's set); taints are set only when the
/// Node is created (as upstream's kubelet: afterwards they belong to the cluster's users and
/// controllers), where labels outside that set are refused as upstream's create check does;
/// `podCIDR(s)` and `unschedulable` are never taken from the agent; the status (capacity,
/// allocatable, addresses, nodeInfo, conditions) is the agent's.
/// The role label upstream gives control-plane nodes.
const CONTROL_PLANE_ROLE_LABEL: &str = "node-role.kubernetes.io/control-plane";

pub(crate) async fn register(
    shared: &Shared,
    as_node: &kube::Client,
    name: &str,
    reported: &Node,
) -> Result<String, String> {
    let nodes: Api<Node> = Api::all(as_node.clone());
    let existing = nodes
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read node {name}: {}", message(&e)))?;
    let existing = match existing {
        Some(node) => {
            let labels = reported.metadata.labels.clone().unwrap_or_default();
            let current = node.metadata.labels.clone().unwrap_or_default();
            if labels.iter().any(|(k, v)| current.get(k) != Some(v)) {
                nodes
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"labels": labels}})),
                    )
                    .await
                    .map_err(|e| {
                        format!("cannot update the labels of node {name}: {}", message(&e))
                    })?
            } else {
                node
            }
        }
        None => {
            // Created with the server's identity, so NodeRestriction's create check is made
            // here: the agent proposes labels and taints, the server assigns the rest.
            // The control-plane role of the server's own node is the server's to assign.
            let mut proposed = reported.metadata.labels.clone().unwrap_or_default();
            if shared.settings.control_plane_node.as_deref() == Some(name) {
                proposed.remove(CONTROL_PLANE_ROLE_LABEL);
            }
            let labels = serde_json::to_value(&proposed).unwrap_or_default();
            skiff_apiserver::node_restriction::check_node_create(
                name,
                &json!({"metadata": {"labels": labels}}),
            )?;
            let mut node = Node {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.to_string()),
                    labels: reported.metadata.labels.clone(),
                    annotations: reported.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: reported.spec.clone(),
                status: None,
            };
            if let Some(spec) = node.spec.as_mut() {
                // The pod CIDR comes from the server's node IPAM, cordoning from the users.
                spec.pod_cidr = None;
                spec.pod_cidrs = None;
                spec.unschedulable = None;
                spec.provider_id = spec
                    .provider_id
                    .take()
                    .or_else(|| Some(format!("skiff://{name}")));
            }
            // Created with the server's identity: the authorizer cannot check a name on create.
            let admin: Api<Node> = Api::all(shared.admin.clone());
            match admin.create(&PostParams::default(), &node).await {
                Ok(created) => created,
                Err(error) if status_code(&error) == Some(409) => nodes
                    .get(name)
                    .await
                    .map_err(|e| format!("cannot read node {name}: {}", message(&e)))?,
                Err(error) => {
                    return Err(format!("cannot create node {name}: {}", message(&error)))
                }
            }
        }
    };
    let status = status_for(
        reported.status.clone().unwrap_or_default(),
        existing.status.as_ref(),
    );
    let updated = nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|e| format!("cannot update the status of node {name}: {}", message(&e)))?;
    Ok(updated.metadata.uid.unwrap_or_default())
}

/// The status to write: the agent's, with every condition present and heartbeat times now
/// (transition times kept when the condition's status did not change).
fn status_for(mut reported: NodeStatus, existing: Option<&NodeStatus>) -> NodeStatus {
    let now = Time(jiff::Timestamp::now());
    let previous = existing.and_then(|s| s.conditions.as_ref());
    let mut conditions = reported.conditions.take().unwrap_or_default();
    for (type_, status, reason, msg) in DEFAULT_CONDITIONS {
        if !conditions.iter().any(|c| c.type_ == type_) {
            conditions.push(NodeCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(msg.to_string()),
                ..Default::default()
            });
        }
    }
    for condition in &mut conditions {
        condition.last_heartbeat_time = Some(now.clone());
        let before = previous.and_then(|p| p.iter().find(|c| c.type_ == condition.type_));
        condition.last_transition_time = match before {
            Some(b) if b.status == condition.status && b.last_transition_time.is_some() => {
                b.last_transition_time.clone()
            }
            _ => Some(now.clone()),
        };
    }
    reported.conditions = Some(conditions);
    reported
}

/// What the node's stored Ready condition says, read from the store's memory (cheap enough to
/// do on every heartbeat). `None` when the Node does not exist.
pub(crate) fn stored_ready(shared: &Shared, name: &str) -> Option<bool> {
    let node = shared.api.store().get(&Key::cluster("nodes", name))?;
    let value = node.value();
    let ready = value["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True")
        .unwrap_or(false);
    Some(ready)
}

/// Refreshes the heartbeat times of the node's conditions (and marks it Ready again if a
/// controller set it otherwise while the node kept its lease).
pub(crate) async fn refresh_status(
    as_node: &kube::Client,
    name: &str,
    reported: &Node,
) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(as_node.clone());
    let existing = nodes
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read node {name}: {}", message(&e)))?
        .ok_or_else(|| format!("node {name} does not exist"))?;
    let mut reported_status = reported.status.clone().unwrap_or_default();
    // Only the conditions: capacity and addresses change through registration.
    let status = status_for(
        NodeStatus {
            conditions: reported_status.conditions.take(),
            ..Default::default()
        },
        existing.status.as_ref(),
    );
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": status.conditions}})),
        )
        .await
        .map_err(|e| format!("cannot update the status of node {name}: {}", message(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fills_conditions_and_keeps_transition_times() {
        let first = status_for(NodeStatus::default(), None);
        let conditions = first.conditions.clone().unwrap();
        assert_eq!(conditions.len(), 4);
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        let old_transition = ready.last_transition_time.clone();
        let second = status_for(NodeStatus::default(), Some(&first));
        let ready2 = second
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready2.last_transition_time, old_transition);
    }
}
