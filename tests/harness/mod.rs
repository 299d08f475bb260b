//! A multi-node cluster for tests, from the real binary: `skiff server` and N `skiff agent`s,
//! each node in its own network namespace with its own address on a test bridge (veth pairs),
//! its own data directory and cgroup parent. Everything is removed when the [`Cluster`] is
//! dropped — also when a test fails, which then prints the end of every node's log.
//!
//! ```no_run
//! use skiff_tests::harness::{Cluster, ClusterSpec};
//! let Some(cluster) = Cluster::start(ClusterSpec::new("demo").agents(&["a", "b"])) else {
//!     return; // not root: skipped
//! };
//! cluster.wait_nodes_ready(2);
//! println!("{}", cluster.kubectl_ok(&["get", "nodes", "-o", "wide"]));
//! ```
//!
//! `scripts/dev-cluster.sh up|down` starts the same topology by hand.

pub mod image;
pub mod lan;
pub mod node;
pub mod workloads;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::kubectl::{Kubectl, Run};
use lan::Lan;
use node::{Node, Role};

/// Mounts a private (0700) tmpfs of `size` (`64m`) on `dir`, created if missing: a small disk
/// to fill without touching the host's.
pub fn mount_tmpfs(dir: &std::path::Path, size: &str) {
    std::fs::create_dir_all(dir).expect("create the mount point");
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mount a tmpfs on {}", dir.display());
}

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Used in names (logs, cgroups).
    pub label: String,
    /// Agent node names.
    pub agents: Vec<String>,
    /// Extra flags per agent (by name).
    pub agent_args: Vec<(String, Vec<String>)>,
    /// Run the server's own node agent (its node is named `server`).
    pub server_agent: bool,
    /// Extra `skiff server` flags.
    pub server_args: Vec<String>,
    /// Busybox tags imported into every node (`DIR/agent/images/`).
    pub images: Vec<String>,
    /// Other image archives imported into every node (`skiff_testkit::image::nginx`, …).
    pub image_archives: Vec<PathBuf>,
    /// Agents whose data directory is a tmpfs of this size (`64m`), a small disk of their own.
    pub agent_tmpfs: Vec<(String, String)>,
    /// Agents whose namespace drops TCP to the server's API port from the start (the link's
    /// UDP passes): nodes without a direct path to the API.
    pub api_tcp_blocked: Vec<String>,
}

impl ClusterSpec {
    /// A server without a node of its own, no agents, the busybox `latest` image.
    pub fn new(label: &str) -> ClusterSpec {
        ClusterSpec {
            label: label.to_string(),
            agents: Vec::new(),
            agent_args: Vec::new(),
            server_agent: false,
            server_args: Vec::new(),
            images: vec!["latest".into()],
            image_archives: Vec::new(),
            agent_tmpfs: Vec::new(),
            api_tcp_blocked: Vec::new(),
        }
    }

    /// Agent `name` cannot reach the API's TCP port (a firewall that lets only the link's UDP
    /// through), from before it starts.
    pub fn api_tcp_blocked(mut self, name: &str) -> Self {
        self.api_tcp_blocked.push(name.to_string());
        self
    }

    /// Agent `name` keeps its data directory on a tmpfs of `size` (unmounted with the node).
    pub fn agent_tmpfs(mut self, name: &str, size: &str) -> Self {
        self.agent_tmpfs.push((name.to_string(), size.to_string()));
        self
    }

    /// Agents with these names.
    pub fn agents(mut self, names: &[&str]) -> Self {
        self.agents = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Extra flags for agent `name`.
    pub fn agent_args(mut self, name: &str, args: &[&str]) -> Self {
        self.agent_args.push((
            name.to_string(),
            args.iter().map(|a| a.to_string()).collect(),
        ));
        self
    }

    /// Whether the server runs its own node.
    pub fn server_agent(mut self, yes: bool) -> Self {
        self.server_agent = yes;
        self
    }

    /// Extra server flags.
    pub fn server_args(mut self, args: &[&str]) -> Self {
        self.server_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Busybox tags to import into every node.
    pub fn images(mut self, tags: &[&str]) -> Self {
        self.images = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// More image archives to import into every node, besides the busybox tags.
    pub fn image_archives(mut self, archives: impl IntoIterator<Item = PathBuf>) -> Self {
        self.image_archives.extend(archives);
        self
    }
}

/// A running test cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The server node.
    pub server: Node,
    /// The agent nodes, in the order given.
    pub agents: Vec<Node>,
    /// HTTPS (TCP) and link (UDP) port of the server.
    pub port: u16,
    /// A kubeconfig reaching the server from the host.
    pub kubeconfig: PathBuf,
    /// The join token.
    pub token: String,
    /// kubectl 1.32 bound to the cluster.
    pub kubectl: Kubectl,
    lan: Lan,
    dir: tempfile::TempDir,
}

/// Server flags for a fast node lifecycle in tests: 1 s heartbeats and monitor period, a
/// node is unreachable after 8 s of silence (eight missed heartbeats: with less, a loaded CI
/// machine that delays a healthy node's heartbeats had its pods evicted too).
pub const FAST_NODE_LIFECYCLE: &[&str] = &[
    "--node-heartbeat-interval",
    "1s",
    "--node-monitor-period",
    "1s",
    "--node-monitor-grace-period",
    "8s",
];

/// Whether the test can run here (root); prints the skip message otherwise.
pub fn can_run(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::skip(&format!(
            "{what} needs root (network namespaces, cgroups, mounts)"
        ));
        return false;
    }
    true
}

fn free_port() -> u16 {
    // Both TCP and UDP must be free: the API and the link share the number.
    loop {
        let port = crate::free_port();
        if std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    /// Starts the cluster and waits until every node is Ready; `None` (after a loud skip) when
    /// not root.
    pub fn start(spec: ClusterSpec) -> Option<Cluster> {
        if !can_run(&spec.label) {
            return None;
        }
        crate::install_crypto();
        let dir = crate::temp_dir(&format!("cluster-{}", spec.label));
        let mut lan = Lan::create().expect("create the test LAN");
        let port = free_port();
        let id = lan::unique_id();
        let server_ns = lan.add_node(2).expect("server namespace");
        let images: Vec<PathBuf> = spec
            .images
            .iter()
            .map(|t| image::busybox(t))
            .chain(spec.image_archives.iter().cloned())
            .collect();
        let seed_images = |data_dir: &std::path::Path| {
            let target = data_dir.join("agent").join("images");
            std::fs::create_dir_all(&target).expect("create the images dir");
            for image in &images {
                let name = image.file_name().expect("image file name");
                std::fs::copy(image, target.join(name)).expect("copy the test image");
            }
        };

        let server_ip = server_ns.ip;
        let server_cgroup = format!("/skiff-test-{id:05x}-server");
        let mut args: Vec<String> = vec![
            "server".into(),
            "--data-dir".into(),
            dir.path().join("server").display().to_string(),
            "--https-listen-port".into(),
            port.to_string(),
            "--bind-address".into(),
            "0.0.0.0".into(),
            "--advertise-address".into(),
            server_ip.to_string(),
            "--node-name".into(),
            "server".into(),
            "--node-ip".into(),
            server_ip.to_string(),
            "--cgroup-parent".into(),
            server_cgroup.clone(),
            "--flannel-backend".into(),
            "host-gw".into(),
            "--netns".into(),
            server_ns.path().display().to_string(),
        ];
        if !spec.server_agent {
            args.push("--disable-agent".into());
        }
        args.extend(spec.server_args.iter().cloned());
        let mut server = Node::new(
            "server",
            Role::Server,
            server_ns,
            dir.path(),
            server_cgroup,
            args,
        );
        if spec.server_agent {
            seed_images(&server.data_dir);
        }
        server.start().expect("start skiff server");

        // Wait for the API and the token.
        let admin = server.data_dir.join("server").join("admin.kubeconfig");
        let token_path = server.data_dir.join("server").join("node-token");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = admin.exists()
                && token_path.exists()
                && std::net::TcpStream::connect((server_ip, port)).is_ok();
            if ready {
                break;
            }
            assert!(
                server.is_running(),
                "skiff server exited:\n{}",
                server.log_tail(80)
            );
            assert!(
                Instant::now() < deadline,
                "skiff server not ready after 60 s:\n{}",
                server.log_tail(80)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let kubeconfig = dir.path().join("kubeconfig");
        let text = std::fs::read_to_string(&admin)
            .expect("read the admin kubeconfig")
            .replace(
                &format!("https://127.0.0.1:{port}"),
                &format!("https://{server_ip}:{port}"),
            );
        std::fs::write(&kubeconfig, text).expect("write the test kubeconfig");
        let token = std::fs::read_to_string(&token_path)
            .expect("read the node token")
            .trim()
            .to_string();

        let mut agents = Vec::new();
        for (i, name) in spec.agents.iter().enumerate() {
            let ns = lan.add_node(11 + i as u8).expect("agent namespace");
            let cgroup = format!("/skiff-test-{id:05x}-{name}");
            let mut args: Vec<String> = vec![
                "agent".into(),
                "--server".into(),
                format!("https://{server_ip}:{port}"),
                "--token".into(),
                token.clone(),
                "--data-dir".into(),
                dir.path().join(name).display().to_string(),
                "--node-name".into(),
                name.clone(),
                "--node-ip".into(),
                ns.ip.to_string(),
                "--cgroup-parent".into(),
                cgroup.clone(),
                "--netns".into(),
                ns.path().display().to_string(),
            ];
            for (who, extra) in &spec.agent_args {
                if who == name {
                    args.extend(extra.iter().cloned());
                }
            }
            let mut agent = Node::new(name, Role::Agent, ns, dir.path(), cgroup, args);
            if let Some((_, size)) = spec.agent_tmpfs.iter().find(|(who, _)| who == name) {
                mount_tmpfs(&agent.data_dir, size);
            }
            seed_images(&agent.data_dir);
            if spec.api_tcp_blocked.contains(name) {
                agent
                    .block_api_tcp(server_ip, port)
                    .expect("block TCP to the API");
            }
            agent.start().expect("start skiff agent");
            agents.push(agent);
        }
        let kubectl = Kubectl::new(std::path::Path::new("/usr/bin/kubectl"), &kubeconfig);
        let cluster = Cluster {
            server,
            agents,
            port,
            kubeconfig,
            token,
            kubectl,
            lan,
            dir,
        };
        let nodes = cluster.agents.len() + usize::from(spec.server_agent);
        cluster.wait_nodes_ready(nodes);
        Some(cluster)
    }

    /// The server's address.
    pub fn server_ip(&self) -> Ipv4Addr {
        self.server.ns.ip
    }

    /// The host's address on the test LAN (outside the cluster).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.lan.host_ip
    }

    /// The cluster's working directory (data dirs, logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The agent named `name`, to look at.
    pub fn node(&self, name: &str) -> &Node {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent named {name}"))
    }

    /// The agent named `name`, to act on.
    pub fn agent(&mut self, name: &str) -> &mut Node {
        self.agents
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent named {name}"))
    }

    /// Runs kubectl.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl.run(args)
    }

    /// Runs kubectl; panics with its output and the nodes' logs when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let run = self.kubectl.run(args);
        assert!(
            run.ok,
            "kubectl {args:?} failed: {}\n{}",
            run.stderr,
            self.logs()
        );
        run.stdout
    }

    /// `kubectl apply -f -` with `yaml`.
    pub fn apply(&self, yaml: &str) {
        let run = self.kubectl.run_with_input(&["apply", "-f", "-"], yaml);
        assert!(run.ok, "kubectl apply failed: {}", run.stderr);
    }

    /// `kubectl get <what> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", "json"]);
        let text = self.kubectl_ok(&full);
        serde_json::from_str(&text).expect("kubectl printed JSON")
    }

    /// Pods of the default namespace matching `selector` (e.g. `app=web`), as JSON objects.
    pub fn pods(&self, selector: &str) -> Vec<serde_json::Value> {
        let list = self.get_json(&["pods", "-l", selector]);
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `check` holds, polling; panics after `timeout` with `what` and the logs.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `count` nodes are Ready.
    pub fn wait_nodes_ready(&self, count: usize) {
        self.wait_for(
            &format!("{count} Ready nodes"),
            Duration::from_secs(90),
            || {
                let run = self.kubectl(&["get", "nodes", "-o", "json"]);
                if !run.ok {
                    return false;
                }
                let Ok(list) = serde_json::from_str::<serde_json::Value>(&run.stdout) else {
                    return false;
                };
                let ready = list["items"]
                    .as_array()
                    .map(|items| items.iter().filter(|n| node_ready(n) == Some(true)).count())
                    .unwrap_or(0);
                ready >= count
            },
        );
    }

    /// The Ready condition of node `name` as the server has it (`None`: no answer or no
    /// condition).
    pub fn node_ready_now(&self, name: &str) -> Option<bool> {
        let run = self.kubectl(&["get", "node", name, "-o", "json"]);
        let node: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
        node_ready(&node)
    }

    /// Per pod of `selector`, sorted: name, first container's id, restart count and start time
    /// — what changes when a container restarts.
    pub fn container_states(&self, selector: &str) -> Vec<(String, String, i64, String)> {
        let mut all: Vec<_> = self
            .pods(selector)
            .iter()
            .map(|p| {
                let cs = &p["status"]["containerStatuses"][0];
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                (
                    text(&p["metadata"]["name"]),
                    text(&cs["containerID"]),
                    cs["restartCount"].as_i64().unwrap_or(-1),
                    text(&cs["state"]["running"]["startedAt"]),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// (name, podIP) of the pods of `selector`.
    pub fn pod_ips(&self, selector: &str) -> Vec<(String, String)> {
        self.pods(selector)
            .iter()
            .map(|p| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                (text(&p["metadata"]["name"]), text(&p["status"]["podIP"]))
            })
            .collect()
    }

    /// Whether every `(pod, ip)` answers HTTP on port 8080 with the pod's name, asked from
    /// inside `node`'s network (works while the node is cut off from the server).
    pub fn pods_answer(&self, node: &str, pods: &[(String, String)]) -> bool {
        pods.iter().all(|(pod, ip)| {
            self.node(node)
                .ns
                .exec(&["wget", "-qO-", "-T", "2", &format!("http://{ip}:8080/")])
                .is_ok_and(|body| body.trim() == pod)
        })
    }

    /// The end of every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in std::iter::once(&self.server).chain(self.agents.iter()) {
            out.push_str(&format!(
                "\n----- {} ({}) -----\n{}\n",
                node.name,
                node.log.display(),
                node.log_tail(60)
            ));
        }
        out
    }
}

/// The status of a node's Ready condition.
pub fn node_ready(node: &serde_json::Value) -> Option<bool> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"] == "True")
}

/// Whether a pod (JSON) is Running with every container ready.
pub fn pod_running(pod: &serde_json::Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "cluster logs (kept in {}):{}",
                self.dir.path().display(),
                self.logs()
            );
        }
        for agent in &mut self.agents {
            agent.clean_up();
        }
        self.server.clean_up();
        if std::thread::panicking() {
            // Keep the logs for a look; the namespaces and mounts are gone anyway.
            let kept = self.dir.path().to_path_buf();
            let dir = std::mem::replace(&mut self.dir, crate::temp_dir("cluster-empty"));
            let _ = dir.keep();
            eprintln!("test cluster files kept in {}", kept.display());
        }
    }
}
