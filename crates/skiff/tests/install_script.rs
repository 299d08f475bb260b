//! `scripts/install.sh` and `scripts/uninstall.sh` in their root-directory and dry-run modes
//! (no systemd needed): the files they write, their modes and contents, and that the config
//! they write is one the real binary accepts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

fn run(script: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(scripts().join(script))
        .args(args)
        .env_remove("SKIFF_URL")
        .env_remove("SKIFF_TOKEN")
        .env_remove("SKIFF_NODE_NAME")
        .env_remove("SKIFF_BINARY")
        .output()
        .expect("run the script")
}

fn install(root: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "--root",
        root.to_str().unwrap(),
        "--binary",
        env!("CARGO_BIN_EXE_skiff"),
    ];
    all.extend_from_slice(args);
    run("install.sh", &all)
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Checks `config` with the installed binary's `check-config` (real parser and validation).
fn check_config(root: &Path, config: &Path, role: &str) -> String {
    let out = Command::new(root.join("usr/local/bin/skiff"))
        .args(["check-config", "--role", role, "--https-listen-port", "0"])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(root)
        .output()
        .expect("run the installed skiff");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("config file"))
        .unwrap_or_else(|| panic!("no config line:\n{text}"))
        .to_string();
    line
}

#[test]
fn server_install_writes_binary_config_unit_and_enables_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = ok(&install(
        root,
        &[
            "--node-name",
            "edge-1",
            "--node-label",
            "topology.kubernetes.io/zone=site-a",
            "--node-taint",
            "node-role.kubernetes.io/control-plane=true:NoSchedule",
            "--",
            "--advertise-address",
            "192.168.1.10",
        ],
    ));
    assert!(out.contains("installing skiff server"), "{out}");

    let bin = root.join("usr/local/bin/skiff");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_skiff")).unwrap(),
        "the installed binary is the one given"
    );
    assert_eq!(mode(&root.join("usr/local/bin/skiff-uninstall.sh")), 0o755);

    let unit_path = root.join("etc/systemd/system/skiff.service");
    assert_eq!(mode(&unit_path), 0o644);
    let unit = read(&unit_path);
    assert!(
        unit.contains("ExecStart=/usr/local/bin/skiff server --advertise-address 192.168.1.10\n"),
        "{unit}"
    );
    for line in [
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "WantedBy=multi-user.target",
        "EnvironmentFile=-/etc/skiff/skiff.env",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    let link = root.join("etc/systemd/system/multi-user.target.wants/skiff.service");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/etc/systemd/system/skiff.service"),
        "enabled like systemctl enable does"
    );
    assert!(!root.join("etc/systemd/system/skiff-agent.service").exists());

    let config_path = root.join("etc/skiff/config.yaml");
    assert_eq!(mode(&config_path), 0o600);
    let config = read(&config_path);
    assert!(config.contains("node-name: \"edge-1\""), "{config}");
    assert!(
        config.contains("  - \"node-role.kubernetes.io/control-plane=true:NoSchedule\""),
        "{config}"
    );
    assert!(!config.contains("server:"), "{config}");
    let verdict = check_config(root, &config_path, "server");
    assert!(
        verdict.contains("valid `skiff server` configuration"),
        "{verdict}"
    );
    assert_eq!(
        read(&root.join("etc/modules-load.d/skiff.conf")),
        "overlay\nvxlan\n"
    );
}

#[test]
fn agent_install_is_chosen_by_the_server_url_and_carries_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let images = dir.path().join("archives");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("app.tar"), b"not really an image").unwrap();
    std::fs::write(images.join("notes.txt"), b"ignored").unwrap();
    let token = "K10aaaa::abcdef.0123456789abcdef";
    ok(&install(
        root,
        &[
            "--server",
            "https://10.0.0.1:6443",
            "--token",
            token,
            "--node-label",
            "node.skiff.dev/capacity=spot",
            "--data-dir",
            "/srv/skiff",
            "--images",
            images.to_str().unwrap(),
        ],
    ));
    let unit = read(&root.join("etc/systemd/system/skiff-agent.service"));
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/local/bin/skiff agent"),
        "{unit}"
    );
    assert!(!root.join("etc/systemd/system/skiff.service").exists());
    assert!(root
        .join("etc/systemd/system/multi-user.target.wants/skiff-agent.service")
        .is_symlink());
    let config_path = root.join("etc/skiff/config.yaml");
    assert_eq!(mode(&config_path), 0o600, "the token is a secret");
    let config = read(&config_path);
    assert!(
        config.contains("server: \"https://10.0.0.1:6443\""),
        "{config}"
    );
    assert!(config.contains(&format!("token: \"{token}\"")), "{config}");
    assert!(config.contains("data-dir: \"/srv/skiff\""), "{config}");
    let verdict = check_config(root, &config_path, "agent");
    assert!(
        verdict.contains("valid `skiff agent` configuration"),
        "{verdict}"
    );
    // Air-gap archives land where the agent imports them at start.
    assert_eq!(
        read(&root.join("srv/skiff/agent/images/app.tar")),
        "not really an image"
    );
    assert!(!root.join("srv/skiff/agent/images/notes.txt").exists());
}

#[test]
fn dry_run_changes_nothing_and_says_what_it_would_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("target-root");
    let out = ok(&install(&root, &["--dry-run", "--node-name", "edge-2"]));
    assert!(!root.exists(), "dry run created {:?}", tree(&root));
    for expected in [
        "would install",
        "/usr/local/bin/skiff (mode 0755)",
        "would write /etc/skiff/config.yaml (mode 0600)",
        "    | node-name: \"edge-2\"",
        "would write /etc/systemd/system/skiff.service (mode 0644)",
        "    | ExecStart=/usr/local/bin/skiff server",
        "would link /etc/systemd/system/multi-user.target.wants/skiff.service",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
}

#[test]
fn an_existing_config_is_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(&install(root, &["--node-name", "first"]));
    let out = ok(&install(root, &["--node-name", "second"]));
    assert!(
        out.contains("keeping the existing /etc/skiff/config.yaml"),
        "{out}"
    );
    assert!(read(&root.join("etc/skiff/config.yaml")).contains("\"first\""));
    ok(&install(root, &["--node-name", "second", "--force-config"]));
    assert!(read(&root.join("etc/skiff/config.yaml")).contains("\"second\""));
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let cases: &[(&[&str], &str)] = &[
        (&["--server", "https://10.0.0.1:6443"], "needs --token"),
        (
            &["--server", "10.0.0.1:6443", "--token", "t"],
            "must be https://HOST:PORT",
        ),
        (&["--node-label", "novalue"], "is not KEY=VALUE"),
        (
            &["--node-taint", "a=b:Sometimes"],
            "is not KEY=VALUE:EFFECT",
        ),
        (&["--data-dir", "relative/dir"], "absolute path"),
        (
            &["--images", "/nonexistent/images.tar"],
            "is not a file or directory",
        ),
        (&["--frobnicate"], "unknown option '--frobnicate'"),
    ];
    for (args, message) in cases {
        let err = failed(&install(&root, args));
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let err = failed(&run(
        "install.sh",
        &[
            "--root",
            root.to_str().unwrap(),
            "--binary",
            "/nonexistent/skiff",
        ],
    ));
    assert!(err.contains("is not an executable file"), "{err}");
    assert!(!root.exists(), "refused installs wrote {:?}", tree(&root));
}

#[test]
fn uninstall_removes_what_install_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let images = dir.path().join("img.tar");
    std::fs::write(&images, b"x").unwrap();
    ok(&install(root, &["--images", images.to_str().unwrap()]));
    assert!(root.join("var/lib/skiff/agent/images/img.tar").exists());
    std::fs::remove_file(&images).unwrap();

    // --keep-data keeps the state.
    let out = ok(&run(
        "uninstall.sh",
        &["--root", root.to_str().unwrap(), "--dry-run"],
    ));
    assert!(
        out.contains("would remove /etc/systemd/system/skiff.service"),
        "{out}"
    );
    assert!(root.join("etc/systemd/system/skiff.service").exists());
    ok(&run(
        "uninstall.sh",
        &["--root", root.to_str().unwrap(), "--keep-data"],
    ));
    assert_eq!(tree(root), vec!["var/lib/skiff/agent/images/img.tar"]);

    ok(&install(root, &["--data-dir", "/data/skiff"]));
    std::fs::create_dir_all(root.join("data/skiff/server")).unwrap();
    ok(&run("uninstall.sh", &["--root", root.to_str().unwrap()]));
    let left = tree(root);
    assert_eq!(
        left,
        vec!["var/lib/skiff/agent/images/img.tar"],
        "the configured data dir is removed, nothing else of skiff is left"
    );
}
