//! The scheduler's incremental view of the cluster (upstream's scheduler cache): per node its
//! labels, effective taints and allocatable resources, and the sum of what its pods request,
//! kept up to date event by event. A pod the scheduler has chosen a node for is *assumed* onto
//! that node at once, before its binding is written, so the next pod already sees the node's
//! new usage; the watch later confirms the binding (or the binding fails and the pod is
//! forgotten).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::podinfo::{HostPort, PodInfo};
use super::resources::{allowed_pods, Resources};
use rustc_hash::FxHashMap as FastMap;

/// Taint the node lifecycle controller puts on nodes whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint the node lifecycle controller puts on nodes whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint matching `spec.unschedulable` (cordoned nodes).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// What the scheduler reads from a Node object.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints, plus a `not-ready`/`unreachable` NoSchedule taint when the node is not Ready
    /// and the lifecycle controller has not tainted it yet.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Allocatable resources (capacity when allocatable is missing).
    pub allocatable: Resources,
    /// Pods the node takes.
    pub allowed_pods: i64,
}

impl NodeView {
    /// Reads a Node.
    pub fn new(node: &Node) -> NodeView {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let allocatable_list = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_deref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let readiness_taint = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = readiness_taint {
            if !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
            {
                taints.push(Taint {
                    key: key.to_string(),
                    value: None,
                    effect: "NoSchedule".into(),
                    time_added: None,
                });
            }
        }
        NodeView {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: allocatable_list
                .map(Resources::from_list)
                .unwrap_or_default(),
            allowed_pods: allowed_pods(allocatable_list),
        }
    }
}

/// One node and the pods on it.
#[derive(Debug)]
pub struct NodeInfo {
    /// Node name.
    pub name: Arc<str>,
    /// The Node object's view; `None` after the Node was deleted while pods remain.
    pub node: Option<NodeView>,
    /// Sum of the pods' requests.
    pub requested: Resources,
    /// Sum of the pods' CPU and memory with scoring defaults.
    pub non_zero_requested: (i64, i64),
    /// The pods (bound and assumed).
    pub pods: Vec<Arc<PodInfo>>,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Pods per controlling owner uid, for spreading replicas.
    pub owner_counts: FastMap<Arc<str>, u32>,
}

impl NodeInfo {
    fn new(name: Arc<str>) -> NodeInfo {
        NodeInfo {
            name,
            node: None,
            requested: Resources::default(),
            non_zero_requested: (0, 0),
            pods: Vec::new(),
            used_ports: Vec::new(),
            owner_counts: FastMap::default(),
        }
    }

    fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        self.pods.push(pod);
    }

    fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| &*p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        if let Some(owner) = &pod.owner {
            if let Some(count) = self.owner_counts.get_mut(owner) {
                *count -= 1;
                if *count == 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
        Some(pod)
    }

    /// Pods of the owner `uid` on this node.
    pub fn owner_count(&self, uid: &str) -> u32 {
        self.owner_counts.get(uid).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
struct PodState {
    node: usize,
    /// The binding is not confirmed by the watch yet.
    assumed: bool,
}

/// The node and pod cache.
#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<Option<NodeInfo>>,
    free: Vec<usize>,
    index: FastMap<Arc<str>, usize>,
    /// Slots holding an existing Node, in a stable order (the scheduler walks this).
    live: Vec<usize>,
    pods: FastMap<Arc<str>, PodState>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Number of existing nodes.
    pub fn node_count(&self) -> usize {
        self.live.len()
    }

    /// The slots of existing nodes, in walking order.
    pub fn live(&self) -> &[usize] {
        &self.live
    }

    /// The node in `slot`.
    pub fn node(&self, slot: usize) -> &NodeInfo {
        self.slots[slot]
            .as_ref()
            .expect("slot of a live node or a pod's node is occupied")
    }

    /// The slot of the node named `name` (existing or holding pods).
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Number of cached pods (bound and assumed).
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Whether the pod `uid` is cached, and whether it is only assumed.
    pub fn pod_state(&self, uid: &str) -> Option<(usize, bool)> {
        self.pods.get(uid).map(|p| (p.node, p.assumed))
    }

    fn slot_for(&mut self, name: &str) -> usize {
        if let Some(slot) = self.index.get(name) {
            return *slot;
        }
        let name: Arc<str> = Arc::from(name);
        let info = NodeInfo::new(name.clone());
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(info);
                slot
            }
            None => {
                self.slots.push(Some(info));
                self.slots.len() - 1
            }
        };
        self.index.insert(name, slot);
        slot
    }

    fn slot_mut(&mut self, slot: usize) -> &mut NodeInfo {
        self.slots[slot]
            .as_mut()
            .expect("slot of a live node or a pod's node is occupied")
    }

    /// Frees the slot if it holds neither a Node nor pods.
    fn release_if_empty(&mut self, slot: usize) {
        let empty = self.slots[slot]
            .as_ref()
            .is_some_and(|n| n.node.is_none() && n.pods.is_empty());
        if empty {
            if let Some(info) = self.slots[slot].take() {
                self.index.remove(&info.name);
            }
            self.free.push(slot);
        }
    }

    /// Adds or updates a Node. Returns its slot.
    pub fn upsert_node(&mut self, node: &Node) -> usize {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let slot = self.slot_for(name);
        let info = self.slot_mut(slot);
        let was_live = info.node.is_some();
        info.node = Some(NodeView::new(node));
        if !was_live {
            self.live.push(slot);
        }
        slot
    }

    /// Removes a Node (its pods stay counted until they are deleted).
    pub fn remove_node(&mut self, name: &str) {
        let Some(slot) = self.slot_of(name) else {
            return;
        };
        self.slot_mut(slot).node = None;
        if let Some(i) = self.live.iter().position(|s| *s == slot) {
            self.live.remove(i);
        }
        self.release_if_empty(slot);
    }

    /// Names of the existing nodes.
    pub fn node_names(&self) -> Vec<Arc<str>> {
        self.live
            .iter()
            .map(|s| self.node(*s).name.clone())
            .collect()
    }

    /// Records a pod bound to `node` (from the watch). Confirms an assumed pod; moves a pod
    /// whose node changed; refreshes a known pod's requests.
    pub fn add_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        if let Some(state) = self.pods.remove(&pod.uid) {
            self.slot_mut(state.node).remove_pod(&pod.uid);
            self.release_if_empty(state.node);
        }
        let slot = self.slot_for(node);
        self.slot_mut(slot).add_pod(pod.clone());
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                node: slot,
                assumed: false,
            },
        );
    }

    /// Removes a pod (deleted, finished, or a forgotten assumption).
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let state = self.pods.remove(uid)?;
        let pod = self.slot_mut(state.node).remove_pod(uid);
        self.release_if_empty(state.node);
        pod
    }

    /// Assumes `pod` onto the node in `slot` before its binding is written.
    pub fn assume(&mut self, pod: Arc<PodInfo>, slot: usize) {
        if self.pods.contains_key(&pod.uid) {
            self.remove_pod(&pod.uid);
        }
        self.slot_mut(slot).add_pod(pod.clone());
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                node: slot,
                assumed: true,
            },
        );
    }

    /// The watch shows the assumed pod bound to the node it was assumed onto: it is now
    /// confirmed. Returns false if the pod is not assumed there (the caller then re-adds it).
    pub fn confirm(&mut self, uid: &str, node: &str) -> bool {
        let Some(state) = self.pods.get(uid) else {
            return false;
        };
        let slot = state.node;
        if !state.assumed || &*self.node(slot).name != node {
            return false;
        }
        if let Some(state) = self.pods.get_mut(uid) {
            state.assumed = false;
        }
        true
    }

    /// Drops an assumption whose binding failed. Bound (confirmed) pods are kept.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    /// After a full re-list: drops every confirmed pod not in `present` (deletions the watch
    /// missed). Assumed pods stay: their bindings are in flight.
    pub fn retain_bound(&mut self, present: &std::collections::HashSet<Arc<str>>) {
        let gone: Vec<Arc<str>> = self
            .pods
            .iter()
            .filter(|(uid, state)| !state.assumed && !present.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.remove_pod(&uid);
        }
    }

    /// After a full re-list of nodes: removes the nodes not in `present`.
    pub fn retain_nodes(&mut self, present: &std::collections::HashSet<String>) {
        let gone: Vec<Arc<str>> = self
            .node_names()
            .into_iter()
            .filter(|n| !present.contains(&**n))
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::podinfo::SchedPod;
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub(crate) fn node(name: &str, cpu: &str, ready: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity("4Gi".into())),
                        ("pods".to_string(), Quantity("10".into())),
                    ]
                    .into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(uid: &str, cpu: &str) -> Arc<PodInfo> {
        let p: SchedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "d", "uid": uid,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": "rs1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap();
        Arc::new(PodInfo::new(&p))
    }

    #[test]
    fn readiness_becomes_a_no_schedule_taint() {
        let v = NodeView::new(&node("n", "1", "True"));
        assert!(v.taints.is_empty());
        assert_eq!(v.allowed_pods, 10);
        assert_eq!(v.allocatable.milli_cpu, 1000);
        let v = NodeView::new(&node("n", "1", "Unknown"));
        assert_eq!(v.taints[0].key, TAINT_UNREACHABLE);
        let v = NodeView::new(&node("n", "1", "False"));
        assert_eq!(v.taints[0].key, TAINT_NOT_READY);
    }

    #[test]
    fn assume_confirm_forget_and_remove_keep_sums_right() {
        let mut c = Cache::new();
        let n1 = c.upsert_node(&node("n1", "2", "True"));
        let n2 = c.upsert_node(&node("n2", "2", "True"));
        c.assume(pod("a", "500m"), n1);
        assert_eq!(c.node(n1).requested.milli_cpu, 500);
        assert_eq!(c.node(n1).owner_count("rs1"), 1);
        // The watch confirms the binding: counted once.
        c.add_bound_pod(pod("a", "500m"), "n1");
        assert_eq!(c.node(n1).requested.milli_cpu, 500);
        assert_eq!(c.pod_state("a"), Some((n1, false)));
        // A failed binding is forgotten; a confirmed one is not.
        c.assume(pod("b", "1"), n2);
        c.forget("b");
        assert_eq!(c.node(n2).requested.milli_cpu, 0);
        c.forget("a");
        assert_eq!(c.node(n1).requested.milli_cpu, 500);
        c.remove_pod("a");
        assert_eq!(c.node(n1).requested.milli_cpu, 0);
        assert_eq!(c.node(n1).owner_count("rs1"), 0);
        assert_eq!(c.pod_count(), 0);
    }

    #[test]
    fn deleted_nodes_keep_their_pods_until_they_go() {
        let mut c = Cache::new();
        c.upsert_node(&node("n1", "2", "True"));
        c.add_bound_pod(pod("a", "1"), "n1");
        c.remove_node("n1");
        assert_eq!(c.node_count(), 0);
        assert!(c.slot_of("n1").is_some());
        c.remove_pod("a");
        assert!(c.slot_of("n1").is_none());
        // The freed slot is reused.
        let slot = c.upsert_node(&node("n3", "2", "True"));
        assert_eq!(c.node(slot).name.as_ref(), "n3");
        assert_eq!(c.live(), &[slot]);
    }

    #[test]
    fn a_pod_bound_to_an_unknown_node_is_counted_there() {
        let mut c = Cache::new();
        c.add_bound_pod(pod("a", "1"), "later");
        let slot = c.upsert_node(&node("later", "2", "True"));
        assert_eq!(c.node(slot).requested.milli_cpu, 1000);
    }
}
