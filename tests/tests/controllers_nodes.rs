//! Issue 5 acceptance 2 with the real `skiff` binary: a node whose lease stops being renewed
//! is marked NotReady (Ready=Unknown) after `--node-monitor-grace-period`, tainted
//! unreachable, and its pods are evicted after their toleration and replaced on the other
//! nodes — with short timeouts (2 s grace, 1 s toleration).

mod controllers_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use controllers_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_tests::kubectl::{self, Kubectl};
use skiff_tests::process::SkiffProcess;

async fn running_by_node(client: &Client) -> HashMap<String, usize> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut by_node = HashMap::new();
    for p in pods
        .list(&ListParams::default().labels("app=svc"))
        .await
        .unwrap()
        .items
    {
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if p.metadata.deletion_timestamp.is_none() && running {
            if let Some(n) = p.spec.and_then(|s| s.node_name) {
                *by_node.entry(n).or_default() += 1;
            }
        }
    }
    by_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_node_whose_lease_stops_are_replaced_elsewhere() {
    skiff_tests::install_crypto();
    let dir = skiff_tests::temp_dir("controllers-nodes");
    let server = SkiffProcess::start_with_args(
        dir.path(),
        &[
            "--node-monitor-grace-period",
            "2s",
            "--node-monitor-period",
            "250ms",
        ],
    );
    let client = skiff_tests::inproc::kube_client(&server.kubeconfig()).await;
    let nodes = ["a", "b", "c"];
    for n in nodes {
        create_node(&client, n, json!({}), json!([])).await;
    }
    let silenced = Silenced::default();
    let beats = heartbeats(
        client.clone(),
        nodes.iter().map(|n| n.to_string()).collect(),
        silenced.clone(),
    );
    let kubelet = kubelet(client.clone(), silenced.clone());

    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "svc"}},
            "template": {"metadata": {"labels": {"app": "svc"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/svc:1"}],
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]}}}
    }))
    .unwrap();
    Api::<Deployment>::default_namespaced(client.clone())
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let before = wait_for(
        Duration::from_secs(30),
        "6 running replicas on 3 nodes",
        || {
            let client = client.clone();
            async move {
                let p = running_by_node(&client).await;
                (p.values().sum::<usize>() == 6 && p.len() == 3).then_some(p)
            }
        },
    )
    .await;
    assert!(before.contains_key("a"), "{before:?}");

    silenced.silence("a");
    let stopped = Instant::now();
    let after = wait_for(
        Duration::from_secs(30),
        "all replicas running on b and c",
        || {
            let client = client.clone();
            async move {
                let p = running_by_node(&client).await;
                (p.values().sum::<usize>() == 6 && !p.contains_key("a")).then_some(p)
            }
        },
    )
    .await;
    let took = stopped.elapsed();
    // Grace and toleration run from the node's last renewal, up to one heartbeat round
    // (300 ms plus its API calls) before `stopped`.
    assert!(
        took >= Duration::from_millis(2500),
        "replaced before grace + toleration: {took:?}"
    );
    assert_eq!(after.values().sum::<usize>(), 6);

    if let Some(bin) = kubectl::find("1.32") {
        let k = Kubectl::new(&bin, &server.kubeconfig());
        let nodes = tokio::task::spawn_blocking(move || {
            let get = k.run(&["get", "nodes"]);
            let describe = k.run(&["describe", "node", "a"]);
            (get, describe)
        })
        .await
        .unwrap();
        let a = nodes
            .0
            .stdout
            .lines()
            .find(|l| l.starts_with("a "))
            .unwrap_or_default()
            .to_string();
        assert!(a.contains("NotReady"), "{}", nodes.0.stdout);
        assert!(
            nodes
                .1
                .stdout
                .contains("node.kubernetes.io/unreachable:NoExecute"),
            "{}",
            nodes.1.stdout
        );
        assert!(
            nodes.1.stdout.contains("NodeNotReady"),
            "{}",
            nodes.1.stdout
        );
    } else {
        skiff_tests::skip("kubectl 1.32 is not installed; skipping the kubectl part");
    }
    beats.abort();
    kubelet.abort();
    drop(server);
}
