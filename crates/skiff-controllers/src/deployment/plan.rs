//! What the Deployment controller changes, computed without touching the API: the replica
//! targets of its ReplicaSets for a rolling update (upstream `NewRSNewReplicas`,
//! `reconcileOldReplicaSets`) and for scaling (upstream `scale`, proportional during a
//! rollout). `Rollout` in the parent module applies a plan, one ReplicaSet write per step, so
//! the arithmetic is tested with tables (as upstream's `deployment/util` and `rolling` tests)
//! and the reconcile stays a thin loop over API calls.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::util::{
    available_sum, is_recreate, max_surge, max_unavailable, new_rs_new_replicas, replicas,
    rs_available, rs_replicas, spec_replicas_sum, DESIRED_REPLICAS,
};

/// One change: set `set`'s `spec.replicas` to `to` (and its scaling annotations).
#[derive(Debug, Clone)]
pub struct Step {
    /// The ReplicaSet to scale.
    pub set: Arc<ReplicaSet>,
    /// Its new `spec.replicas`.
    pub to: i32,
}

/// The sets with replicas.
pub fn active(sets: &[Arc<ReplicaSet>]) -> Vec<Arc<ReplicaSet>> {
    sets.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .cloned()
        .collect()
}

/// Old sets plus the new one, in that order.
pub fn all_sets(new: &Option<Arc<ReplicaSet>>, old: &[Arc<ReplicaSet>]) -> Vec<Arc<ReplicaSet>> {
    let mut all: Vec<Arc<ReplicaSet>> = old.to_vec();
    if let Some(n) = new {
        all.push(n.clone());
    }
    all
}

/// Upstream `FindActiveOrLatest`: the only set with replicas, or the newest when none has any.
pub fn active_or_latest(
    new: Option<&Arc<ReplicaSet>>,
    old: &[Arc<ReplicaSet>],
) -> Option<Arc<ReplicaSet>> {
    if new.is_none() && old.is_empty() {
        return None;
    }
    let mut old_sorted = old.to_vec();
    old_sorted.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    let all = active(&all_sets(&new.cloned(), &old_sorted));
    match all.len() {
        0 => new.cloned().or_else(|| old_sorted.first().cloned()),
        1 => Some(all[0].clone()),
        _ => None,
    }
}

/// Upstream `reconcileNewReplicaSet`: the new set's next replica count during a rolling
/// update, or `None` when it is where it should be.
pub fn plan_new_set(d: &Deployment, all: &[Arc<ReplicaSet>], new: &ReplicaSet) -> Option<i32> {
    let want = replicas(d);
    let have = rs_replicas(new);
    if have == want {
        return None;
    }
    if have > want {
        return Some(want);
    }
    Some(new_rs_new_replicas(d, all, have))
}

/// Upstream `reconcileOldReplicaSets`: how far the old sets go down now, as availability
/// allows. Unhealthy replicas go first (oldest sets first, at most `maxScaledDown`); only when
/// there are none, healthy ones down to `replicas - maxUnavailable` available. (Upstream does
/// both in one pass; here a clean-up is its own step and the next reconcile, triggered by
/// the ReplicaSet's change, scales healthy replicas down — the same end state.)
pub fn plan_old_scale_down(
    d: &Deployment,
    all: &[Arc<ReplicaSet>],
    old_active: &[Arc<ReplicaSet>],
    new: Option<&Arc<ReplicaSet>>,
) -> Vec<Step> {
    let old_count = spec_replicas_sum(old_active);
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = spec_replicas_sum(all);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = new.map_or(0, |rs| rs_replicas(rs) - rs_available(rs));
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut old_sorted = old_active.to_vec();
    old_sorted.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    // Unhealthy replicas first (upstream `cleanupUnhealthyReplicas`).
    let mut cleaned = 0;
    let mut steps = Vec::new();
    for rs in &old_sorted {
        let have = rs_replicas(rs);
        let unhealthy = have - rs_available(rs);
        if cleaned >= max_scaled_down || have == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        steps.push(Step {
            set: rs.clone(),
            to: have - down,
        });
        cleaned += down;
    }
    if !steps.is_empty() {
        return steps;
    }
    // Then healthy replicas (upstream `scaleDownOldReplicaSetsForRollingUpdate`).
    let available = available_sum(all);
    if available <= min_available {
        return Vec::new();
    }
    let total_down = available - min_available;
    let mut done = 0;
    for rs in old_sorted {
        if done >= total_down {
            break;
        }
        let have = rs_replicas(&rs);
        if have == 0 {
            continue;
        }
        let down = have.min(total_down - done);
        steps.push(Step {
            set: rs,
            to: have - down,
        });
        done += down;
    }
    steps
}

/// Upstream `scale` (scaling and paused Deployments): one active set gets all replicas; a
/// saturated new set lets the old ones go to zero; otherwise the difference between
/// `replicas + maxSurge` and what the active sets have is shared in proportion to their size
/// (larger sets first, newer first when growing, older first when shrinking; the rounding
/// leftover goes to the first). Steps may keep a count (they then only refresh the scaling
/// annotations).
pub fn plan_scale(
    d: &Deployment,
    new: Option<&Arc<ReplicaSet>>,
    old: &[Arc<ReplicaSet>],
) -> Vec<Step> {
    let want = replicas(d);
    if let Some(rs) = active_or_latest(new, old) {
        if rs_replicas(&rs) == want {
            return Vec::new();
        }
        return vec![Step { set: rs, to: want }];
    }
    let saturated = new.is_some_and(|rs| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_REPLICAS))
            == Some(&want.to_string())
            && rs_available(rs) == want
            && rs_replicas(rs) == want
    });
    if saturated {
        return active(old)
            .into_iter()
            .map(|set| Step { set, to: 0 })
            .collect();
    }
    if is_recreate(d) {
        return Vec::new();
    }
    let mut sets = active(&all_sets(&new.cloned(), old));
    let current = spec_replicas_sum(&sets);
    let allowed = if want > 0 { want + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    if to_add == 0 || current == 0 {
        return Vec::new();
    }
    if to_add > 0 {
        sets.sort_by(|a, b| {
            rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
                b.metadata
                    .creation_timestamp
                    .cmp(&a.metadata.creation_timestamp)
            })
        });
    } else {
        sets.sort_by(|a, b| {
            rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
        });
    }
    let mut targets: Vec<i32> = sets
        .iter()
        .map(|rs| rs_replicas(rs) + rs_replicas(rs) * to_add / current)
        .collect();
    let mut leftover = allowed - targets.iter().sum::<i32>();
    for t in targets.iter_mut() {
        if leftover == 0 {
            break;
        }
        let change = if leftover > 0 {
            leftover
        } else {
            leftover.max(-*t)
        };
        *t += change;
        leftover -= change;
    }
    sets.into_iter()
        .zip(targets)
        .map(|(set, to)| Step { set, to: to.max(0) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{replica_set as rs, rolling_deployment as deployment};

    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn int(v: i32) -> IntOrString {
        IntOrString::Int(v)
    }

    fn pct(v: &str) -> IntOrString {
        IntOrString::String(v.into())
    }

    fn with_desired(set: Arc<ReplicaSet>, desired: i32) -> Arc<ReplicaSet> {
        let mut set = (*set).clone();
        set.metadata.annotations = Some(
            [(DESIRED_REPLICAS.to_string(), desired.to_string())]
                .into_iter()
                .collect(),
        );
        Arc::new(set)
    }

    fn names(steps: &[Step]) -> Vec<(String, i32)> {
        steps
            .iter()
            .map(|s| (s.set.metadata.name.clone().unwrap_or_default(), s.to))
            .collect()
    }

    /// Upstream `TestNewRSNewReplicas` plus the fenceposts around it.
    #[test]
    fn new_set_grows_within_surge() {
        struct Case {
            name: &'static str,
            replicas: i32,
            surge: IntOrString,
            new_spec: i32,
            old_spec: i32,
            want: Option<i32>,
        }
        let cases = [
            Case {
                // upstream "can not scale up - to newRSReplicas"
                name: "surge 1: 1 of 1 new, old at 5 of 1 desired",
                replicas: 1,
                surge: int(1),
                new_spec: 0,
                old_spec: 5,
                want: Some(0),
            },
            Case {
                // upstream "scale up - to depReplicas"
                name: "surge 3 of 6: new 2, old 5 -> new 4 (total 9)",
                replicas: 6,
                surge: int(3),
                new_spec: 2,
                old_spec: 5,
                want: Some(4),
            },
            Case {
                name: "surge 25% of 10 rounds up to 3: new 0, old 10 -> 3",
                replicas: 10,
                surge: pct("25%"),
                new_spec: 0,
                old_spec: 10,
                want: Some(3),
            },
            Case {
                name: "never past the desired count",
                replicas: 3,
                surge: int(5),
                new_spec: 2,
                old_spec: 1,
                want: Some(3),
            },
            Case {
                name: "already at the desired count",
                replicas: 3,
                surge: int(1),
                new_spec: 3,
                old_spec: 1,
                want: None,
            },
            Case {
                name: "above the desired count: back to it at once",
                replicas: 3,
                surge: int(1),
                new_spec: 5,
                old_spec: 0,
                want: Some(3),
            },
        ];
        for c in cases {
            let d = deployment(c.replicas, c.surge, int(0));
            let new = rs("new", 2, c.new_spec, 0);
            let all = vec![rs("old", 1, c.old_spec, c.old_spec), new.clone()];
            assert_eq!(plan_new_set(&d, &all, &new), c.want, "{}", c.name);
        }
    }

    /// Upstream `TestDeploymentController_reconcileOldReplicaSets` (one old, one new set;
    /// maxSurge 0).
    #[test]
    fn old_sets_scale_down_as_availability_allows() {
        struct Case {
            name: &'static str,
            replicas: i32,
            unavailable: i32,
            old_spec: i32,
            new_spec: i32,
            old_ready: i32,
            new_ready: i32,
            /// Old set's replicas after each reconcile until nothing is left to do.
            passes: &'static [i32],
        }
        let cases = [
            Case {
                name: "maxUnavailable 0 (resolved to 1): one at a time",
                replicas: 10,
                unavailable: 0,
                old_spec: 10,
                new_spec: 0,
                old_ready: 10,
                new_ready: 0,
                passes: &[9],
            },
            Case {
                name: "maxUnavailable 2: two at once",
                replicas: 10,
                unavailable: 2,
                old_spec: 10,
                new_spec: 0,
                old_ready: 10,
                new_ready: 0,
                passes: &[8],
            },
            Case {
                name: "unhealthy old replicas are cleaned up",
                replicas: 10,
                unavailable: 2,
                old_spec: 10,
                new_spec: 0,
                old_ready: 8,
                new_ready: 0,
                passes: &[8],
            },
            Case {
                // upstream reaches 8 in one pass
                name: "one unhealthy cleaned up, then one ready scaled down",
                replicas: 10,
                unavailable: 2,
                old_spec: 10,
                new_spec: 0,
                old_ready: 9,
                new_ready: 0,
                passes: &[9, 8],
            },
            Case {
                name: "unavailable new pods stop further scale-down",
                replicas: 10,
                unavailable: 2,
                old_spec: 8,
                new_spec: 2,
                old_ready: 8,
                new_ready: 0,
                passes: &[],
            },
        ];
        for c in cases {
            let d = deployment(c.replicas, int(0), int(c.unavailable));
            let new = rs("new", 2, c.new_spec, c.new_ready);
            let mut old = rs("old", 1, c.old_spec, c.old_ready);
            let mut seen = Vec::new();
            loop {
                let all = vec![old.clone(), new.clone()];
                let steps = plan_old_scale_down(&d, &all, &active(&[old.clone()]), Some(&new));
                let [step] = steps.as_slice() else {
                    assert!(steps.is_empty(), "{}: one old set, one step", c.name);
                    break;
                };
                seen.push(step.to);
                // The ReplicaSet controller removes unready pods first.
                let ready = rs_available(&old).min(step.to);
                old = rs("old", 1, step.to, ready);
                assert!(seen.len() <= 3, "{}: no fixpoint: {seen:?}", c.name);
            }
            assert_eq!(seen, c.passes, "{}", c.name);
        }
    }

    #[test]
    fn unhealthy_replicas_go_oldest_set_first_within_the_budget() {
        let d = deployment(10, int(0), int(3));
        let oldest = rs("oldest", 1, 4, 2);
        let older = rs("older", 2, 6, 3);
        let new = rs("new", 3, 0, 0);
        let all = vec![older.clone(), oldest.clone(), new.clone()];
        let steps = plan_old_scale_down(&d, &all, &[older, oldest], Some(&new));
        // maxScaledDown = 10 - 7 - 0 = 3: two from the oldest, one from the next.
        assert_eq!(
            names(&steps),
            vec![("oldest".to_string(), 2), ("older".to_string(), 5)]
        );
    }

    #[test]
    fn healthy_scale_down_never_drops_below_min_available() {
        // 10 desired, maxUnavailable 3: 7 must stay available. New set has 3 available.
        let d = deployment(10, int(0), int(3));
        let a = rs("a", 1, 2, 2);
        let b = rs("b", 2, 5, 5);
        let new = rs("new", 3, 3, 3);
        let all = vec![a.clone(), b.clone(), new.clone()];
        let steps = plan_old_scale_down(&d, &all, &[b, a], Some(&new));
        // available 10 - 7 = 3 may go: both of the oldest, one of the next.
        assert_eq!(
            names(&steps),
            vec![("a".to_string(), 0), ("b".to_string(), 4)]
        );
    }

    /// Proportional scaling during a rollout (upstream `TestScale` cases).
    #[test]
    fn scaling_is_shared_in_proportion() {
        struct Case {
            name: &'static str,
            replicas: i32,
            surge: i32,
            new: (i32, i32),
            olds: &'static [(&'static str, i32, i32)],
            want: &'static [(&'static str, i32)],
        }
        let cases = [
            Case {
                name: "grow 10 -> 20 during a rollout (surge 2): 12 more shared by size, \
                       the rounding leftover to the largest",
                replicas: 20,
                surge: 2,
                new: (4, 0),
                olds: &[("old", 6, 6)],
                want: &[("old", 14), ("new", 8)],
            },
            Case {
                name: "shrink 20 -> 10: smaller sets lose their share, older first on ties",
                replicas: 10,
                surge: 0,
                new: (10, 0),
                olds: &[("old", 10, 10)],
                want: &[("old", 5), ("new", 5)],
            },
            Case {
                name: "scale to zero takes everything",
                replicas: 0,
                surge: 1,
                new: (3, 0),
                olds: &[("old", 2, 2)],
                want: &[("new", 0), ("old", 0)],
            },
        ];
        for c in cases {
            let d = deployment(c.replicas, int(c.surge), int(0));
            let new = rs("new", 10, c.new.0, c.new.1);
            let old: Vec<_> = c
                .olds
                .iter()
                .enumerate()
                .map(|(i, (n, s, a))| rs(n, i as i64, *s, *a))
                .collect();
            let steps = plan_scale(&d, Some(&new), &old);
            let want: Vec<(String, i32)> =
                c.want.iter().map(|(n, r)| (n.to_string(), *r)).collect();
            assert_eq!(names(&steps), want, "{}", c.name);
            let total: i32 = steps.iter().map(|s| s.to).sum();
            let allowed = if c.replicas > 0 {
                c.replicas + c.surge
            } else {
                0
            };
            assert_eq!(total, allowed, "{}: all of replicas + maxSurge", c.name);
        }
    }

    #[test]
    fn one_active_set_takes_the_count_and_a_saturated_new_set_drains_the_old() {
        let d = deployment(5, int(1), int(0));
        // Only the new set has replicas: it goes to 5.
        let new = rs("new", 2, 3, 3);
        let empty_old = rs("old", 1, 0, 0);
        assert_eq!(
            names(&plan_scale(
                &d,
                Some(&new),
                std::slice::from_ref(&empty_old)
            )),
            vec![("new".to_string(), 5)]
        );
        // New set saturated at 5 (annotated desired 5, all available): old sets go to 0.
        let new = with_desired(rs("new", 2, 5, 5), 5);
        let old = rs("old", 1, 1, 1);
        assert_eq!(
            names(&plan_scale(&d, Some(&new), &[old])),
            vec![("old".to_string(), 0)]
        );
        // Nothing at all: nothing to do.
        assert!(plan_scale(&d, None, &[]).is_empty());
    }
}
