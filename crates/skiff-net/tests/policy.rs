//! NetworkPolicy enforcement on simulated nodes (network namespaces joined by a bridge,
//! host-gw and VXLAN): real nftables, pods in namespaces of their own, servers on threads
//! inside them. Needs root; skips loudly otherwise.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ipnet::Ipv4Net;
use skiff_link_proto::proto::policy::{
    PodPolicy, PolicyPeer, PolicyPort, PolicyProtocol, PolicyRule,
};
use skiff_link_proto::proto::service::{
    EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary, ServiceSummary,
};
use skiff_net::{
    Backend, CleanupConfig, PodNetwork, PolicyEnforcer, ProxySettings, ServiceProxy, POLICY_TABLE,
};

const TCP_A: u16 = 9000;
const TCP_B: u16 = 9001;
const TCP_RANGE: u16 = 9105;
const UDP_PORT: u16 = 5300;

/// How long a connection that policy blocks is given before it counts as blocked.
const BLOCKED: Duration = Duration::from_millis(400);

/// A pod's policy.
fn policy(
    ip: Ipv4Addr,
    ingress: Option<Vec<PolicyRule>>,
    egress: Option<Vec<PolicyRule>>,
) -> PodPolicy {
    PodPolicy {
        namespace: "default".into(),
        name: format!("pod-{ip}"),
        ip,
        ingress,
        egress,
    }
}

fn host(ip: Ipv4Addr) -> PolicyPeer {
    PolicyPeer {
        cidr: Ipv4Net::new(ip, 32).unwrap(),
        except: vec![],
    }
}

fn block(cidr: &str, except: &[&str]) -> PolicyPeer {
    PolicyPeer {
        cidr: cidr.parse().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    }
}

/// A rule allowing `peers` on every port.
fn from(peers: Vec<PolicyPeer>) -> PolicyRule {
    PolicyRule {
        peers: Some(peers),
        ports: vec![],
    }
}

fn port(protocol: PolicyProtocol, port: u16, end_port: Option<u16>) -> PolicyPort {
    PolicyPort {
        protocol,
        port: Some(port),
        end_port,
    }
}

/// A pod with its servers: names on TCP_A, TCP_B and TCP_RANGE, a UDP echo on UDP_PORT.
struct Served {
    pod: Pod,
    ip: Ipv4Addr,
    _servers: (NameServer, NameServer, NameServer, UdpEcho),
}

async fn served(net: &PodNetwork, name: &str) -> Served {
    let pod = Pod::new(name);
    let ip = net.attach(&pod.request()).await.unwrap().ip;
    let servers = (
        NameServer::start(&pod.ns, TCP_A, name),
        NameServer::start(&pod.ns, TCP_B, name),
        NameServer::start(&pod.ns, TCP_RANGE, name),
        UdpEcho::start(&pod.ns, UDP_PORT),
    );
    Served {
        pod,
        ip,
        _servers: servers,
    }
}

async fn client(net: &PodNetwork, name: &str) -> (Pod, Ipv4Addr) {
    let pod = Pod::new(name);
    let ip = net.attach(&pod.request()).await.unwrap().ip;
    (pod, ip)
}

/// Panics unless `ns` reaches `addr` over TCP (and the server answers).
fn assert_tcp_open(ns: &Netns, addr: SocketAddr, why: &str) {
    if let Err(e) = ask_name(ns, addr) {
        panic!("{why}: {addr} from {}: {e}", ns.name);
    }
}

/// Panics if `ns` can open a TCP connection to `addr`.
fn assert_tcp_blocked(ns: &Netns, addr: SocketAddr, why: &str) {
    assert!(
        !tcp_connects(ns, addr, BLOCKED),
        "{why}: {addr} from {} is not blocked",
        ns.name
    );
}

fn assert_udp_open(ns: &Netns, addr: SocketAddr, why: &str) {
    if let Err(e) = udp_ask(ns, addr) {
        panic!("{why}: {e} (from {})", ns.name);
    }
}

fn assert_udp_blocked(ns: &Netns, addr: SocketAddr, why: &str) {
    if let Ok(answer) = udp_ask(ns, addr) {
        panic!("{why}: {addr} answers {answer} to {}", ns.name);
    }
}

/// Ingress of one pod judged for peers on its own node (bridged) and on another node
/// (`backend`): default deny, one allowed /32 per node, ports and protocols.
async fn ingress_across_nodes(backend: Backend) {
    let cluster = Cluster::new(Layout::OneL2, 2);
    let (net1, net2) = cluster.pair(backend).await;
    let web = served(&net1, "web").await;
    let (friend, friend_ip) = client(&net1, "friend").await;
    let (stranger, _) = client(&net1, "stranger").await;
    let (far_friend, far_friend_ip) = client(&net2, "far-friend").await;
    let (far_stranger, _) = client(&net2, "far-stranger").await;
    let (a, b, range, udp) = (
        sock(web.ip, TCP_A),
        sock(web.ip, TCP_B),
        sock(web.ip, TCP_RANGE),
        sock(web.ip, UDP_PORT),
    );
    let clients = [&friend, &stranger, &far_friend, &far_stranger];
    for c in clients {
        assert_tcp_open(&c.ns, a, "before any policy");
    }

    let enforcer = PolicyEnforcer::new(&net1).await.unwrap();
    // Default deny.
    let stats = enforcer
        .sync(&[policy(web.ip, Some(vec![]), None)])
        .await
        .unwrap();
    assert!(
        stats.full && stats.pods == 1 && stats.skipped == 0,
        "{stats:?}"
    );
    for c in clients {
        assert_tcp_blocked(&c.ns, a, "deny-all ingress");
        assert_udp_blocked(&c.ns, udp, "deny-all ingress");
    }
    // The node itself (a probe) always passes.
    assert_tcp_open(&cluster.nodes[0].ns, a, "node to its pod under deny-all");
    assert_udp_open(&cluster.nodes[0].ns, udp, "node to its pod under deny-all");

    // One peer per node allowed, every port.
    let allowed = vec![from(vec![host(friend_ip), host(far_friend_ip)])];
    let stats = enforcer
        .sync(&[policy(web.ip, Some(allowed), None)])
        .await
        .unwrap();
    assert!(!stats.full && stats.commands > 0, "{stats:?}");
    for (c, open) in [
        (&friend, true),
        (&stranger, false),
        (&far_friend, true),
        (&far_stranger, false),
    ] {
        if open {
            assert_tcp_open(&c.ns, a, "allowed peer");
            assert_tcp_open(&c.ns, b, "allowed peer, other port");
            assert_udp_open(&c.ns, udp, "allowed peer, UDP");
        } else {
            assert_tcp_blocked(&c.ns, a, "peer not allowed");
            assert_udp_blocked(&c.ns, udp, "peer not allowed, UDP");
        }
    }

    // Anyone, but only TCP_A, the range around TCP_RANGE and UDP: TCP_B stays closed, and
    // a UDP rule does not open TCP.
    let ports = vec![PolicyRule {
        peers: None,
        ports: vec![
            port(PolicyProtocol::Tcp, TCP_A, None),
            port(PolicyProtocol::Tcp, TCP_RANGE - 5, Some(TCP_RANGE + 5)),
            port(PolicyProtocol::Udp, UDP_PORT, None),
        ],
    }];
    enforcer
        .sync(&[policy(web.ip, Some(ports), None)])
        .await
        .unwrap();
    for c in [&stranger, &far_stranger] {
        assert_tcp_open(&c.ns, a, "numbered port");
        assert_tcp_open(&c.ns, range, "port range");
        assert_udp_open(&c.ns, udp, "UDP port");
        assert_tcp_blocked(&c.ns, b, "port outside the rule");
    }
    let only_udp = vec![PolicyRule {
        peers: None,
        ports: vec![port(PolicyProtocol::Udp, TCP_A, None)],
    }];
    enforcer
        .sync(&[policy(web.ip, Some(only_udp), None)])
        .await
        .unwrap();
    assert_tcp_blocked(&stranger.ns, a, "protocol: UDP rule, TCP connection");
    assert_tcp_blocked(&far_stranger.ns, a, "protocol: UDP rule, TCP connection");

    // Removing the pod's policy reopens it.
    let stats = enforcer.sync(&[]).await.unwrap();
    assert_eq!((stats.pods, stats.chains), (0, 0), "{stats:?}");
    for c in clients {
        assert_tcp_open(&c.ns, b, "policy removed");
        assert_udp_open(&c.ns, udp, "policy removed");
    }
    drop(net2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_policy_on_the_bridge_and_across_host_gw() {
    if !root_or_skip("ingress_policy_on_the_bridge_and_across_host_gw") {
        return;
    }
    ingress_across_nodes(Backend::HostGw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_policy_on_the_bridge_and_across_vxlan() {
    if !root_or_skip("ingress_policy_on_the_bridge_and_across_vxlan") {
        return;
    }
    ingress_across_nodes(Backend::vxlan()).await;
}

/// ipBlock with except, egress deny and allow to a CIDR, replies to allowed connections,
/// and the node's own traffic, on two host-gw nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_blocks_egress_and_replies() {
    if !root_or_skip("ip_blocks_egress_and_replies") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let n1 = &cluster.nodes[0];
    let (net1, net2) = cluster.host_gw_pair().await;
    let web = served(&net1, "web").await;
    let near = served(&net1, "near").await;
    let far = served(&net2, "far").await;
    let far2 = served(&net2, "far2").await;
    let outside = NameServer::start(&cluster.host, TCP_A, "outside");
    let on_node = NameServer::start(&n1.ns, TCP_A, "node-1");
    let enforcer = PolicyEnforcer::new(&net1).await.unwrap();

    // Ingress from the cluster CIDR except node 2's pods, but far2 again as a /32.
    let rule = from(vec![
        block("10.42.0.0/16", &["10.42.2.0/24"]),
        host(far2.ip),
    ]);
    enforcer
        .sync(&[policy(web.ip, Some(vec![rule]), None)])
        .await
        .unwrap();
    assert_tcp_open(&near.pod.ns, sock(web.ip, TCP_A), "inside the block");
    assert_tcp_blocked(&far.pod.ns, sock(web.ip, TCP_A), "in the except");
    assert_tcp_open(
        &far2.pod.ns,
        sock(web.ip, TCP_A),
        "in the except, but its own peer",
    );
    assert_tcp_blocked(&cluster.host, sock(web.ip, TCP_A), "outside the block");

    // web isolated for ingress (deny all), not for egress: its own connections and their
    // replies pass, new connections towards it do not.
    enforcer
        .sync(&[policy(web.ip, Some(vec![]), None)])
        .await
        .unwrap();
    assert_tcp_open(
        &web.pod.ns,
        sock(near.ip, TCP_A),
        "reply from the same node",
    );
    assert_tcp_open(&web.pod.ns, sock(far.ip, TCP_A), "reply from another node");
    assert_udp_open(&web.pod.ns, sock(far.ip, UDP_PORT), "UDP reply");
    assert_tcp_blocked(
        &near.pod.ns,
        sock(web.ip, TCP_A),
        "new connection the other way",
    );
    assert_tcp_blocked(
        &far.pod.ns,
        sock(web.ip, TCP_A),
        "new connection the other way",
    );

    // Egress deny-all: nothing but its own node.
    enforcer
        .sync(&[policy(web.ip, None, Some(vec![]))])
        .await
        .unwrap();
    assert_tcp_blocked(&web.pod.ns, sock(near.ip, TCP_A), "egress deny, same node");
    assert_tcp_blocked(&web.pod.ns, sock(far.ip, TCP_A), "egress deny, other node");
    assert_udp_blocked(&web.pod.ns, sock(far.ip, UDP_PORT), "egress deny, UDP");
    assert_tcp_blocked(
        &web.pod.ns,
        sock(cluster.host_ips[0], TCP_A),
        "egress deny, outside",
    );
    assert_tcp_open(
        &web.pod.ns,
        sock(n1.ip, TCP_A),
        "a pod always reaches its node",
    );
    assert_tcp_open(&near.pod.ns, sock(web.ip, TCP_A), "ingress not isolated");

    // Egress allowed to node 2's pod CIDR only.
    let to_far = from(vec![block("10.42.2.0/24", &[])]);
    enforcer
        .sync(&[policy(web.ip, None, Some(vec![to_far]))])
        .await
        .unwrap();
    assert_tcp_open(&web.pod.ns, sock(far.ip, TCP_A), "egress to the CIDR");
    assert_tcp_blocked(&web.pod.ns, sock(near.ip, TCP_A), "egress outside the CIDR");
    assert_tcp_blocked(
        &web.pod.ns,
        sock(cluster.host_ips[0], TCP_A),
        "egress outside",
    );
    drop((outside, on_node, net2));
}

/// A ClusterIP connection is judged by the target pod's policy and the client's real
/// address, from the same node and from another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_traffic_is_judged_by_the_target_pod_and_real_client() {
    if !root_or_skip("cluster_ip_traffic_is_judged_by_the_target_pod_and_real_client") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (net1, net2) = cluster.host_gw_pair().await;
    let web = served(&net1, "web").await;
    let (friend, friend_ip) = client(&net1, "friend").await;
    let (stranger, _) = client(&net1, "stranger").await;
    let (far_friend, far_friend_ip) = client(&net2, "far-friend").await;
    let (far_stranger, _) = client(&net2, "far-stranger").await;
    let vip = Ipv4Addr::new(10, 43, 0, 20);
    let svc = ServiceSummary {
        key: ServiceKey {
            namespace: "default".into(),
            name: "web".into(),
        },
        cluster_ips: vec![vip.to_string()],
        ports: vec![ServicePortSummary {
            name: String::new(),
            protocol: "TCP".into(),
            port: 80,
            node_port: None,
        }],
        endpoints: vec![EndpointSummary {
            addresses: vec![web.ip.to_string()],
            node_name: Some(n1.name.clone()),
            ready: true,
            serving: true,
            ports: vec![EndpointPortSummary {
                name: String::new(),
                protocol: "TCP".into(),
                port: TCP_A,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    for (net, node) in [(&net1, n1), (&net2, n2)] {
        let proxy = ServiceProxy::new(
            net,
            ProxySettings {
                node_name: node.name.clone(),
                nodeport_addresses: vec![node.ip],
                service_cidr: "10.43.0.0/16".parse().unwrap(),
                local_ips: vec![],
            },
        )
        .await
        .unwrap();
        proxy.sync(std::slice::from_ref(&svc)).await.unwrap();
    }
    let enforcer = PolicyEnforcer::new(&net1).await.unwrap();
    let rule = PolicyRule {
        peers: Some(vec![host(friend_ip), host(far_friend_ip)]),
        ports: vec![port(PolicyProtocol::Tcp, TCP_A, None)],
    };
    enforcer
        .sync(&[policy(web.ip, Some(vec![rule]), None)])
        .await
        .unwrap();
    let addr = sock(vip, 80);
    assert_tcp_open(&friend.ns, addr, "allowed client, same node");
    assert_tcp_open(&far_friend.ns, addr, "allowed client, other node");
    assert_tcp_blocked(&stranger.ns, addr, "other client, same node");
    assert_tcp_blocked(&far_stranger.ns, addr, "other client, other node");
    assert_tcp_open(&n1.ns, addr, "the node itself");
}

/// Bridged traffic between two pods of a node is filtered even where br_netfilter was off
/// in the node's namespace (the enforcer turns it on, and again if someone turns it off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_traffic_is_filtered_when_br_netfilter_was_off() {
    if !root_or_skip("bridged_traffic_is_filtered_when_br_netfilter_was_off") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let key = "net/bridge/bridge-nf-call-iptables";
    n1.ns.sysctl(key, "0");
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let web = served(&net, "web").await;
    let (stranger, _) = client(&net, "stranger").await;
    let read = || {
        n1.ns
            .exec(&["cat", &format!("/proc/sys/{key}")])
            .trim()
            .to_string()
    };
    assert_eq!(read(), "0");
    assert_eq!(
        run(&["cat", &format!("/proc/sys/{key}")]).trim(),
        "1",
        "per namespace"
    );
    assert_tcp_open(&stranger.ns, sock(web.ip, TCP_A), "before any policy");

    let enforcer = PolicyEnforcer::new(&net).await.unwrap();
    enforcer
        .sync(&[policy(web.ip, Some(vec![]), None)])
        .await
        .unwrap();
    assert_tcp_blocked(&stranger.ns, sock(web.ip, TCP_A), "bridged, deny-all");
    assert_udp_blocked(&stranger.ns, sock(web.ip, UDP_PORT), "bridged, deny-all");
    assert_eq!(read(), "1");

    n1.ns.sysctl(key, "0");
    enforcer
        .sync(&[policy(web.ip, Some(vec![]), None)])
        .await
        .unwrap();
    assert_eq!(read(), "1", "every sync makes sure");
    assert_tcp_blocked(&stranger.ns, sock(web.ip, TCP_A), "bridged, deny-all");
}

/// Bad input is dropped without a half-applied transaction; a new enforcer (agent restart)
/// keeps protection with no gap; cleanup removes the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_restart_without_gap_and_cleanup() {
    if !root_or_skip("bad_input_restart_without_gap_and_cleanup") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let web = served(&net, "web").await;
    let other = served(&net, "other").await;
    let (stranger, stranger_ip) = client(&net, "stranger").await;

    let huge = from(
        (0..10_000u32)
            .map(|i| host(Ipv4Addr::from(0x0b00_0000 + 2 * i)))
            .chain(std::iter::once(host(stranger_ip)))
            .collect(),
    );
    let reversed = PolicyRule {
        peers: None,
        ports: vec![port(PolicyProtocol::Tcp, TCP_B, Some(TCP_A))],
    };
    let pods = vec![
        policy(web.ip, Some(vec![huge, reversed]), None),
        policy(other.ip, Some(vec![]), None),
        // The same address again, disagreeing: denied where they differ.
        policy(other.ip, Some(vec![PolicyRule::default()]), None),
        policy(Ipv4Addr::new(10, 99, 0, 1), Some(vec![]), None),
    ];
    let enforcer = PolicyEnforcer::new(&net).await.unwrap();
    let stats = enforcer.sync(&pods).await.unwrap();
    assert_tcp_blocked(
        &stranger.ns,
        sock(web.ip, TCP_A),
        "huge rule dropped, not opened",
    );
    assert_tcp_blocked(&stranger.ns, sock(web.ip, TCP_B), "reversed range dropped");
    assert_tcp_blocked(
        &stranger.ns,
        sock(other.ip, TCP_A),
        "the others still enforced",
    );
    let rules = n1
        .ns
        .exec(&["nft", "list", "table", "inet", "skiff-policy"]);
    assert!(!rules.contains("11.0.0.0"), "{rules}");
    assert_eq!((stats.pods, stats.skipped), (2, 5), "{stats:?}");

    // Restart: the table outlives the enforcer; a new one changes nothing until its first
    // sync, which replaces the table in one transaction. A client hammering the pod all the
    // while never gets through.
    let pods = vec![policy(web.ip, Some(vec![]), None)];
    enforcer.sync(&pods).await.unwrap();
    drop(enforcer);
    assert_tcp_blocked(
        &stranger.ns,
        sock(web.ip, TCP_A),
        "rules outlive the enforcer",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (through, tries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let hammer = {
        let (stop, through, tries) = (stop.clone(), through.clone(), tries.clone());
        let path = stranger.ns.path.clone();
        let target = sock(web.ip, TCP_A);
        std::thread::spawn(move || {
            let file = std::fs::File::open(path).unwrap();
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&file),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .unwrap();
            while !stop.load(Ordering::Relaxed) {
                tries.fetch_add(1, Ordering::Relaxed);
                if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(50)).is_ok()
                {
                    through.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let enforcer = PolicyEnforcer::new(&net).await.unwrap();
    for _ in 0..5 {
        // Every first sync is a full replacement (a new enforcer each time).
        let fresh = PolicyEnforcer::new(&net).await.unwrap();
        assert!(fresh.sync(&pods).await.unwrap().full);
    }
    let stats = enforcer.sync(&pods).await.unwrap();
    assert!(stats.full, "{stats:?}");
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    assert!(tries.load(Ordering::Relaxed) > 0);
    assert_eq!(
        through.load(Ordering::Relaxed),
        0,
        "a connection got through the restart"
    );

    // A pod that leaves the list is open again and its chain is gone.
    let stats = enforcer.sync(&[]).await.unwrap();
    assert_eq!(stats.chains, 0);
    assert_tcp_open(&stranger.ns, sock(web.ip, TCP_A), "policy removed");
    let rules = n1
        .ns
        .exec(&["nft", "list", "table", "inet", "skiff-policy"]);
    assert!(!rules.contains("chain in-"), "{rules}");

    // --cleanup removes the table.
    drop(enforcer);
    drop(net);
    let mut cleanup = CleanupConfig::new(n1.state_dir.path());
    cleanup.netns = Some(n1.ns.path.clone());
    PodNetwork::cleanup_all(&cleanup).await.unwrap();
    let ruleset = n1.ns.exec(&["nft", "list", "ruleset"]);
    assert!(
        !ruleset.contains(POLICY_TABLE.split(' ').nth(1).unwrap()),
        "{ruleset}"
    );
}

/// Benchmark (`scripts/bench/policy.sh`; ignored in normal runs): sync time for
/// `SKIFF_BENCH_PODS` (100) pods × `SKIFF_BENCH_RULES` (20) rules × `SKIFF_BENCH_PEERS` (50)
/// peers, the first (full) sync and a change of one pod's rules, next to the reference: the
/// same table loaded with one plain `nft -f` (written by the script, timed here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench/policy.sh"]
async fn policy_sync_benchmark() {
    if !root_or_skip("policy_sync_benchmark") {
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (pods, rules, peers) = (
        env("SKIFF_BENCH_PODS", 100),
        env("SKIFF_BENCH_RULES", 20),
        env("SKIFF_BENCH_PEERS", 50),
    );
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    // Peers scattered over other nodes' pod CIDRs (every third address: no merging).
    let list = |seed: usize| -> Vec<PodPolicy> {
        (0..pods)
            .map(|p| {
                let rule = |r: usize| PolicyRule {
                    peers: Some(
                        (0..peers)
                            .map(|i| {
                                let n = (seed + p * 7 + r * 13 + i * 3) as u32;
                                host(Ipv4Addr::from(0x0a2a_0200 + (n % 60_000)))
                            })
                            .collect(),
                    ),
                    ports: vec![port(PolicyProtocol::Tcp, 8000 + r as u16, None)],
                };
                policy(
                    Ipv4Addr::new(10, 42, 1, 2 + p as u8),
                    Some((0..rules).map(rule).collect()),
                    Some((0..rules / 2).map(rule).collect()),
                )
            })
            .collect()
    };
    let all = list(0);
    let enforcer = PolicyEnforcer::new(&net).await.unwrap();
    let full = enforcer.sync(&all).await.unwrap();
    let mut changes = Vec::new();
    for round in 1..=20 {
        let mut changed = all.clone();
        changed[round % pods] = list(round)[round % pods].clone();
        changes.push(enforcer.sync(&changed).await.unwrap());
        enforcer.sync(&all).await.unwrap();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut elapsed: Vec<f64> = changes.iter().map(|s| ms(s.elapsed)).collect();
    elapsed.sort_by(|a, b| a.total_cmp(b));
    let listing = n1
        .ns
        .exec(&["nft", "list", "table", "inet", "skiff-policy"]);
    let reference = format!("table inet skiff-policy\ndelete table inet skiff-policy\n{listing}");
    let started = std::time::Instant::now();
    n1.ns.within(|| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(reference.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    });
    let reference_ms = ms(started.elapsed());
    println!(
        "pods {pods} x rules {rules} (+{} egress) x peers {peers}: {} chains",
        rules / 2,
        full.chains
    );
    println!(
        "full sync: {:.1} ms (nft {:.1} ms, {} lines)",
        ms(full.elapsed),
        ms(full.nft),
        full.commands
    );
    println!(
        "one pod changed (20 times): p50 {:.1} ms, max {:.1} ms, nft p50 {:.1} ms, {} lines",
        elapsed[elapsed.len() / 2],
        elapsed[elapsed.len() - 1],
        ms(changes[changes.len() / 2].nft),
        changes[0].commands
    );
    println!(
        "reference: plain nft -f of the whole table ({} lines): {reference_ms:.1} ms",
        reference.lines().count()
    );
}
