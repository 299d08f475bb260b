//! exec (pipes, exit codes, identity, terminal), log streaming (follow, tail, since, rotation),
//! sidecars, and pod cgroup limits.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_runtime::{ExecOptions, ExitStatus, LogOptions};

fn read_all(f: Option<std::fs::File>) -> String {
    let mut s = String::new();
    if let Some(mut f) = f {
        f.read_to_string(&mut s).unwrap();
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_as_the_container_with_pipes_and_exit_codes() {
    let Some(t) = TestRuntime::new("exec") else {
        return;
    };
    let mut p = pod(
        "execy",
        "Always",
        vec![container("main", "echo $$$$ > /tmp/main.pid; sleep 3600")],
    );
    p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        ..Default::default()
    });
    let uid = t.run(&p).await;
    t.wait(&uid, 30, "running", |s| running(s, "main")).await;

    let proc_ =
        t.rt.exec(
            &uid,
            "main",
            ExecOptions {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "id -u; id -g; echo err >&2; cat /tmp/main.pid; grep -c '^Seccomp:.*2' /proc/self/status; exit 5".into(),
                ],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (out, err) = (
        read_all(proc_.stdout.as_ref().map(|f| f.try_clone().unwrap())),
        read_all(proc_.stderr.as_ref().map(|f| f.try_clone().unwrap())),
    );
    assert_eq!(proc_.wait().await, ExitStatus::Exited(5));
    assert_eq!(
        out, "1000\n3000\n1\n1\n",
        "same user, same pid namespace (the container's init is pid 1)"
    );
    assert_eq!(err, "err\n");

    // stdin
    let mut cat =
        t.rt.exec(
            &uid,
            "main",
            ExecOptions {
                command: vec!["cat".into()],
                stdin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    stdin.write_all(b"through stdin\n").unwrap();
    drop(stdin);
    let out = read_all(cat.stdout.take());
    assert_eq!(cat.wait().await, ExitStatus::Exited(0));
    assert_eq!(out, "through stdin\n");

    // terminal
    let tty =
        t.rt.exec(
            &uid,
            "main",
            ExecOptions {
                command: vec!["sh".into(), "-c".into(), "tty; stty size".into()],
                tty: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tty.resize(100, 40).unwrap();
    let mut term = tty.terminal.as_ref().unwrap().try_clone().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match term.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(tty.wait().await, ExitStatus::Exited(0));
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("/dev/pts/"), "{text}");

    // missing command: a clear error, the container is unaffected
    let err =
        t.rt.exec(
            &uid,
            "main",
            ExecOptions {
                command: vec!["no-such-binary".into()],
                ..Default::default()
            },
        )
        .await
        .err();
    assert!(err
        .map(|e| e.to_string().contains("no-such-binary"))
        .unwrap_or(true));
    let err =
        t.rt.exec(
            &uid,
            "ghost",
            ExecOptions {
                command: vec!["true".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"ghost\""), "{err}");
    assert!(running(&t.rt.pod_status(&uid).unwrap(), "main"));
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_tail_since_and_rotate() {
    let Some(t) = TestRuntime::with("log streaming", |c| {
        c.logs.rotation = skiff_runtime::Rotation {
            max_size: 8192,
            max_files: 3,
        };
    }) else {
        return;
    };
    let script = "for i in $(seq 1 1000); do echo line $i; done; echo no newline at the end | tr -d '\\n'; sleep 1.5; echo late; printf 'tail without newline'; exit 0";
    let uid = t
        .run(&pod("chatty", "Never", vec![container("talk", script)]))
        .await;
    t.wait(&uid, 30, "running", |s| {
        running(s, "talk") || terminated(s, "talk").is_some()
    })
    .await;
    // Follow from now until the container ends.
    let mut stream =
        t.rt.logs(
            &uid,
            "talk",
            LogOptions {
                follow: true,
                tail_lines: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut followed = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(rec)) = tokio::time::timeout_at(deadline, stream.next()).await {
        followed.push_str(&String::from_utf8_lossy(&rec.render(false)));
    }
    assert!(
        followed.ends_with("endlate\ntail without newline\n"),
        "follow sees output until the end: {followed:?}"
    );
    let s = t
        .wait(&uid, 30, "exit", |s| terminated(s, "talk").is_some())
        .await;
    assert_eq!(terminated(&s, "talk"), Some((0, "Completed".into())));

    // Rotation kept 3 files of ~8 KiB: the oldest lines are gone, the newest are there.
    let all = t.logs(&uid, "talk").await;
    assert!(
        !all.contains("line 1\n") && all.contains("line 1000\n"),
        "{}",
        &all[..200.min(all.len())]
    );
    assert!(
        all.ends_with("line 1000\nno newline at the endlate\ntail without newline\n"),
        "a partial line continues with later output; the rest is a line at the end"
    );
    let tail = t
        .logs_with(
            &uid,
            "talk",
            LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(tail, "no newline at the endlate\ntail without newline\n");
    let far_future = "2999-01-01T00:00:00Z".parse().unwrap();
    assert_eq!(
        t.logs_with(
            &uid,
            "talk",
            LogOptions {
                since: Some(far_future),
                ..Default::default()
            }
        )
        .await,
        ""
    );
    let limited = t
        .logs_with(
            &uid,
            "talk",
            LogOptions {
                limit_bytes: Some(20),
                ..Default::default()
            },
        )
        .await;
    assert!(limited.len() <= 20 && !limited.is_empty());
    let stamped =
        t.rt.logs(
            &uid,
            "talk",
            LogOptions {
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .collect(true)
        .await;
    let stamped = String::from_utf8(stamped).unwrap();
    assert!(
        stamped.ends_with("Z tail without newline\n") && stamped.starts_with("20"),
        "{stamped}"
    );
    // The files are in the CRI format.
    let dir = t.rt.pod_dir(&uid).join("logs/talk");
    let raw = std::fs::read_to_string(dir.join("0.log")).unwrap();
    let last = raw.lines().last().unwrap();
    assert!(last.contains(" stdout F tail without newline"), "{last}");
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_run_beside_the_app_and_stop_after_it() {
    let Some(t) = TestRuntime::new("sidecar") else {
        return;
    };
    let mut sidecar = container("proxy", "trap 'exit 0' TERM; echo sidecar up; httpd -p 9090 -h /etc; while true; do sleep 0.1; done");
    sidecar.restart_policy = Some("Always".into());
    let app = container(
        "app",
        "until wget -q -O - http://localhost:9090/hostname; do sleep 0.1; done; echo app done",
    );
    let mut p = pod("with-sidecar", "Never", vec![app]);
    p.spec.as_mut().unwrap().init_containers = Some(vec![sidecar]);
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "the app to finish and the sidecar to stop", |s| {
            terminated(s, "app").is_some() && terminated(s, "proxy").is_some()
        })
        .await;
    assert_eq!(terminated(&s, "app"), Some((0, "Completed".into())));
    assert!(t
        .logs(&uid, "app")
        .await
        .contains("with-sidecar\napp done\n"));
    assert_eq!(phase(&s), "Succeeded");
    t.rt.remove_pod(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_container_cgroups_carry_the_limits() {
    let Some(t) = TestRuntime::new("cgroup limits") else {
        return;
    };
    let mut c = container("limited", "sleep 3600");
    c.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([(
            "cpu".to_string(),
            Quantity("250m".into()),
        )])),
        limits: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        ..Default::default()
    });
    let uid = t.run(&pod("limits", "Always", vec![c])).await;
    let s = t.wait(&uid, 30, "running", |s| running(s, "limited")).await;
    assert_eq!(s.qos_class.as_deref(), Some("Burstable"));
    let setup = t.rt.cgroups().clone();
    let pod_cg = t.rt.pod_cgroup(&uid);
    let read = |ctrl: &str, path: &std::path::Path, file: &str| {
        std::fs::read_to_string(setup.controller_dir(ctrl, path).unwrap().join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    if setup.is_v2() {
        assert_eq!(
            read("memory", &pod_cg, "memory.max"),
            (64 << 20).to_string()
        );
    } else {
        assert_eq!(
            read("memory", &pod_cg, "memory.limit_in_bytes"),
            (64 << 20).to_string()
        );
        assert_eq!(read("cpu", &pod_cg, "cpu.shares"), "256");
        assert_eq!(read("cpu", &pod_cg, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("pids", &pod_cg, "pids.max"), "4096");
        // The container's own cgroup is below the pod's and holds its process.
        let pid = t.rt.container_pid(&uid, "limited").unwrap();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let mem_line = cgroup
            .lines()
            .find(|l| l.split(':').nth(1) == Some("memory"))
            .unwrap();
        assert!(
            mem_line.contains(&pod_cg.display().to_string()),
            "{mem_line}"
        );
        let container_cg = std::path::PathBuf::from(mem_line.split(':').nth(2).unwrap());
        assert_eq!(
            read("memory", &container_cg, "memory.limit_in_bytes"),
            (64 << 20).to_string()
        );
        assert_eq!(read("cpu", &container_cg, "cpu.shares"), "256");
    }
    // The runtime's own process is not in the container's cgroup (a runtime restart cannot
    // take containers with it).
    let me = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(!me.contains(&pod_cg.display().to_string()));
    t.rt.remove_pod(&uid).await.unwrap();
}
