//! Service proxy benchmark (issue 13): rule sync time with many Services (the first full sync,
//! then p50/p99 of syncs after one endpoint or one Service changes), and the data path through
//! a ClusterIP next to the pod IP directly in the same run (short TCP connections: rate and
//! p50 latency; one bulk TCP stream: throughput).
//!
//! Run with `scripts/bench/proxy.sh` (needs root, nft). One simulated node (a network
//! namespace) with two pods, as in the crate's tests.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Cluster, Layout, NameServer, Netns, Pod};
use skiff_link_proto::proto::service::{
    EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary, ServiceSummary,
};
use skiff_net::{Backend, PodNetwork, ProxySettings, ServiceProxy};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and 99th percentile of a sample.
fn median_p99(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn endpoint(ip: Ipv4Addr, port: u16) -> EndpointSummary {
    EndpointSummary {
        addresses: vec![ip.to_string()],
        node_name: Some("node-9".into()),
        ready: true,
        serving: true,
        ports: vec![EndpointPortSummary {
            name: "http".into(),
            protocol: "TCP".into(),
            port,
        }],
        ..Default::default()
    }
}

fn service(i: usize, cluster_ip: Ipv4Addr, endpoints: Vec<EndpointSummary>) -> ServiceSummary {
    ServiceSummary {
        key: ServiceKey {
            namespace: format!("ns{}", i % 20),
            name: format!("svc{i}"),
        },
        cluster_ips: vec![cluster_ip.to_string()],
        ports: vec![ServicePortSummary {
            name: "http".into(),
            protocol: "TCP".into(),
            port: 80,
            node_port: None,
        }],
        endpoints,
        ..Default::default()
    }
}

/// `count` Services × `per` endpoints on addresses of other (simulated) nodes' pod CIDRs.
fn many_services(count: usize, per: usize) -> Vec<ServiceSummary> {
    (0..count)
        .map(|i| {
            let ip = Ipv4Addr::new(10, 43, 100 + (i / 250) as u8, (i % 250) as u8 + 1);
            let eps = (0..per)
                .map(|j| {
                    let n = i * per + j;
                    endpoint(
                        Ipv4Addr::new(10, 42, 100 + (n / 250 % 100) as u8, (n % 250) as u8 + 1),
                        8080,
                    )
                })
                .collect();
            service(i, ip, eps)
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("!!!!! SKIPPED the service proxy benchmark: it needs root !!!!!");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let services_n = env_usize("SKIFF_BENCH_SERVICES", 1000);
    let per = env_usize("SKIFF_BENCH_ENDPOINTS", 10);
    let changes = env_usize("SKIFF_BENCH_CHANGES", 100);
    let conns = env_usize("SKIFF_BENCH_CONNECTIONS", 2000);
    let seconds = env_usize("SKIFF_BENCH_SECONDS", 3);

    let cluster = Cluster::new(Layout::OneL2, 1);
    let node = &cluster.nodes[0];
    let net = PodNetwork::setup(node.config(Backend::HostGw))
        .await
        .expect("setup");
    let server = Pod::new("server");
    let client = Pod::new("client");
    let server_ip = net.attach(&server.request()).await.expect("attach").ip;
    net.attach(&client.request()).await.expect("attach");
    let proxy = ServiceProxy::new(
        &net,
        ProxySettings {
            node_name: node.name.clone(),
            nodeport_addresses: vec![node.ip],
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            local_ips: vec![],
        },
    )
    .await
    .expect("proxy");

    let vip = Ipv4Addr::new(10, 43, 0, 50);
    let (name_port, sink_port) = (9000, 9001);
    let mut services = many_services(services_n, per);
    let mut real = service(services_n, vip, vec![endpoint(server_ip, name_port)]);
    real.ports.push(ServicePortSummary {
        name: "bulk".into(),
        protocol: "TCP".into(),
        port: 81,
        node_port: None,
    });
    real.endpoints[0].ports.push(EndpointPortSummary {
        name: "bulk".into(),
        protocol: "TCP".into(),
        port: sink_port,
    });
    services.push(real);

    println!("## Rule sync ({services_n} Services × {per} endpoints + 1, one node, debug build)\n");
    println!("| operation | p50 | p99 | of which nft (p50) | nft lines |");
    println!("|---|---|---|---|---|");
    let first = proxy.sync(&services).await.expect("first sync");
    assert!(first.full);
    println!(
        "| first (full) sync: {} chains | {:.1} ms | — | {:.1} ms | {} |",
        first.chains,
        first.elapsed.as_secs_f64() * 1e3,
        first.nft.as_secs_f64() * 1e3,
        first.commands
    );
    let mut endpoint_change = Vec::new();
    let mut service_change = Vec::new();
    let mut lines = (0usize, 0usize);
    let mut nft_time = (Vec::new(), Vec::new());
    for round in 0..changes {
        // One endpoint of one Service moves to a new address.
        let i = (round * 7919) % services_n;
        let j = round % per;
        services[i].endpoints[j].addresses = vec![format!("10.42.250.{}", round % 250 + 1)];
        let stats = proxy.sync(&services).await.expect("sync");
        assert!(!stats.full, "{stats:?}");
        lines.0 = stats.commands;
        endpoint_change.push(stats.elapsed.as_secs_f64() * 1e3);
        nft_time.0.push(stats.nft.as_secs_f64() * 1e3);
        // One Service comes (or goes again).
        if round % 2 == 0 {
            services.push(service(
                services_n + 1 + round,
                Ipv4Addr::new(10, 43, 200, (round % 250) as u8 + 1),
                (0..per)
                    .map(|j| endpoint(Ipv4Addr::new(10, 42, 251, j as u8 + 1), 8080))
                    .collect(),
            ));
        } else {
            services.pop();
        }
        let stats = proxy.sync(&services).await.expect("sync");
        assert!(!stats.full, "{stats:?}");
        lines.1 = stats.commands;
        service_change.push(stats.elapsed.as_secs_f64() * 1e3);
        nft_time.1.push(stats.nft.as_secs_f64() * 1e3);
    }
    for (what, samples, nft, n) in [
        ("one endpoint changed", endpoint_change, nft_time.0, lines.0),
        (
            "one Service added or removed",
            service_change,
            nft_time.1,
            lines.1,
        ),
    ] {
        let (p50, p99) = median_p99(samples);
        let (nft50, _) = median_p99(nft);
        println!("| {what} ({changes} times) | {p50:.1} ms | {p99:.1} ms | {nft50:.1} ms | {n} |");
    }

    // Data path: the same server through the ClusterIP and directly.
    let _names = NameServer::start(&server.ns, name_port, "server");
    let _sink = Sink::start(&server.ns, sink_port);
    println!(
        "\n## Data path through a ClusterIP vs the pod IP ({} rules in the table; \
         same node; {conns} short TCP connections, {seconds} s bulk stream, alternating)\n",
        first.chains
    );
    println!("| path | connections/s | connection p50 µs | connection p99 µs | bulk Gbit/s |");
    println!("|---|---|---|---|---|");
    for round in 0..2 {
        for (label, ip, name, bulk) in [
            ("pod IP directly", server_ip, name_port, sink_port),
            ("ClusterIP", vip, 80, 81),
        ] {
            let (rate, p50, p99) =
                short_connections(&client.ns, SocketAddr::from((ip, name)), conns);
            let gbit = bulk_stream(&client.ns, SocketAddr::from((ip, bulk)), seconds);
            println!(
                "| {label} (round {}) | {rate:.0} | {p50:.0} | {p99:.0} | {gbit:.2} |",
                round + 1
            );
        }
    }
}

/// Rate, p50 and p99 (µs) of `count` sequential connect-read-close exchanges (all on one
/// thread inside the client's namespace, so only the network path is measured).
fn short_connections(ns: &Netns, addr: SocketAddr, count: usize) -> (f64, f64, f64) {
    ns.within(|| {
        let started = Instant::now();
        let mut samples = Vec::with_capacity(count);
        let mut answer = Vec::with_capacity(16);
        for _ in 0..count {
            let t = Instant::now();
            let mut stream = TcpStream::connect(addr).expect("short connection");
            answer.clear();
            stream.read_to_end(&mut answer).expect("read name");
            assert!(!answer.is_empty());
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        let (p50, p99) = median_p99(samples);
        (rate, p50, p99)
    })
}

/// Gbit/s of one TCP stream written for `seconds`.
fn bulk_stream(ns: &Netns, addr: SocketAddr, seconds: usize) -> f64 {
    ns.within(|| {
        let mut stream = TcpStream::connect(addr).expect("bulk connect");
        let buf = vec![0u8; 256 * 1024];
        let deadline = Duration::from_secs(seconds as u64);
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < deadline {
            stream.write_all(&buf).expect("bulk write");
            sent += buf.len() as u64;
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut ack = [0u8; 1];
        let _ = stream.read(&mut ack);
        sent as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
    })
}

/// A TCP server reading and discarding everything, one connection at a time.
struct Sink {
    _thread: std::thread::JoinHandle<()>,
}

impl Sink {
    fn start(ns: &Netns, port: u16) -> Self {
        let listener = ns.within(|| TcpListener::bind(("0.0.0.0", port)).expect("bind sink"));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = vec![0u8; 256 * 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                let _ = stream.write_all(b"k");
            }
        });
        Sink { _thread: thread }
    }
}
