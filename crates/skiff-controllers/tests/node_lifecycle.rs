//! Issue 5 acceptance 2: a node whose lease stops being renewed becomes Ready=Unknown after
//! the grace period, is tainted unreachable, and its pods are evicted after their toleration
//! and replaced on the remaining nodes; when it comes back its taints are removed.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Renews the leases of `nodes` every 200 ms, except those marked silent.
fn heartbeats(
    client: Client,
    nodes: Vec<String>,
    silent: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            for n in &nodes {
                if silent.lock().unwrap().contains(n) {
                    continue;
                }
                let lease: Lease = serde_json::from_value(json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": n},
                    "spec": {"holderIdentity": n, "leaseDurationSeconds": 40},
                }))
                .unwrap();
                let now = MicroTime(jiff::Timestamp::now());
                match api.get(n).await {
                    Ok(mut l) => {
                        l.spec.get_or_insert_with(Default::default).renew_time = Some(now);
                        let _ = api.replace(n, &PostParams::default(), &l).await;
                    }
                    Err(_) => {
                        let _ = api.create(&PostParams::default(), &lease).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn placement(client: &Client) -> HashMap<String, usize> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut by_node = HashMap::new();
    for p in pods
        .list(&ListParams::default().labels("app=svc"))
        .await
        .unwrap()
        .items
    {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if let (Some(n), true) = (p.spec.and_then(|s| s.node_name), running) {
            *by_node.entry(n).or_default() += 1;
        }
    }
    by_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_silent_node_move_to_the_others() {
    let mut config = fast_config();
    config.node_monitor_grace_period = Duration::from_secs(2);
    let mut cluster = Cluster::start(config).await;
    let c = cluster.client.clone();
    for n in ["a", "b", "c"] {
        node(n).create(&c).await;
    }
    let silent = Arc::new(Mutex::new(Vec::new()));
    let beat = heartbeats(
        c.clone(),
        vec!["a".into(), "b".into(), "c".into()],
        silent.clone(),
    );
    let kubelet = cluster.kubelet(&[], Act::Run);

    // Six replicas tolerating unreachable nodes for 1 s (instead of the default 300 s).
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "svc"}},
            "template": {"metadata": {"labels": {"app": "svc"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}],
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]}}}
    }))
    .unwrap();
    Api::<Deployment>::default_namespaced(c.clone())
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let before = wait_for(Duration::from_secs(20), "6 running replicas", || {
        let c = c.clone();
        async move {
            let p = placement(&c).await;
            (p.values().sum::<usize>() == 6).then_some(p)
        }
    })
    .await;
    assert_eq!(
        before.get("a"),
        Some(&2),
        "spread over the nodes: {before:?}"
    );

    // Node a goes silent: no lease renewals, no kubelet.
    silent.lock().unwrap().push("a".to_string());
    kubelet.pause("a");
    let stopped = std::time::Instant::now();
    let nodes: Api<Node> = Api::all(c.clone());
    let unknown = wait_for(
        Duration::from_secs(10),
        "node a to be Ready=Unknown and tainted",
        || {
            let nodes = nodes.clone();
            async move {
                let n = nodes.get("a").await.ok()?;
                let ready = n
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Ready")?
                    .clone();
                let taints = n.spec?.taints.unwrap_or_default();
                let tainted = taints
                    .iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
                    && taints.iter().any(|t| {
                        t.key == "node.kubernetes.io/unreachable" && t.effect == "NoSchedule"
                    });
                (ready.status == "Unknown" && tainted).then_some(ready)
            }
        },
    )
    .await;
    // The grace runs from the node's last renewal, which the controller notes as it arrives:
    // up to one heartbeat round (200 ms, plus the round's own API calls) before `stopped`.
    assert!(
        stopped.elapsed() >= Duration::from_millis(1500),
        "marked before the grace period: {:?} after the last renewal round",
        stopped.elapsed()
    );
    assert_eq!(unknown.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        unknown.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );

    // After the 1 s toleration its pods are evicted and replaced on b and c.
    let after = wait_for(
        Duration::from_secs(15),
        "all replicas running on b and c",
        || {
            let c = c.clone();
            async move {
                let p = placement(&c).await;
                (p.values().sum::<usize>() == 6 && !p.contains_key("a")).then_some(p)
            }
        },
    )
    .await;
    assert_eq!(
        after.get("b").copied().unwrap_or(0) + after.get("c").copied().unwrap_or(0),
        6
    );
    let evicted = Api::<Pod>::default_namespaced(c.clone())
        .list(&ListParams::default().labels("app=svc"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("a"))
        .collect::<Vec<_>>();
    assert!(
        evicted
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "pods on a are terminating"
    );

    // The node comes back: heartbeats and Ready again; the taints go.
    silent.lock().unwrap().clear();
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second())
        .unwrap()
        .to_string();
    nodes
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}]}})),
        )
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "node a's taints to be removed",
        || {
            let nodes = nodes.clone();
            async move {
                let taints = nodes.get("a").await.ok()?.spec?.taints.unwrap_or_default();
                (!taints
                    .iter()
                    .any(|t| t.key.starts_with("node.kubernetes.io/")))
                .then_some(())
            }
        },
    )
    .await;
    beat.abort();
    cluster.stop().await;
}
