//! Issue 4 acceptance, end to end: the real `skiff server` binary in the host network
//! namespace, and a node link client in a second network namespace on a test LAN (its own
//! IP). The node joins with the token alone and `kubectl get nodes` shows it Ready with its
//! labels and taints; each join failure shows its message on both sides; after a server restart
//! (graceful, and kill -9) the node reconnects within seconds; after its UDP socket moves to a
//! new address the session continues.
//!
//! Needs root (network namespaces). Without root it skips loudly, unless
//! `SKIFF_E2E_REQUIRED=1`, where it fails (`skiff_testkit::gate`).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use skiff_link::quic::{AgentLink, AgentLinkConfig, AgentLinkEvent, LinkError, NoLogs};
use skiff_testkit::gate;
use skiff_testkit::netns::{Lan, NodeNs};

/// The node's network: a test LAN (`skiff_testkit::netns`) with the host at `.1` and the
/// node's namespace at `.2`, plus `.3` on the same interface (where the agent's socket moves).
/// Removed on drop.
struct NetNs {
    _lan: Lan,
    node: NodeNs,
    host_ip: Ipv4Addr,
    ns_ips: [Ipv4Addr; 2],
}

impl NetNs {
    fn create() -> Result<NetNs, String> {
        let mut lan = Lan::create()?;
        let node = lan.add_node(2)?;
        let moved = lan.address(3);
        node.add_address(moved)?;
        Ok(NetNs {
            host_ip: lan.host_ip,
            ns_ips: [node.ip, moved],
            node,
            _lan: lan,
        })
    }

    fn path(&self) -> PathBuf {
        self.node.path()
    }
}

/// The real `skiff server` as a child process.
struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    advertise: Ipv4Addr,
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &Path, advertise: Ipv4Addr, port: Option<u16>) -> Server {
        let mut last = String::new();
        for _ in 0..5 {
            let port = port.unwrap_or_else(free_port);
            let log = data_dir.with_extension(format!("log.{port}"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .args(["server", "--disable-agent", "--bind-address", "0.0.0.0"])
                .arg("--advertise-address")
                .arg(advertise.to_string())
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--https-listen-port")
                .arg(port.to_string())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("spawn skiff server");
            let mut server = Server {
                child: Some(child),
                data_dir: data_dir.to_path_buf(),
                port,
                advertise,
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                    server.child = None;
                    last = format!("exited with {status}: {}", server.log_text());
                    break;
                }
                if server.log_text().contains("node link listening") {
                    return server;
                }
                if Instant::now() > deadline {
                    panic!("server not ready: {}", server.log_text());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if port_given(port) {
                // A fixed port (restart) must be reused; wait for it to be free.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!("skiff server did not start: {last}");
    }

    fn url(&self) -> String {
        format!("https://{}:{}", self.advertise, self.port)
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server/node-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("server/admin.kubeconfig")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn skiff(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn port_given(_: u16) -> bool {
    true
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    tcp.local_addr().unwrap().port()
}

/// Commands to the agent thread.
enum ToAgent {
    /// Move the link's socket to this local address.
    Rebind(SocketAddr),
    Stop,
}

/// A node link client running on its own thread inside the network namespace.
struct NsAgent {
    events: mpsc::Receiver<Result<AgentLinkEvent, String>>,
    commands: tokio::sync::mpsc::UnboundedSender<ToAgent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn registration(name: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"zone": "lab", "skiff.dev/test": "netns"}},
        "spec": {"taints": [{"key": "dedicated", "value": "edge", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"}
        }
    }))
    .unwrap()
}

impl NsAgent {
    /// Starts the link in `netns`; returns the join error, if the join fails.
    fn start(
        netns: &Path,
        server: &str,
        token: Option<String>,
        dir: &Path,
        name: &str,
    ) -> Result<NsAgent, String> {
        let (events_tx, events) = mpsc::channel();
        let (commands, mut commands_rx) = tokio::sync::mpsc::unbounded_channel();
        let (started_tx, started) = mpsc::channel::<Result<(), String>>();
        let netns = netns.to_path_buf();
        let mut config = AgentLinkConfig::new(server, token, dir.to_path_buf(), registration(name));
        config.backoff =
            skiff_link::quic::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let thread = std::thread::spawn(move || {
            let file = match std::fs::File::open(&netns) {
                Ok(f) => f,
                Err(e) => {
                    let _ = started_tx.send(Err(format!("open {}: {e}", netns.display())));
                    return;
                }
            };
            // SAFETY: setns(2) on this thread only, with a namespace file we hold open.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let _ = started_tx.send(Err(format!("setns: {}", std::io::Error::last_os_error())));
                return;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (link, mut link_events) =
                    match AgentLink::start(config, None, Arc::new(NoLogs("test".into()))).await {
                        Ok(ok) => ok,
                        Err(error) => {
                            let message = match &error {
                                LinkError::JoinRefused { message, .. } => format!("refused: {message}"),
                                other => other.to_string(),
                            };
                            let _ = started_tx.send(Err(message));
                            return;
                        }
                    };
                let _ = started_tx.send(Ok(()));
                loop {
                    tokio::select! {
                        event = link_events.recv() => match event {
                            Some(event) => { let _ = events_tx.send(Ok(event)); }
                            None => break,
                        },
                        command = commands_rx.recv() => match command {
                            Some(ToAgent::Rebind(addr)) => {
                                let result = std::net::UdpSocket::bind(addr)
                                    .map_err(|e| e.to_string())
                                    .and_then(|socket| link.rebind(socket).map_err(|e| e.to_string()));
                                if let Err(error) = result {
                                    let _ = events_tx.send(Err(error));
                                }
                            }
                            Some(ToAgent::Stop) | None => break,
                        },
                    }
                }
                link.shutdown().await;
            });
        });
        match started.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(NsAgent {
                events,
                commands,
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => Err("the agent did not start within 30 s".into()),
        }
    }

    /// Waits for an event matching `want`, failing on timeout; returns every event seen.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&AgentLinkEvent) -> bool,
    ) -> Vec<AgentLinkEvent> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(event)) => {
                    let done = want(&event);
                    seen.push(event);
                    if done {
                        return seen;
                    }
                }
                Ok(Err(error)) => panic!("agent error while waiting for {what}: {error}"),
                Err(_) => panic!("timed out waiting for {what}; saw {seen:?}"),
            }
        }
    }

    /// Events that arrived so far.
    fn drain(&self) -> Vec<AgentLinkEvent> {
        let mut seen = Vec::new();
        while let Ok(Ok(event)) = self.events.try_recv() {
            seen.push(event);
        }
        seen
    }
}

impl Drop for NsAgent {
    fn drop(&mut self) {
        let _ = self.commands.send(ToAgent::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn node_json(server: &Server, name: &str) -> serde_json::Value {
    serde_json::from_str(&server.kubectl(&["get", "node", name, "-o", "json"])).unwrap()
}

fn is_ready(node: &serde_json::Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

#[test]
fn node_in_another_netns_joins_survives_restarts_and_migrates() {
    if !gate::require_root("the network-namespace link test") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let netns = match NetNs::create() {
        Ok(ns) => ns,
        Err(error) => return gate::skip(&format!("cannot create a network namespace: {error}")),
    };
    let work = tempfile::tempdir().unwrap();
    let mut server = Server::start(&work.path().join("data"), netns.host_ip, None);
    let token = server.token();

    // 1. Join with the token alone; kubectl shows the node Ready with labels and taints.
    let agent_dir = work.path().join("agent");
    let agent = NsAgent::start(
        &netns.path(),
        &server.url(),
        Some(token.clone()),
        &agent_dir,
        "edge-ns",
    )
    .unwrap_or_else(|e| panic!("join failed: {e}\nserver log:\n{}", server.log_text()));
    agent.wait_for("registration", Duration::from_secs(20), |e| {
        matches!(e, AgentLinkEvent::Registered { .. })
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        let node = node_json(&server, "edge-ns");
        if is_ready(&node) {
            break node;
        }
        assert!(Instant::now() < deadline, "node not Ready: {node}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(node["metadata"]["labels"]["zone"], "lab");
    assert_eq!(node["spec"]["taints"][0]["key"], "dedicated");
    assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
    let table = server.kubectl(&["get", "nodes"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("edge-ns"))
        .unwrap_or_default();
    assert!(line.split_whitespace().nth(1) == Some("Ready"), "{table}");
    assert!(
        server.log_text().contains("edge-ns"),
        "the server logs the join"
    );

    // Join failures, each with its message on the agent and in the server log.
    let failing = |what: &str, token: String, name: &str, expect: &str| {
        let dir = work.path().join(format!("fail-{}", what.replace(' ', "-")));
        let error = match NsAgent::start(&netns.path(), &server.url(), Some(token), &dir, name) {
            Ok(_) => panic!("{what}: the join should fail"),
            Err(error) => error,
        };
        assert!(error.contains(expect), "{what}: {error}");
        assert!(
            !dir.join("tls/node.crt").exists(),
            "{what}: no certificate may be issued"
        );
        error
    };
    let (pin, credentials) = token.split_once("::").unwrap();
    let (id, _secret) = credentials.split_once('.').unwrap();
    failing(
        "wrong secret",
        format!("{pin}::{id}.notthesecret0000"),
        "n-wrong",
        // One refusal for every bad token, so a prober learns nothing; the server logs why.
        "the join token is not valid",
    );
    failing(
        "wrong ca",
        format!("K10{}::{credentials}", "ab".repeat(32)),
        "n-pin",
        "does not match the token",
    );
    let created = server.skiff(&[
        "token",
        "create",
        "--ttl",
        "1h",
        "--description",
        "revoke-me",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let revoked = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let revoked_id = revoked
        .split("::")
        .nth(1)
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let listed = String::from_utf8_lossy(&server.skiff(&["token", "list"]).stdout).into_owned();
    assert!(
        listed.contains(&revoked_id) && listed.contains("revoke-me"),
        "{listed}"
    );
    assert!(server
        .skiff(&["token", "revoke", &revoked_id])
        .status
        .success());
    failing(
        "revoked",
        revoked,
        "n-revoked",
        "the join token is not valid",
    );
    let short = server.skiff(&["token", "create", "--ttl", "1s"]);
    let short = String::from_utf8_lossy(&short.stdout).trim().to_string();
    std::thread::sleep(Duration::from_millis(2100));
    failing("expired", short, "n-expired", "the join token is not valid");
    failing("name taken", token.clone(), "edge-ns", "already taken");
    let log = server.log_text();
    for expected in [
        "wrong secret",
        "unknown or was revoked",
        "expired",
        "already taken",
    ] {
        assert!(
            log.contains(expected),
            "server log lacks {expected:?}:\n{log}"
        );
    }

    // 2a. Graceful restart: the node is back within seconds.
    let port = server.port;
    agent.drain();
    server.stop();
    agent.wait_for("disconnect", Duration::from_secs(10), |e| {
        matches!(e, AgentLinkEvent::Disconnected { .. })
    });
    let restarted = Instant::now();
    server = Server::start(&work.path().join("data"), netns.host_ip, Some(port));
    agent.wait_for("reconnect after restart", Duration::from_secs(10), |e| {
        matches!(e, AgentLinkEvent::Connected { .. })
    });
    let graceful = restarted.elapsed();

    // 2b. kill -9: the new process resets the old connection (stateless reset), no idle wait.
    server.kill9();
    let killed = Instant::now();
    server = Server::start(&work.path().join("data"), netns.host_ip, Some(port));
    agent.wait_for("reconnect after kill -9", Duration::from_secs(15), |e| {
        matches!(e, AgentLinkEvent::Connected { .. })
    });
    let after_kill = killed.elapsed();
    eprintln!("reconnected {graceful:?} after a graceful restart, {after_kill:?} after kill -9");
    assert!(
        graceful < Duration::from_secs(5),
        "graceful restart: {graceful:?}"
    );
    // After kill -9 the agent learns of it at its next packet (heartbeat, every 10 s): the new
    // process answers it with a stateless reset and the agent reconnects at once.
    assert!(
        after_kill < Duration::from_secs(15),
        "kill -9 restart: {after_kill:?}"
    );

    // 2c. The agent's socket moves to another address: the session continues.
    agent.wait_for("registration after restart", Duration::from_secs(10), |e| {
        matches!(e, AgentLinkEvent::Registered { .. })
    });
    agent.drain();
    agent
        .commands
        .send(ToAgent::Rebind(SocketAddr::from((netns.ns_ips[1], 0))))
        .unwrap();
    // A pod bound to the node after the move reaches it over the same session.
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-move", "namespace": "default"},
        "spec": {"nodeName": "edge-ns", "containers": [{"name": "c", "image": "busybox"}]}
    });
    std::thread::sleep(Duration::from_millis(500));
    let manifest = work.path().join("pod.json");
    std::fs::write(&manifest, pod.to_string()).unwrap();
    server.kubectl(&["create", "-f", manifest.to_str().unwrap()]);
    let seen = agent.wait_for("the pod after the move", Duration::from_secs(15), |e| {
        matches!(e, AgentLinkEvent::Pods(_))
    });
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            AgentLinkEvent::Disconnected { .. } | AgentLinkEvent::Connected { .. }
        )),
        "the session must survive the address change: {seen:?}"
    );
    let log = server.log_text();
    let after = log.rsplit("node session open").next().unwrap_or_default();
    assert!(
        !after.contains("node session closed"),
        "server saw the session end:\n{log}"
    );
    drop(agent);
    server.stop();
}
