//! Test harness: simulated nodes and pods in network namespaces of their own.
//!
//! A "host" namespace plays the network between the nodes (an L2 bridge, or a router between
//! separate subnets) and the outside world; every node is a namespace with an `uplink` veth
//! into it; every pod is a namespace made like `ip netns add` makes a sandbox's. Nothing is
//! created in the namespace the tests run in, and every namespace is deleted by a Drop guard,
//! also when a test fails.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nix::sched::{setns, CloneFlags};
use skiff_net::{Backend, NetworkConfig, PodNetRequest};

/// True when the test may run (root, `ip`, `nft`, `busybox`); otherwise a loud skip, or a
/// failure under SKIFF_E2E_REQUIRED=1 (`skiff_testkit::gate`).
pub(crate) fn root_or_skip(test: &str) -> bool {
    skiff_testkit::gate::require(test, true, &["ip", "nft", "busybox"])
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub(crate) use skiff_testkit::cmd::run_ok as run;
/// A named network namespace, deleted on drop (`skiff_testkit::netns`).
pub(crate) use skiff_testkit::netns::Netns;

/// What skiff leaves in a namespace, for leak checks.
pub(crate) trait CensusExt {
    /// The namespace's resources.
    fn census(&self) -> Census;
}

impl CensusExt for Netns {
    fn census(&self) -> Census {
        let links = self
            .ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
            .collect();
        // IPv4 only: skiff manages no IPv6, and the kernel adds and keeps IPv6 link-local
        // addresses on its own as carriers come and go.
        let addresses = self
            .ip(&["-o", "-4", "addr", "show"])
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(format!("{} {}", f.get(1)?, f.get(3)?))
            })
            .collect();
        let routes = self
            .ip(&["-4", "route", "show", "table", "all"])
            .lines()
            // The carrier flag follows the bridge's ports with a delay; not a resource.
            .map(|l| l.replace(" linkdown", "").trim().to_string())
            .collect();
        let neighbours = self
            .ip(&["neigh", "show", "nud", "permanent"])
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        let ruleset = self.exec(&["nft", "list", "ruleset"]);
        let nft_rules = ruleset
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("table")
                    && !l.starts_with("chain")
                    && !l.starts_with("type")
                    && !l.starts_with("set ")
                    && !l.starts_with("elements")
                    && !l.starts_with('}')
            })
            .map(str::to_string)
            .collect();
        Census {
            links,
            addresses,
            routes,
            neighbours,
            nft_rules,
            nft_tables: ruleset
                .lines()
                .filter(|l| l.starts_with("table"))
                .map(str::to_string)
                .collect(),
        }
    }
}

/// What a namespace holds: links, IPv4 addresses and routes, permanent neighbours, nft rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Census {
    pub links: BTreeSet<String>,
    pub addresses: BTreeSet<String>,
    pub routes: BTreeSet<String>,
    pub neighbours: BTreeSet<String>,
    pub nft_rules: Vec<String>,
    pub nft_tables: BTreeSet<String>,
}

/// How the simulated nodes are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// All nodes on one L2 segment 192.168.50.0/24 (bridge in the host namespace,
    /// host = 192.168.50.1, node i = 192.168.50.(11+i)).
    OneL2,
    /// Each node on its own subnet 192.168.(51+i).0/24 behind the host acting as router
    /// (host = 192.168.(51+i).1, node = 192.168.(51+i).10): no common L2.
    Routed,
}

/// A simulated node.
pub(crate) struct SimNode {
    pub index: usize,
    pub name: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub state_dir: tempfile::TempDir,
    pub ns: Netns,
}

impl SimNode {
    pub(crate) fn config(&self, backend: Backend) -> NetworkConfig {
        let mut c = NetworkConfig::new(
            self.pod_cidr,
            "10.42.0.0/16".parse().unwrap(),
            self.ip,
            self.state_dir.path(),
        );
        c.backend = backend;
        c.netns = Some(self.ns.path.clone());
        c
    }

    pub(crate) fn peer(&self) -> skiff_net::Peer {
        skiff_net::Peer {
            name: self.name.clone(),
            node_ip: self.ip,
            pod_cidr: self.pod_cidr,
        }
    }
}

/// The host namespace plus the nodes.
pub(crate) struct Cluster {
    pub nodes: Vec<SimNode>,
    /// The host's address as each node sees it (the nodes' default gateway).
    pub host_ips: Vec<Ipv4Addr>,
    pub host: Netns,
}

impl Cluster {
    /// The first two nodes' networks, host-gw, each routing to the other's pods.
    pub(crate) async fn host_gw_pair(&self) -> (skiff_net::PodNetwork, skiff_net::PodNetwork) {
        self.pair(skiff_net::Backend::HostGw).await
    }

    /// The first two nodes' networks with `backend`, each routing to the other's pods.
    pub(crate) async fn pair(
        &self,
        backend: skiff_net::Backend,
    ) -> (skiff_net::PodNetwork, skiff_net::PodNetwork) {
        let setup = |node: &SimNode| skiff_net::PodNetwork::setup(node.config(backend));
        let net1 = setup(&self.nodes[0]).await.unwrap();
        let net2 = setup(&self.nodes[1]).await.unwrap();
        net1.sync_peers(&self.peers()).await.unwrap();
        net2.sync_peers(&self.peers()).await.unwrap();
        (net1, net2)
    }

    pub(crate) fn new(layout: Layout, count: usize) -> Self {
        let host = Netns::new("host");
        let mut nodes = Vec::new();
        let mut host_ips = Vec::new();
        if layout == Layout::OneL2 {
            host.ip(&["link", "add", "seg0", "type", "bridge"]);
            host.ip(&["addr", "add", "192.168.50.1/24", "dev", "seg0"]);
            host.ip(&["link", "set", "seg0", "up"]);
        } else {
            host.sysctl("net/ipv4/ip_forward", "1");
        }
        for i in 0..count {
            let ns = Netns::new(&format!("n{}", i + 1));
            let hside = format!("h{}", i + 1);
            host.ip(&[
                "link", "add", &hside, "type", "veth", "peer", "name", "uplink", "netns", &ns.name,
            ]);
            let (node_ip, host_ip) = match layout {
                Layout::OneL2 => {
                    host.ip(&["link", "set", &hside, "master", "seg0"]);
                    (
                        Ipv4Addr::new(192, 168, 50, 11 + i as u8),
                        Ipv4Addr::new(192, 168, 50, 1),
                    )
                }
                Layout::Routed => {
                    let net = 51 + i as u8;
                    host.ip(&["addr", "add", &format!("192.168.{net}.1/24"), "dev", &hside]);
                    (
                        Ipv4Addr::new(192, 168, net, 10),
                        Ipv4Addr::new(192, 168, net, 1),
                    )
                }
            };
            host.ip(&["link", "set", &hside, "up"]);
            ns.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", "uplink"]);
            ns.ip(&["link", "set", "uplink", "up"]);
            ns.ip(&["route", "add", "default", "via", &host_ip.to_string()]);
            nodes.push(SimNode {
                index: i,
                name: format!("node-{}", i + 1),
                ip: node_ip,
                pod_cidr: format!("10.42.{}.0/24", i + 1).parse().unwrap(),
                state_dir: tempfile::tempdir().expect("state dir"),
                ns,
            });
            host_ips.push(host_ip);
        }
        Cluster {
            nodes,
            host_ips,
            host,
        }
    }

    pub(crate) fn peers(&self) -> Vec<skiff_net::Peer> {
        self.nodes.iter().map(SimNode::peer).collect()
    }
}

/// A pod sandbox: a network namespace and a uid.
pub(crate) struct Pod {
    pub uid: String,
    pub name: String,
    pub ns: Netns,
}

/// Numbers the pods of this process (their uids).
static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Pod {
    pub(crate) fn new(name: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let ns = Netns::new("pod");
        Pod {
            uid: format!("{:08x}-{n:04x}-4000-8000-{:012x}", std::process::id(), n),
            name: name.to_string(),
            ns,
        }
    }

    pub(crate) fn request(&self) -> PodNetRequest {
        PodNetRequest {
            uid: self.uid.clone(),
            namespace: "default".into(),
            name: self.name.clone(),
            netns: self.ns.path.clone(),
            host_ports: Vec::new(),
        }
    }
}

/// `busybox httpd` serving `/cgi-bin/ip`, which answers the client address it sees.
pub(crate) struct Httpd {
    child: Child,
    _root: tempfile::TempDir,
}

impl Httpd {
    pub(crate) fn start(ns: &Netns, port: u16) -> Self {
        let root = tempfile::tempdir().expect("httpd root");
        let cgi = root.path().join("cgi-bin");
        std::fs::create_dir(&cgi).unwrap();
        let script = cgi.join("ip");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"Content-Type: text/plain\"\necho \"\"\necho \"$REMOTE_ADDR\"\n",
        )
        .unwrap();
        run(&["chmod", "755", script.to_str().unwrap()]);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "busybox", "httpd", "-f"])
            .arg("-p")
            .arg(format!("0.0.0.0:{port}"))
            .arg("-h")
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn busybox httpd");
        let httpd = Httpd { child, _root: root };
        let deadline = Instant::now() + Duration::from_secs(5);
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while http_get(ns, local).is_err() {
            assert!(
                Instant::now() < deadline,
                "httpd in {} did not start",
                ns.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        httpd
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /cgi-bin/ip from inside `ns`; returns the body (the address the server saw).
pub(crate) fn http_get(ns: &Netns, addr: SocketAddr) -> Result<String, String> {
    http_get_within(ns, addr, Duration::from_secs(2))
}

/// Panics unless a GET to `addr` from `ns` fails (refused, or no answer within 500 ms).
pub(crate) fn assert_unreachable(ns: &Netns, addr: SocketAddr) {
    if let Ok(body) = http_get_within(ns, addr, Duration::from_millis(500)) {
        panic!("{addr} still answers from {}: {body}", ns.name);
    }
}

fn http_get_within(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    ns.within(|| {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /cgi-bin/ip HTTP/1.0\r\n\r\n")
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .or_else(|| response.split_once("\n\n"))
            .ok_or_else(|| format!("no HTTP response from {addr}: {response:?}"))?;
        if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
            return Err(format!("{addr} answered {head:?}"));
        }
        Ok(body.trim().to_string())
    })
}

/// Asks the httpd at `addr` from `ns` which client address it sees, panicking on failure.
pub(crate) fn seen_from(ns: &Netns, addr: SocketAddr) -> Ipv4Addr {
    let body = http_get(ns, addr).unwrap_or_else(|e| panic!("from {}: {e}", ns.name));
    body.parse()
        .unwrap_or_else(|_| panic!("from {}: unexpected answer {body:?}", ns.name))
}

/// A UDP server in a namespace that answers every datagram with the sender's address.
pub(crate) struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpEcho {
    pub(crate) fn start(ns: &Netns, port: u16) -> Self {
        let file = File::open(&ns.path).expect("open netns");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            let socket = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp echo");
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(peer.ip().to_string().as_bytes(), peer);
                }
            }
        });
        ready_rx.recv().expect("udp echo ready");
        UdpEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends a datagram to `addr` from `ns`; returns the address the echo server saw.
pub(crate) fn udp_ask(ns: &Netns, addr: SocketAddr) -> Result<String, String> {
    ns.within(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            socket
                .send_to(b"who", addr)
                .map_err(|e| format!("send to {addr}: {e}"))?;
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        Err(format!("no UDP answer from {addr}"))
    })
}

/// Panics if any of `links` exists in the namespace the tests run in: the tests must only
/// ever create interfaces inside their own namespaces.
pub(crate) fn assert_absent_from_own_namespace(links: &[String]) {
    let own = run(&["ip", "-o", "link", "show"]);
    for name in links {
        assert!(
            !own.contains(&format!(": {name}:")) && !own.contains(&format!(": {name}@")),
            "{name} leaked into the test runner's own network namespace"
        );
    }
}

/// `addr:port`.
pub(crate) fn sock(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((addr, port))
}

/// A TCP server in a namespace that answers every connection with its name and closes it
/// (tells which endpoint of a Service served a connection).
pub(crate) struct NameServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NameServer {
    pub(crate) fn start(ns: &Netns, port: u16, name: &str) -> Self {
        let file = File::open(&ns.path).expect("open netns");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind");
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ready_rx.recv().expect("name server ready");
        NameServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` from `ns` and reads what the server says (a [`NameServer`]'s name).
pub(crate) fn ask_name(ns: &Netns, addr: SocketAddr) -> Result<String, std::io::Error> {
    ns.within(|| {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
}

/// Whether a TCP connection from `ns` to `addr` is established within `timeout`.
pub(crate) fn tcp_connects(ns: &Netns, addr: SocketAddr, timeout: Duration) -> bool {
    ns.within(|| TcpStream::connect_timeout(&addr, timeout).is_ok())
}

/// A UDP server in a namespace that answers every datagram with its name (tells which
/// endpoint of a Service a datagram reached).
pub(crate) struct UdpName {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpName {
    pub(crate) fn start(ns: &Netns, port: u16, name: &str) -> Self {
        let file = File::open(&ns.path).expect("open netns");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            let socket = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp name server");
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(name.as_bytes(), peer);
                }
            }
        });
        ready_rx.recv().expect("udp name server ready");
        UdpName {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpName {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP client in a namespace that keeps its source port (as DNS resolvers, syslog and QUIC
/// do) and sends a datagram to one address every `period`, keeping the answers it gets.
pub(crate) struct UdpClient {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    answers: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UdpClient {
    pub(crate) fn start(ns: &Netns, source_port: u16, to: SocketAddr, period: Duration) -> Self {
        let file = File::open(&ns.path).expect("open netns");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, count, seen) = (stop.clone(), sent.clone(), answers.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            let socket = UdpSocket::bind(("0.0.0.0", source_port)).expect("bind udp client");
            socket.set_read_timeout(Some(period)).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if socket.send_to(b"who", to).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                let until = Instant::now() + period;
                while Instant::now() < until {
                    if let Ok((n, _)) = socket.recv_from(&mut buf) {
                        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                        seen.lock().unwrap().push(answer);
                    }
                }
            }
        });
        ready_rx.recv().expect("udp client ready");
        UdpClient {
            stop,
            sent,
            answers,
            thread: Some(thread),
        }
    }

    /// Datagrams sent so far.
    pub(crate) fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Answers received so far, in order.
    pub(crate) fn answers(&self) -> Vec<String> {
        self.answers.lock().unwrap().clone()
    }
}

impl Drop for UdpClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
