//! Node-side hardening with real containers: the pods' parent cgroup is capped at allocatable,
//! a container that cannot start says why, and a root pod cannot read the host's disk through
//! a device node it creates. Needs root; skips loudly otherwise.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_parent_cgroup_is_capped_at_node_allocatable() {
    let limit = 512u64 << 20;
    let Some(t) = TestRuntime::with(
        "the_pods_parent_cgroup_is_capped_at_node_allocatable",
        |c| c.pods_memory_limit = Some(limit),
    ) else {
        return;
    };
    assert_eq!(
        skiff_runtime::cgroups::pods_parent_memory_limit(t.rt.cgroups(), &t.cgroup_parent),
        Some(limit)
    );
    // BestEffort pods live below it.
    let p = pod("besteffort", "Never", vec![container("c", "exit 0")]);
    let uid = t.run(&p).await;
    t.wait(&uid, 30, "the pod to succeed", |s| {
        s.phase.as_deref() == Some("Succeeded")
    })
    .await;
    assert!(t.rt.pod_cgroup(&uid).starts_with(&t.cgroup_parent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_command_does_not_exist_reports_the_start_error() {
    let Some(t) =
        TestRuntime::new("a_container_whose_command_does_not_exist_reports_the_start_error")
    else {
        return;
    };
    let mut c = container("app", "");
    c.command = Some(vec!["/no/such/binary".into()]);
    let p = pod("nocommand", "Always", vec![c]);
    let uid = t.run(&p).await;
    let s = t
        .wait(&uid, 30, "a start error behind a back-off", |s| {
            let cs = state_of(s, "app");
            cs.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
                && cs
                    .state
                    .as_ref()
                    .and_then(|st| st.waiting.as_ref())
                    .is_some()
        })
        .await;
    let cs = state_of(&s, "app");
    let waiting = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or("")
            .contains("back-off"),
        "{waiting:?}"
    );
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.reason.as_deref(), Some("StartError"), "{last:?}");
    assert_eq!(last.exit_code, 128);
    assert!(
        last.message
            .as_deref()
            .unwrap_or("")
            .contains("/no/such/binary"),
        "the message names the missing command: {last:?}"
    );
}

/// `major:minor` of a real block device of the host (the disk under `/`, else the first disk).
fn host_disk() -> Option<(u32, u32)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("dm-"))
        .collect();
    names.sort();
    let dev = std::fs::read_to_string(format!("/sys/class/block/{}/dev", names.first()?)).ok()?;
    let (major, minor) = dev.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_pod_cannot_read_the_host_disk_through_mknod() {
    let Some(t) = TestRuntime::new("a_root_pod_cannot_read_the_host_disk_through_mknod") else {
        return;
    };
    let Some((major, minor)) = host_disk() else {
        eprintln!(
            "!!!!! SKIPPED a_root_pod_cannot_read_the_host_disk_through_mknod: no block device"
        );
        return;
    };
    // The host itself can read it (the test is meaningful).
    let node = format!("/tmp/skiff-test-disk-{}", std::process::id());
    let made = std::process::Command::new("mknod")
        .args([&node, "b", &major.to_string(), &minor.to_string()])
        .status()
        .unwrap();
    assert!(made.success());
    let host_read =
        std::fs::File::open(&node).and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 512]));
    let _ = std::fs::remove_file(&node);
    if let Err(e) = host_read {
        // A sandboxed test host (itself in a device cgroup) proves nothing here.
        eprintln!(
            "!!!!! SKIPPED a_root_pod_cannot_read_the_host_disk_through_mknod: \
             the test host cannot read its own disk ({e})"
        );
        return;
    }

    let script = format!(
        "id -u; mknod /tmp/disk b {major} {minor} && echo MADE; \
         if dd if=/tmp/disk of=/dev/null bs=512 count=1 2>/dev/null; then echo READ; else echo DENIED; fi"
    );
    let p = pod("mknod", "Never", vec![container("c", &script)]);
    let uid = t.run(&p).await;
    t.wait(&uid, 30, "the pod to end", |s| {
        matches!(s.phase.as_deref(), Some("Succeeded" | "Failed"))
    })
    .await;
    let logs = t.logs(&uid, "c").await;
    assert!(logs.starts_with("0\n"), "runs as root: {logs}");
    // containerd's default keeps CAP_MKNOD: creating the node works, opening it does not.
    assert!(logs.contains("MADE"), "{logs}");
    assert!(logs.contains("DENIED") && !logs.contains("READ"), "{logs}");
}
