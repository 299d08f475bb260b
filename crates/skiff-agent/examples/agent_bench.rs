//! Benchmark driver for `scripts/bench/agent.sh`: pod start latency through the whole cluster
//! (API create → scheduler → node link → agent → runtime → status → watch), and the idle
//! footprint of a node with N pods.
//!
//!   agent_bench start --kubeconfig FILE [--runs 50] [--node NAME]
//!   agent_bench idle  --kubeconfig FILE --pods 10 --node NAME [--namespace default]
//!   agent_bench clean --kubeconfig FILE
//!
//! `start` creates one single-container busybox pod at a time (image present, pull policy
//! IfNotPresent), times the create request until a watch shows it Running and Ready, deletes
//! it and waits until it is gone, then prints the distribution. `idle` starts N pods on a node
//! and waits until they all run.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = serde_json::json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main",
            "image": "busybox",
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        }]
    });
    if let Some(node) = node {
        spec["nodeSelector"] = serde_json::json!({"kubernetes.io/hostname": node});
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "agent"}},
        "spec": spec
    }))
    .expect("pod")
}

fn running(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.iter().flatten().all(|c| c.ready)
}

async fn client(path: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(path).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

async fn wait_running(api: &Api<Pod>, name: &str, from: &str) -> Instant {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(60);
    let mut stream = api.watch(&params, from).await.expect("watch").boxed();
    while let Some(event) = stream.try_next().await.expect("watch event") {
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) if running(&p) => return Instant::now(),
            WatchEvent::Error(e) => panic!("watch error: {}", e.message),
            _ => {}
        }
    }
    panic!("pod {name} not Running within 60 s");
}

async fn wait_gone(api: &Api<Pod>, name: &str) {
    for _ in 0..600 {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("pod {name} not deleted within 12 s");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn start(api: Api<Pod>, runs: usize, node: Option<String>) {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let name = format!("bench-start-{i}");
        let t0 = Instant::now();
        let created = api
            .create(&PostParams::default(), &pod(&name, node.as_deref()))
            .await
            .expect("create");
        let rv = created
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let t1 = wait_running(&api, &name, &rv).await;
        // The first runs warm caches (image lookup, connections): not counted.
        if i >= 3 {
            samples.push((t1 - t0).as_secs_f64() * 1000.0);
        }
        api.delete(&name, &DeleteParams::default())
            .await
            .expect("delete");
        wait_gone(&api, &name).await;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "pod start (API create -> Running in a watch), {} runs: median {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples[0],
        samples[samples.len() - 1]
    );
}

async fn idle(api: Api<Pod>, pods: usize, node: String) {
    for i in 0..pods {
        let name = format!("bench-idle-{node}-{i}");
        api.create(&PostParams::default(), &pod(&name, Some(&node)))
            .await
            .expect("create");
    }
    for _ in 0..600 {
        let list = api
            .list(&ListParams::default().labels("bench=agent"))
            .await
            .expect("list");
        let on_node = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node))
            .filter(|p| running(p))
            .count();
        if on_node >= pods {
            println!("{pods} pods running on {node}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the idle pods did not start");
}

async fn clean(api: Api<Pod>) {
    let list = api
        .list(&ListParams::default().labels("bench=agent"))
        .await
        .expect("list");
    for p in list.items {
        let name = p.metadata.name.unwrap_or_default();
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
    for _ in 0..300 {
        let left = api
            .list(&ListParams::default().labels("bench=agent"))
            .await
            .expect("list");
        if left.items.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).cloned().unwrap_or_default();
    let kubeconfig = arg(&args, "--kubeconfig").expect("--kubeconfig FILE");
    let namespace = arg(&args, "--namespace").unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(client(&kubeconfig).await, &namespace);
    match command.as_str() {
        "start" => {
            let runs = arg(&args, "--runs")
                .and_then(|r| r.parse().ok())
                .unwrap_or(50);
            start(api, runs, arg(&args, "--node")).await;
        }
        "idle" => {
            let pods = arg(&args, "--pods")
                .and_then(|r| r.parse().ok())
                .unwrap_or(10);
            idle(api, pods, arg(&args, "--node").expect("--node NAME")).await;
        }
        "clean" => clean(api).await,
        other => {
            eprintln!("usage: agent_bench start|idle|clean --kubeconfig FILE ... (got {other:?})");
            std::process::exit(2);
        }
    }
}
