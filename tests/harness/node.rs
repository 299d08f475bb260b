//! One node of a test cluster: the real `skiff server` or `skiff agent` binary, running in the
//! node's network namespace (`--netns`; only the network namespace: mounts and cgroups are the
//! host's, as on a real machine), with its own data directory and cgroup parent.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::lan::{run, NodeNs};

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `skiff server` (with or without its local agent).
    Server,
    /// `skiff agent`.
    Agent,
}

/// A node's process and files.
#[derive(Debug)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Server or agent.
    pub role: Role,
    /// Its network namespace and address.
    pub ns: NodeNs,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--cgroup-parent` (unique per node).
    pub cgroup_parent: String,
    /// Where its output goes.
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

/// Spawns `bin args` with its output appended to `log`.
pub fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Child, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new(bin)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("SKIFF_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))
}

impl Node {
    /// A node that is not started yet.
    pub fn new(
        name: &str,
        role: Role,
        ns: NodeNs,
        dir: &Path,
        cgroup_parent: String,
        args: Vec<String>,
    ) -> Node {
        Node {
            name: name.to_string(),
            role,
            ns,
            data_dir: dir.join(name),
            cgroup_parent,
            log: dir.join(format!("{name}.log")),
            args,
            child: None,
        }
    }

    /// The command line after the binary.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Starts the process (again).
    pub fn start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut f| {
                use std::io::Write;
                writeln!(f, "===== start {:?} =====", Instant::now())
            });
        self.child = Some(spawn(&crate::process::skiff_bin(), &self.args, &self.log)?);
        Ok(())
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the process (containers are not touched).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, waiting up to 20 s (then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The address the node's pod network gave pod `uid`, from the node's own state (works
    /// while the server cannot be reached).
    pub fn pod_ip(&self, uid: &str) -> Option<String> {
        let path = self.data_dir.join("agent").join("net").join("network.json");
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        state["pods"][uid]["ip"].as_str().map(str::to_string)
    }

    /// Directories of the node's pod cgroups in every hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
            return dirs;
        };
        let parent = self.cgroup_parent.trim_start_matches('/');
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if unified {
            let d = Path::new("/sys/fs/cgroup").join(parent);
            if d.exists() {
                dirs.push(d);
            }
            return dirs;
        }
        for entry in entries.flatten() {
            let d = entry.path().join(parent);
            if d.is_dir() {
                dirs.push(d);
            }
        }
        dirs
    }

    /// Pids of every process in the node's pod cgroups (its containers).
    pub fn container_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in self.cgroup_dirs() {
            collect_pids(&dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every container of the node (the machine lost power).
    pub fn kill_containers(&self) {
        for _ in 0..20 {
            let pids = self.container_pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) of processes in this test node's own cgroups.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Undoes what a reboot undoes: every mount under the node's data directory (sandbox
    /// namespaces, rootfs overlays, volumes). Call with the agent and containers dead.
    pub fn unmount_all(&self) {
        for target in mounts_under(&self.data_dir).into_iter().rev() {
            let _ = run(&["umount", "-l", &target]);
        }
    }

    /// Drops the node's UDP traffic to and from the server (`port`): the link is cut, the
    /// rest of the network works.
    pub fn cut_link(&self, server: std::net::Ipv4Addr, port: u16) -> Result<(), String> {
        let rules = format!(
            "table inet skiff-test-cut {{\n\
             chain out {{ type filter hook output priority 0; ip daddr {server} udp dport {port} drop; }}\n\
             chain in {{ type filter hook input priority 0; ip saddr {server} udp sport {port} drop; }}\n\
             }}\n"
        );
        let path = self.data_dir.with_extension("cut.nft");
        std::fs::write(&path, rules).map_err(|e| e.to_string())?;
        self.ns
            .exec(&["nft", "-f", &path.to_string_lossy()])
            .map(|_| ())
    }

    /// Cuts the node's uplink: nothing in or out of its LAN interface (`eth0`), to the server
    /// or any other node; traffic inside the node (its pods, its Services) goes on.
    pub fn cut_uplink(&self) -> Result<(), String> {
        let rules = "table inet skiff-test-uplink {\n\
             chain in { type filter hook input priority -10; iifname \"eth0\" drop; }\n\
             chain out { type filter hook output priority -10; oifname \"eth0\" drop; }\n\
             chain uplink-forward { type filter hook forward priority -10; iifname \"eth0\" drop; oifname \"eth0\" drop; }\n\
             }\n";
        let path = self.data_dir.with_extension("uplink.nft");
        std::fs::write(&path, rules).map_err(|e| e.to_string())?;
        self.ns
            .exec(&["nft", "-f", &path.to_string_lossy()])
            .map(|_| ())
    }

    /// Restores what [`Node::cut_uplink`] cut.
    pub fn restore_uplink(&self) -> Result<(), String> {
        self.ns
            .exec(&["nft", "delete", "table", "inet", "skiff-test-uplink"])
            .map(|_| ())
    }

    /// Runs `cmd` inside a container of pod `uid` on this node (its network and mount
    /// namespaces and root: the pod's own `resolv.conf` and binaries), without the server.
    pub fn exec_in_pod(&self, uid: &str, cmd: &[&str]) -> Result<String, String> {
        let marker = format!("pod{uid}");
        let pid = self
            .cgroup_dirs()
            .into_iter()
            .map(|dir| dir.join(&marker))
            .filter(|dir| dir.is_dir())
            .find_map(|dir| {
                let mut pids = Vec::new();
                collect_pids(&dir, &mut pids);
                pids.into_iter().min()
            })
            .ok_or_else(|| format!("no process of pod {uid} on node {}", self.name))?;
        let target = pid.to_string();
        let mut full = vec![
            "nsenter",
            "-t",
            target.as_str(),
            "-n",
            "-m",
            "-r",
            "-w",
            "--",
        ];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Drops TCP from this node (its own processes and its pods) to the server's API port
    /// `port`, leaving the link's UDP alone: a node without a direct path to the API.
    pub fn block_api_tcp(&self, server: std::net::Ipv4Addr, port: u16) -> Result<(), String> {
        let rules = format!(
            "table inet skiff-test-noapi {{\n\
             chain api-output {{ type filter hook output priority 0; ip daddr {server} tcp dport {port} drop; }}\n\
             chain api-forward {{ type filter hook forward priority 0; ip daddr {server} tcp dport {port} drop; }}\n\
             }}\n"
        );
        let path = self.data_dir.with_extension("noapi.nft");
        std::fs::write(&path, rules).map_err(|e| e.to_string())?;
        self.ns
            .exec(&["nft", "-f", &path.to_string_lossy()])
            .map(|_| ())
    }

    /// Restores what [`Node::cut_link`] cut.
    pub fn restore_link(&self) -> Result<(), String> {
        self.ns
            .exec(&["nft", "delete", "table", "inet", "skiff-test-cut"])
            .map(|_| ())
    }

    /// Removes everything the node left: stops its pods and network (`skiff agent --cleanup`
    /// inside its namespace), kills what is left in its cgroups, removes them and unmounts.
    pub fn clean_up(&mut self) {
        self.kill9();
        let args: Vec<String> = vec![
            "agent".into(),
            "--cleanup".into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
            "--netns".into(),
            self.ns.path().display().to_string(),
        ];
        if self.data_dir.join("agent").exists() {
            match spawn(&crate::process::skiff_bin(), &args, &self.log) {
                Ok(mut child) => {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        if let Ok(Some(_)) = child.try_wait() {
                            break;
                        }
                        if Instant::now() > deadline {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                Err(e) => eprintln!("cleanup of node {} failed to start: {e}", self.name),
            }
        }
        self.kill_containers();
        self.unmount_all();
        for dir in self.cgroup_dirs() {
            remove_cgroup_tree(&dir);
        }
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Mount points under `dir`, parents first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    found.sort();
    found.dedup();
    found
}
