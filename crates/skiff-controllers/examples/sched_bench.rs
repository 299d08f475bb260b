//! Scheduler benchmark (issue 5): throughput (pods/s) and scheduling latency with many nodes
//! and pods created as fast as the API takes them.
//!
//! ```text
//! cargo run --release -p skiff-controllers --example sched_bench -- [options]
//!   --nodes N          nodes to create (default 5000)
//!   --pods N           pods to create (default 150000)
//!   --creators N       concurrent create calls (default 64)
//!   --kubeconfig PATH  drive a running `skiff server` over HTTPS instead of an in-process one
//!   --scheduler-only   in-process: run only the scheduler, not the controller manager
//!   --dir PATH         in-process: where the store lives (default /var/tmp)
//!   --bind-concurrency N  in-process: bindings in flight (default 512)
//!   --cluster-cidr CIDR   in-process: pod network split into a /24 per node (default
//!                      10.0.0.0/8; the server's 10.42.0.0/16 holds only 256 nodes, and the
//!                      node IPAM controller would retry the other 4,744 nodes forever)
//!   --watch-queue N    in-process: events buffered per store watcher before a lagging watch
//!                      is ended and its client re-lists (default: the store's 10,000)
//!   --algorithm-only   no API at all: decode each pod's JSON, run filters and scores against
//!                      the scheduler cache and assume it (the scheduler's own cost per pod)
//! RUST_LOG=...         log filter for the in-process components (none by default)
//! ```
//!
//! In-process mode runs what `skiff server` runs — redb store, API server, scheduler and
//! controllers on in-process clients — in this process; pods are created through the API's
//! in-process service by `--creators` tasks. With `--kubeconfig` the same load goes over
//! HTTPS to a real server. Latency is measured per pod from its create call returning to the
//! benchmark's own watch seeing it bound (the create call's time included); throughput is pods bound per second from the first
//! create to the last binding, plus the rate in the steady middle of the run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{in_process, remote};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use skiff_controllers::scheduler::podinfo::SchedPod;
use skiff_testkit::measure::{cpu_seconds, quantile, rss_mib};

struct Options {
    nodes: usize,
    pods: usize,
    creators: usize,
    kubeconfig: Option<String>,
    scheduler_only: bool,
    dir: String,
    bind_concurrency: usize,
    algorithm_only: bool,
    cluster_cidr: String,
    watch_queue: Option<usize>,
}

fn options() -> Options {
    let mut o = Options {
        nodes: 5000,
        pods: 150_000,
        creators: 64,
        kubeconfig: None,
        scheduler_only: false,
        dir: "/var/tmp".into(),
        bind_concurrency: skiff_controllers::SchedulerConfig::default().bind_concurrency,
        algorithm_only: false,
        cluster_cidr: "10.0.0.0/8".into(),
        watch_queue: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--nodes" => o.nodes = value().parse().expect("--nodes N"),
            "--pods" => o.pods = value().parse().expect("--pods N"),
            "--creators" => o.creators = value().parse().expect("--creators N"),
            "--kubeconfig" => o.kubeconfig = Some(value()),
            "--scheduler-only" => o.scheduler_only = true,
            "--algorithm-only" => o.algorithm_only = true,
            "--dir" => o.dir = value(),
            "--cluster-cidr" => o.cluster_cidr = value(),
            "--watch-queue" => o.watch_queue = Some(value().parse().expect("--watch-queue N")),
            "--bind-concurrency" => {
                o.bind_concurrency = value().parse().expect("--bind-concurrency N")
            }
            other => panic!("unknown option {other}"),
        }
    }
    o
}

async fn create_nodes(client: &Client, count: usize) {
    let api: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    let now = jiff::Timestamp::now();
    let now = jiff::Timestamp::from_second(now.as_second())
        .unwrap()
        .to_string();
    futures::stream::iter(0..count)
        .for_each_concurrent(64, |i| {
            let api = api.clone();
            let now = now.clone();
            async move {
                let name = format!("node-{i:05}");
                let status = json!({
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
                });
                let node: Node = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                        "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
                    "status": status,
                }))
                .unwrap();
                api.create(&PostParams::default(), &node)
                    .await
                    .expect("create node");
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"status": status})),
                )
                .await
                .expect("node status");
            }
        })
        .await;
    eprintln!(
        "created {count} nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-{i:06}"), "labels": {"app": "bench", "group": format!("g{}", i % 100)}},
        "spec": {"containers": [{"name": "c", "image": "registry.local/bench:1",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
    .unwrap()
}

/// The scheduler's own work per pod, without API or store: JSON decode of the pod (as the
/// watch delivers it), requirements, filters and scores over the cache, assume.
fn algorithm_only(o: &Options) {
    use skiff_controllers::scheduler::algorithm::{Algorithm, Outcome};
    use skiff_controllers::scheduler::cache::Cache;
    use skiff_controllers::scheduler::podinfo::PodInfo;
    let mut cache = Cache::new();
    for i in 0..o.nodes {
        let name = format!("node-{i:05}");
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        cache.upsert_node(&node);
    }
    let mut algorithm = Algorithm::new(0);
    let bodies: Vec<Vec<u8>> = (0..o.pods)
        .map(|i| {
            let mut p = serde_json::to_value(pod(i)).unwrap();
            p["metadata"]["uid"] = json!(format!("uid-{i}"));
            p["metadata"]["namespace"] = json!("default");
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("rs-{}", i % 1000), "uid": format!("rs-{}", i % 1000), "controller": true}]);
            serde_json::to_vec(&p).unwrap()
        })
        .collect();
    let mut latencies = Vec::with_capacity(o.pods);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut evaluated = 0usize;
    let mut parts = [Duration::ZERO; 4];
    for body in &bodies {
        let t = Instant::now();
        let pod: SchedPod = serde_json::from_slice(body).unwrap();
        let t1 = Instant::now();
        let info = Arc::new(PodInfo::new(&pod));
        let t2 = Instant::now();
        let outcome = algorithm.schedule(&info, &cache);
        let t3 = Instant::now();
        match outcome {
            Outcome::Fit {
                slot, evaluated: e, ..
            } => {
                evaluated += e;
                cache.assume(info, slot);
            }
            Outcome::Unfit(e) => panic!("no fit: {}", e.message),
        }
        let t4 = Instant::now();
        parts[0] += t1 - t;
        parts[1] += t2 - t1;
        parts[2] += t3 - t2;
        parts[3] += t4 - t3;
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu0;
    latencies.sort();
    println!("mode: algorithm only (no API, no store)");
    println!("nodes: {}, pods: {}", o.nodes, o.pods);
    println!(
        "scheduled: {:.0} pods/s ({:.2} s, one core); nodes evaluated per pod: {:.0}",
        o.pods as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        evaluated as f64 / o.pods as f64
    );
    let per = |d: Duration| d.as_secs_f64() * 1e6 / o.pods as f64;
    println!(
        "per pod: decode {:.1} µs, requirements {:.1} µs, filters+scores {:.1} µs, assume {:.1} µs",
        per(parts[0]),
        per(parts[1]),
        per(parts[2]),
        per(parts[3])
    );
    println!(
        "CPU: {:.1} µs per pod ({:.0} pods per CPU-second)",
        cpu * 1e6 / o.pods as f64,
        o.pods as f64 / cpu.max(1e-9)
    );
    println!(
        "per pod: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        quantile(&latencies, 0.5).as_secs_f64() * 1e6,
        quantile(&latencies, 0.99).as_secs_f64() * 1e6,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e6
    );
}

#[tokio::main]
async fn main() {
    // Logs only when asked (e.g. RUST_LOG=skiff_store=debug shows watchers ended for lagging).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let o = options();
    if o.algorithm_only {
        algorithm_only(&o);
        return;
    }
    let (client, local) = match &o.kubeconfig {
        Some(k) => (remote(k).await, None),
        None => {
            let mut store_options = skiff_store::StoreOptions::default();
            if let Some(n) = o.watch_queue {
                store_options.watch_queue_capacity = n;
            }
            let mut config = skiff_controllers::ControllerConfig::default();
            config.scheduler.bind_concurrency = o.bind_concurrency;
            config.cluster_cidr = Some(o.cluster_cidr.clone());
            let scheduler_only = o.scheduler_only;
            let (c, l) = in_process(
                Path::new(&o.dir),
                "skiff-sched-bench-",
                store_options,
                |clients| {
                    if scheduler_only {
                        skiff_controllers::start_scheduler_only(clients, config.scheduler)
                    } else {
                        skiff_controllers::start(clients, config).expect("controllers")
                    }
                },
            )
            .await;
            (c, Some(l))
        }
    };
    create_nodes(&client, o.nodes).await;
    // Let the scheduler see every node before the pods come.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The benchmark's own watch: when each pod is first seen bound.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let total = o.pods;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    {
        let created = created.clone();
        let bound = bound.clone();
        let api: Api<SchedPod> = Api::default_namespaced(client.clone());
        tokio::spawn(async move {
            let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
            let mut done_tx = Some(done_tx);
            let mut events = watcher(api, watcher::Config::default().page_size(5000))
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(pod) = event else { continue };
                if pod.spec.node_name.as_deref().is_none_or(str::is_empty) {
                    continue;
                }
                let name = pod.metadata.name.clone().unwrap_or_default();
                if !seen.insert(name.clone()) {
                    continue;
                }
                let now = Instant::now();
                let at = created.lock().unwrap().get(&name).copied();
                if let Some(at) = at {
                    bound.lock().unwrap().push((now, now.duration_since(at)));
                }
                if seen.len() >= total {
                    if let Some(tx) = done_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = {
        let bound = bound.clone();
        let next = next.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "  {:>5.1} s: {} created, {} bound",
                    started.elapsed().as_secs_f64(),
                    next.load(std::sync::atomic::Ordering::Relaxed).min(total),
                    bound.lock().unwrap().len()
                );
            }
        })
    };
    let creators: Vec<_> = (0..o.creators)
        .map(|_| {
            let api = api.clone();
            let next = next.clone();
            let created = created.clone();
            tokio::spawn(async move {
                let params = PostParams::default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let p = pod(i);
                    let name = p.metadata.name.clone().unwrap_or_default();
                    created.lock().unwrap().insert(name.clone(), Instant::now());
                    loop {
                        match api.create(&params, &p).await {
                            Ok(_) => break,
                            Err(e) => {
                                eprintln!("create {name}: {e}; retrying");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for c in creators {
        c.await.unwrap();
    }
    let create_time = started.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(600), done_rx).await;
    progress.abort();
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu0;

    let records = bound.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = records.iter().map(|(_, l)| *l).collect();
    latencies.sort();
    let last = records.iter().map(|(t, _)| *t).max().unwrap_or(started);
    // Steady state: the middle 80% of bindings.
    let mut times: Vec<Instant> = records.iter().map(|(t, _)| *t).collect();
    times.sort();
    let steady = if times.len() > 10 {
        let a = times[times.len() / 10];
        let b = times[times.len() * 9 / 10];
        (times.len() as f64 * 0.8) / b.duration_since(a).as_secs_f64().max(1e-9)
    } else {
        0.0
    };
    let span = last.duration_since(started).as_secs_f64();
    println!(
        "mode: {}",
        match (&o.kubeconfig, o.scheduler_only) {
            (Some(_), _) => "server over HTTPS",
            (None, true) => "in-process, scheduler only",
            (None, false) => "in-process, scheduler + controllers",
        }
    );
    println!(
        "nodes: {}, pods: {}, creators: {}",
        o.nodes, total, o.creators
    );
    if local.is_some() {
        println!(
            "cluster CIDR {}; store watch queue {}",
            o.cluster_cidr,
            o.watch_queue
                .map(|n| n.to_string())
                .unwrap_or_else(|| "default".into())
        );
    }
    println!("pods bound: {} of {}", records.len(), total);
    println!(
        "creates: {:.0} pods/s ({:.1} s)",
        total as f64 / create_time.as_secs_f64(),
        create_time.as_secs_f64()
    );
    println!(
        "scheduled: {:.0} pods/s overall (first create to last binding, {:.1} s), {:.0} pods/s steady (middle 80%)",
        records.len() as f64 / span.max(1e-9),
        span,
        steady
    );
    println!(
        "latency create→bound: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&latencies, 0.5).as_secs_f64() * 1e3,
        quantile(&latencies, 0.9).as_secs_f64() * 1e3,
        quantile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    if let Some(l) = &local {
        let stats = l.running.scheduler_stats();
        println!(
            "scheduler: queue→bound p50 {:.1} ms, p99 {:.1} ms; bind failures {}; unschedulable attempts {}",
            stats.latency_quantile(0.5).unwrap_or_default().as_secs_f64() * 1e3,
            stats.latency_quantile(0.99).unwrap_or_default().as_secs_f64() * 1e3,
            stats.bind_failures.load(std::sync::atomic::Ordering::Relaxed),
            stats.unschedulable_attempts.load(std::sync::atomic::Ordering::Relaxed),
        );
        println!(
            "process CPU: {:.1} s for {:.1} s ({:.2} cores); RSS {:.0} MiB",
            cpu,
            elapsed.as_secs_f64(),
            cpu / elapsed.as_secs_f64(),
            rss_mib()
        );
    }
    if let Some(l) = local {
        l.running.shutdown().await;
        l.store.close().await;
    }
}
