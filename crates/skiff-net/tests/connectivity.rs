//! Issue 7 acceptance at crate level: two simulated nodes (network namespaces on a common
//! "host"), pods in their own namespaces, `busybox httpd` answering with the client address it
//! sees. Needs root; skips loudly otherwise.

mod common;

use std::net::Ipv4Addr;

use common::*;
use skiff_net::{Backend, HostPort, PodNetwork, Protocol};

const CGI_PORT: u16 = 80;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_pods_reach_each_other_by_real_ip_and_egress_is_masqueraded() {
    if !root_or_skip("host_gw_pods_reach_each_other_by_real_ip_and_egress_is_masqueraded") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (net1, net2) = cluster.host_gw_pair().await;

    let server = Pod::new("server");
    let neighbour = Pod::new("neighbour");
    let remote = Pod::new("remote");
    let s = net1.attach(&server.request()).await.unwrap();
    let nb = net1.attach(&neighbour.request()).await.unwrap();
    let r = net2.attach(&remote.request()).await.unwrap();
    assert!(n1.pod_cidr.contains(&s.ip) && n1.pod_cidr.contains(&nb.ip));
    assert!(n2.pod_cidr.contains(&r.ip));
    assert_eq!(s.gateway, Ipv4Addr::new(10, 42, 1, 1));
    assert_eq!(s.mtu, 1500, "host-gw keeps the uplink MTU");
    let _httpd = Httpd::start(&server.ns, CGI_PORT);
    let target = sock(s.ip, CGI_PORT);

    // 1. Same node: a pod and the node itself.
    assert_eq!(seen_from(&neighbour.ns, target), nb.ip);
    assert_eq!(seen_from(&n1.ns, target), s.gateway);
    // 1. Other node: the node itself and a pod on it; the server sees real addresses.
    assert_eq!(seen_from(&n2.ns, target), n2.ip);
    assert_eq!(seen_from(&remote.ns, target), r.ip);

    // Pod to another node's address is not NATed either (the server sees the pod IP).
    let _node_httpd = Httpd::start(&n2.ns, 8081);
    assert_eq!(seen_from(&server.ns, sock(n2.ip, 8081)), s.ip);

    // 2. Egress to an address outside the cluster is masqueraded to the node IP.
    let _outside = Httpd::start(&cluster.host, 8082);
    assert_eq!(
        seen_from(&server.ns, sock(cluster.host_ips[0], 8082)),
        n1.ip
    );
    assert_eq!(
        seen_from(&remote.ns, sock(cluster.host_ips[1], 8082)),
        n2.ip
    );

    // The pod side looks like Kubernetes promises: eth0 with the address, lo up, default route.
    let addrs = server.ns.ip(&["-o", "-4", "addr", "show"]);
    assert!(
        addrs.contains(&format!("eth0    inet {}/24", s.ip)),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");
    let routes = server.ns.ip(&["route"]);
    assert!(
        routes.contains("default via 10.42.1.1 dev eth0"),
        "{routes}"
    );

    assert_absent_from_own_namespace(&[s.host_interface, nb.host_interface, r.host_interface]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_reach_the_pod_through_the_node_address_and_go_away_on_detach() {
    if !root_or_skip("host_ports_reach_the_pod_through_the_node_address_and_go_away_on_detach") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let n1 = &cluster.nodes[0];
    let (net1, net2) = cluster.host_gw_pair().await;

    let web = Pod::new("web");
    let mut request = web.request();
    request.host_ports = vec![
        HostPort {
            host_port: 8080,
            container_port: CGI_PORT,
            protocol: Protocol::Tcp,
            host_ip: None,
        },
        HostPort {
            host_port: 5353,
            container_port: 5300,
            protocol: Protocol::Udp,
            host_ip: None,
        },
    ];
    let w = net1.attach(&request).await.unwrap();
    let other = Pod::new("other");
    let o = net1.attach(&other.request()).await.unwrap();
    let remote = Pod::new("remote");
    let r = net2.attach(&remote.request()).await.unwrap();
    let _httpd = Httpd::start(&web.ns, CGI_PORT);
    let _echo = UdpEcho::start(&web.ns, 5300);
    let published = sock(n1.ip, 8080);

    // From outside the cluster (the host), through the node address.
    assert_eq!(seen_from(&cluster.host, published), cluster.host_ips[0]);
    // From a pod on the other node: its traffic to a node address keeps its own address.
    assert_eq!(seen_from(&remote.ns, published), r.ip);
    // From the node itself, through localhost and through its own address.
    http_get(&n1.ns, sock(Ipv4Addr::LOCALHOST, 8080)).expect("hostPort via 127.0.0.1");
    http_get(&n1.ns, published).expect("hostPort via the node IP from the node");
    // Hairpin: pods of the same node, including the pod itself.
    http_get(&other.ns, published).expect("hostPort from a pod of the same node");
    http_get(&web.ns, published).expect("hostPort from the pod itself");
    // UDP too.
    assert_eq!(
        udp_ask(&cluster.host, sock(n1.ip, 5353)).unwrap(),
        cluster.host_ips[0].to_string()
    );

    // A second pod cannot take the same host port.
    let thief = Pod::new("thief");
    let mut stolen = thief.request();
    stolen.host_ports = vec![request.host_ports[0]];
    let err = net1.attach(&stolen).await.unwrap_err().to_string();
    assert!(
        err.contains("8080/TCP") && err.contains("default/web") && err.contains("thief"),
        "{err}"
    );
    assert!(!net1.attached().await.iter().any(|p| p.uid == thief.uid));

    net1.detach(&web.uid).await.unwrap();
    assert_unreachable(&cluster.host, published);
    assert!(udp_ask(&cluster.host, sock(n1.ip, 5353)).is_err());
    let rules = n1.ns.exec(&["nft", "list", "table", "inet", "skiff"]);
    assert!(
        !rules.contains("dport 8080") && !rules.contains("dport 5353"),
        "{rules}"
    );
    // The port is free again for another pod.
    net1.attach(&stolen).await.unwrap();
    let _thief_httpd = Httpd::start(&thief.ns, CGI_PORT);
    http_get(&cluster.host, published).expect("the new owner of the hostPort answers");

    // Someone deletes skiff's table behind its back: the next change rebuilds all of it.
    n1.ns.exec(&["nft", "delete", "table", "inet", "skiff"]);
    let late = Pod::new("late");
    let mut late_request = late.request();
    late_request.host_ports = vec![HostPort {
        host_port: 8090,
        container_port: CGI_PORT,
        protocol: Protocol::Tcp,
        host_ip: Some(n1.ip),
    }];
    net1.attach(&late_request).await.unwrap();
    let _late_httpd = Httpd::start(&late.ns, CGI_PORT);
    http_get(&cluster.host, sock(n1.ip, 8090)).expect("hostPort bound to the node IP");
    http_get(&cluster.host, published).expect("rules of other pods rebuilt");
    let _outside = Httpd::start(&cluster.host, 8082);
    assert_eq!(
        seen_from(&late.ns, sock(cluster.host_ips[0], 8082)),
        n1.ip,
        "masquerade rebuilt"
    );

    assert_absent_from_own_namespace(&[w.host_interface, o.host_interface]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_connects_pods_of_nodes_on_different_subnets() {
    if !root_or_skip("vxlan_connects_pods_of_nodes_on_different_subnets") {
        return;
    }
    // The nodes share no L2 segment and the router between them knows no pod routes, so
    // pod traffic between them can only flow encapsulated.
    let cluster = Cluster::new(Layout::Routed, 2);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);

    // host-gw cannot work here, and says why.
    let gw = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let err = gw
        .sync_peers(&cluster.peers())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("node-2") && err.contains("vxlan"), "{err}");
    drop(gw);

    // Switching the same node to VXLAN adopts the bridge and adds the VXLAN device.
    let net1 = PodNetwork::setup(n1.config(Backend::vxlan()))
        .await
        .unwrap();
    let net2 = PodNetwork::setup(n2.config(Backend::vxlan()))
        .await
        .unwrap();
    net1.sync_peers(&cluster.peers()).await.unwrap();
    net2.sync_peers(&cluster.peers()).await.unwrap();
    assert_eq!(
        net1.mtu(),
        1450,
        "VXLAN costs 50 bytes of the uplink's 1500"
    );

    let server = Pod::new("server");
    let remote = Pod::new("remote");
    let s = net1.attach(&server.request()).await.unwrap();
    let r = net2.attach(&remote.request()).await.unwrap();
    assert_eq!(s.mtu, 1450);
    let link = server.ns.ip(&["link", "show", "eth0"]);
    assert!(link.contains("mtu 1450"), "{link}");
    let _httpd = Httpd::start(&server.ns, CGI_PORT);
    let target = sock(s.ip, CGI_PORT);

    assert_eq!(
        seen_from(&remote.ns, target),
        r.ip,
        "pod to pod across nodes"
    );
    // Node to a pod of another node: the source is the node's VXLAN address.
    assert_eq!(seen_from(&n2.ns, target), Ipv4Addr::new(10, 42, 2, 0));
    assert_eq!(seen_from(&n1.ns, target), s.gateway);
    // Pod to another node's address keeps the pod's address.
    let _node_httpd = Httpd::start(&n2.ns, 8081);
    assert_eq!(seen_from(&server.ns, sock(n2.ip, 8081)), s.ip);
    // Egress to the outside is masqueraded.
    let _outside = Httpd::start(&cluster.host, 8082);
    assert_eq!(
        seen_from(&server.ns, sock(cluster.host_ips[0], 8082)),
        n1.ip
    );

    // The VXLAN entries of the peer, as flannel would have them.
    let fdb = n1.ns.exec(&["bridge", "fdb", "show", "dev", "skiff.1"]);
    assert!(
        fdb.contains(&format!("dst {} self permanent", n2.ip)),
        "{fdb}"
    );
    let routes = n1.ns.ip(&["route", "show", "proto", "77"]);
    assert!(
        routes.contains("10.42.2.0/24 via 10.42.2.0 dev skiff.1 onlink"),
        "{routes}"
    );

    // A peer that leaves loses its route and VXLAN entries; connectivity to it stops.
    net1.sync_peers(&[n1.peer()]).await.unwrap();
    let routes = n1.ns.ip(&["route", "show", "proto", "77"]);
    assert!(routes.trim().is_empty(), "{routes}");
    let fdb = n1.ns.exec(&["bridge", "fdb", "show", "dev", "skiff.1"]);
    assert!(!fdb.contains(&n2.ip.to_string()), "{fdb}");
    assert_unreachable(&remote.ns, target);
    // ... and comes back when it rejoins.
    net1.sync_peers(&cluster.peers()).await.unwrap();
    assert_eq!(seen_from(&remote.ns, target), r.ip);

    assert_absent_from_own_namespace(&[s.host_interface, r.host_interface]);
}
