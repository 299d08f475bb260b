//! Acceptance 2: the runtime process is killed with containers running; a new runtime re-adopts
//! them (same processes, same restart counts, logs continue) and still learns exit codes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, Volume, VolumeMount};
use serde_json::{json, Value};

/// The runtime in another process: the test driver binary.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Driver {
    fn start(p: &Prepared) -> Driver {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff-runtime-driver"))
            .args(["serve", "--root"])
            .arg(&p.root)
            .arg("--cgroup-parent")
            .arg(&p.cgroup_parent)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start driver");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut d = Driver { child, stdin, out };
        let ready = d.read();
        assert_eq!(ready["ready"], true, "{ready}");
        d
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("driver output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad driver line {line:?}: {e}"))
    }

    fn call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        self.read()
    }

    fn kill(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "driver was killed");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runtime_leaves_containers_running_and_a_new_one_adopts_them() {
    let Some(prepared) = Prepared::new("re-adoption after kill -9") else {
        return;
    };
    let gate = prepared.dir.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let mut steady = container(
        "steady",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done",
    );
    steady.volume_mounts = None;
    let mut waiter = container(
        "waiter",
        "echo waiting; until [ -e /gate/go ]; do sleep 0.1; done; echo going; exit 7",
    );
    waiter.volume_mounts = Some(vec![VolumeMount {
        name: "gate".into(),
        mount_path: "/gate".into(),
        ..Default::default()
    }]);
    let short = container("short", "sleep 1; exit 3");
    let mut p = pod("survivor", "Never", vec![steady, waiter, short]);
    p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "gate".into(),
        host_path: Some(HostPathVolumeSource {
            path: gate.display().to_string(),
            type_: Some("Directory".into()),
        }),
        ..Default::default()
    }]);
    let uid = p.metadata.uid.clone().unwrap();

    let mut driver = Driver::start(&prepared);
    let r = driver.call(json!({ "op": "run", "pod": p, "image": prepared.image }));
    assert_eq!(r["ok"], true, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pids = std::collections::BTreeMap::new();
    while pids.len() < 3 {
        assert!(Instant::now() < deadline, "containers did not start");
        for c in ["steady", "waiter", "short"] {
            if let Some(pid) =
                driver.call(json!({ "op": "pid", "uid": uid, "container": c }))["pid"].as_i64()
            {
                pids.insert(c, pid as i32);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // kill -9 the runtime; the containers go on.
    driver.kill();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        alive(pids["steady"]) && alive(pids["waiter"]),
        "containers survived the runtime"
    );
    assert!(
        !alive(pids["short"]),
        "short exited while no runtime was running"
    );

    // A new runtime (in this process) adopts them.
    let t = prepared.open(|_| {});
    let adopted = t.rt.adopt_existing().await.unwrap();
    assert_eq!(adopted, vec![uid.clone()]);
    let s = t
        .wait(&uid, 30, "the adopted status", |s| {
            terminated(s, "short").is_some()
        })
        .await;
    assert!(running(&s, "steady") && running(&s, "waiter"), "{s:#?}");
    assert_eq!(
        t.rt.container_pid(&uid, "steady"),
        Some(pids["steady"]),
        "same process"
    );
    assert_eq!(t.rt.container_pid(&uid, "waiter"), Some(pids["waiter"]));
    for c in ["steady", "waiter"] {
        assert_eq!(state_of(&s, c).restart_count, 0, "{c} was not restarted");
    }
    assert_eq!(
        terminated(&s, "short"),
        Some((255, "ContainerStatusUnknown".into())),
        "exit while down is unknown"
    );

    // Logs continue in the same file: ticks written while the runtime was down are kept.
    let before = t.logs(&uid, "steady").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = t.logs(&uid, "steady").await;
    assert!(
        after.len() > before.len(),
        "logs keep growing after adoption"
    );
    let ticks: Vec<u64> = after
        .lines()
        .filter_map(|l| l.strip_prefix("tick "))
        .map(|n| n.parse().unwrap())
        .collect();
    for w in ticks.windows(2) {
        assert_eq!(w[1], w[0] + 1, "no tick lost across the runtime's death");
    }

    // An adopted container that exits now is reported with its exit code.
    std::fs::write(gate.join("go"), "").unwrap();
    let s = t
        .wait(&uid, 30, "the waiter's exit", |s| {
            terminated(s, "waiter").is_some()
        })
        .await;
    assert_eq!(
        terminated(&s, "waiter"),
        Some((7, "Error".into())),
        "{s:#?}"
    );
    assert!(t.logs(&uid, "waiter").await.ends_with("waiting\ngoing\n"));
    assert!(running(&s, "steady"));

    t.rt.stop_pod(&uid, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    t.rt.remove_pod(&uid).await.unwrap();
    assert_eq!(skiff_runtime::testing::mounts_under(&t.root), 0);
}
