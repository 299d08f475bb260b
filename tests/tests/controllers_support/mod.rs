//! Support for the controller end-to-end tests: Node objects created through the API, a
//! fake kubelet (test code only) that plays those nodes — marks their pods Running and Ready,
//! confirms graceful deletions — and lease heartbeats that can be stopped per node.

#![allow(dead_code)]

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

fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(t.as_second())
        .unwrap()
        .to_string()
}

/// Creates a Ready node with 4 CPUs and 8 GiB, with `labels` and `taints`.
pub async fn create_node(client: &Client, name: &str, labels: Value, taints: Value) {
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
    .unwrap();
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

/// Nodes the fake kubelet and the heartbeats ignore (gone silent).
#[derive(Clone, Default)]
pub struct Silenced(Arc<Mutex<Vec<String>>>);

impl Silenced {
    /// `node` stops answering.
    pub fn silence(&self, node: &str) {
        self.0.lock().unwrap().push(node.to_string());
    }
    fn has(&self, node: &str) -> bool {
        self.0.lock().unwrap().iter().any(|n| n == node)
    }
}

/// Plays the kubelet of every node: pods bound to a node become Running and Ready; pods being
/// deleted are confirmed gone.
pub fn kubelet(client: Client, silenced: Silenced) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::all(client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(pod)) = events.next().await {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            if node.is_empty() || silenced.has(&node) {
                continue;
            }
            let client = client.clone();
            tokio::spawn(async move {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client, &ns);
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .delete(
                            &name,
                            &DeleteParams {
                                grace_period_seconds: Some(0),
                                ..DeleteParams::default()
                            },
                        )
                        .await;
                    return;
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Pending") {
                    return;
                }
                let t = now();
                let status = json!({"status": {
                    "phase": "Running", "startTime": t, "podIP": "10.42.0.9",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                        {"type": "Ready", "status": "True", "lastTransitionTime": t}],
                }});
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            });
        }
    })
}

/// Renews the Lease of each of `nodes` every 300 ms unless silenced.
pub fn heartbeats(
    client: Client,
    nodes: Vec<String>,
    silenced: Silenced,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            for n in &nodes {
                if silenced.has(n) {
                    continue;
                }
                let renew = MicroTime(k8s_openapi::jiff::Timestamp::now());
                match api.get(n).await {
                    Ok(mut lease) => {
                        lease.spec.get_or_insert_with(Default::default).renew_time = Some(renew);
                        let _ = api.replace(n, &PostParams::default(), &lease).await;
                    }
                    Err(_) => {
                        let lease: Lease = serde_json::from_value(json!({
                            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": n},
                            "spec": {"holderIdentity": n, "leaseDurationSeconds": 40, "renewTime": renew},
                        }))
                        .unwrap();
                        let _ = api.create(&PostParams::default(), &lease).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// Polls `check` until it returns `Some`; panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
