//! A fake kubelet for controller tests and benchmarks that run the control plane without real
//! nodes: [`create_ready_node`] registers a Ready Node, [`spawn_kubelet`] plays the kubelet of
//! the nodes (pods bound to them become Running and Ready — or Succeeded/Failed — and graceful
//! deletions are confirmed), [`spawn_heartbeats`] renews their Leases. A [`Silenced`] handle
//! makes a node go quiet (a node failure) for both.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::{json, Value};

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Now, to the second, as API timestamps.
fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// Registers a Ready node with 4 CPUs, 8 GiB and 110 pods, labelled
/// `kubernetes.io/hostname` plus `labels`, with `taints` (a JSON list, or null).
pub async fn create_ready_node(client: &Client, name: &str, labels: Value, taints: Value) {
    let mut all_labels = json!({"kubernetes.io/hostname": name});
    if let (Some(l), Some(extra)) = (all_labels.as_object_mut(), labels.as_object()) {
        l.extend(extra.clone());
    }
    let status = json!({
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
    });
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"taints": taints},
        "status": status,
    }))
    .expect("a valid Node");
    let api: Api<Node> = Api::all(client.clone());
    api.create(&PostParams::default(), &node)
        .await
        .expect("create node");
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .expect("node status");
}

/// Nodes gone silent (the fake kubelet and the heartbeats ignore them), and when each node's
/// Lease was last renewed.
#[derive(Clone, Default, Debug)]
pub struct Silenced {
    nodes: Arc<Mutex<HashSet<String>>>,
    renewals: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Silenced {
    /// `node` stops answering: no pod updates, no Lease renewals.
    pub fn silence(&self, node: &str) {
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string());
    }

    /// Whether `node` was silenced.
    pub fn is_silenced(&self, node: &str) -> bool {
        self.nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(node)
    }

    /// When `node`'s Lease was last renewed by [`spawn_heartbeats`].
    pub fn last_renewal(&self, node: &str) -> Option<Instant> {
        self.renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .copied()
    }

    fn renewed(&self, node: &str) {
        self.renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.to_string(), Instant::now());
    }
}

/// What the fake kubelet does with a new pod bound to its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Running and Ready.
    Run,
    /// Succeeded shortly after starting.
    Succeed,
    /// Failed shortly after starting.
    Fail,
}

/// Plays the kubelet of `nodes` (every node if empty) until the task is aborted: pending pods
/// bound to them get the status `act` says; pods being deleted are confirmed gone.
pub fn spawn_kubelet(
    client: Client,
    nodes: Vec<String>,
    act: Act,
    silenced: Silenced,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::all(client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(pod) = event else { continue };
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            if node.is_empty() || (!nodes.is_empty() && !nodes.contains(&node)) {
                continue;
            }
            if silenced.is_silenced(&node) {
                continue;
            }
            tokio::spawn(kubelet_step(client.clone(), pod, act));
        }
    })
}

async fn kubelet_step(client: Client, pod: Pod, act: Act) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        // The containers stopped: confirm the deletion as a kubelet does.
        let zero = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        let _ = api.delete(&name, &zero).await;
        return;
    }
    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
        return;
    }
    let t = now();
    let status = match act {
        Act::Run => json!({
            "phase": "Running", "startTime": t, "podIP": "10.42.0.9",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                {"type": "Ready", "status": "True", "lastTransitionTime": t},
            ],
        }),
        Act::Succeed | Act::Fail => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let phase = if act == Act::Succeed {
                "Succeeded"
            } else {
                "Failed"
            };
            json!({
                "phase": phase, "startTime": t,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                    {"type": "Ready", "status": "False", "reason": "PodCompleted",
                        "lastTransitionTime": t},
                ],
            })
        }
    };
    let _ = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await;
}

/// Renews (or creates) the Lease of each of `nodes` every `interval` (one task per node, as
/// kubelets renew independently) unless silenced, until the task is aborted.
pub fn spawn_heartbeats(
    client: Client,
    nodes: Vec<String>,
    silenced: Silenced,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Dropped (aborting every node's task) when this task is aborted.
        let mut tasks = tokio::task::JoinSet::new();
        for node in nodes {
            let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
            let silenced = silenced.clone();
            tasks.spawn(async move {
                loop {
                    if !silenced.is_silenced(&node) && renew(&api, &node).await {
                        silenced.renewed(&node);
                    }
                    tokio::time::sleep(interval).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    })
}

/// Renews `node`'s Lease, creating it the first time. Whether it worked.
async fn renew(api: &Api<Lease>, node: &str) -> bool {
    let renew = MicroTime(jiff::Timestamp::now());
    match api.get_opt(node).await {
        Ok(Some(mut lease)) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(renew);
            api.replace(node, &PostParams::default(), &lease)
                .await
                .is_ok()
        }
        Ok(None) => {
            let lease: Lease = match serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                    "renewTime": renew},
            })) {
                Ok(lease) => lease,
                Err(_) => return false,
            };
            api.create(&PostParams::default(), &lease).await.is_ok()
        }
        Err(_) => false,
    }
}
