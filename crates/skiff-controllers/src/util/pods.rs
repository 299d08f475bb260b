//! Pod state as the workload controllers read it (upstream `podutil`).

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// `status.phase`, or `""`.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod has finished (`Succeeded` or `Failed`).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Upstream `IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// The condition of `type_`, if present.
pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Upstream `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32) -> bool {
    let Some(ready) = condition(pod, "Ready").filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &ready.last_transition_time {
        Some(t) => super::meta::seconds_since(t) >= f64::from(min_ready_seconds),
        None => false,
    }
}

/// Seconds until a ready pod becomes available (`None` if it is not ready or already is).
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32) -> Option<f64> {
    let ready = condition(pod, "Ready").filter(|c| c.status == "True")?;
    if min_ready_seconds <= 0 {
        return None;
    }
    let since = super::meta::seconds_since(ready.last_transition_time.as_ref()?);
    let left = f64::from(min_ready_seconds) - since;
    (left > 0.0).then_some(left)
}

/// The node the pod is bound to, or `""`.
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Total container restarts, for ranking pods to delete.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .map(|l| l.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// A new pod from `template`, controlled by `owner`, named `<prefix>-<random>` by the API
/// server (upstream `GetPodFromTemplate`).
pub fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: String,
    owner: OwnerReference,
) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_string()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The `generateName` of a controller's pods: `<owner>-`, shortened as upstream so the API
/// server's 5 random characters still fit in 63.
pub fn generate_name_prefix(owner_name: &str) -> String {
    const MAX_PREFIX: usize = 63 - 5 - 1;
    let mut prefix: String = owner_name.chars().take(MAX_PREFIX).collect();
    prefix.push('-');
    prefix
}

/// Orders pods so the ones to delete first come first (upstream `ActivePods` ordering used
/// for scale-down): unassigned < assigned, pending < unknown < running, not ready < ready,
/// more restarts first, newer first.
pub fn deletion_cost_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let assigned = |p: &Pod| !node_name(p).is_empty();
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.clone();
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        // Newer pods (later creation) are deleted first.
        .then_with(|| match (created(a), created(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, node: &str, ready: bool) -> Pod {
        crate::fixtures::pod("p", phase, node, ready)
    }

    #[test]
    fn activity_and_readiness() {
        assert!(is_active(&pod("Running", "n1", true)));
        assert!(!is_active(&pod("Succeeded", "n1", false)));
        assert!(is_ready(&pod("Running", "n1", true)));
        assert!(is_available(&pod("Running", "n1", true), 0));
        assert!(!is_available(&pod("Running", "n1", false), 0));
    }

    #[test]
    fn scale_down_prefers_unassigned_then_not_ready() {
        let mut pods = [
            pod("Running", "n1", true),
            pod("Pending", "", false),
            pod("Running", "n1", false),
        ];
        pods.sort_by(deletion_cost_order);
        assert_eq!(node_name(&pods[0]), "");
        assert!(!is_ready(&pods[1]));
        assert!(is_ready(&pods[2]));
    }

    #[test]
    fn prefix_fits_generated_names() {
        assert_eq!(generate_name_prefix("web"), "web-");
        let long = "a".repeat(80);
        assert_eq!(generate_name_prefix(&long).len(), 58);
    }
}
