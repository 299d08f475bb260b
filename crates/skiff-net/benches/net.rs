//! Networking benchmarks (issue 7): the time `attach` adds to a pod start, and pod-to-pod TCP
//! throughput (iperf3) and latency (1-byte TCP ping-pong) on one node and across nodes
//! (host-gw and VXLAN), each compared with node-to-node over the same links.
//!
//! Run with `scripts/bench/net.sh` (needs root, iperf3, busybox). Simulated nodes are network
//! namespaces joined by veth pairs to a bridge, exactly as in the crate's tests.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, Layout, Netns, Pod};
use skiff_net::{Backend, HostPort, PodNetwork, Protocol};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and 99th percentile of a sample, in the sample's unit.
fn median_p99(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("!!!!! SKIPPED the networking benchmark: it needs root !!!!!");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pods = env_usize("SKIFF_BENCH_PODS", 200);
    let seconds = env_usize("SKIFF_BENCH_SECONDS", 5);
    let pings = env_usize("SKIFF_BENCH_PINGS", 5000);
    let rounds = env_usize("SKIFF_BENCH_ROUNDS", 3).max(1);

    println!("## attach latency ({pods} pods, sequential, one node)\n");
    println!("| operation | median | p99 | mean |");
    println!("|---|---|---|---|");
    runtime.block_on(attach_latency(pods));

    println!(
        "\n## TCP throughput (one iperf3 stream, {seconds} s) and latency ({pings} 1-byte \
         ping-pongs), median of {rounds} interleaved rounds\n"
    );
    println!("| path | backend | Gbit/s: median (rounds) | vs node-to-node, same round (median) | RTT median µs | RTT p99 µs |");
    println!("|---|---|---|---|---|---|");
    for backend in [Backend::HostGw, Backend::vxlan()] {
        runtime.block_on(throughput(backend, seconds, pings, rounds));
    }
}

async fn attach_latency(count: usize) {
    let cluster = Cluster::new(Layout::OneL2, 1);
    let node = &cluster.nodes[0];
    let net = PodNetwork::setup(node.config(Backend::HostGw))
        .await
        .expect("setup");
    let pods: Vec<Pod> = (0..count).map(|i| Pod::new(&format!("b{i}"))).collect();
    for (label, with_port) in [("attach", false), ("attach with a hostPort", true)] {
        let mut attach = Vec::new();
        let mut detach = Vec::new();
        for (i, pod) in pods.iter().enumerate() {
            let mut request = pod.request();
            if with_port {
                request.host_ports.push(HostPort {
                    host_port: 20000 + i as u16,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None,
                });
            }
            let t = Instant::now();
            net.attach(&request).await.expect("attach");
            attach.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for pod in &pods {
            let t = Instant::now();
            net.detach(&pod.uid).await.expect("detach");
            detach.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for (what, samples) in [
            (label.to_string(), attach),
            (format!("detach (after {label})"), detach),
        ] {
            let mean = samples.iter().sum::<f64>() / samples.len() as f64;
            let (median, p99) = median_p99(samples);
            println!("| {what} | {median:.2} ms | {p99:.2} ms | {mean:.2} ms |");
        }
    }
}

/// One measured path: a server namespace/address and a client namespace.
struct PathCase<'a> {
    label: &'static str,
    server: &'a Netns,
    server_ip: Ipv4Addr,
    client: &'a Netns,
}

async fn throughput(backend: Backend, seconds: usize, pings: usize, rounds: usize) {
    let cluster = Cluster::new(Layout::OneL2, 2);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let net1 = PodNetwork::setup(n1.config(backend))
        .await
        .expect("setup n1");
    let net2 = PodNetwork::setup(n2.config(backend))
        .await
        .expect("setup n2");
    net1.sync_peers(&cluster.peers()).await.expect("peers n1");
    net2.sync_peers(&cluster.peers()).await.expect("peers n2");
    let a = Pod::new("a");
    let b = Pod::new("b");
    let c = Pod::new("c");
    net1.attach(&a.request()).await.expect("attach a");
    let ib = net1.attach(&b.request()).await.expect("attach b").ip;
    let ic = net2.attach(&c.request()).await.expect("attach c").ip;

    let mut cases = vec![PathCase {
        label: "node to node (reference)",
        server: &n2.ns,
        server_ip: n2.ip,
        client: &n1.ns,
    }];
    if backend == Backend::HostGw {
        cases.push(PathCase {
            label: "pod to pod, same node",
            server: &b.ns,
            server_ip: ib,
            client: &a.ns,
        });
    }
    cases.push(PathCase {
        label: "pod to pod, across nodes",
        server: &c.ns,
        server_ip: ic,
        client: &a.ns,
    });

    // Interleave the paths round by round so that load from elsewhere hits them alike; report
    // the median of the rounds.
    let mut gbps = vec![Vec::new(); cases.len()];
    let mut rtt = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            gbps[i].push(iperf3(case.server, case.client, case.server_ip, seconds));
            rtt[i].push(ping_pong(case.server, case.client, case.server_ip, pings));
        }
    }
    let median = |v: &[f64]| median_p99(v.to_vec()).0;
    for (i, case) in cases.iter().enumerate() {
        let throughput = median(&gbps[i]);
        // Each round's path against the reference measured moments before it, then the
        // median of those ratios: robust to load that changes from round to round.
        let ratio = median(
            &gbps[i]
                .iter()
                .zip(&gbps[0])
                .map(|(g, r)| g / r)
                .collect::<Vec<_>>(),
        );
        let rtt_median = median(&rtt[i].iter().map(|r| r.0).collect::<Vec<_>>());
        let rtt_p99 = median(&rtt[i].iter().map(|r| r.1).collect::<Vec<_>>());
        let spread = gbps[i]
            .iter()
            .map(|g| format!("{g:.1}"))
            .collect::<Vec<_>>()
            .join(" / ");
        println!(
            "| {} | {backend} | {throughput:.2} ({spread}) | {:.0}% | {rtt_median:.0} | {rtt_p99:.0} |",
            case.label,
            ratio * 100.0
        );
    }
}

/// Throughput in Gbit/s of one TCP stream from `client` to `server_ip` (iperf3).
fn iperf3(server: &Netns, client: &Netns, server_ip: Ipv4Addr, seconds: usize) -> f64 {
    let port = "5201";
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &server.name, "iperf3", "-s", "-p", port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn iperf3 server");
    // Wait until it listens (a probe connection would count as an iperf3 client).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ss = Command::new("ip")
            .args([
                "netns",
                "exec",
                &server.name,
                "ss",
                "-Hltn",
                "sport",
                "=",
                ":5201",
            ])
            .output()
            .expect("run ss");
        if !ss.stdout.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "iperf3 server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = Command::new("ip")
        .args(["netns", "exec", &client.name, "iperf3", "-J", "-c"])
        .arg(server_ip.to_string())
        .args(["-p", port, "-t", &seconds.to_string()])
        .output()
        .expect("run iperf3 client");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("iperf3 JSON report");
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 failed: {report}"))
        / 1e9
}

/// Round-trip times (µs) of 1-byte request/response exchanges over one TCP connection.
fn ping_pong(server: &Netns, client: &Netns, server_ip: Ipv4Addr, count: usize) -> (f64, f64) {
    let port = 5301;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            server.within(|| {
                let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind ping server");
                ready_tx.send(()).expect("signal ready");
                let (mut conn, _) = listener.accept().expect("accept ping client");
                conn.set_nodelay(true).expect("nodelay");
                let mut byte = [0u8; 1];
                while conn.read_exact(&mut byte).is_ok() {
                    if conn.write_all(&byte).is_err() {
                        break;
                    }
                }
            })
        });
        ready_rx.recv().expect("ping server ready");
        client.within(|| {
            let mut conn = TcpStream::connect(SocketAddr::from((server_ip, port)))
                .expect("connect ping server");
            conn.set_nodelay(true).expect("nodelay");
            let mut byte = [7u8; 1];
            let mut samples = Vec::with_capacity(count);
            for i in 0..count + count / 10 {
                let t = Instant::now();
                conn.write_all(&byte).expect("ping");
                conn.read_exact(&mut byte).expect("pong");
                if i >= count / 10 {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            median_p99(samples)
        })
    })
}
