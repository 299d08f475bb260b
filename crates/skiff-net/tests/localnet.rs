//! CVE-2020-8558 class: `route_localnet=1` on the pod bridge (needed for hostPort through
//! 127.0.0.1) must not let a pod reach services the node binds to 127.0.0.1. Needs root; skips
//! loudly otherwise.

mod common;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use skiff_net::{Backend, PodNetwork};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_cannot_connect_to_a_listener_on_the_nodes_localhost() {
    if !root_or_skip("a_pod_cannot_connect_to_a_listener_on_the_nodes_localhost") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net1 = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let attacker = Pod::new("attacker");
    let a = net1.attach(&attacker.request()).await.unwrap();

    // A node service bound to localhost only (as a kubelet, etcd or debug endpoint would be).
    let port = 10_248;
    let _listener: TcpListener = n1
        .ns
        .within(|| TcpListener::bind((Ipv4Addr::LOCALHOST, port)))
        .expect("listen on the node's 127.0.0.1");
    let target = sock(Ipv4Addr::LOCALHOST, port);
    n1.ns
        .within(|| TcpStream::connect_timeout(&target, Duration::from_secs(1)))
        .expect("the node itself reaches its localhost service");

    // The pod (root in its namespace, as with CAP_NET_ADMIN or a raw socket) sends to 127.0.0.1
    // through its gateway instead of its own loopback.
    attacker.ns.sysctl("net/ipv4/conf/eth0/route_localnet", "1");
    attacker.ns.ip(&["addr", "flush", "dev", "lo"]);
    attacker.ns.ip(&[
        "route",
        "add",
        "127.0.0.1/32",
        "via",
        &a.gateway.to_string(),
        "dev",
        "eth0",
    ]);
    let from_pod = attacker
        .ns
        .within(|| TcpStream::connect_timeout(&target, Duration::from_secs(1)));
    assert!(
        from_pod.is_err(),
        "a pod connected to the node's 127.0.0.1:{port}"
    );
    net1.detach(&attacker.uid).await.ok();
}
