//! Node failover benchmark (issue 5): time from a node's Lease stopping to all of its pods
//! Running on other nodes, with `--node-monitor-grace-period` 10 s and pods tolerating
//! `node.kubernetes.io/unreachable` and `not-ready` for 0 s.
//!
//! ```text
//! cargo run --release -p skiff-controllers --example failover_bench -- [options]
//!   --nodes N             nodes (default 6; one more than --rounds is needed)
//!   --rounds N            nodes silenced one after the other, one measurement each (default 5)
//!   --replicas N          Deployment replicas spread over the nodes (default 30)
//!   --grace-seconds S     in-process: --node-monitor-grace-period (default 10)
//!   --period-seconds S    in-process: --node-monitor-period (default 5, the server's default)
//!   --heartbeat-ms MS     Lease renewal interval of the simulated nodes (default 1000)
//!   --kubeconfig PATH     drive a running `skiff server --disable-agent` over HTTPS instead
//!                         (its own --node-monitor-* flags apply)
//!   --dir PATH            in-process: where the store lives (default /var/tmp)
//! ```
//!
//! What runs: the API server, store, scheduler and every controller (in-process, as `skiff
//! server` runs them, or a real server); the nodes are Node objects whose Leases this program
//! renews, and the fake kubelet of `skiff_testkit::kubelet` (as in the controller tests) marks pods bound
//! to a live node Running and Ready and confirms deletions on live nodes. Silenced nodes stop
//! both: their pods stay Terminating, as on a real dead machine. Each round silences one node
//! and measures from that node's last Lease renewal to (1) the node marked `Ready=Unknown`,
//! (2) its pods evicted (deletion requested), (3) the Deployment's replicas all Running and
//! Ready on other nodes again.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{in_process, remote};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_testkit::kubelet::{create_ready_node, spawn_heartbeats, spawn_kubelet, Act, Silenced};

struct Options {
    nodes: usize,
    rounds: usize,
    replicas: usize,
    grace: f64,
    period: f64,
    heartbeat: Duration,
    kubeconfig: Option<String>,
    dir: String,
}

fn options() -> Options {
    let mut o = Options {
        nodes: 6,
        rounds: 5,
        replicas: 30,
        grace: 10.0,
        period: 5.0,
        heartbeat: Duration::from_millis(1000),
        kubeconfig: None,
        dir: "/var/tmp".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--nodes" => o.nodes = value().parse().expect("--nodes N"),
            "--rounds" => o.rounds = value().parse().expect("--rounds N"),
            "--replicas" => o.replicas = value().parse().expect("--replicas N"),
            "--grace-seconds" => o.grace = value().parse().expect("--grace-seconds S"),
            "--period-seconds" => o.period = value().parse().expect("--period-seconds S"),
            "--heartbeat-ms" => {
                o.heartbeat = Duration::from_millis(value().parse().expect("--heartbeat-ms MS"))
            }
            "--kubeconfig" => o.kubeconfig = Some(value()),
            "--dir" => o.dir = value(),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(o.nodes > o.rounds, "--nodes must exceed --rounds");
    o
}

/// (Running and Ready replicas not being deleted, per node; pods on `node` with a deletion
/// requested).
async fn census(client: &Client, node: &str) -> (std::collections::HashMap<String, usize>, usize) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut by_node = std::collections::HashMap::new();
    let mut deleting_on_node = 0;
    for p in pods
        .list(&ListParams::default().labels("app=failover"))
        .await
        .expect("list pods")
        .items
    {
        let on = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some() {
            if on == node {
                deleting_on_node += 1;
            }
            continue;
        }
        let status = p.status.as_ref();
        let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if running && ready && !on.is_empty() {
            *by_node.entry(on).or_default() += 1;
        }
    }
    (by_node, deleting_on_node)
}

async fn node_unknown(client: &Client, node: &str) -> bool {
    let api: Api<Node> = Api::all(client.clone());
    let Ok(n) = api.get(node).await else {
        return false;
    };
    n.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "Unknown")
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let (client, local) = match &o.kubeconfig {
        Some(k) => (remote(k).await, None),
        None => {
            let config = skiff_controllers::ControllerConfig {
                node_monitor_grace_period: Duration::from_secs_f64(o.grace),
                node_monitor_period: Duration::from_secs_f64(o.period),
                ..Default::default()
            };
            let (c, l) = in_process(
                Path::new(&o.dir),
                "skiff-failover-bench-",
                skiff_store::StoreOptions::default(),
                |clients| skiff_controllers::start(clients, config).expect("controllers"),
            )
            .await;
            (c, Some(l))
        }
    };
    let names: Vec<String> = (0..o.nodes).map(|i| format!("failover-{i}")).collect();
    for n in &names {
        create_ready_node(&client, n, json!({}), serde_json::Value::Null).await;
    }
    let nodes = Silenced::default();
    let _heartbeats = spawn_heartbeats(client.clone(), names.clone(), nodes.clone(), o.heartbeat);
    let _kubelet = spawn_kubelet(client.clone(), Vec::new(), Act::Run, nodes.clone());

    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "failover"},
        "spec": {"replicas": o.replicas, "selector": {"matchLabels": {"app": "failover"}},
            "template": {"metadata": {"labels": {"app": "failover"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/failover:1",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}]}}}
    }))
    .unwrap();
    Api::<Deployment>::default_namespaced(client.clone())
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");

    println!(
        "nodes: {}, replicas: {}, heartbeat every {} ms; {}",
        o.nodes,
        o.replicas,
        o.heartbeat.as_millis(),
        match &o.kubeconfig {
            Some(_) => "server over HTTPS (its own --node-monitor-* flags)".to_string(),
            None => format!(
                "in-process, --node-monitor-grace-period {} s, --node-monitor-period {} s",
                o.grace, o.period
            ),
        }
    );
    println!("| round | pods on the node | lease stop → node Ready=Unknown (s) | → pods evicted (s) | → all replicas Running elsewhere (s) |");
    println!("|---:|---:|---:|---:|---:|");
    let mut totals = Vec::new();
    for (round, victim) in names.iter().take(o.rounds).enumerate() {
        // Settle: every replica Running and Ready, on live nodes, for the victim to hold some.
        let start = Instant::now();
        let on_victim = loop {
            let (by_node, _) = census(&client, victim).await;
            if by_node.values().sum::<usize>() == o.replicas {
                break by_node.get(victim).copied().unwrap_or(0);
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "replicas not all running: {by_node:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // A full heartbeat interval after settling, so the lease is current.
        tokio::time::sleep(o.heartbeat + Duration::from_millis(200)).await;
        nodes.silence(victim);
        // Let an in-flight renewal finish before reading its time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stopped = nodes
            .last_renewal(victim)
            .expect("victim renewed its lease");
        let (mut unknown_at, mut evicted_at) = (None, None);
        let done = loop {
            let now = Instant::now();
            if unknown_at.is_none() && node_unknown(&client, victim).await {
                unknown_at = Some(now);
            }
            let (by_node, deleting) = census(&client, victim).await;
            if evicted_at.is_none() && on_victim > 0 && deleting >= on_victim {
                evicted_at = Some(now);
            }
            if !by_node.contains_key(victim.as_str())
                && by_node.values().sum::<usize>() == o.replicas
            {
                break now;
            }
            assert!(
                now.duration_since(stopped) < Duration::from_secs(300),
                "round {round}: replicas not replaced within 300 s: {by_node:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let total = done.duration_since(stopped);
        totals.push(total);
        let rel = |t: Option<Instant>| {
            t.map(|t| secs(t.duration_since(stopped)))
                .unwrap_or("-".into())
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            round + 1,
            on_victim,
            rel(unknown_at),
            rel(evicted_at),
            secs(total)
        );
    }
    totals.sort();
    if !totals.is_empty() {
        println!(
            "lease stop → all replicas Running elsewhere: min {} s, median {} s, max {} s over {} rounds",
            secs(totals[0]),
            secs(totals[totals.len() / 2]),
            secs(totals[totals.len() - 1]),
            totals.len()
        );
    }
    if let Some(l) = local {
        l.running.shutdown().await;
        l.store.close().await;
    }
}
