//! The pods as the scheduler sees them: a slim decoding of the Pod JSON (only the fields the
//! scheduler reads, so a watch event costs less to decode) and the parsed scheduling
//! requirements of each pod, computed once per pod.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, PodCondition, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use serde::Deserialize;
use skiff_types::selector::LabelSelector;

use super::matching::{RequiredTerms, Term};
use super::resources::{pod_requests, ContainerRequests, Resources};

/// The scheduler's name for pods without `spec.schedulerName`.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// A Pod decoded with only the fields the scheduler uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SchedPod {
    /// Standard metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The scheduling-relevant part of the spec.
    #[serde(default)]
    pub spec: SlimSpec,
    /// The scheduling-relevant part of the status.
    #[serde(default)]
    pub status: SlimStatus,
}

/// Part of `PodSpec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimSpec {
    /// Node the pod is bound to.
    pub node_name: Option<String>,
    /// Scheduler responsible for the pod.
    pub scheduler_name: Option<String>,
    /// App containers.
    #[serde(default)]
    pub containers: Vec<SlimContainer>,
    /// Init containers.
    pub init_containers: Option<Vec<SlimContainer>>,
    /// Pod overhead.
    pub overhead: Option<BTreeMap<String, ApiQuantity>>,
    /// Required node labels.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Node affinity (pod affinity is not supported).
    pub affinity: Option<Affinity>,
    /// Tolerations.
    pub tolerations: Option<Vec<Toleration>>,
    /// Priority (set by the API server).
    pub priority: Option<i32>,
    /// `Never` forbids preempting other pods.
    pub preemption_policy: Option<String>,
    /// Topology spread constraints.
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Gates that keep the pod from being scheduled while any is present.
    pub scheduling_gates: Option<Vec<serde_json::Value>>,
}

/// Part of `Container`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimContainer {
    /// Requests and limits.
    pub resources: Option<ResourceRequirements>,
    /// Ports (host ports are scheduled).
    pub ports: Option<Vec<ContainerPort>>,
    /// `Always` on an init container makes it a sidecar.
    pub restart_policy: Option<String>,
}

/// Part of `PodStatus`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimStatus {
    /// Phase.
    pub phase: Option<String>,
    /// Conditions (the scheduler writes `PodScheduled`).
    pub conditions: Option<Vec<PodCondition>>,
    /// Node a preempting pod is waiting for.
    pub nominated_node_name: Option<String>,
}

impl kube::Resource for SchedPod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A host port a pod claims: protocol, host IP (`0.0.0.0` = all), port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Host address; `0.0.0.0` for all.
    pub ip: String,
    /// Port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide (upstream `HostPortInfo` semantics).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A parsed topology spread constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadConstraint {
    /// Node label whose values are the domains.
    pub topology_key: String,
    /// Largest allowed difference between domains.
    pub max_skew: i32,
    /// Fewest domains to assume.
    pub min_domains: i32,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Which pods count; `None` (no selector, or one that does not parse) counts none.
    pub selector: Option<LabelSelector>,
    /// Only nodes matching the pod's node affinity/selector count (`nodeAffinityPolicy: Honor`).
    pub honor_affinity: bool,
    /// Only nodes whose taints the pod tolerates count (`nodeTaintsPolicy: Honor`).
    pub honor_taints: bool,
}

/// Everything the scheduler needs to know about a pod, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// uid.
    pub uid: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Sum of requests (init containers and overhead included).
    pub requests: Resources,
    /// CPU and memory with scoring defaults for containers without requests.
    pub non_zero: (i64, i64),
    /// Required node labels.
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity.
    pub required: Option<RequiredTerms>,
    /// Preferred node affinity: weight and term.
    pub preferred: Vec<(i32, Term)>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Host ports.
    pub host_ports: Vec<HostPort>,
    /// uid of the controlling owner (ReplicaSet, ...), for spreading replicas.
    pub owner: Option<Arc<str>>,
    /// Labels.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Topology spread constraints.
    pub spread: Vec<SpreadConstraint>,
    /// Priority.
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub never_preempts: bool,
    /// Being deleted.
    pub deleting: bool,
}

impl PodInfo {
    /// Parses `pod`.
    pub fn new(pod: &SchedPod) -> PodInfo {
        let spec = &pod.spec;
        let containers: Vec<ContainerRequests> = spec
            .containers
            .iter()
            .map(|c| ContainerRequests::of(c.resources.as_ref().and_then(|r| r.requests.as_ref())))
            .collect();
        let init: Vec<(ContainerRequests, bool)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                (
                    ContainerRequests::of(c.resources.as_ref().and_then(|r| r.requests.as_ref())),
                    c.restart_policy.as_deref() == Some("Always"),
                )
            })
            .collect();
        let (requests, non_zero) = pod_requests(&containers, &init, spec.overhead.as_ref());
        let mut host_ports = Vec::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for p in c.ports.iter().flatten() {
                if let Some(port) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        port,
                    });
                }
            }
        }
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        let required = node_affinity
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| RequiredTerms::parse(&ns.node_selector_terms));
        let preferred = node_affinity
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .map(|t| (t.weight, Term::parse(&t.preference)))
                    .collect()
            })
            .unwrap_or_default();
        let labels = Arc::new(pod.metadata.labels.clone().unwrap_or_default());
        let spread = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| spread_constraint(c, &labels))
            .collect();
        PodInfo {
            uid: Arc::from(pod.metadata.uid.as_deref().unwrap_or("")),
            namespace: Arc::from(pod.metadata.namespace.as_deref().unwrap_or("")),
            name: Arc::from(pod.metadata.name.as_deref().unwrap_or("")),
            requests,
            non_zero,
            node_selector: spec
                .node_selector
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            required,
            preferred,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            host_ports,
            owner: crate::util::meta::controller_of(&pod.metadata)
                .map(|r| Arc::from(r.uid.as_str())),
            labels,
            spread,
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            deleting: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the node's name and labels satisfy the pod's nodeSelector and required node
    /// affinity (upstream `NodeAffinity` filter).
    pub fn matches_node_selector(
        &self,
        node_name: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .required
                .as_ref()
                .is_none_or(|r| r.matches(node_name, labels))
    }
}

fn spread_constraint(
    c: &TopologySpreadConstraint,
    pod_labels: &BTreeMap<String, String>,
) -> SpreadConstraint {
    let mut selector = c.label_selector.clone().unwrap_or_default();
    // matchLabelKeys: the pod's own values of these keys join the selector.
    for key in c.match_label_keys.iter().flatten() {
        if let Some(v) = pod_labels.get(key) {
            selector
                .match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(key.clone(), v.clone());
        }
    }
    let selector = c
        .label_selector
        .as_ref()
        .and_then(|_| LabelSelector::from_label_selector(&selector).ok());
    SpreadConstraint {
        topology_key: c.topology_key.clone(),
        max_skew: c.max_skew.max(1),
        min_domains: c.min_domains.unwrap_or(1).max(1),
        hard: c.when_unsatisfiable == "DoNotSchedule",
        selector,
        honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
        honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
    }
}

/// Whether the scheduler named `scheduler_name` is responsible for `pod`.
pub fn responsible_for(pod: &SchedPod, scheduler_name: &str) -> bool {
    pod.spec
        .scheduler_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SCHEDULER_NAME)
        == scheduler_name
}

/// The node a pod is bound to, if any.
pub fn bound_node(pod: &SchedPod) -> Option<&str> {
    pod.spec.node_name.as_deref().filter(|n| !n.is_empty())
}

/// Whether scheduling gates hold the pod back (upstream SchedulingGates PreEnqueue).
pub fn is_gated(pod: &SchedPod) -> bool {
    pod.spec
        .scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty())
}

/// Whether the pod has finished.
pub fn is_terminal(pod: &SchedPod) -> bool {
    matches!(pod.status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_fields_it_needs_from_pod_json() {
        let pod: SchedPod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": "rs-uid", "controller": true}]},
            "spec": {
                "schedulerName": "default-scheduler",
                "containers": [{"name": "c", "image": "i",
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "priority": 5,
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            "status": {"phase": "Pending"}
        }))
        .unwrap();
        let info = PodInfo::new(&pod);
        assert_eq!(info.requests.milli_cpu, 250);
        assert_eq!(info.requests.memory, 64 << 20);
        assert_eq!(info.node_selector, vec![("disk".into(), "ssd".into())]);
        assert_eq!(info.host_ports[0].port, 8080);
        assert_eq!(info.host_ports[0].ip, "0.0.0.0");
        assert_eq!(info.owner.as_deref(), Some("rs-uid"));
        assert_eq!(info.priority, 5);
        assert_eq!(info.key(), "ns/p");
        assert!(responsible_for(&pod, DEFAULT_SCHEDULER_NAME));
        assert!(!responsible_for(&pod, "other"));
    }

    #[test]
    fn host_ports_conflict_on_wildcard_addresses() {
        let p = |ip: &str, port| HostPort {
            protocol: "TCP".into(),
            ip: ip.into(),
            port,
        };
        assert!(p("0.0.0.0", 80).conflicts(&p("10.0.0.1", 80)));
        assert!(!p("10.0.0.2", 80).conflicts(&p("10.0.0.1", 80)));
        assert!(!p("0.0.0.0", 80).conflicts(&p("0.0.0.0", 81)));
    }
}
