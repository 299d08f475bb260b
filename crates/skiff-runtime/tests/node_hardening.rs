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

/// `major:minor` of a real block device of the host: the first disk in name order (no loop,
/// RAM, device-mapper, floppy or optical devices, which may have no medium).
fn host_disk() -> Option<(u32, u32)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["loop", "ram", "dm-", "fd", "sr"]
                .iter()
                .any(|p| n.starts_with(p))
        })
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

/// Where the unified (v2) hierarchy is mounted: `/sys/fs/cgroup` on a v2 host,
/// `/sys/fs/cgroup/unified` on a hybrid one.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split(' ').next() != Some("cgroup2") {
            return None;
        }
        pre.split(' ').nth(4).map(std::path::PathBuf::from)
    })
}

/// A loop device over a small file (the "host disk" of the test) and a v2 cgroup, both removed
/// on drop, also when the test fails.
struct DiskAndCgroup {
    loop_dev: Option<String>,
    cgroup: std::path::PathBuf,
}

impl Drop for DiskAndCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.cgroup.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // Killed tasks take a moment to leave the cgroup.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.cgroup.exists() && std::fs::remove_dir(&self.cgroup).is_err() {
            if std::time::Instant::now() > deadline {
                eprintln!("could not remove {}", self.cgroup.display());
                break;
            }
            std::thread::yield_now();
        }
        if let Some(dev) = &self.loop_dev {
            let _ = skiff_testkit::cmd::run(&["losetup", "-d", dev]);
        }
    }
}

/// Loads and attaches the eBPF device filter for `resources`' device rules to `cgroup`, as
/// libcgroups' `Devices::apply_devices` does after raising RLIMIT_MEMLOCK.
fn attach_device_filter(cgroup: &std::path::Path, resources: &oci_spec::runtime::LinuxResources) {
    use libcgroups::v2::devices::{bpf::prog, emulator::Emulator, program::Program};
    use std::os::fd::AsRawFd;
    let mut emulator = Emulator::with_default_allow(false);
    emulator.add_rules(resources.devices().as_deref().unwrap_or_default());
    let program = Program::from_rules(&emulator.rules, emulator.default_allow).unwrap();
    let prog_fd = prog::load("Apache", program.bytecodes()).expect("load the device filter");
    let dir = std::fs::File::open(cgroup).unwrap();
    prog::attach(prog_fd, dir.as_raw_fd()).expect("attach the device filter");
    // SAFETY: prog_fd is the program's descriptor, owned here; the attachment keeps it alive.
    unsafe { libc::close(prog_fd) };
}

/// The eBPF device filter of cgroup v2 (libcgroups' `cgroupsv2_devices`), driven through the
/// v2 cgroup manager libcontainer uses, with the device rules skiff's spec builder gives an
/// unprivileged container. A root process in that cgroup may mknod any device (containerd
/// keeps CAP_MKNOD and allows `m` on every device) but cannot open a block device node it made
/// for the host's disk, while /dev/null stays usable. Without the feature no program is
/// attached and the process reads the disk. Runs on v2 hosts and on hybrid ones (the filter
/// hooks the task's cgroup in the unified hierarchy, whatever the v1 devices cgroup says).
#[test]
fn on_cgroup_v2_a_root_process_cannot_open_a_disk_node_it_made() {
    const TEST: &str = "on_cgroup_v2_a_root_process_cannot_open_a_disk_node_it_made";
    use libcgroups::common::{CgroupManager, ControllerOpt};
    use std::io::{Read, Write};

    if !skiff_testkit::gate::require(TEST, true, &["losetup", "sh", "mknod", "dd"]) {
        return;
    }
    let Some(v2_root) = cgroup2_mount() else {
        skiff_testkit::gate::skip(&format!("{TEST} needs a cgroup2 mount"));
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk.img");
    std::fs::write(&backing, vec![0x5au8; 1 << 20]).unwrap();
    let cgroup_rel = format!("skiff-test-devices-{}", std::process::id());
    let mut guard = DiskAndCgroup {
        loop_dev: None,
        cgroup: v2_root.join(&cgroup_rel),
    };
    let dev = match skiff_testkit::cmd::run(&[
        "losetup",
        "--find",
        "--show",
        backing.to_str().unwrap(),
    ]) {
        Ok(out) => out.trim().to_string(),
        Err(e) => {
            skiff_testkit::gate::skip(&format!("{TEST} needs a loop device: {e}"));
            return;
        }
    };
    guard.loop_dev = Some(dev.clone());
    let rdev = std::os::unix::fs::MetadataExt::rdev(&std::fs::metadata(&dev).unwrap());
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));

    // Outside the cgroup, a node for the disk opens and reads (the test is meaningful).
    let host_node = dir.path().join("host-node");
    skiff_testkit::cmd::run_ok(&[
        "mknod",
        host_node.to_str().unwrap(),
        "b",
        &major.to_string(),
        &minor.to_string(),
    ]);
    let mut first = [0u8; 512];
    std::fs::File::open(&host_node)
        .and_then(|mut f| f.read_exact(&mut first))
        .expect("the host reads the loop device through a node it made");
    assert_eq!(first[0], 0x5a);

    // The cgroup with the device rules of an unprivileged container, applied by libcgroups'
    // v2 manager (what libcontainer does for every container on a v2 host).
    std::fs::create_dir(&guard.cgroup).unwrap();
    let manager =
        libcgroups::v2::manager::Manager::new(v2_root.clone(), cgroup_rel.clone().into()).unwrap();
    let resources = oci_spec::runtime::LinuxResourcesBuilder::default()
        .devices(skiff_runtime::spec::security::device_rules(false))
        .build()
        .unwrap();
    let applied = manager.apply(&ControllerOpt {
        resources: &resources,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    });
    match applied {
        // The manager loaded and attached the filter.
        Ok(()) => {}
        // libcgroups raises RLIMIT_MEMLOCK to 128 MiB before loading the program and fails
        // when it cannot (a root without CAP_SYS_RESOURCE under a lower hard limit, as in some
        // sandboxes and CI machines): the container then does not start at all, which fails
        // closed. The filter itself is then loaded and attached here with libcgroups' own rule
        // emulator, program builder and loader, the steps of `Devices::apply_devices` after the
        // rlimit.
        Err(libcgroups::v2::manager::V2ManagerError::DevicesController(
            libcgroups::v2::devices::controller::DevicesControllerError::Bpf(
                libcgroups::v2::devices::bpf::BpfError::FailedToIncreaseRLimit,
            ),
        )) => {
            eprintln!("RLIMIT_MEMLOCK cannot be raised here: attaching the filter directly");
            attach_device_filter(&guard.cgroup, &resources);
        }
        Err(e) => panic!("apply the device rules: {e}"),
    }

    // A root child joins the cgroup, then makes and opens nodes.
    let node = dir.path().join("container-node");
    let script = format!(
        "read go; \
         mknod {node} b {major} {minor} && echo MADE; \
         if dd if={node} of=/dev/null bs=512 count=1; then echo DISK_READ; else echo DISK_DENIED; fi; \
         if dd if=/dev/zero of=/dev/null bs=512 count=1; then echo NULL_OK; fi",
        node = node.display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    if let Err(e) = manager.add_task(pid) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("move the child into the cgroup: {e}");
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("MADE"),
        "mknod is allowed: {stdout} {stderr}"
    );
    assert!(
        stdout.contains("DISK_DENIED") && !stdout.contains("DISK_READ"),
        "the disk node must not open: {stdout} {stderr}"
    );
    assert!(
        stderr.contains("Operation not permitted"),
        "denied with EPERM by the device filter: {stderr}"
    );
    assert!(
        stdout.contains("NULL_OK"),
        "/dev/null and /dev/zero work: {stdout} {stderr}"
    );
    drop(guard);
}
