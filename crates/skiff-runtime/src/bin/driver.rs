//! Test and benchmark driver for skiff-runtime (not shipped).
//!
//! ```text
//! skiff-runtime-driver serve --root DIR --cgroup-parent /PATH
//!     Opens a runtime on DIR, re-adopts what is there, then answers JSON requests, one per
//!     line on stdin: {"op":"run","pod":{..},"image":{..}} | {"op":"status","uid":".."} |
//!     {"op":"pid","uid":"..","container":".."} | {"op":"shutdown"}.
//! skiff-runtime-driver bench --root DIR --store DIR --image-archive TAR --runs N [--pods 110]
//!     [--runc-bundle DIR] [--ctr-socket SOCK --ctr-image REF]
//!     Pod start/stop latency beside runc (and ctr), and N pods on one node; prints markdown.
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::{json, Value};
use skiff_runtime::{ContainerImage, LoopbackOnly, PodInputs, Runtime, RuntimeConfig};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn usage() -> ! {
    eprintln!("usage: skiff-runtime-driver serve --root DIR --cgroup-parent /PATH\n       skiff-runtime-driver bench --root DIR --store DIR --image-archive TAR --runs N [--pods N] [--runc-bundle DIR] [--ctr-socket SOCK --ctr-image REF]");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match args.get(1).map(String::as_str) {
        Some("serve") => serve(&args).await,
        Some("bench") => bench(&args).await,
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn open(root: &Path, cgroup_parent: Option<String>) -> Result<Runtime, String> {
    let mut config = RuntimeConfig::new(root);
    if let Some(p) = cgroup_parent {
        config.cgroup_parent = PathBuf::from(p);
    }
    Runtime::open(config, Arc::new(LoopbackOnly)).map_err(|e| e.to_string())
}

async fn serve(args: &[String]) -> Result<(), String> {
    let root = PathBuf::from(arg(args, "--root").unwrap_or_else(|| usage()));
    let rt = open(&root, arg(args, "--cgroup-parent"))?;
    let adopted = rt.adopt_existing().await.map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let reply = |out: &mut std::io::StdoutLock<'_>, v: Value| {
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    reply(
        &mut out,
        json!({ "ready": true, "adopted": adopted, "pid": std::process::id() }),
    );
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let req: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                reply(&mut out, json!({ "error": format!("bad request: {e}") }));
                continue;
            }
        };
        let uid = req["uid"].as_str().unwrap_or("").to_owned();
        let answer = match req["op"].as_str() {
            Some("run") => {
                let pod: Result<Pod, _> = serde_json::from_value(req["pod"].clone());
                let image: Result<ContainerImage, _> = serde_json::from_value(req["image"].clone());
                match (pod, image) {
                    (Ok(pod), Ok(image)) => {
                        let mut inputs = PodInputs::default();
                        for c in pod.spec.iter().flat_map(|s| {
                            s.init_containers
                                .iter()
                                .flatten()
                                .chain(s.containers.iter())
                        }) {
                            inputs.images.insert(c.name.clone(), image.clone());
                        }
                        match rt.run_pod(pod, inputs).await {
                            Ok(()) => json!({ "ok": true }),
                            Err(e) => json!({ "error": e.to_string() }),
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        json!({ "error": format!("bad pod or image: {e}") })
                    }
                }
            }
            Some("status") => json!({ "status": rt.pod_status(&uid) }),
            Some("pid") => {
                json!({ "pid": rt.container_pid(&uid, req["container"].as_str().unwrap_or("")) })
            }
            Some("shutdown") => {
                rt.shutdown();
                reply(&mut out, json!({ "ok": true }));
                return Ok(());
            }
            _ => json!({ "error": "unknown op" }),
        };
        reply(&mut out, answer);
    }
    Ok(())
}

fn bench_pod(i: usize, command: &[&str]) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(format!("bench-{i}"));
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some(format!("bench-{}-{i}", std::process::id()));
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "c".into(),
            image: Some("busybox".into()),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }],
        restart_policy: Some("Never".into()),
        ..Default::default()
    });
    pod
}

fn is_running(rt: &Runtime, uid: &str) -> bool {
    rt.pod_status(uid)
        .and_then(|s| s.container_statuses)
        .map(|cs| {
            cs.iter().all(|c| {
                c.state
                    .as_ref()
                    .and_then(|st| st.running.as_ref())
                    .is_some()
            })
        })
        .unwrap_or(false)
}

fn phase(rt: &Runtime, uid: &str) -> String {
    rt.pod_status(uid).and_then(|s| s.phase).unwrap_or_default()
}

async fn wait_for(
    rt: &Runtime,
    uid: &str,
    pred: impl Fn(&Runtime, &str) -> bool,
) -> Result<(), String> {
    let mut events = rt.subscribe();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred(rt, uid) {
        if Instant::now() > deadline {
            return Err(format!("pod {uid} timed out: {:?}", rt.pod_status(uid)));
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), events.recv()).await;
    }
    Ok(())
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let median = v[v.len() / 2];
    let p99 = v[((v.len() as f64 * 0.99).ceil() as usize)
        .saturating_sub(1)
        .min(v.len() - 1)];
    (median, p99)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a reference command and times it. Output goes to /dev/null: a detached container
/// inherits the command's stdio and would keep captured pipes open.
fn run_cmd(cmd: &mut std::process::Command) -> Result<Duration, String> {
    let start = Instant::now();
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed: {status}"));
    }
    Ok(start.elapsed())
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// `Pss` of this process from `/proc/self/smaps_rollup`, in KiB (0 if unavailable).
fn pss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Pss:")
                    .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// Threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes in the cgroups below `tag` (the pods' own processes), and other processes
/// whose parent is this driver (helpers a runtime might keep per pod, such as shims).
fn pod_processes(tag: &str) -> (usize, usize) {
    let me = std::process::id().to_string();
    let (mut in_pods, mut helpers) = (0, 0);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if cgroup.contains(tag) {
            in_pods += 1;
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1));
        if ppid == Some(me.as_str()) {
            helpers += 1;
        }
    }
    (in_pods, helpers)
}

fn process_count() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

async fn bench(args: &[String]) -> Result<(), String> {
    let root = PathBuf::from(arg(args, "--root").unwrap_or_else(|| usage()));
    let store = PathBuf::from(arg(args, "--store").unwrap_or_else(|| usage()));
    let runs: usize = arg(args, "--runs")
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let pods: usize = arg(args, "--pods")
        .and_then(|r| r.parse().ok())
        .unwrap_or(110);
    let archive = PathBuf::from(arg(args, "--image-archive").unwrap_or_else(|| usage()));
    let image = skiff_runtime::testing::import_image(&store, &archive);
    let cgroup_parent = format!("/skiff-bench-{}", std::process::id());
    let rt = open(&root, Some(cgroup_parent.clone()))?;
    let inputs = |pod: &Pod| {
        let mut i = PodInputs::default();
        i.images.insert("c".into(), image.clone());
        let _ = pod;
        i
    };
    let mut rows: BTreeMap<&str, Vec<f64>> = BTreeMap::new();

    // Warm-up (page cache, first fork of the launcher).
    let warm = bench_pod(1_000_000, &["sleep", "3600"]);
    rt.run_pod(warm.clone(), inputs(&warm))
        .await
        .map_err(|e| e.to_string())?;
    let wuid = warm.metadata.uid.clone().unwrap_or_default();
    wait_for(&rt, &wuid, is_running).await?;
    rt.stop_pod(&wuid, Some(Duration::ZERO))
        .await
        .map_err(|e| e.to_string())?;
    rt.remove_pod(&wuid).await.map_err(|e| e.to_string())?;

    let bundle = arg(args, "--runc-bundle").map(PathBuf::from);
    let ctr = arg(args, "--ctr-socket").zip(arg(args, "--ctr-image"));
    for i in 0..runs {
        // skiff: sandbox + one container to running; stop (SIGKILL) and removal.
        let pod = bench_pod(i, &["sleep", "3600"]);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let t0 = Instant::now();
        rt.run_pod(pod.clone(), inputs(&pod))
            .await
            .map_err(|e| e.to_string())?;
        wait_for(&rt, &uid, is_running).await?;
        rows.entry("skiff start (run_pod → running)")
            .or_default()
            .push(ms(t0.elapsed()));
        let t1 = Instant::now();
        rt.stop_pod(&uid, Some(Duration::ZERO))
            .await
            .map_err(|e| e.to_string())?;
        rt.remove_pod(&uid).await.map_err(|e| e.to_string())?;
        rows.entry("skiff stop (stop_pod + remove_pod)")
            .or_default()
            .push(ms(t1.elapsed()));

        // skiff: a container that runs `true` to completion and is removed.
        let pod = bench_pod(i + runs, &["true"]);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let t2 = Instant::now();
        rt.run_pod(pod.clone(), inputs(&pod))
            .await
            .map_err(|e| e.to_string())?;
        wait_for(&rt, &uid, |rt, uid| phase(rt, uid) == "Succeeded").await?;
        rt.remove_pod(&uid).await.map_err(|e| e.to_string())?;
        rows.entry("skiff run to completion (`true`) + remove")
            .or_default()
            .push(ms(t2.elapsed()));

        if let Some(b) = &bundle {
            let id = format!("runc-bench-{}-{i}", std::process::id());
            let start = run_cmd(
                std::process::Command::new("runc")
                    .args(["run", "-d", "--bundle"])
                    .arg(b.join("sleep"))
                    .arg(&id)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null()),
            )?;
            rows.entry("runc run -d (→ running)")
                .or_default()
                .push(ms(start));
            // `delete -f` kills the container (SIGKILL), waits for it and removes it.
            let stop = run_cmd(std::process::Command::new("runc").args(["delete", "-f", &id]))?;
            rows.entry("runc delete -f (kill + remove)")
                .or_default()
                .push(ms(stop));
            let id2 = format!("{id}-true");
            let done = run_cmd(
                std::process::Command::new("runc")
                    .args(["run", "--bundle"])
                    .arg(b.join("true"))
                    .arg(&id2)
                    .stdin(std::process::Stdio::null()),
            )?;
            rows.entry("runc run (`true`, foreground)")
                .or_default()
                .push(ms(done));
        }
        if let Some((sock, image_ref)) = &ctr {
            let id = format!("ctr-bench-{}-{i}", std::process::id());
            let d = run_cmd(
                std::process::Command::new("ctr")
                    .args(["--address", sock, "run", "--rm", image_ref, &id, "true"])
                    .stdin(std::process::Stdio::null()),
            )?;
            rows.entry("ctr run --rm (`true`)").or_default().push(ms(d));
        }
    }

    println!("| operation | runs | median ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    let mut medians = BTreeMap::new();
    for (name, v) in &rows {
        let (m, p) = stats(v.clone());
        medians.insert(*name, m);
        println!("| {name} | {} | {m:.1} | {p:.1} |", v.len());
    }
    let ratio = |a: &str, b: &str| medians.get(a).zip(medians.get(b)).map(|(x, y)| x / y);
    if let Some(r) = ratio("skiff start (run_pod → running)", "runc run -d (→ running)") {
        println!("\nstart ratio skiff / runc run -d: {r:.2}×");
    }
    if let Some(r) = ratio(
        "skiff stop (stop_pod + remove_pod)",
        "runc delete -f (kill + remove)",
    ) {
        println!("stop ratio skiff / runc delete -f: {r:.2}×");
    }
    if let Some(r) = ratio(
        "skiff run to completion (`true`) + remove",
        "runc run (`true`, foreground)",
    ) {
        println!("run-to-completion ratio skiff / runc run: {r:.2}×");
    }
    if let Some(r) = ratio("ctr run --rm (`true`)", "runc run (`true`, foreground)") {
        println!("run-to-completion ratio ctr / runc run: {r:.2}×");
    }
    if let Some(r) = ratio(
        "ctr run --rm (`true`)",
        "skiff run to completion (`true`) + remove",
    ) {
        println!("run-to-completion ratio ctr / skiff: {r:.2}×");
    }

    // Many pods on one node.
    if pods > 0 {
        let rss_before = vm_rss_kib();
        let pss_before = pss_kib();
        let threads_before = thread_count();
        let procs_before = process_count();
        let t = Instant::now();
        let mut uids = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..pods {
            let pod = bench_pod(10_000 + i, &["sleep", "3600"]);
            uids.push(pod.metadata.uid.clone().unwrap_or_default());
            let rt = rt.clone();
            let inputs = inputs(&pod);
            tasks.push(tokio::spawn(async move { rt.run_pod(pod, inputs).await }));
        }
        for task in tasks {
            task.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        for uid in &uids {
            wait_for(&rt, uid, is_running).await?;
        }
        let total = t.elapsed();
        // Let allocator and log buffers settle before reading memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_after = vm_rss_kib();
        let procs_after = process_count();
        let (in_pods, helpers) = pod_processes(&format!("{cgroup_parent}/"));
        let threads_after = thread_count();
        println!(
            "\n{pods} pods started concurrently: {:.2} s to all running ({:.1} ms/pod)",
            total.as_secs_f64(),
            ms(total) / pods as f64
        );
        println!(
            "driver RSS {rss_before} KiB → {rss_after} KiB: {:.1} KiB per pod; processes {procs_before} → {procs_after} (+{} for {pods} containers)",
            (rss_after.saturating_sub(rss_before)) as f64 / pods as f64,
            procs_after as i64 - procs_before as i64
        );
        println!(
            "processes in the pods' cgroups: {in_pods} ({:.2} per pod: the containers' own); other children of the driver: {helpers}; driver threads {threads_before} → {threads_after}",
            in_pods as f64 / pods as f64
        );
        // The blocking pool's idle threads exit after 10 s; what stays is the per-pod cost.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let rss_settled = vm_rss_kib();
        let pss_settled = pss_kib();
        println!(
            "after 12 s idle: driver RSS {rss_settled} KiB ({:.1} KiB per pod over the start), Pss {pss_before} → {pss_settled} KiB ({:.1} KiB per pod), threads {}",
            (rss_settled.saturating_sub(rss_before)) as f64 / pods as f64,
            (pss_settled.saturating_sub(pss_before)) as f64 / pods as f64,
            thread_count()
        );
        let t = Instant::now();
        for uid in &uids {
            rt.stop_pod(uid, Some(Duration::ZERO))
                .await
                .map_err(|e| e.to_string())?;
            rt.remove_pod(uid).await.map_err(|e| e.to_string())?;
        }
        println!(
            "{pods} pods stopped and removed: {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
    // The pods' parent cgroup (the pods removed theirs).
    skiff_runtime::testing::force_cleanup(&root, Path::new(&cgroup_parent));
    Ok(())
}
