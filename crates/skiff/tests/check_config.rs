//! `skiff check-config` through the real binary: a deliberately missing kernel feature (a fake
//! kernel tree through `--host-root`), a busy port, and good and bad config files.

use std::path::Path;
use std::process::{Command, Output};

/// Every kernel option the checks look at, enabled.
const FULL_CONFIG: &[&str] = &[
    "NAMESPACES",
    "NET_NS",
    "PID_NS",
    "IPC_NS",
    "UTS_NS",
    "OVERLAY_FS",
    "NF_TABLES",
    "NF_TABLES_INET",
    "NF_NAT",
    "NFT_NAT",
    "NFT_MASQ",
    "NFT_CT",
    "NFT_FIB_INET",
    "VETH",
    "BRIDGE",
    "VXLAN",
    "CONNECTOR",
    "PROC_EVENTS",
    "SECCOMP",
    "SECCOMP_FILTER",
    "POSIX_MQUEUE",
];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A fake kernel tree with every feature but those in `without` (cgroup v2, all controllers).
fn kernel_tree(dir: &Path, without: &[&str]) {
    let write = |path: &str, text: &str| {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    };
    write("proc/sys/kernel/osrelease", "6.1.0-fake\n");
    let config: String = FULL_CONFIG
        .iter()
        .map(|o| {
            if without.contains(o) {
                format!("# CONFIG_{o} is not set\n")
            } else {
                format!("CONFIG_{o}=y\n")
            }
        })
        .collect();
    write("boot/config-6.1.0-fake", &config);
    write("proc/filesystems", "nodev\tsysfs\nnodev\tproc\n\text4\n");
    write(
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids\n",
    );
}

fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

fn check(args: &[&str], tree: &Path, port: u16, data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("check-config")
        .args(args)
        .arg("--host-root")
        .arg(tree)
        .args(["--https-listen-port", &port.to_string()])
        .arg("--data-dir")
        .arg(data)
        .env_remove("SKIFF_CONFIG")
        .env_remove("SKIFF_SERVER")
        .output()
        .expect("run skiff check-config")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn missing_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("MISSING")).collect()
}

#[test]
fn a_kernel_without_overlayfs_is_reported_with_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("host");
    kernel_tree(&tree, &["OVERLAY_FS"]);
    let out = check(&[], &tree, free_port(), work.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let overlay = text
        .lines()
        .position(|l| l.contains("MISSING") && l.contains("overlayfs"))
        .unwrap_or_else(|| panic!("overlayfs not reported missing:\n{text}"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[overlay].contains("CONFIG_OVERLAY_FS"), "{text}");
    assert!(
        lines[overlay + 1].contains("fix:") && lines[overlay + 1].contains("modprobe overlay"),
        "{text}"
    );
    assert!(text.contains("required feature(s) missing"), "{text}");
    if is_root() {
        // Everything else is present: the fake tree has it, and this machine runs skiff.
        assert_eq!(missing_lines(&text).len(), 1, "{text}");
    }
}

#[test]
fn a_complete_kernel_passes_and_missing_vxlan_is_only_a_warning() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: check-config passes only as root (it checks for root) ***\n");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("host");
    kernel_tree(&tree, &["VXLAN"]);
    let out = check(&[], &tree, free_port(), work.path());
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(missing_lines(&text).is_empty(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("vxlan") && l.contains("CONFIG_VXLAN")),
        "{text}"
    );
    assert!(text.contains("fix: modprobe vxlan"), "{text}");
}

#[test]
fn a_busy_api_port_is_reported_for_servers_but_not_agents() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("host");
    kernel_tree(&tree, &[]);
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = check(&["--role", "server"], &tree, port, work.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.contains("MISSING")
            && l.contains(&format!("port {port}/tcp"))
            && l.contains("in use")),
        "{text}"
    );
    let out = check(&["--role", "agent"], &tree, port, work.path());
    let text = stdout(&out);
    assert!(!text.contains(&format!("port {port}")), "{text}");
}

#[test]
fn config_files_are_checked_with_the_real_parser() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("host");
    kernel_tree(&tree, &[]);
    let port = free_port();

    let bad = work.path().join("bad.yaml");
    std::fs::write(&bad, "node-name: edge-1\nnode-lable: [a=b]\n").unwrap();
    let out = check(
        &["--config", bad.to_str().unwrap()],
        &tree,
        port,
        work.path(),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("MISSING") && l.contains("bad.yaml"))
        .unwrap_or_else(|| panic!("bad config not reported:\n{text}"));
    assert!(line.contains("unknown key 'node-lable'"), "{line}");

    let taint = work.path().join("taint.yaml");
    std::fs::write(
        &taint,
        "server: https://10.0.0.1:6443\ntoken: t\nnode-taint: [dedicated=camera:Sometimes]\n",
    )
    .unwrap();
    let out = check(
        &["--config", taint.to_str().unwrap()],
        &tree,
        port,
        work.path(),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("(for `skiff agent`"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("MISSING") && l.contains("dedicated=camera:Sometimes")),
        "{text}"
    );

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/agent-spot.yaml");
    let out = check(
        &["--config", example.to_str().unwrap()],
        &tree,
        port,
        work.path(),
    );
    let text = stdout(&out);
    assert!(text.contains("valid `skiff agent` configuration"), "{text}");
    if is_root() {
        assert!(out.status.success(), "{text}");
    }
}
