//! One scheduling attempt: find feasible nodes (stopping once enough are found, as upstream's
//! `percentageOfNodesToScore`), score them, pick the best; or explain why none fits, with
//! upstream's message, and look for lower-priority pods to preempt.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{Cache, NodeInfo};
use super::filters::{check, fits_resources, prefilter_names, Failure, SpreadState};
use super::podinfo::PodInfo;
use super::scores::{score_nodes, Weights};

/// Upstream `minFeasibleNodesToFind`.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream `minFeasibleNodesPercentageToFind`.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Upstream's message when the cluster has no nodes.
pub const NO_NODES_MESSAGE: &str = "no nodes available to schedule pods";

/// Pods to delete so a higher-priority pod fits on a node.
#[derive(Debug, Clone)]
pub struct Preemption {
    /// Slot of the node.
    pub slot: usize,
    /// The pods to evict.
    pub victims: Vec<Arc<PodInfo>>,
}

/// Why a pod fits nowhere.
#[derive(Debug, Clone)]
pub struct FitError {
    /// Upstream's message (`0/3 nodes are available: ...`).
    pub message: String,
    /// Victims whose eviction would make room, if preemption found any.
    pub preemption: Option<Preemption>,
}

/// Result of one attempt.
#[derive(Debug)]
pub enum Outcome {
    /// The chosen node.
    Fit {
        /// Its cache slot.
        slot: usize,
        /// Nodes the filters looked at.
        evaluated: usize,
        /// Of those, how many fit.
        feasible: usize,
    },
    /// No node fits.
    Unfit(FitError),
}

/// The scheduling algorithm's state between attempts: where the next search starts (so
/// successive pods look at different nodes first, as upstream) and the tie-break randomness.
#[derive(Debug)]
pub struct Algorithm {
    next_start: usize,
    rng: u64,
    percentage_of_nodes_to_score: u32,
    weights: Weights,
}

impl Algorithm {
    /// `percentage_of_nodes_to_score`: 0 = upstream's adaptive default (50% minus 1% per 125
    /// nodes, at least 5% and 100 nodes); 100 = always look at every node.
    pub fn new(percentage_of_nodes_to_score: u32) -> Algorithm {
        Algorithm {
            next_start: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            percentage_of_nodes_to_score: percentage_of_nodes_to_score.min(100),
            weights: Weights::default(),
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: cheap, good enough for tie breaking.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// How many feasible nodes to find before scoring (upstream `numFeasibleNodesToFind`).
    pub fn nodes_to_find(&self, all: usize) -> usize {
        if all < MIN_FEASIBLE_NODES_TO_FIND {
            return all;
        }
        let percentage = match self.percentage_of_nodes_to_score as usize {
            0 => (50usize.saturating_sub(all / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE),
            p => p,
        };
        (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Schedules `pod` against `cache`.
    pub fn schedule(&mut self, pod: &PodInfo, cache: &Cache) -> Outcome {
        let all = cache.node_count();
        if all == 0 {
            return Outcome::Unfit(FitError {
                message: NO_NODES_MESSAGE.into(),
                preemption: None,
            });
        }
        let spread = SpreadState::compute(pod, cache);
        let restricted: Option<Vec<usize>> = prefilter_names(pod).map(|names| {
            names
                .iter()
                .filter_map(|n| cache.slot_of(n))
                .filter(|s| cache.node(*s).node.is_some())
                .collect()
        });
        let candidates: &[usize] = restricted.as_deref().unwrap_or(cache.live());
        let to_find = if restricted.is_some() {
            candidates.len()
        } else {
            self.nodes_to_find(all)
        };
        let len = candidates.len();
        let start = if restricted.is_some() || len == 0 {
            0
        } else {
            self.next_start % len
        };
        let mut feasible = Vec::with_capacity(to_find.min(128));
        let mut evaluated = 0;
        for i in 0..len {
            let slot = candidates[(start + i) % len];
            evaluated += 1;
            if check(pod, cache.node(slot), spread.as_ref()).is_none() {
                feasible.push(slot);
                if feasible.len() >= to_find {
                    break;
                }
            }
        }
        if restricted.is_none() && len > 0 {
            self.next_start = (start + evaluated) % len;
        }
        match feasible.len() {
            0 => Outcome::Unfit(self.diagnose(pod, cache, restricted.as_deref(), spread.as_ref())),
            1 => Outcome::Fit {
                slot: feasible[0],
                evaluated,
                feasible: 1,
            },
            n => {
                let scores = score_nodes(pod, cache, &feasible, spread.as_ref(), &self.weights);
                let best = scores.iter().copied().max().unwrap_or(0);
                // Reservoir sampling among the best-scored nodes.
                let mut chosen = feasible[0];
                let mut seen = 0u64;
                for (slot, score) in feasible.iter().zip(&scores) {
                    if *score == best {
                        seen += 1;
                        if self.random() % seen == 0 {
                            chosen = *slot;
                        }
                    }
                }
                Outcome::Fit {
                    slot: chosen,
                    evaluated,
                    feasible: n,
                }
            }
        }
    }

    /// Runs the filters on every node again, collecting reasons, and tries preemption.
    fn diagnose(
        &mut self,
        pod: &PodInfo,
        cache: &Cache,
        restricted: Option<&[usize]>,
        spread: Option<&SpreadState>,
    ) -> FitError {
        let all = cache.node_count();
        let mut failures: Vec<(usize, Failure)> = Vec::with_capacity(all);
        let mut reasons: HashMap<String, usize> = HashMap::new();
        for slot in cache.live() {
            let node = cache.node(*slot);
            let failure = match restricted {
                Some(r) if !r.contains(slot) => Failure::NotInPreFilter,
                _ => match check(pod, node, spread) {
                    Some(f) => f,
                    None => continue,
                },
            };
            for reason in failure.reasons(pod, node) {
                *reasons.entry(reason).or_default() += 1;
            }
            failures.push((*slot, failure));
        }
        let mut message = format!("0/{all} nodes are available:");
        let histogram = histogram(&reasons);
        if !histogram.is_empty() {
            message.push(' ');
            message.push_str(&histogram);
            message.push('.');
        }
        let (post_filter, preemption) = preempt(pod, cache, &failures, all);
        if !post_filter.is_empty() {
            message.push(' ');
            message.push_str(&post_filter);
        }
        FitError {
            message,
            preemption,
        }
    }
}

/// `count reason` strings sorted as strings and joined (upstream `sortReasonsHistogram`).
fn histogram(reasons: &HashMap<String, usize>) -> String {
    let mut items: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    items.sort();
    items.join(", ")
}

/// Upstream DefaultPreemption's PostFilter: on nodes where only resources or ports are
/// missing, find the fewest lower-priority pods whose eviction makes room. Returns the
/// message part (`preemption: ...`, empty when victims were found) and the victims.
fn preempt(
    pod: &PodInfo,
    cache: &Cache,
    failures: &[(usize, Failure)],
    all: usize,
) -> (String, Option<Preemption>) {
    if pod.never_preempts {
        return (
            "preemption: not eligible due to preemptionPolicy=Never.".into(),
            None,
        );
    }
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut best: Option<(Preemption, (i32, i64, usize))> = None;
    for (slot, failure) in failures {
        if failure.unresolvable() {
            *reasons
                .entry("Preemption is not helpful for scheduling".into())
                .or_default() += 1;
            continue;
        }
        let node = cache.node(*slot);
        match select_victims(pod, node, *failure) {
            Some(victims) => {
                let rank = (
                    victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
                    victims.iter().map(|v| i64::from(v.priority)).sum::<i64>(),
                    victims.len(),
                );
                if best.as_ref().is_none_or(|(_, r)| rank < *r) {
                    best = Some((
                        Preemption {
                            slot: *slot,
                            victims,
                        },
                        rank,
                    ));
                }
            }
            None => {
                *reasons
                    .entry("No preemption victims found for incoming pod".into())
                    .or_default() += 1
            }
        }
    }
    match best {
        Some((p, _)) => (String::new(), Some(p)),
        None => (
            format!(
                "preemption: 0/{all} nodes are available: {}.",
                histogram(&reasons)
            ),
            None,
        ),
    }
}

/// The lower-priority pods to evict from `node` so `pod` fits, keeping (reprieving) as many
/// of the higher-priority ones among them as possible. `None` if evicting all of them would
/// not be enough, or the failure is not about resources or ports.
fn select_victims(pod: &PodInfo, node: &NodeInfo, failure: Failure) -> Option<Vec<Arc<PodInfo>>> {
    if !matches!(failure, Failure::Resources { .. } | Failure::Ports) {
        return None;
    }
    let view = node.node.as_ref()?;
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority && !p.deleting)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut requested = node.requested.clone();
    let mut count = node.pods.len();
    let mut ports = node.used_ports.clone();
    for v in &lower {
        requested.sub(&v.requests);
        count -= 1;
        for p in &v.host_ports {
            if let Some(i) = ports.iter().position(|x| x == p) {
                ports.swap_remove(i);
            }
        }
    }
    let fits = |requested: &super::resources::Resources,
                count: usize,
                ports: &[super::podinfo::HostPort]| {
        fits_resources(&pod.requests, view, requested, count).is_none()
            && !pod
                .host_ports
                .iter()
                .any(|p| ports.iter().any(|u| u.conflicts(p)))
    };
    if !fits(&requested, count, &ports) {
        return None;
    }
    // Reprieve the most important pods first.
    lower.sort_by_key(|v| std::cmp::Reverse(v.priority));
    let mut victims = Vec::new();
    for v in lower {
        let mut with = requested.clone();
        with.add(&v.requests);
        let mut with_ports = ports.clone();
        with_ports.extend(v.host_ports.iter().cloned());
        if fits(&with, count + 1, &with_ports) {
            requested = with;
            count += 1;
            ports = with_ports;
        } else {
            victims.push(v);
        }
    }
    Some(victims)
}

#[cfg(test)]
mod tests {
    use super::super::podinfo::SchedPod;
    use super::*;
    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, Taint};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cpu: &str, memory: &str, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(memory.into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, extra: serde_json::Value) -> Arc<PodInfo> {
        let mut spec = serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        let p: SchedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "d", "uid": name,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": "rs1", "controller": true}]},
            "spec": spec,
        }))
        .unwrap();
        Arc::new(PodInfo::new(&p))
    }

    fn taint(key: &str, value: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }
    }

    #[test]
    fn upstream_message_for_unschedulable_pods() {
        let mut c = Cache::new();
        c.upsert_node(&node("small", "4", "512Mi", vec![]));
        c.upsert_node(&node("a", "4", "8Gi", vec![taint("k", "v")]));
        c.upsert_node(&node("b", "4", "8Gi", vec![taint("k", "v")]));
        let mut alg = Algorithm::new(0);
        let Outcome::Unfit(err) = alg.schedule(&pod("p", serde_json::json!({})), &c) else {
            panic!("expected no fit");
        };
        assert_eq!(
            err.message,
            "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint \
             {k: v}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for \
             scheduling."
        );
        assert!(err.preemption.is_none());
    }

    #[test]
    fn resolvable_shortfalls_without_victims() {
        let mut c = Cache::new();
        let s = c.upsert_node(&node("n", "1", "4Gi", vec![]));
        c.assume(
            pod(
                "big",
                serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "900m"}}}]}),
            ),
            s,
        );
        let mut alg = Algorithm::new(0);
        let want = pod(
            "p",
            serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let Outcome::Unfit(err) = alg.schedule(&want, &c) else {
            panic!("expected no fit");
        };
        assert_eq!(
            err.message,
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
             1 No preemption victims found for incoming pod."
        );
        let never = pod(
            "p",
            serde_json::json!({"preemptionPolicy": "Never", "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let Outcome::Unfit(err) = alg.schedule(&never, &c) else {
            panic!("expected no fit");
        };
        assert!(err
            .message
            .ends_with("preemption: not eligible due to preemptionPolicy=Never."));
    }

    #[test]
    fn higher_priority_pods_preempt_the_fewest_lower_ones() {
        let mut c = Cache::new();
        let s = c.upsert_node(&node("n", "1", "8Gi", vec![]));
        for (name, prio) in [("low1", 1), ("low2", 2), ("high", 100)] {
            c.assume(
                pod(
                    name,
                    serde_json::json!({"priority": prio, "containers": [{"name": "c",
                "resources": {"requests": {"cpu": "300m"}}}]}),
                ),
                s,
            );
        }
        let want = pod(
            "p",
            serde_json::json!({"priority": 10, "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "400m"}}}]}),
        );
        let Outcome::Unfit(err) = Algorithm::new(0).schedule(&want, &c) else {
            panic!("expected no fit");
        };
        let p = err.preemption.expect("victims found");
        let names: Vec<&str> = p.victims.iter().map(|v| &*v.name).collect();
        assert_eq!(names, vec!["low1"]);
        assert_eq!(err.message, "0/1 nodes are available: 1 Insufficient cpu.");
    }

    #[test]
    fn no_nodes_and_match_fields() {
        let c = Cache::new();
        let Outcome::Unfit(err) = Algorithm::new(0).schedule(&pod("p", serde_json::json!({})), &c)
        else {
            panic!("expected no fit");
        };
        assert_eq!(err.message, NO_NODES_MESSAGE);

        let mut c = Cache::new();
        c.upsert_node(&node("a", "4", "8Gi", vec![]));
        let b = c.upsert_node(&node("b", "4", "8Gi", vec![]));
        let pinned = |name: &str| {
            pod(
                "p",
                serde_json::json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]}}}}),
            )
        };
        let mut alg = Algorithm::new(0);
        for _ in 0..4 {
            let Outcome::Fit { slot, .. } = alg.schedule(&pinned("b"), &c) else {
                panic!("expected a fit");
            };
            assert_eq!(slot, b);
        }
        let Outcome::Unfit(err) = alg.schedule(&pinned("gone"), &c) else {
            panic!("expected no fit");
        };
        assert!(err.message.starts_with(
            "0/2 nodes are available: 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        ));
    }

    #[test]
    fn adaptive_number_of_nodes_to_score() {
        let alg = Algorithm::new(0);
        assert_eq!(alg.nodes_to_find(50), 50);
        assert_eq!(alg.nodes_to_find(150), 100);
        assert_eq!(alg.nodes_to_find(1000), 420);
        assert_eq!(alg.nodes_to_find(5000), 500);
        assert_eq!(alg.nodes_to_find(20000), 1000);
        assert_eq!(Algorithm::new(100).nodes_to_find(5000), 5000);
    }

    #[test]
    fn replicas_spread_and_least_allocated_wins() {
        let mut c = Cache::new();
        let a = c.upsert_node(&node("a", "4", "8Gi", vec![]));
        let b = c.upsert_node(&node("b", "4", "8Gi", vec![]));
        let mut alg = Algorithm::new(0);
        let mut placed = HashMap::new();
        for i in 0..10 {
            let p = pod(&format!("p{i}"), serde_json::json!({}));
            let Outcome::Fit { slot, .. } = alg.schedule(&p, &c) else {
                panic!("expected a fit");
            };
            c.assume(p, slot);
            *placed.entry(slot).or_insert(0) += 1;
        }
        assert_eq!(placed.get(&a), Some(&5));
        assert_eq!(placed.get(&b), Some(&5));
    }
}
