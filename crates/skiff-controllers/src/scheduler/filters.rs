//! The filters: whether a pod can go onto a node, in upstream's plugin order
//! (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! PodTopologySpread), stopping at the first failing one. A failure is a small value; its
//! message is only formatted when a pod fits nowhere.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Taint;

use super::cache::{Cache, NodeInfo, NodeView, TAINT_UNSCHEDULABLE};
use super::matching::{first_untolerated, tolerated};
use super::podinfo::PodInfo;
use super::resources::Resources;

/// Resource shortfalls of one node, as bits.
pub mod short {
    /// `Too many pods`.
    pub const PODS: u8 = 1;
    /// `Insufficient cpu`.
    pub const CPU: u8 = 2;
    /// `Insufficient memory`.
    pub const MEMORY: u8 = 4;
    /// `Insufficient ephemeral-storage`.
    pub const EPHEMERAL: u8 = 8;
    /// `Insufficient <extended resource>`.
    pub const SCALAR: u8 = 16;
}

/// Why a node cannot take a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Cordoned and not tolerated.
    Unschedulable,
    /// An untolerated NoSchedule/NoExecute taint: its index in the node's taints.
    Taint(usize),
    /// nodeSelector or required node affinity not matched.
    Affinity,
    /// Left out by node affinity's `matchFields metadata.name` (upstream's PreFilter result).
    NotInPreFilter,
    /// A host port is taken.
    Ports,
    /// Not enough resources; `unresolvable` when the request exceeds even an empty node.
    Resources {
        /// [`short`] bits.
        mask: u8,
        /// No preemption could help.
        unresolvable: bool,
    },
    /// A `DoNotSchedule` topology spread constraint would be violated.
    Spread {
        /// The node lacks the constraint's topology key.
        missing_label: bool,
    },
}

impl Failure {
    /// Whether preemption cannot help (upstream `UnschedulableAndUnresolvable`).
    pub fn unresolvable(self) -> bool {
        match self {
            Failure::Unschedulable
            | Failure::Taint(_)
            | Failure::Affinity
            | Failure::NotInPreFilter => true,
            Failure::Ports => false,
            Failure::Resources { unresolvable, .. } => unresolvable,
            Failure::Spread { missing_label } => missing_label,
        }
    }

    /// The reasons upstream reports for this failure on `node` (one per shortfall).
    pub fn reasons(self, pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
        match self {
            Failure::Unschedulable => vec!["node(s) were unschedulable".into()],
            Failure::Taint(i) => {
                let taint = node.node.as_ref().and_then(|v| v.taints.get(i));
                let (key, value) = taint
                    .map(|t| (t.key.as_str(), t.value.as_deref().unwrap_or("")))
                    .unwrap_or(("", ""));
                vec![format!("node(s) had untolerated taint {{{key}: {value}}}")]
            }
            Failure::Affinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
            Failure::NotInPreFilter => {
                vec!["node(s) didn't satisfy plugin(s) [NodeAffinity]".into()]
            }
            Failure::Ports => {
                vec!["node(s) didn't have free ports for the requested pod ports".into()]
            }
            Failure::Resources { mask, .. } => {
                let mut out = Vec::new();
                if mask & short::PODS != 0 {
                    out.push("Too many pods".to_string());
                }
                if mask & short::CPU != 0 {
                    out.push("Insufficient cpu".to_string());
                }
                if mask & short::MEMORY != 0 {
                    out.push("Insufficient memory".to_string());
                }
                if mask & short::EPHEMERAL != 0 {
                    out.push("Insufficient ephemeral-storage".to_string());
                }
                if mask & short::SCALAR != 0 {
                    if let Some(view) = &node.node {
                        for (name, amount) in &pod.requests.scalar {
                            let free = view.allocatable.scalar(name) - node.requested.scalar(name);
                            if *amount > 0 && *amount > free {
                                out.push(format!("Insufficient {name}"));
                            }
                        }
                    }
                }
                out
            }
            Failure::Spread { missing_label } => vec![if missing_label {
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into()
            } else {
                "node(s) didn't match pod topology spread constraints".into()
            }],
        }
    }
}

/// Node affinity's PreFilter: the node names a pod is limited to by `matchFields`, if any.
pub fn prefilter_names(pod: &PodInfo) -> Option<Vec<String>> {
    pod.required.as_ref()?.node_names()
}

/// Upstream NodeResourcesFit: pod count, then each resource the pod requests.
pub fn fits_resources(
    requests: &Resources,
    view: &NodeView,
    requested: &Resources,
    pod_count: usize,
) -> Option<Failure> {
    let mut mask = 0u8;
    let mut unresolvable = false;
    if pod_count as i64 + 1 > view.allowed_pods {
        mask |= short::PODS;
    }
    if !requests.is_zero() {
        let alloc = &view.allocatable;
        let mut check = |want: i64, have: i64, used: i64, bit: u8| {
            if want > 0 && want > have - used {
                mask |= bit;
                if want > have {
                    unresolvable = true;
                }
            }
        };
        check(
            requests.milli_cpu,
            alloc.milli_cpu,
            requested.milli_cpu,
            short::CPU,
        );
        check(
            requests.memory,
            alloc.memory,
            requested.memory,
            short::MEMORY,
        );
        check(
            requests.ephemeral_storage,
            alloc.ephemeral_storage,
            requested.ephemeral_storage,
            short::EPHEMERAL,
        );
        for (name, want) in &requests.scalar {
            check(
                *want,
                alloc.scalar(name),
                requested.scalar(name),
                short::SCALAR,
            );
        }
    }
    (mask != 0).then_some(Failure::Resources { mask, unresolvable })
}

/// Runs every filter of `pod` against `node` (which must exist); the first failure wins.
pub fn check(pod: &PodInfo, node: &NodeInfo, spread: Option<&SpreadState>) -> Option<Failure> {
    let view = node.node.as_ref()?;
    if view.unschedulable {
        let cordon = Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        };
        if !tolerated(&pod.tolerations, &cordon) {
            return Some(Failure::Unschedulable);
        }
    }
    if let Some(i) = first_untolerated(&view.taints, &pod.tolerations) {
        return Some(Failure::Taint(i));
    }
    if !pod.matches_node_selector(&node.name, &view.labels) {
        return Some(Failure::Affinity);
    }
    if !pod.host_ports.is_empty()
        && pod
            .host_ports
            .iter()
            .any(|p| node.used_ports.iter().any(|u| u.conflicts(p)))
    {
        return Some(Failure::Ports);
    }
    if let Some(f) = fits_resources(&pod.requests, view, &node.requested, node.pods.len()) {
        return Some(f);
    }
    if let Some(state) = spread {
        if let Some(f) = state.check(pod, node) {
            return Some(f);
        }
    }
    None
}

/// Pod topology spread: matching pod counts per topology domain, computed once per
/// scheduling attempt (upstream PodTopologySpread's PreFilter/PreScore state).
#[derive(Debug, Default)]
pub struct SpreadState {
    constraints: Vec<ConstraintCounts>,
}

#[derive(Debug)]
struct ConstraintCounts {
    index: usize,
    counts: HashMap<String, i64>,
    self_match: i64,
}

impl SpreadState {
    /// Counts, for each of the pod's constraints, the matching pods per domain over the
    /// nodes that qualify (have the key; match the pod's affinity and tolerate its taints when
    /// the constraint's policies say so). `None` when the pod has no constraints.
    pub fn compute(pod: &PodInfo, cache: &Cache) -> Option<SpreadState> {
        if pod.spread.is_empty() {
            return None;
        }
        let mut constraints = Vec::with_capacity(pod.spread.len());
        for (index, c) in pod.spread.iter().enumerate() {
            let mut counts: HashMap<String, i64> = HashMap::new();
            for slot in cache.live() {
                let node = cache.node(*slot);
                let Some(view) = &node.node else { continue };
                let Some(domain) = view.labels.get(&c.topology_key) else {
                    continue;
                };
                if c.honor_affinity && !pod.matches_node_selector(&node.name, &view.labels) {
                    continue;
                }
                if c.honor_taints && first_untolerated(&view.taints, &pod.tolerations).is_some() {
                    continue;
                }
                let matching = match &c.selector {
                    Some(sel) => node
                        .pods
                        .iter()
                        .filter(|p| {
                            !p.deleting && p.namespace == pod.namespace && sel.matches(&p.labels)
                        })
                        .count() as i64,
                    None => 0,
                };
                *counts.entry(domain.clone()).or_default() += matching;
            }
            let self_match = i64::from(
                c.selector
                    .as_ref()
                    .is_some_and(|sel| sel.matches(&pod.labels)),
            );
            constraints.push(ConstraintCounts {
                index,
                counts,
                self_match,
            });
        }
        Some(SpreadState { constraints })
    }

    /// The filter: every `DoNotSchedule` constraint keeps its skew.
    fn check(&self, pod: &PodInfo, node: &NodeInfo) -> Option<Failure> {
        let view = node.node.as_ref()?;
        for cc in &self.constraints {
            let c = &pod.spread[cc.index];
            if !c.hard {
                continue;
            }
            let Some(domain) = view.labels.get(&c.topology_key) else {
                return Some(Failure::Spread {
                    missing_label: true,
                });
            };
            let min = if (cc.counts.len() as i32) < c.min_domains {
                0
            } else {
                cc.counts.values().copied().min().unwrap_or(0)
            };
            let here = cc.counts.get(domain).copied().unwrap_or(0);
            if here + cc.self_match - min > i64::from(c.max_skew) {
                return Some(Failure::Spread {
                    missing_label: false,
                });
            }
        }
        None
    }

    /// Raw score of the `ScheduleAnyway` constraints for `node`: matching pods in its
    /// domains (fewer is better). Nodes without a key count as the worst.
    pub fn soft_count(&self, pod: &PodInfo, node: &NodeInfo) -> Option<i64> {
        let view = node.node.as_ref()?;
        let mut total = 0i64;
        let mut any = false;
        for cc in &self.constraints {
            let c = &pod.spread[cc.index];
            if c.hard {
                continue;
            }
            any = true;
            match view.labels.get(&c.topology_key) {
                Some(domain) => total += cc.counts.get(domain).copied().unwrap_or(0),
                None => total += cc.counts.values().copied().max().unwrap_or(0) + 1,
            }
        }
        any.then_some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::super::podinfo::SchedPod;
    use super::*;
    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Arc;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>, cordoned: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                unschedulable: Some(cordoned),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity("2".into())),
                        ("memory".to_string(), Quantity("1Gi".into())),
                        ("ephemeral-storage".to_string(), Quantity("10Gi".into())),
                        ("pods".to_string(), Quantity("3".into())),
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

    fn pod(spec: serde_json::Value) -> PodInfo {
        let p: SchedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "p", "labels": {"app": "a"}},
            "spec": spec,
        }))
        .unwrap();
        PodInfo::new(&p)
    }

    fn one_node(n: Node) -> (Cache, usize) {
        let mut c = Cache::new();
        let slot = c.upsert_node(&n);
        (c, slot)
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn resources_report_every_shortfall() {
        let (c, s) = one_node(node("n", &[], vec![], false));
        let p = pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "3", "memory": "2Gi", "ephemeral-storage": "1Gi"}}}]}));
        let f = check(&p, c.node(s), None).unwrap();
        assert_eq!(
            f.reasons(&p, c.node(s)),
            vec!["Insufficient cpu", "Insufficient memory"]
        );
        assert!(f.unresolvable());
        let fits = pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]}));
        assert_eq!(check(&fits, c.node(s), None), None);
    }

    #[test]
    fn pod_count_is_capped() {
        let (mut c, s) = one_node(node("n", &[], vec![], false));
        for i in 0..3 {
            let mut p = pod(serde_json::json!({"containers": [{"name": "c"}]}));
            p.uid = Arc::from(format!("u{i}").as_str());
            c.assume(Arc::new(p), s);
        }
        let p = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        let f = check(&p, c.node(s), None).unwrap();
        assert_eq!(f.reasons(&p, c.node(s)), vec!["Too many pods"]);
        assert!(!f.unresolvable());
    }

    #[test]
    fn cordon_taints_selector_affinity_and_ports() {
        let p = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        let (c, s) = one_node(node("n", &[], vec![], true));
        let f = check(&p, c.node(s), None).unwrap();
        assert_eq!(f.reasons(&p, c.node(s)), vec!["node(s) were unschedulable"]);

        let (c, s) = one_node(node(
            "n",
            &[],
            vec![taint("dedicated", "db", "NoSchedule")],
            false,
        ));
        let f = check(&p, c.node(s), None).unwrap();
        assert_eq!(
            f.reasons(&p, c.node(s)),
            vec!["node(s) had untolerated taint {dedicated: db}"]
        );
        let tolerant = pod(serde_json::json!({"containers": [{"name": "c"}],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}));
        assert_eq!(check(&tolerant, c.node(s), None), None);
        // PreferNoSchedule is a score, not a filter.
        let (c, s) = one_node(node(
            "n",
            &[],
            vec![taint("soft", "", "PreferNoSchedule")],
            false,
        ));
        assert_eq!(check(&p, c.node(s), None), None);

        let (c, s) = one_node(node("n", &[("disk", "hdd")], vec![], false));
        let selective = pod(
            serde_json::json!({"containers": [{"name": "c"}], "nodeSelector": {"disk": "ssd"}}),
        );
        let f = check(&selective, c.node(s), None).unwrap();
        assert_eq!(
            f.reasons(&selective, c.node(s)),
            vec!["node(s) didn't match Pod's node affinity/selector"]
        );
        let affine = pod(
            serde_json::json!({"containers": [{"name": "c"}], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]}}}}),
        );
        assert_eq!(check(&affine, c.node(s), None), None);

        let (mut c, s) = one_node(node("n", &[], vec![], false));
        let ported = |uid: &str| {
            let mut p = pod(serde_json::json!({"containers": [{"name": "c",
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
            p.uid = Arc::from(uid);
            p
        };
        c.assume(Arc::new(ported("first")), s);
        let f = check(&ported("second"), c.node(s), None).unwrap();
        assert_eq!(f, Failure::Ports);
    }

    #[test]
    fn topology_spread_keeps_the_skew() {
        let mut c = Cache::new();
        let a = c.upsert_node(&node(
            "a",
            &[("kubernetes.io/hostname", "a")],
            vec![],
            false,
        ));
        let b = c.upsert_node(&node(
            "b",
            &[("kubernetes.io/hostname", "b")],
            vec![],
            false,
        ));
        let bare = c.upsert_node(&node("bare", &[], vec![], false));
        let spread = serde_json::json!({"containers": [{"name": "c"}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "a"}}}]});
        let mut first = pod(spread.clone());
        first.uid = Arc::from("first");
        c.assume(Arc::new(first), a);
        let p = pod(spread);
        let state = SpreadState::compute(&p, &c).unwrap();
        assert_eq!(
            check(&p, c.node(a), Some(&state)),
            Some(Failure::Spread {
                missing_label: false
            })
        );
        assert_eq!(check(&p, c.node(b), Some(&state)), None);
        let f = check(&p, c.node(bare), Some(&state)).unwrap();
        assert!(f.unresolvable());
    }
}
