//! Node lifecycle (upstream `nodelifecycle` and the NoExecute taint manager):
//!
//! - Health: a node whose Lease in `kube-node-lease` (or Ready heartbeat) has not changed
//!   for `--node-monitor-grace-period` gets `Ready=Unknown` ("Kubelet stopped posting node
//!   status."), its pods `Ready=False`, and a `NodeNotReady` event.
//! - Taints from conditions: `Ready=False` → `node.kubernetes.io/not-ready` and
//!   `Ready=Unknown` → `node.kubernetes.io/unreachable`, each as NoExecute and NoSchedule;
//!   `spec.unschedulable` → `node.kubernetes.io/unschedulable:NoSchedule`. A node that is
//!   Ready again loses them.
//! - Evictions: pods on a node with NoExecute taints they do not tolerate are deleted at once;
//!   pods tolerating them for `tolerationSeconds` are deleted that long after the taint was
//!   first seen (API defaulting gives every pod 300 s for not-ready and unreachable). Their
//!   controllers then create replacements, which the scheduler keeps off tainted nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::error::{is_not_found, status_code};
use crate::events::{EventType, Recorder};
use crate::informer::{Change, Informer, BY_NODE};
use crate::scheduler::cache::{TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE};
use crate::scheduler::matching::tolerates;
use crate::util::meta::{key_of, name_of, now};
use crate::util::pods;

/// Component name in events.
pub const COMPONENT: &str = "node-controller";
/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often due evictions are looked for.
const EVICTION_TICK: Duration = Duration::from_millis(250);

/// Timings of node health checks.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often health is checked.
    pub monitor_period: Duration,
    /// Heartbeat silence after which a node is unreachable.
    pub grace_period: Duration,
    /// Silence allowed to a node that never reported Ready.
    pub startup_grace_period: Duration,
}

/// Starts the health monitor and the taint-based eviction.
pub fn start(
    client: Client,
    nodes: &Informer<Node>,
    leases: &Informer<Lease>,
    pods: &Informer<Pod>,
    timings: Timings,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let recorder = Recorder::new(client.clone(), COMPONENT);
    let monitor = Monitor {
        client: client.clone(),
        nodes: nodes.clone(),
        leases: leases.clone(),
        pods: pods.clone(),
        recorder: recorder.clone(),
        timings,
        health: HashMap::new(),
    };
    tasks.spawn(monitor.run());
    let evictor = Evictor {
        client,
        nodes: nodes.clone(),
        pods: pods.clone(),
        recorder,
        first_seen: HashMap::new(),
    };
    tasks.spawn(evictor.run());
}

struct Health {
    observed: (Option<String>, Option<String>),
    probe: Instant,
    /// The node's Ready condition is Unknown (nothing left to mark until it reports again).
    marked: bool,
    /// The silence allowed to this node (startup grace until it first reports Ready).
    grace: Duration,
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct Monitor {
    client: Client,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    recorder: Recorder,
    timings: Timings,
    health: HashMap<String, Health>,
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The taints a node should carry for its Ready status and cordon, replacing the managed
/// ones and keeping every other taint (and the time a kept taint was added).
pub fn desired_taints(current: &[Taint], ready: Option<&str>, unschedulable: bool) -> Vec<Taint> {
    let managed = |t: &Taint| {
        (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
            && (t.effect == "NoSchedule" || t.effect == "NoExecute")
            || (t.key == TAINT_UNSCHEDULABLE && t.effect == "NoSchedule")
    };
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    match ready {
        Some("True") => {}
        Some("Unknown") => {
            wanted.push((TAINT_UNREACHABLE, "NoExecute"));
            wanted.push((TAINT_UNREACHABLE, "NoSchedule"));
        }
        // False, or never reported.
        _ => {
            wanted.push((TAINT_NOT_READY, "NoExecute"));
            wanted.push((TAINT_NOT_READY, "NoSchedule"));
        }
    }
    if unschedulable {
        wanted.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let mut out: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
    for (key, effect) in wanted {
        let existing = current.iter().find(|t| t.key == key && t.effect == effect);
        out.push(match existing {
            Some(t) => t.clone(),
            None => Taint {
                key: key.into(),
                value: None,
                effect: effect.into(),
                time_added: Some(now()),
            },
        });
    }
    out
}

fn same_taints(a: &[Taint], b: &[Taint]) -> bool {
    a.len() == b.len()
        && a.iter().all(|t| {
            b.iter()
                .any(|u| u.key == t.key && u.effect == t.effect && u.value == t.value)
        })
}

impl Monitor {
    async fn run(mut self) {
        self.nodes.ready().await;
        self.leases.ready().await;
        tracing::info!(
            grace_seconds = self.timings.grace_period.as_secs_f64(),
            "node lifecycle controller started"
        );
        let mut tick =
            tokio::time::interval(self.timings.monitor_period.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Lease renewals are noted when they arrive (not at the next tick), and a node is
        // looked at again right when its grace runs out (not at the tick after): a dead node is
        // marked after the grace period, not up to two monitor periods later.
        let mut renewals = Box::pin(self.leases.subscribe());
        // A renewal only moves a deadline later, so the one computed after each check stays
        // safe (at worst early) until the next check.
        let mut deadline = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.check_all().await;
                    deadline = self.next_deadline();
                }
                _ = sleep_until_deadline(deadline) => {
                    self.check_all().await;
                    deadline = self.next_deadline();
                }
                change = renewals.next() => match change {
                    Some(Change::Applied(lease)) => self.note_renewal(&lease),
                    Some(_) => {}
                    None => return,
                },
            }
        }
    }

    /// A lease was written: its node is alive now.
    fn note_renewal(&mut self, lease: &Lease) {
        let name = name_of(&lease.metadata);
        let renew_time = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| format!("{:?}", t.0));
        if let Some(health) = self.health.get_mut(name) {
            if health.observed.0 != renew_time {
                health.observed.0 = renew_time;
                health.probe = Instant::now();
                health.marked = false;
            }
        }
    }

    /// The earliest moment still ahead at which a node not yet marked runs out of grace
    /// (deadlines already past, e.g. a failed write, are retried at the next tick).
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        self.health
            .values()
            .filter(|h| !h.marked)
            .map(|h| h.probe + h.grace + Duration::from_millis(10))
            .filter(|deadline| *deadline > now)
            .min()
    }

    async fn check_all(&mut self) {
        let nodes = self.nodes.store().state();
        let now_i = Instant::now();
        let names: std::collections::HashSet<String> = nodes
            .iter()
            .map(|n| name_of(&n.metadata).to_string())
            .collect();
        self.health.retain(|n, _| names.contains(n));
        for node in nodes {
            let name = name_of(&node.metadata).to_string();
            let lease_time = self.leases.get(LEASE_NAMESPACE, &name).and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| format!("{:?}", t.0))
            });
            let ready = ready_condition(&node);
            let heartbeat =
                ready.and_then(|c| c.last_heartbeat_time.as_ref().map(|t| format!("{:?}", t.0)));
            let observed = (lease_time, heartbeat);
            let health = self.health.entry(name.clone()).or_insert_with(|| Health {
                observed: observed.clone(),
                probe: now_i,
                marked: false,
                grace: self.timings.startup_grace_period,
            });
            if health.observed != observed {
                health.observed = observed;
                health.probe = now_i;
            }
            let grace = if ready.is_none() {
                self.timings.startup_grace_period
            } else {
                self.timings.grace_period
            };
            health.grace = grace;
            let mut ready_status = ready.map(|c| c.status.clone());
            let overdue = now_i.duration_since(health.probe) > grace;
            health.marked = overdue && ready_status.as_deref() == Some("Unknown");
            if overdue
                && ready_status.as_deref() != Some("Unknown")
                && self.mark_unknown(&node).await
            {
                ready_status = Some("Unknown".into());
                if let Some(health) = self.health.get_mut(&name) {
                    health.marked = true;
                }
            }
            self.sync_taints(&node, ready_status.as_deref()).await;
        }
    }

    /// Sets every condition to Unknown (upstream `tryUpdateNodeHealth`), marks the node's pods
    /// not ready, and records `NodeNotReady`.
    async fn mark_unknown(&self, node: &Node) -> bool {
        let name = name_of(&node.metadata);
        let t = now();
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if !conditions.iter().any(|c| c.type_ == "Ready") {
            conditions.push(NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: None,
                last_transition_time: Some(t.clone()),
            });
        }
        for c in conditions.iter_mut() {
            if c.status != "Unknown" {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(t.clone());
            }
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": {"conditions": conditions}});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                if !is_not_found(&e) {
                    tracing::warn!(node = name, error = %e, "cannot mark node unreachable");
                }
                return false;
            }
        }
        tracing::info!(
            node = name,
            "node stopped posting status; marked Ready=Unknown"
        );
        self.recorder.event(
            node,
            EventType::Normal,
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        );
        for pod in self.pods.indexed(BY_NODE, name) {
            mark_pod_not_ready(&self.client, &pod).await;
        }
        true
    }

    async fn sync_taints(&self, node: &Node, ready: Option<&str>) {
        let wanted_for = |n: &Node| {
            let spec = n.spec.clone().unwrap_or_default();
            let current = spec.taints.clone().unwrap_or_default();
            let wanted = desired_taints(&current, ready, spec.unschedulable.unwrap_or(false));
            (!same_taints(&current, &wanted)).then_some(wanted)
        };
        if wanted_for(node).is_none() {
            return;
        }
        let name = name_of(&node.metadata);
        let api: Api<Node> = Api::all(self.client.clone());
        // The cached node may be stale (we may just have written its status): read, change,
        // write with its resourceVersion, and try again on a conflict.
        for _ in 0..3 {
            let fresh = match api.get(name).await {
                Ok(n) => n,
                Err(e) => {
                    if !is_not_found(&e) {
                        tracing::warn!(node = name, error = %e, "cannot read node");
                    }
                    return;
                }
            };
            let Some(wanted) = wanted_for(&fresh) else {
                return;
            };
            let mut updated = fresh;
            updated.spec.get_or_insert_with(Default::default).taints = Some(wanted);
            match api.replace(name, &PostParams::default(), &updated).await {
                Ok(_) => {
                    tracing::debug!(node = name, ?ready, "node taints updated");
                    return;
                }
                Err(e) if status_code(&e) == Some(409) => continue,
                Err(e) if is_not_found(&e) => return,
                Err(e) => {
                    tracing::warn!(node = name, error = %e, "cannot update node taints");
                    return;
                }
            }
        }
    }
}

/// Sets a pod's Ready condition to False (upstream `MarkPodsNotReady`).
async fn mark_pod_not_ready(client: &Client, pod: &Pod) {
    let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
        return;
    };
    let mut changed = false;
    for c in conditions
        .iter_mut()
        .filter(|c| c.type_ == "Ready" && c.status != "False")
    {
        c.status = "False".into();
        c.last_transition_time = Some(now());
        changed = true;
    }
    if !changed {
        return;
    }
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = json!({"status": {"conditions": conditions}});
    if let Err(e) = api
        .patch_status(
            name_of(&pod.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        if !is_not_found(&e) {
            tracing::debug!(pod = %key_of(&pod.metadata), error = %e, "cannot mark pod not ready");
        }
    }
}

/// When a pod on a node with these NoExecute taints must go: `Some(Duration::ZERO)` for an
/// untolerated taint, the shortest `tolerationSeconds` of the tolerations used, or `None`
/// when it may stay forever (upstream `processPodOnNode` / `getMinTolerationTime`).
pub fn eviction_delay(taints: &[Taint], tolerations: &[Toleration]) -> Option<Duration> {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return None;
    }
    let mut used: Vec<&Toleration> = Vec::new();
    for taint in &no_execute {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(Duration::ZERO);
        }
        used.extend(matching);
    }
    used.iter()
        .filter_map(|t| t.toleration_seconds)
        .min()
        .map(|s| Duration::from_secs(s.max(0) as u64))
}

struct Evictor {
    client: Client,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    recorder: Recorder,
    /// When each pod was first seen on a NoExecute-tainted node.
    first_seen: HashMap<String, Instant>,
}

impl Evictor {
    async fn run(mut self) {
        self.nodes.ready().await;
        self.pods.ready().await;
        let mut tick = tokio::time::interval(EVICTION_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.evict_due().await;
        }
    }

    async fn evict_due(&mut self) {
        let now_i = Instant::now();
        let mut still: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut due: Vec<Arc<Pod>> = Vec::new();
        for node in self.nodes.store().state() {
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if !taints.iter().any(|t| t.effect == "NoExecute") {
                continue;
            }
            for pod in self.pods.indexed(BY_NODE, name_of(&node.metadata)) {
                if pods::is_terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.clone())
                    .unwrap_or_default();
                let Some(delay) = eviction_delay(&taints, &tolerations) else {
                    continue;
                };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let seen = *self.first_seen.entry(uid.clone()).or_insert(now_i);
                still.insert(uid);
                if now_i.duration_since(seen) >= delay {
                    due.push(pod);
                }
            }
        }
        self.first_seen.retain(|uid, _| still.contains(uid));
        for pod in due {
            let key = key_of(&pod.metadata);
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name_of(&pod.metadata), &params).await {
                Ok(_) => {
                    tracing::info!(pod = %key, node = %pods::node_name(&pod), "evicted by NoExecute taint");
                    self.recorder.event(
                        pod.as_ref(),
                        EventType::Normal,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {key}"),
                    );
                    if let Some(uid) = &pod.metadata.uid {
                        self.first_seen.remove(uid);
                    }
                }
                Err(e) if is_not_found(&e) || status_code(&e) == Some(409) => {}
                Err(e) => tracing::warn!(pod = %key, error = %e, "cannot evict pod"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: None,
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            value: None,
            toleration_seconds: seconds,
        }
    }

    #[test]
    fn taints_follow_readiness_and_cordon() {
        let other = taint("dedicated", "NoSchedule");
        let t = desired_taints(std::slice::from_ref(&other), Some("Unknown"), false);
        assert!(t.contains(&other));
        assert!(t
            .iter()
            .any(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoExecute"));
        assert!(t
            .iter()
            .any(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoSchedule"));
        let back = desired_taints(&t, Some("True"), false);
        assert_eq!(back, vec![other.clone()]);
        let cordoned = desired_taints(&[], Some("True"), true);
        assert_eq!(cordoned[0].key, TAINT_UNSCHEDULABLE);
        let not_ready = desired_taints(&[], Some("False"), false);
        assert!(not_ready.iter().all(|t| t.key == TAINT_NOT_READY));
        // Kept taints keep their time.
        assert_eq!(desired_taints(&t, Some("Unknown"), false), t);
    }

    #[test]
    fn eviction_delays_follow_tolerations() {
        let unreachable = [taint(TAINT_UNREACHABLE, "NoExecute")];
        assert_eq!(eviction_delay(&unreachable, &[]), Some(Duration::ZERO));
        assert_eq!(
            eviction_delay(&unreachable, &[toleration(TAINT_UNREACHABLE, Some(300))]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            eviction_delay(&unreachable, &[toleration(TAINT_UNREACHABLE, None)]),
            None
        );
        assert_eq!(eviction_delay(&[taint("x", "NoSchedule")], &[]), None);
    }
}
