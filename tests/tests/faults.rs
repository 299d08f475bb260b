//! The fault suite of issue 14, against the real `skiff` binary: `kill -9` of the server at
//! random moments of concurrent writes (100 rounds), a corrupt database file, a full disk and
//! its recovery, a partitioned agent link healing, and thousands of idle and slow-loris
//! connections while kubectl keeps working. `docs/security.md` ("Fault suite") lists what each
//! test asserts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_tests::harness::workloads::{start_patient_pods, PatientPods, PATIENT_SELECTOR};
use skiff_tests::harness::{pod_running, Cluster, ClusterSpec, FAST_NODE_LIFECYCLE as FAST};
use skiff_tests::inproc::kube_client;
use skiff_tests::process::SkiffProcess;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn config_map(name: &str, labels: serde_json::Value, payload: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"payload": "x".repeat(payload)},
    }))
    .expect("configmap")
}

fn revision(rv: Option<&String>) -> u64 {
    rv.and_then(|rv| rv.parse().ok())
        .expect("numeric resourceVersion")
}

/// A small xorshift generator: the kill moments are random, but a failing run prints its seed
/// and `SKIFF_FAULT_SEED=<seed>` replays it.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("SKIFF_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("fault seed: SKIFF_FAULT_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Names of the ConfigMaps in `default` matching `selector`, and the list's revision.
async fn names(maps: &Api<ConfigMap>, selector: &str) -> (HashSet<String>, u64) {
    let list = maps
        .list(&ListParams::default().labels(selector))
        .await
        .expect("list configmaps");
    let names = list
        .items
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    (names, revision(list.metadata.resource_version.as_ref()))
}

const ROUNDS: usize = 100;
const WRITERS: usize = 8;

/// Fault 1: 100 rounds of start → concurrent creates → `kill -9` at a random moment →
/// restart. Every create answered 201 is there after the restart, and revisions only grow:
/// the list revision after a restart is at least every acknowledged one, and every create of
/// the next round gets a higher one.
#[test]
fn kill9_at_random_moments_of_concurrent_writes_loses_no_acknowledged_write() {
    let dir = skiff_tests::temp_dir("fault-kill9");
    let data = dir.path().join("data");
    let runtime = runtime();
    let mut rng = Rng::from_env();
    // Every acknowledged create: (name, revision).
    let mut all_acked: Vec<(String, u64)> = Vec::new();
    let mut floor = 0u64;
    let started = Instant::now();
    for round in 0..=ROUNDS {
        let mut server = SkiffProcess::start(&data);
        let kill_after = Duration::from_millis(rng.below(300));
        let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        runtime.block_on(async {
            let client = kube_client(&server.kubeconfig()).await;
            let maps: Api<ConfigMap> = Api::namespaced(client, "default");

            // What the previous round acknowledged survived its kill -9; the revision did not
            // go back.
            if round > 0 {
                let (present, rev) = names(&maps, &format!("round={}", round - 1)).await;
                let previous: Vec<&(String, u64)> = all_acked
                    .iter()
                    .filter(|(n, _)| n.starts_with(&format!("r{}-", round - 1)))
                    .collect();
                let missing: Vec<&String> = previous
                    .iter()
                    .map(|(n, _)| n)
                    .filter(|n| !present.contains(*n))
                    .collect();
                assert!(
                    missing.is_empty(),
                    "round {}: acknowledged creates lost after kill -9: {missing:?}",
                    round - 1
                );
                assert!(
                    rev >= floor,
                    "round {round}: revision {rev} went back below {floor}"
                );
                floor = rev;
            }
            if round == ROUNDS {
                return;
            }

            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let (maps, acked) = (maps.clone(), acked.clone());
                writers.push(tokio::spawn(async move {
                    for i in 0.. {
                        let name = format!("r{round}-{w}-{i}");
                        let labels = json!({"fault": "kill9", "round": round.to_string()});
                        match maps
                            .create(&PostParams::default(), &config_map(&name, labels, 64))
                            .await
                        {
                            Ok(created) => {
                                let rv = revision(created.metadata.resource_version.as_ref());
                                acked.lock().unwrap().push((name, rv));
                            }
                            // The server is gone: this writer is done.
                            Err(_) => return,
                        }
                    }
                }));
            }
            tokio::time::sleep(kill_after).await;
            server.kill9();
            for w in writers {
                tokio::time::timeout(Duration::from_secs(30), w)
                    .await
                    .expect("a writer hung after the kill")
                    .expect("writer task");
            }
        });
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        for (name, rv) in &acked {
            assert!(
                *rv > floor,
                "round {round}: {name} got revision {rv}, not above {floor} (seen before the kill)"
            );
        }
        floor = floor.max(acked.iter().map(|(_, rv)| *rv).max().unwrap_or(0));
        all_acked.extend(acked);
        drop(server);
    }

    // Every acknowledged create of every round, after the last restart.
    let server = SkiffProcess::start(&data);
    runtime.block_on(async {
        let maps: Api<ConfigMap> =
            Api::namespaced(kube_client(&server.kubeconfig()).await, "default");
        let (present, rev) = names(&maps, "fault=kill9").await;
        let missing: Vec<&String> = all_acked
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !present.contains(*n))
            .collect();
        assert!(missing.is_empty(), "acknowledged creates lost: {missing:?}");
        assert!(rev >= floor, "revision {rev} below {floor}");
    });
    let rounds_with_acks = all_acked
        .iter()
        .map(|(n, _)| n.split('-').next().unwrap_or_default().to_string())
        .collect::<BTreeSet<_>>()
        .len();
    eprintln!(
        "{ROUNDS} kill -9 rounds in {:?}: {} creates acknowledged ({rounds_with_acks} rounds with acks), none lost",
        started.elapsed(),
        all_acked.len()
    );
    assert!(
        rounds_with_acks >= ROUNDS / 2,
        "too few rounds got writes in before the kill ({rounds_with_acks}): the test did not test"
    );
}

/// Every file under `dir` (recursively) with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.is_file() {
                out.insert(path.clone(), std::fs::read(&path).expect("read file"));
            }
        }
    }
    out
}

const MARKER: &str = "corruption-marker-value-0123456789";

/// Ways to damage a database file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The first 64 bytes (redb's header) flipped.
    Header,
    /// The bytes of every stored copy of a marker value replaced by bytes no JSON can hold.
    Records,
}

fn damage(db: &Path, how: Damage) {
    let mut bytes = std::fs::read(db).expect("read the database");
    match how {
        Damage::Header => bytes[..64].iter_mut().for_each(|b| *b ^= 0x5a),
        Damage::Records => {
            let mut hits = 0;
            let mut i = 0;
            while let Some(at) = bytes[i..]
                .windows(MARKER.len())
                .position(|w| w == MARKER.as_bytes())
            {
                bytes[i + at..i + at + 4].copy_from_slice(&[0xff, 0xfe, 0x00, 0x81]);
                i += at + MARKER.len();
                hits += 1;
            }
            assert!(hits > 0, "marker not found in {}", db.display());
        }
    }
    std::fs::write(db, &bytes).expect("write the damaged database");
}

/// Fault 3: a damaged database file. The server refuses to start with a message naming the
/// file and the recovery section of docs/operations.md, and changes nothing in its data
/// directory (the damaged file byte for byte). Then both recovery paths of that section work:
/// the file moved aside gives an empty datastore with the same join token; a backup copy put
/// back gives every object back.
#[test]
fn a_corrupt_database_is_refused_untouched_and_the_documented_recovery_works() {
    let runtime = runtime();
    for how in [Damage::Header, Damage::Records] {
        let dir = skiff_tests::temp_dir("fault-corrupt");
        let data = dir.path().join("data");
        let server_dir = data.join("server");
        let db = server_dir.join("db/state.redb");
        let mut server = SkiffProcess::start(&data);
        runtime.block_on(async {
            let maps: Api<ConfigMap> =
                Api::namespaced(kube_client(&server.kubeconfig()).await, "default");
            for i in 0..20 {
                let mut cm = config_map(&format!("keep-{i}"), json!({"fault": "corrupt"}), 16);
                cm.data
                    .get_or_insert_default()
                    .insert("marker".into(), MARKER.into());
                maps.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
            }
        });
        server.stop();
        let backup = dir.path().join("state.redb.backup");
        std::fs::copy(&db, &backup).expect("back up the database");
        let token = std::fs::read_to_string(server_dir.join("node-token")).expect("node-token");

        damage(&db, how);
        let before = files(&server_dir);
        let err = match SkiffProcess::start_on(&data, skiff_tests::free_port()) {
            Ok(_) => panic!("{how:?}: a corrupt database was accepted"),
            Err(e) => e,
        };
        for needle in [
            db.display().to_string().as_str(),
            "is corrupt",
            "left untouched",
            "Recovering a corrupt datastore",
            "docs/operations.md",
        ] {
            assert!(err.contains(needle), "{how:?}: no {needle:?} in: {err}");
        }
        let after = files(&server_dir);
        for (path, bytes) in &before {
            assert!(
                after.get(path) == Some(bytes),
                "{how:?}: the refused start changed or removed {}",
                path.display()
            );
        }

        // Recovery without a copy: move the file aside; an empty datastore, the same token,
        // the damaged file kept.
        let aside = db.with_extension("redb.corrupt");
        std::fs::rename(&db, &aside).expect("move the damaged file aside");
        let mut server = SkiffProcess::start(&data);
        runtime.block_on(async {
            let maps: Api<ConfigMap> =
                Api::namespaced(kube_client(&server.kubeconfig()).await, "default");
            let (present, _) = names(&maps, "fault=corrupt").await;
            assert!(present.is_empty(), "{how:?}: {present:?}");
        });
        server.stop();
        assert_eq!(
            std::fs::read_to_string(server_dir.join("node-token")).expect("node-token"),
            token,
            "{how:?}: the join token changed"
        );
        assert_eq!(
            std::fs::read(&aside).expect("the moved file"),
            before[&db],
            "{how:?}: the damaged file changed"
        );

        // Recovery from a copy: `install -m 600 BACKUP DIR/server/db/state.redb`.
        let ok = Command::new("install")
            .args(["-m", "600"])
            .arg(&backup)
            .arg(&db)
            .status()
            .expect("run install")
            .success();
        assert!(ok, "install the backup");
        let server = SkiffProcess::start(&data);
        runtime.block_on(async {
            let maps: Api<ConfigMap> =
                Api::namespaced(kube_client(&server.kubeconfig()).await, "default");
            let (present, _) = names(&maps, "fault=corrupt").await;
            assert_eq!(present.len(), 20, "{how:?}: restored {present:?}");
        });
        drop(server);
    }
}

/// A tmpfs of `size` mounted on `dir` for the guard's lifetime (never the host disk).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        skiff_tests::harness::mount_tmpfs(dir, size);
        Tmpfs(dir.to_path_buf())
    }

    fn free_bytes(&self) -> u64 {
        free_bytes(&self.0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Status and body of a GET through the kube client (which would turn a 500 into an error).
async fn raw_get(client: &kube::Client, path: &str) -> (u16, String) {
    let request = http::Request::get(path)
        .body(Vec::<u8>::new())
        .expect("request");
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("send");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Fault 2: the data directory on a small filesystem that fills up. Creates fail with 5xx —
/// none is acknowledged and then lost — `/readyz` fails naming the store, and once space is
/// freed writes resume without a restart and `/readyz` recovers; after a restart every
/// acknowledged write is there.
#[test]
fn a_full_disk_fails_writes_and_readyz_then_recovers_without_a_restart() {
    if !skiff_testkit::gate::require("the full-disk fault (mounts a tmpfs)", true, &["mount"]) {
        return;
    }
    // Growing past the filesystem's end gives ENOSPC, not a signal.
    let dir = skiff_tests::temp_dir("fault-disk-full");
    let data = dir.path().join("data");
    let disk = Tmpfs::mount(&data, "48m");
    let mut server = SkiffProcess::start(&data);
    let runtime = runtime();
    let filler = data.join("filler");
    let mut acked: Vec<String> = Vec::new();
    runtime.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let (status, text) = raw_get(&client, "/readyz?verbose").await;
        assert_eq!(status, 200, "{text}");

        // Whatever else filled the disk: leave about 4 MiB.
        let keep = 4 << 20;
        let size = disk.free_bytes().saturating_sub(keep);
        std::fs::write(&filler, vec![0u8; size as usize]).expect("write the filler");

        let mut failures = Vec::new();
        for i in 0..400 {
            let name = format!("fill-{i}");
            let cm = config_map(&name, json!({"fault": "disk-full"}), 200 * 1024);
            match maps.create(&PostParams::default(), &cm).await {
                Ok(_) => acked.push(name),
                Err(kube::Error::Api(status)) => {
                    assert!(
                        (500..600).contains(&status.code),
                        "a create on a full disk answered {}: {}",
                        status.code,
                        status.message
                    );
                    failures.push(status.message);
                    if failures.len() == 3 {
                        break;
                    }
                }
                Err(e) => panic!("a create on a full disk failed without an answer: {e}"),
            }
        }
        assert!(
            !failures.is_empty(),
            "the disk never filled up ({} creates)",
            acked.len()
        );
        assert!(
            !acked.is_empty(),
            "nothing was written before the disk filled"
        );
        let (status, text) = raw_get(&client, "/readyz?verbose").await;
        assert_eq!(status, 500, "readyz on a full disk: {text}");
        assert!(text.contains("[-]store failed"), "{text}");
        let (status, text) = raw_get(&client, "/readyz/store").await;
        assert_eq!(status, 500, "{text}");
        // Reads keep working meanwhile.
        let (present, _) = names(&maps, "fault=disk-full").await;
        assert!(acked.iter().all(|n| present.contains(n)));

        // Space comes back: writes resume by themselves, readyz follows.
        std::fs::remove_file(&filler).expect("remove the filler");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let cm = config_map("after-free", json!({"fault": "disk-full"}), 200 * 1024);
            match maps.create(&PostParams::default(), &cm).await {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "writes did not resume within 30 s of freeing space: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        acked.push("after-free".into());
        let (status, text) = raw_get(&client, "/readyz?verbose").await;
        assert_eq!(status, 200, "readyz after space was freed: {text}");
        assert!(text.contains("[+]store ok"), "{text}");
    });
    server.stop();

    let server = SkiffProcess::start(&data);
    runtime.block_on(async {
        let maps: Api<ConfigMap> =
            Api::namespaced(kube_client(&server.kubeconfig()).await, "default");
        let (present, _) = names(&maps, "fault=disk-full").await;
        let missing: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
        assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    });
    drop(server);
    drop(disk);
}

/// Fault 4: the agent's link partitioned by an nftables drop (in the agent's own network
/// namespace) long enough for the server to mark the node not Ready. The pods keep serving
/// meanwhile; after healing the node is Ready again and nothing restarted: the same container
/// ids, restart counts, start times and container processes.
/// (`cluster_offline.rs` covers outages shorter than the grace period, and long ones that
/// evict the pods; this is the long outage the pods tolerate.)
#[test]
fn a_partitioned_agent_keeps_its_pods_and_heals_without_restarting_any() {
    let Some(mut cluster) = Cluster::start(
        ClusterSpec::new("fault-part")
            .agents(&["node-a"])
            .server_args(FAST),
    ) else {
        return;
    };
    let PatientPods {
        states: before,
        ips,
        pids,
    } = start_patient_pods(&cluster, "node-a");

    let (server_ip, port) = (cluster.server_ip(), cluster.port);
    cluster
        .agent("node-a")
        .cut_link(server_ip, port)
        .expect("cut node-a's link");
    cluster.wait_for(
        "node-a no longer Ready on the server",
        Duration::from_secs(30),
        || cluster.node_ready_now("node-a") == Some(false),
    );
    assert!(
        cluster.pods_answer("node-a", &ips),
        "the pods serve while partitioned"
    );
    assert_eq!(cluster.node("node-a").container_pids(), pids);

    cluster
        .agent("node-a")
        .restore_link()
        .expect("heal node-a's link");
    cluster.wait_for("node-a Ready again", Duration::from_secs(60), || {
        cluster.node_ready_now("node-a") == Some(true)
    });
    // Ready pods again means the agent reported their status since the heal.
    cluster.wait_for("the pods Ready again", Duration::from_secs(60), || {
        let pods = cluster.pods(PATIENT_SELECTOR);
        pods.len() == 2 && pods.iter().all(pod_running)
    });
    assert_eq!(
        cluster.container_states(PATIENT_SELECTOR),
        before,
        "a pod restarted across the partition"
    );
    assert_eq!(
        cluster.node("node-a").container_pids(),
        pids,
        "container processes changed"
    );
    assert!(
        cluster.pods_answer("node-a", &ips),
        "the pods serve after healing"
    );
    assert!(cluster.agent("node-a").is_running(), "the agent survived");
}

/// Sets this process's soft `RLIMIT_NOFILE` (children inherit it).
fn set_soft_nofile(soft: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

const IDLE: usize = 2000;
const SLOW_LORIS: usize = 500;

/// Fault 6: 2,000 idle connections (TLS done, no request) and 500 slow-loris ones (headers
/// trickling in, a byte a second) held open against the real server while kubectl with the
/// admin kubeconfig keeps getting answers within a few seconds.
#[test]
fn kubectl_keeps_working_through_idle_and_slow_loris_connections() {
    // Both ends need descriptors: raise the soft limit (the server inherits it).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    let needed = (2 * (IDLE + SLOW_LORIS) + 200) as u64;
    if limit.rlim_cur < needed {
        skiff_tests::skip(&format!(
            "the connection flood needs {needed} file descriptors (hard limit {})",
            limit.rlim_cur
        ));
        return;
    }
    let dir = skiff_tests::temp_dir("fault-flood");
    let data = dir.path().join("data");
    // The server starts as systemd starts services: soft limit 1024, hard limit high. (The
    // server raises its soft limit to the hard one, as Go programs do; at 1024 the flood
    // would exhaust its descriptors and lock kubectl out.)
    set_soft_nofile(1024);
    let server = SkiffProcess::start(&data);
    set_soft_nofile(limit.rlim_max);
    let kubectl =
        skiff_tests::kubectl::Kubectl::new(Path::new("/usr/bin/kubectl"), &server.kubeconfig());
    // Discovery once, so the timings below are requests, not a cold cache.
    kubectl.ok(&["get", "namespaces"]);

    skiff_tests::install_crypto();
    let ca = std::fs::read_to_string(data.join("server/tls/ca.crt")).expect("CA certificate");
    let config =
        Arc::new(skiff_pki::client_config(&ca, None, &[b"http/1.1"]).expect("client TLS config"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let runtime = runtime();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let connect = {
        let config = config.clone();
        move || {
            let config = config.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                let name = rustls_pki_types::ServerName::try_from("127.0.0.1").ok()?;
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .ok()
            }
        }
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..IDLE + SLOW_LORIS {
        let (connect, open) = (connect.clone(), open.clone());
        tasks.push(runtime.spawn(async move {
            use tokio::io::AsyncWriteExt;
            let Some(mut tls) = connect().await else {
                return;
            };
            open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i < IDLE {
                std::future::pending::<()>().await;
            }
            // Slow loris: a request line, then one header byte a second.
            let _ = tls
                .write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await;
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                if tls.write_all(b"a").await.is_err() {
                    // The server closed it (its header read timeout): that is allowed.
                    return;
                }
            }
        }));
    }
    // Descriptors exhausted on the server shows here: the rest wait in its backlog.
    let deadline = Instant::now() + Duration::from_secs(60);
    while open.load(std::sync::atomic::Ordering::SeqCst) < IDLE + SLOW_LORIS {
        assert!(
            Instant::now() < deadline,
            "only {} of {} connections opened",
            open.load(std::sync::atomic::Ordering::SeqCst),
            IDLE + SLOW_LORIS
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{} connections open after {:?}",
        IDLE + SLOW_LORIS,
        started.elapsed()
    );

    // kubectl, several times over while they are held.
    let timed = |args: &[&str]| {
        let t = Instant::now();
        let out = kubectl.ok(args);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "kubectl {args:?} took {took:?} under the connection flood"
        );
        out
    };
    for i in 0..3 {
        timed(&["get", "pods", "-A"]);
        timed(&["get", "namespaces"]);
        let name = format!("flood-{i}");
        timed(&["create", "configmap", &name, "--from-literal=a=b"]);
        let got = timed(&["get", "configmap", &name, "-o", "name"]);
        assert_eq!(got.trim(), format!("configmap/{name}"));
    }
    eprintln!(
        "kubectl answered throughout; flood held for {:?}",
        started.elapsed()
    );
    for task in &tasks {
        task.abort();
    }
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    // The server is still whole.
    kubectl.ok(&["get", "configmaps"]);
    drop(server);
}

/// Low disk before a full one: the agent's data directory on a 64 MiB tmpfs filled to below
/// the kubelet's `nodefs.available<10%` threshold. The Node gets `DiskPressure=True`
/// (`KubeletHasDiskPressure`) and the kubelet's `NodeHasDiskPressure` event; freeing the space
/// turns both back (`KubeletHasNoDiskPressure`, `NodeHasNoDiskPressure`).
#[test]
fn a_filling_disk_shows_disk_pressure_and_events_before_it_is_full() {
    let Some(cluster) = Cluster::start(
        ClusterSpec::new("fault-low-disk")
            .agents(&["node-a"])
            .agent_tmpfs("node-a", "64m")
            .server_args(FAST),
    ) else {
        return;
    };
    let disk_pressure = || {
        let node = cluster.get_json(&["node", "node-a"]);
        node["status"]["conditions"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["type"] == "DiskPressure"))
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    let events = |reason: &str| {
        let list = cluster.get_json(&[
            "events",
            "-n",
            "default",
            "--field-selector",
            &format!("involvedObject.kind=Node,involvedObject.name=node-a,reason={reason}"),
        ]);
        list["items"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(
        disk_pressure(),
        Some(("False".into(), "KubeletHasNoDiskPressure".into()))
    );
    assert_eq!(events("NodeHasDiskPressure"), 0);

    let data_dir = cluster.node("node-a").data_dir.clone();
    let filler = data_dir.join("filler");
    let free = free_bytes(&data_dir);
    // Leave about 2 MiB of 64: below 10 %, still room for the agent's own writes.
    std::fs::write(&filler, vec![0u8; free.saturating_sub(2 << 20) as usize])
        .expect("write the filler");
    cluster.wait_for("DiskPressure=True", Duration::from_secs(60), || {
        disk_pressure() == Some(("True".into(), "KubeletHasDiskPressure".into()))
    });
    cluster.wait_for(
        "the NodeHasDiskPressure event",
        Duration::from_secs(30),
        || events("NodeHasDiskPressure") == 1,
    );
    let event = &cluster.get_json(&[
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.name=node-a,reason=NodeHasDiskPressure",
    ])["items"][0];
    assert_eq!(
        event["message"], "Node node-a status is now: NodeHasDiskPressure",
        "{event}"
    );
    assert_eq!(event["source"]["component"], "kubelet", "{event}");

    std::fs::remove_file(&filler).expect("remove the filler");
    cluster.wait_for("DiskPressure=False", Duration::from_secs(60), || {
        disk_pressure() == Some(("False".into(), "KubeletHasNoDiskPressure".into()))
    });
    cluster.wait_for(
        "the NodeHasNoDiskPressure event",
        Duration::from_secs(30),
        || events("NodeHasNoDiskPressure") == 1,
    );
    assert_eq!(events("NodeHasDiskPressure"), 1, "one event per transition");
}

/// Bytes available to unprivileged users on the file system of `path`.
fn free_bytes(path: &Path) -> u64 {
    // SAFETY: statvfs on a NUL-terminated path into a zeroed struct.
    unsafe {
        let path =
            std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0, "statvfs");
        st.f_bavail as u64 * st.f_frsize as u64
    }
}
