//! Store benchmarks (in-process, durable writes on the local disk):
//!
//! 1. create throughput with 1, 8 and 64 concurrent writers (group commit), with a reference
//!    run of 64 writers and group commit disabled (`max_batch` = 1);
//! 2. list latency for 10k and 150k pods in one namespace (full list, first 500-item page,
//!    a continue page);
//! 3. watch fan-out with 5,000 watchers (4,990 on `spec.nodeName=<node>`, 10 on all pods):
//!    write-to-all-interested-watchers latency, and CPU per write with and without them.
//!
//! Run: `cargo run --release -p skiff-store --example store_bench [-- --quick]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_store::{FieldSelector, Key, ListOptions, Store, StoreOptions, WatchEvent, WatchOptions};
use skiff_testkit::measure::{cpu_seconds, quantile, rss_mib};

fn pod(name: &str, node: Option<&str>) -> Value {
    // A realistic pod as a Deployment creates it (~1.6 KiB of JSON).
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": "web-7d4b9c8f6d-",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f6d", "tier": "frontend"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d4b9c8f6d", "uid": "0b5c5e0e-5b4e-4a8e-9d0a-6f8e6c1e2f3a",
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [{
                "name": "web", "image": "docker.io/library/nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "env": [{"name": "MODE", "value": "production"}, {"name": "LOG_LEVEL", "value": "info"}],
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
            ]}}]
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"}
    });
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn options() -> StoreOptions {
    StoreOptions {
        compaction_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// `writers` tasks each create `per_writer` pods; returns (creates/s, p50, p99, avg batch).
async fn create_run(
    dir: &std::path::Path,
    name: &str,
    writers: usize,
    total: usize,
    max_batch: usize,
) {
    let path = dir.join(format!("{name}.redb"));
    let store = Store::open(
        &path,
        StoreOptions {
            max_batch,
            ..options()
        },
    )
    .unwrap();
    let per_writer = total / writers;
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let name = format!("web-{w}-{i}");
                let body = pod(&name, None);
                let t = Instant::now();
                store
                    .create(&Key::namespaced("pods", "bench", &name), body)
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu0;
    lat.sort();
    let n = lat.len();
    let stats = store.commit_stats();
    println!(
        "| {name} | {writers} | {max_batch} | {n} | {:.0} | {} | {} | {:.1} | {} | {:.0} µs |",
        n as f64 / elapsed.as_secs_f64(),
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        stats.writes as f64 / stats.commits.max(1) as f64,
        stats.max_batch,
        cpu / n as f64 * 1e6,
    );
    store.close().await;
    let _ = std::fs::remove_file(&path);
}

async fn fill(store: &Store, n: usize) {
    let writers = 64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let name = format!("web-{i:06}");
                store
                    .create(
                        &Key::namespaced("pods", "bench", &name),
                        pod(&name, Some("node-1")),
                    )
                    .await
                    .unwrap();
                i += writers;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn time_list(store: &Store, opts: &ListOptions, reps: usize) -> (Duration, Duration, usize) {
    let mut lat = Vec::new();
    let mut items = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let page = store.list("pods", Some("bench"), opts).unwrap();
        lat.push(t.elapsed());
        items = page.items.len();
    }
    lat.sort();
    (quantile(&lat, 0.5), quantile(&lat, 0.99), items)
}

async fn list_run(dir: &std::path::Path, n: usize) {
    let path = dir.join(format!("list-{n}.redb"));
    let store = Store::open(&path, options()).unwrap();
    let t = Instant::now();
    fill(&store, n).await;
    let fill_time = t.elapsed();
    let reps = if n > 50_000 { 20 } else { 100 };
    let (p50, p99, items) = time_list(&store, &ListOptions::default(), reps);
    println!("| {n} | full list | {items} | {} | {} |", ms(p50), ms(p99));
    let page_opts = ListOptions {
        limit: Some(500),
        ..Default::default()
    };
    let (p50, p99, items) = time_list(&store, &page_opts, reps * 5);
    println!(
        "| {n} | first page, limit 500 | {items} | {} | {} |",
        ms(p50),
        ms(p99)
    );
    // A continue page from the middle of the list, after 1,000 more writes (so the page is
    // served at an older revision).
    let mut cont = None;
    for _ in 0..(n / 500 / 2) {
        cont = store
            .list(
                "pods",
                Some("bench"),
                &ListOptions {
                    limit: Some(500),
                    continue_token: cont,
                    ..Default::default()
                },
            )
            .unwrap()
            .continue_token;
    }
    for i in 0..1000 {
        let name = format!("later-{i}");
        store
            .create(&Key::namespaced("pods", "bench", &name), pod(&name, None))
            .await
            .unwrap();
    }
    let cont_opts = ListOptions {
        limit: Some(500),
        continue_token: cont,
        ..Default::default()
    };
    let (p50, p99, items) = time_list(&store, &cont_opts, reps * 5);
    println!(
        "| {n} | continue page (middle, 1,000 writes later), limit 500 | {items} | {} | {} |",
        ms(p50),
        ms(p99)
    );
    let selector_opts = ListOptions {
        field_selector: Some(FieldSelector::parse("spec.nodeName=node-2").unwrap()),
        ..Default::default()
    };
    let (p50, p99, items) = time_list(&store, &selector_opts, reps);
    println!(
        "| {n} | field selector matching nothing (full scan) | {items} | {} | {} |",
        ms(p50),
        ms(p99)
    );
    eprintln!(
        "   ({n} pods: filled in {:.1} s, {:.0} creates/s; RSS {:.0} MiB; file {:.0} MiB)",
        fill_time.as_secs_f64(),
        n as f64 / fill_time.as_secs_f64(),
        rss_mib(),
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
    );
    store.close().await;
    let _ = std::fs::remove_file(&path);
}

async fn fanout_run(dir: &std::path::Path, watchers: usize, writes: usize) {
    let path = dir.join(format!("fanout-{watchers}.redb"));
    let store = Store::open(&path, options()).unwrap();
    let all_watchers = 10.min(watchers);
    let node_watchers = watchers - all_watchers;
    // received[rev] = (count, last arrival)
    let received: Arc<Mutex<HashMap<u64, (usize, Instant)>>> = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut handles = Vec::new();
    for i in 0..watchers {
        let opts = if i < node_watchers {
            WatchOptions {
                field_selector: Some(
                    FieldSelector::parse(&format!("spec.nodeName=node-{i}")).unwrap(),
                ),
                ..Default::default()
            }
        } else {
            WatchOptions::default()
        };
        let mut w = store.watch("pods", None, opts).unwrap();
        let received = received.clone();
        let notify = notify.clone();
        handles.push(tokio::spawn(async move {
            while let Some(ev) = w.next().await {
                if let WatchEvent::Bookmark(_) = ev {
                    continue;
                }
                let now = Instant::now();
                let mut r = received.lock().unwrap();
                let e = r.entry(ev.revision()).or_insert((0, now));
                e.0 += 1;
                e.1 = now;
                drop(r);
                notify.notify_one();
            }
        }));
    }
    let expected = 1.min(node_watchers) + all_watchers;
    // Sequential writes: latency from the create call to the last interested watcher.
    let mut lat = Vec::with_capacity(writes);
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    for i in 0..writes {
        let name = format!("p-{i}");
        let node = format!("node-{}", i % node_watchers.max(1));
        let t = Instant::now();
        let o = store
            .create(
                &Key::namespaced("pods", "bench", &name),
                pod(&name, Some(&node)),
            )
            .await
            .unwrap();
        let rev = o.revision();
        if watchers == 0 {
            lat.push(t.elapsed());
            continue;
        }
        loop {
            let notified = notify.notified();
            if let Some((count, at)) = received.lock().unwrap().get(&rev) {
                if *count >= expected {
                    lat.push(at.duration_since(t));
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
    let seq_elapsed = started.elapsed();
    let seq_cpu = cpu_seconds() - cpu0;
    lat.sort();
    // Concurrent writes (64 writers) with the watchers attached: throughput and CPU per write.
    let total = 20_000;
    let cpu1 = cpu_seconds();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / 64 {
                let name = format!("c-{w}-{i}");
                let node = format!("node-{}", (w * 131 + i) % node_watchers.max(1));
                store
                    .create(
                        &Key::namespaced("pods", "bench", &name),
                        pod(&name, Some(&node)),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let conc_elapsed = t.elapsed();
    // Let the watchers drain before measuring CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conc_cpu = cpu_seconds() - cpu1;
    let n = (total / 64) * 64;
    println!(
        "| {watchers} | {} | {} | {} | {:.0} µs | {:.0} | {:.0} µs |",
        writes,
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        seq_cpu / writes as f64 * 1e6,
        n as f64 / conc_elapsed.as_secs_f64(),
        conc_cpu / n as f64 * 1e6,
    );
    let _ = seq_elapsed;
    drop(handles);
    store.close().await;
    let _ = std::fs::remove_file(&path);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("skiff-store-bench")
        .tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .unwrap();
    rt.block_on(async {
        println!("### Durable creates (pods of ~1.6 KiB, fsync per transaction)\n");
        println!("| run | writers | max batch | creates | creates/s | p50 latency | p99 latency | avg batch | max batch seen | CPU per create |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let scale = if quick { 5 } else { 1 };
        create_run(dir.path(), "1 writer", 1, 5_000 / scale, 1024).await;
        create_run(dir.path(), "8 writers", 8, 20_000 / scale, 1024).await;
        create_run(dir.path(), "64 writers", 64, 64_000 / scale, 1024).await;
        create_run(dir.path(), "reference: 64 writers, no group commit", 64, 6_400 / scale, 1).await;

        println!("\n### List latency (pods in one namespace, in-process, items are shared handles)\n");
        println!("| pods | list | items | p50 | p99 |");
        println!("|---|---|---|---|---|");
        list_run(dir.path(), 10_000).await;
        list_run(dir.path(), if quick { 30_000 } else { 150_000 }).await;

        println!("\n### Watch fan-out (4,990 watchers on spec.nodeName=<node> + 10 on all pods)\n");
        println!("| watchers | sequential writes | write → all interested notified p50 | p99 | CPU per sequential write | concurrent creates/s (64 writers) | CPU per concurrent write |");
        println!("|---|---|---|---|---|---|---|");
        fanout_run(dir.path(), 0, 2_000 / scale).await;
        fanout_run(dir.path(), 5_000, 2_000 / scale).await;
    });
}
