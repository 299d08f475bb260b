//! The scores, each 0–100 per node and weighted as upstream's default profile:
//! NodeResourcesFit least-allocated (1), NodeResourcesBalancedAllocation (1), TaintToleration
//! for `PreferNoSchedule` taints (3), NodeAffinity preferred terms (2), and PodTopologySpread
//! (2) — the pod's `ScheduleAnyway` constraints, or, for a pod without constraints that has a
//! controller, the system default of spreading its controller's pods over hostnames.

use super::cache::{Cache, NodeInfo};
use super::filters::SpreadState;
use super::matching::tolerates;
use super::podinfo::PodInfo;

/// Highest score of one plugin.
pub const MAX_NODE_SCORE: i64 = 100;

/// Plugin weights.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Least allocated resources.
    pub least_allocated: i64,
    /// Balanced CPU/memory usage.
    pub balanced: i64,
    /// Fewer untolerated `PreferNoSchedule` taints.
    pub taints: i64,
    /// Preferred node affinity.
    pub affinity: i64,
    /// Topology spreading.
    pub spread: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            least_allocated: 1,
            balanced: 1,
            taints: 3,
            affinity: 2,
            spread: 2,
        }
    }
}

/// Least allocated: the average over CPU and memory of the free share after placing the pod
/// (requests with upstream's defaults for containers without any).
fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(view) = &node.node else { return 0 };
    let part = |alloc: i64, used: i64| {
        if alloc <= 0 || used > alloc {
            0
        } else {
            (alloc - used) * MAX_NODE_SCORE / alloc
        }
    };
    let cpu = part(
        view.allocatable.milli_cpu,
        node.non_zero_requested.0 + pod.non_zero.0,
    );
    let memory = part(
        view.allocatable.memory,
        node.non_zero_requested.1 + pod.non_zero.1,
    );
    (cpu + memory) / 2
}

/// Balanced allocation: 100 × (1 − standard deviation of the CPU and memory fractions).
fn balanced(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(view) = &node.node else { return 0 };
    let fraction = |alloc: i64, used: i64| {
        if alloc <= 0 {
            1.0
        } else {
            (used as f64 / alloc as f64).min(1.0)
        }
    };
    let cpu = fraction(
        view.allocatable.milli_cpu,
        node.requested.milli_cpu + pod.requests.milli_cpu,
    );
    let memory = fraction(
        view.allocatable.memory,
        node.requested.memory + pod.requests.memory,
    );
    let std = (cpu - memory).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// `PreferNoSchedule` taints the pod does not tolerate.
fn intolerable_taints(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(view) = &node.node else { return 0 };
    view.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            !pod.tolerations.iter().any(|tol| {
                matches!(
                    tol.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                ) && tolerates(tol, t)
            })
        })
        .count() as i64
}

/// Sum of the weights of the preferred node affinity terms the node matches.
fn preferred_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(view) = &node.node else { return 0 };
    pod.preferred
        .iter()
        .filter(|(_, term)| term.matches(&node.name, &view.labels))
        .map(|(w, _)| i64::from(*w))
        .sum()
}

/// Scales raw values to 0–100 by the largest (upstream `DefaultNormalizeScore`); `reverse`
/// makes lower raw values better. All zero gives 100 when reversed, 0 otherwise.
fn normalize(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    for v in raw.iter_mut() {
        *v = if max == 0 {
            if reverse {
                MAX_NODE_SCORE
            } else {
                0
            }
        } else if reverse {
            MAX_NODE_SCORE - *v * MAX_NODE_SCORE / max
        } else {
            *v * MAX_NODE_SCORE / max
        };
    }
}

/// Spreading: fewer matching pods in the node's domains is better, scaled between the best
/// and the worst candidate.
fn normalize_spread(raw: &mut [i64]) {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    for v in raw.iter_mut() {
        *v = if max == min {
            MAX_NODE_SCORE
        } else {
            (max - *v) * MAX_NODE_SCORE / (max - min)
        };
    }
}

/// The weighted total score of each node in `slots` for `pod`.
pub fn score_nodes(
    pod: &PodInfo,
    cache: &Cache,
    slots: &[usize],
    spread: Option<&SpreadState>,
    w: &Weights,
) -> Vec<i64> {
    let n = slots.len();
    let mut total = vec![0i64; n];
    let mut taints = vec![0i64; n];
    let mut affinity = vec![0i64; n];
    let mut spreading = vec![0i64; n];
    let owner = pod.owner.as_deref().filter(|_| pod.spread.is_empty());
    let mut any_spread = false;
    for (i, slot) in slots.iter().enumerate() {
        let node = cache.node(*slot);
        total[i] =
            w.least_allocated * least_allocated(pod, node) + w.balanced * balanced(pod, node);
        taints[i] = intolerable_taints(pod, node);
        if !pod.preferred.is_empty() {
            affinity[i] = preferred_affinity(pod, node);
        }
        if let Some(count) = spread.and_then(|s| s.soft_count(pod, node)) {
            spreading[i] = count;
            any_spread = true;
        } else if let Some(owner) = owner {
            spreading[i] = i64::from(node.owner_count(owner));
            any_spread = true;
        }
    }
    normalize(&mut taints, true);
    normalize(&mut affinity, false);
    if any_spread {
        normalize_spread(&mut spreading);
    }
    for i in 0..n {
        total[i] += w.taints * taints[i] + w.affinity * affinity[i];
        if any_spread {
            total[i] += w.spread * spreading[i];
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_upstream() {
        let mut v = vec![0, 2, 4];
        normalize(&mut v, true);
        assert_eq!(v, vec![100, 50, 0]);
        let mut v = vec![0, 0];
        normalize(&mut v, true);
        assert_eq!(v, vec![100, 100]);
        let mut v = vec![10, 5];
        normalize(&mut v, false);
        assert_eq!(v, vec![100, 50]);
        let mut v = vec![3, 1, 2];
        normalize_spread(&mut v);
        assert_eq!(v, vec![0, 100, 50]);
    }
}
