//! Pure helpers of the Deployment controller (upstream `deploymentutil`): surge and
//! unavailability fenceposts, revisions, replica counts over ReplicaSets, conditions, status.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::util::meta::now;

/// Annotation holding a ReplicaSet's (and the Deployment's) revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Annotation listing the earlier revisions a ReplicaSet had.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Annotation holding the Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation holding replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations never copied from a Deployment onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Condition types and reasons (upstream `deploymentutil`).
pub mod reason {
    /// Progressing: a new ReplicaSet was created.
    pub const NEW_RS: &str = "NewReplicaSetCreated";
    /// Progressing: a ReplicaSet was scaled or its pods progressed.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// Progressing: the new ReplicaSet is fully available.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// Progressing=False: no progress within the deadline.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Progressing=Unknown: paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Progressing=Unknown: resumed.
    pub const RESUMED: &str = "DeploymentResumed";
    /// Available=True.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Available=False.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    /// ReplicaFailure=True: a ReplicaSet cannot create pods.
    pub const FAILED_CREATE: &str = "FailedCreate";
}

/// `spec.replicas` (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas` (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's available replicas.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Whether the strategy is `Recreate`.
pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// `IntOrString` scaled against `total` (upstream `GetScaledValueFromIntOrPercent`).
pub fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(v)) => *v,
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                // Validation refuses anything else; treat it as zero.
                return 0;
            };
            let product = p * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            v as i32
        }
    }
}

/// Upstream `ResolveFenceposts`: maxSurge (rounded up) and maxUnavailable (rounded down);
/// if both are zero, maxUnavailable becomes 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default_quarter = IntOrString::String("25%".into());
    let surge_value = rolling
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&default_quarter);
    let unavailable_value = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default_quarter);
    let desired = replicas(d);
    let surge = scaled(Some(surge_value), desired, true);
    let mut unavailable = scaled(Some(unavailable_value), desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// Upstream `MaxUnavailable`: the fencepost, at most the replicas (0 for Recreate or no
/// replicas).
pub fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Upstream `MaxSurge` (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        return 0;
    }
    fenceposts(d).0
}

/// The revision annotation of an object (0 when missing or malformed).
pub fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sum of `spec.replicas` of the sets.
pub fn spec_replicas_sum(sets: &[Arc<ReplicaSet>]) -> i32 {
    sets.iter().map(|rs| rs_replicas(rs)).sum()
}

/// Sum of `status.replicas` of the sets.
pub fn actual_replicas_sum(sets: &[Arc<ReplicaSet>]) -> i32 {
    sets.iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum()
}

/// Sum of ready replicas.
pub fn ready_sum(sets: &[Arc<ReplicaSet>]) -> i32 {
    sets.iter()
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum()
}

/// Sum of available replicas.
pub fn available_sum(sets: &[Arc<ReplicaSet>]) -> i32 {
    sets.iter().map(|rs| rs_available(rs)).sum()
}

/// Upstream `NewRSNewReplicas` for a rolling update: how far the new set may grow now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[Arc<ReplicaSet>], new_replicas: i32) -> i32 {
    if is_recreate(d) {
        return replicas(d);
    }
    let max_total = replicas(d) + max_surge(d);
    let current = spec_replicas_sum(all);
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(replicas(d) - new_replicas).max(0);
    new_replicas + up
}

/// The annotations a new ReplicaSet gets from its Deployment.
pub fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The Progressing (or other) condition of a status.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// A condition stamped now.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let t = now();
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

/// Upstream `SetDeploymentCondition`: no change if status and reason are the same; the
/// transition time is kept when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = condition(status, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

/// Removes the condition of `type_`.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(list) = status.conditions.as_mut() {
        list.retain(|c| c.type_ != type_);
    }
}

/// Upstream `calculateStatus`.
pub fn calculate_status(
    d: &Deployment,
    all: &[Arc<ReplicaSet>],
    new_rs: Option<&Arc<ReplicaSet>>,
) -> DeploymentStatus {
    let available = available_sum(all);
    let total = spec_replicas_sum(all);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual_replicas_sum(all)),
        updated_replicas: Some(new_rs.map_or(0, |rs| rs.status.as_ref().map_or(0, |s| s.replicas))),
        ready_replicas: Some(ready_sum(all)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    status
}

/// Upstream `DeploymentComplete`.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream `DeploymentProgressing`: more updated, fewer old, more ready or more available
/// replicas than the stored status says.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// `progressDeadlineSeconds`, if set (the API server defaults it to 600).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s > 0 && *s < i32::MAX)
}

/// Seconds until the Progressing condition of `status` times out (negative: already).
pub fn seconds_to_deadline(d: &Deployment, status: &DeploymentStatus) -> Option<f64> {
    let deadline = progress_deadline(d)?;
    let c = condition(status, "Progressing")?;
    if c.reason.as_deref() == Some(reason::NEW_RS_AVAILABLE)
        || c.reason.as_deref() == Some(reason::TIMED_OUT)
    {
        return None;
    }
    let from = c.last_update_time.as_ref()?;
    Some(f64::from(deadline) - crate::util::meta::seconds_since(from))
}

/// Upstream `DeploymentTimedOut`.
pub fn is_timed_out(d: &Deployment, status: &DeploymentStatus) -> bool {
    if progress_deadline(d).is_none() {
        return false;
    }
    match condition(status, "Progressing") {
        Some(c) if c.reason.as_deref() == Some(reason::TIMED_OUT) => true,
        Some(_) => seconds_to_deadline(d, status).is_some_and(|s| s <= 0.0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::rolling_deployment as deployment;

    fn rs(spec: i32, available: i32) -> Arc<ReplicaSet> {
        crate::fixtures::replica_set("rs", 0, spec, available)
    }

    #[test]
    fn percentages_round_as_upstream() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled(Some(&p("25%")), 10, true), 3);
        assert_eq!(scaled(Some(&p("25%")), 10, false), 2);
        assert_eq!(scaled(Some(&IntOrString::Int(4)), 10, true), 4);
        let d = deployment(10, p("25%"), p("25%"));
        assert_eq!(fenceposts(&d), (3, 2));
        // Both zero: one may be unavailable.
        let d = deployment(1, p("0%"), p("0%"));
        assert_eq!(fenceposts(&d), (0, 1));
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        let d = deployment(3, IntOrString::Int(1), IntOrString::Int(0));
        // Old set at 3, new at 0: one more pod may exist.
        assert_eq!(new_rs_new_replicas(&d, &[rs(3, 3), rs(0, 0)], 0), 1);
        // Total already at 4: wait.
        assert_eq!(new_rs_new_replicas(&d, &[rs(3, 3), rs(1, 0)], 1), 1);
        // Never past the desired count.
        assert_eq!(new_rs_new_replicas(&d, &[rs(0, 0), rs(3, 3)], 3), 3);
    }

    #[test]
    fn status_and_conditions() {
        let mut d = deployment(2, IntOrString::Int(1), IntOrString::Int(0));
        d.metadata.generation = Some(3);
        let new = rs(2, 2);
        let status = calculate_status(&d, std::slice::from_ref(&new), Some(&new));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(2));
        assert_eq!(status.observed_generation, Some(3));
        let available = condition(&status, "Available").unwrap();
        assert_eq!(available.status, "True");
        assert_eq!(available.reason.as_deref(), Some(reason::MIN_AVAILABLE));
        assert!(is_complete(&d, &status));
        let partial = calculate_status(&d, &[rs(2, 1)], None);
        assert_eq!(condition(&partial, "Available").unwrap().status, "False");
        assert!(!is_complete(&d, &partial));
    }

    #[test]
    fn conditions_keep_transition_times() {
        let mut status = DeploymentStatus::default();
        let mut first = new_condition("Progressing", "True", reason::NEW_RS, "a".into());
        first.last_transition_time = Some(crate::util::meta::now());
        let t0 = first.last_transition_time.clone();
        set_condition(&mut status, first);
        std::thread::sleep(std::time::Duration::from_millis(5));
        set_condition(
            &mut status,
            new_condition("Progressing", "True", reason::RS_UPDATED, "b".into()),
        );
        let c = condition(&status, "Progressing").unwrap();
        assert_eq!(c.reason.as_deref(), Some(reason::RS_UPDATED));
        assert_eq!(c.last_transition_time, t0);
    }
}
