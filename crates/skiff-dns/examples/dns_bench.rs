//! The cluster DNS benchmark (docs/benchmarks.md, "Cluster DNS"): a resolver holding N Services,
//! and a closed-loop load generator that asks their names and reports queries per second and
//! latency percentiles, so the built-in resolver and dnsmasq are measured by the same client.
//!
//! ```text
//! dns_bench serve ADDR N              # serve N Services (svc-I.ns-J.svc.cluster.local) until killed
//! dns_bench hosts N                   # print dnsmasq --host-record lines for the same names
//! dns_bench load ADDR N SECONDS THREADS
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use skiff_dns::{ClusterDns, DnsConfig};
use skiff_link_proto::proto::service::{ServiceKey, ServiceSummary};

fn name(i: usize) -> String {
    format!("svc-{i}.ns-{}.svc.cluster.local", i % 10)
}

fn ip(i: usize) -> String {
    format!("10.43.{}.{}", i / 250, i % 250 + 1)
}

fn services(n: usize) -> Vec<ServiceSummary> {
    (0..n)
        .map(|i| ServiceSummary {
            key: ServiceKey {
                namespace: format!("ns-{}", i % 10),
                name: format!("svc-{i}"),
            },
            cluster_ips: vec![ip(i)],
            ..Default::default()
        })
        .collect()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {what}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(arg(&args, 2, "ADDR"), arg(&args, 3, "N")),
        Some("hosts") => {
            for i in 0..arg::<usize>(&args, 2, "N") {
                println!("host-record={},{}", name(i), ip(i));
            }
        }
        Some("load") => load(
            arg(&args, 2, "ADDR"),
            arg(&args, 3, "N"),
            arg(&args, 4, "SECONDS"),
            arg(&args, 5, "THREADS"),
        ),
        _ => eprintln!("usage: dns_bench serve ADDR N | hosts N | load ADDR N SECONDS THREADS"),
    }
}

fn serve(addr: SocketAddr, n: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let before = skiff_testkit::measure::rss_mib();
        let dns = ClusterDns::start(DnsConfig {
            listen: vec![addr],
            upstreams: Vec::new(),
            ..Default::default()
        })
        .await
        .expect("start");
        let started = skiff_testkit::measure::rss_mib();
        let t0 = Instant::now();
        dns.update(&services(n));
        let built = t0.elapsed();
        let updated = skiff_testkit::measure::rss_mib();
        println!(
            "serving {n} services on {:?}: RSS {before:.1} MiB before start, {started:.1} after \
             start, {updated:.1} after the update (zone built in {built:?})",
            dns.local_addrs()
        );
        std::future::pending::<()>().await;
    });
}

fn load(addr: SocketAddr, n: usize, seconds: u64, threads: usize) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                socket.connect(addr).expect("connect");
                socket
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .expect("timeout");
                let mut latencies = Vec::new();
                let (mut errors, mut lost) = (0u64, 0u64);
                let mut buf = [0u8; 1500];
                let mut i = t;
                while Instant::now() < deadline {
                    let id = (i % 65536) as u16;
                    let mut request = Message::new(id, MessageType::Query, OpCode::Query);
                    request.metadata.recursion_desired = true;
                    request.add_query(Query::query(
                        Name::from_ascii(format!("{}.", name(i % n))).expect("name"),
                        RecordType::A,
                    ));
                    let bytes = request.to_vec().expect("encode");
                    let start = Instant::now();
                    socket.send(&bytes).expect("send");
                    match socket.recv(&mut buf) {
                        Ok(len) => {
                            latencies.push(start.elapsed());
                            match Message::from_vec(&buf[..len]) {
                                Ok(r)
                                    if r.metadata.id == id
                                        && r.metadata.response_code == ResponseCode::NoError
                                        && r.answers.len() == 1 => {}
                                _ => errors += 1,
                            }
                        }
                        Err(_) => lost += 1,
                    }
                    i += threads;
                }
                (latencies, errors, lost)
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut lost) = (0, 0);
    for h in handles {
        let (l, e, x) = h.join().expect("thread");
        all.extend(l);
        errors += e;
        lost += x;
    }
    all.sort();
    let q = |p| skiff_testkit::measure::quantile(&all, p);
    println!(
        "{addr}: {} answers in {seconds} s = {:.0} qps; latency p50 {:?} p99 {:?} max {:?}; \
         {errors} wrong, {lost} lost",
        all.len(),
        all.len() as f64 / seconds as f64,
        q(0.5),
        q(0.99),
        all.last().copied().unwrap_or_default()
    );
}
