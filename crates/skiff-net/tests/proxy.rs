//! The service proxy on simulated nodes (network namespaces joined by a bridge, host-gw):
//! real nftables, pods in namespaces of their own, servers on threads inside them. Needs
//! root; skips loudly otherwise.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use skiff_link_proto::proto::service::{
    EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary, ServiceSummary,
    ServiceType,
};
use skiff_net::{
    Backend, CleanupConfig, PodNetwork, ProxySettings, ServiceProxy, SERVICE_ADDRESS_LABEL,
};

const CGI_PORT: u16 = 80;
const NAME_PORT: u16 = 9000;
const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

fn settings(node: &SimNode) -> ProxySettings {
    ProxySettings {
        node_name: node.name.clone(),
        nodeport_addresses: vec![node.ip],
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        local_ips: vec![DNS_IP],
    }
}

/// A ready endpoint `ip` on `node` serving the Service's unnamed `protocol` port on `port`.
fn endpoint(ip: Ipv4Addr, node: &str, protocol: &str, port: u16) -> EndpointSummary {
    EndpointSummary {
        addresses: vec![ip.to_string()],
        node_name: Some(node.to_string()),
        ready: true,
        serving: true,
        ports: vec![EndpointPortSummary {
            name: String::new(),
            protocol: protocol.into(),
            port,
        }],
        ..Default::default()
    }
}

/// A Service with one unnamed `protocol` port.
fn service(
    name: &str,
    cluster_ip: &str,
    protocol: &str,
    port: u16,
    endpoints: Vec<EndpointSummary>,
) -> ServiceSummary {
    ServiceSummary {
        key: ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        },
        cluster_ips: vec![cluster_ip.into()],
        ports: vec![ServicePortSummary {
            name: String::new(),
            protocol: protocol.into(),
            port,
            node_port: None,
        }],
        endpoints,
        ..Default::default()
    }
}

fn node_port(mut svc: ServiceSummary, port: u16) -> ServiceSummary {
    svc.service_type = ServiceType::NodePort;
    svc.ports[0].node_port = Some(port);
    svc
}

/// The names answering `count` connections to `addr` from `ns`.
fn names(ns: &Netns, addr: SocketAddr, count: usize) -> std::collections::BTreeSet<String> {
    (0..count)
        .map(|_| ask_name(ns, addr).unwrap_or_else(|e| panic!("{addr} from {}: {e}", ns.name)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_pods_across_nodes_with_upstream_semantics() {
    if !root_or_skip("services_reach_pods_across_nodes_with_upstream_semantics") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (net1, net2) = cluster.host_gw_pair().await;
    let proxy1 = ServiceProxy::new(&net1, settings(n1)).await.unwrap();
    let proxy2 = ServiceProxy::new(&net2, settings(n2)).await.unwrap();

    let (web1, web2, client, remote) = (
        Pod::new("web1"),
        Pod::new("web2"),
        Pod::new("client"),
        Pod::new("remote"),
    );
    let w1 = net1.attach(&web1.request()).await.unwrap().ip;
    let w2 = net2.attach(&web2.request()).await.unwrap().ip;
    let c = net1.attach(&client.request()).await.unwrap();
    let r = net2.attach(&remote.request()).await.unwrap().ip;
    let _h1 = Httpd::start(&web1.ns, CGI_PORT);
    let _h2 = Httpd::start(&web2.ns, CGI_PORT);
    let _n1 = NameServer::start(&web1.ns, NAME_PORT, "web1");
    let _n2 = NameServer::start(&web2.ns, NAME_PORT, "web2");
    let _udp = UdpEcho::start(&web1.ns, 5300);

    let (ep1, ep2) = (
        endpoint(w1, "node-1", "TCP", CGI_PORT),
        endpoint(w2, "node-2", "TCP", CGI_PORT),
    );
    let (name1, name2) = (
        endpoint(w1, "node-1", "TCP", NAME_PORT),
        endpoint(w2, "node-2", "TCP", NAME_PORT),
    );
    let mut sticky = service(
        "sticky",
        "10.43.0.22",
        "TCP",
        7000,
        vec![name1.clone(), name2.clone()],
    );
    sticky.session_affinity_seconds = Some(600);
    let mut local = node_port(
        service("local", "10.43.0.31", "TCP", 80, vec![ep1.clone()]),
        30081,
    );
    local.external_traffic_local = true;
    let mut dns = service("kube-dns", &DNS_IP.to_string(), "UDP", 53, vec![]);
    dns.endpoints = vec![endpoint(w1, "node-1", "UDP", 5300)];
    let services = vec![
        service("web", "10.43.0.20", "TCP", 80, vec![ep1.clone()]),
        service("far", "10.43.0.21", "TCP", 80, vec![ep2.clone()]),
        service(
            "both",
            "10.43.0.25",
            "TCP",
            7000,
            vec![name1.clone(), name2.clone()],
        ),
        sticky,
        service("empty", "10.43.0.23", "TCP", 80, vec![]),
        service(
            "udp",
            "10.43.0.24",
            "UDP",
            53,
            vec![endpoint(w1, "node-1", "UDP", 5300)],
        ),
        node_port(
            service("np", "10.43.0.30", "TCP", 80, vec![ep2.clone()]),
            30080,
        ),
        local,
        dns,
    ];
    for proxy in [&proxy1, &proxy2] {
        let stats = proxy.sync(&services).await.unwrap();
        assert!(stats.full, "the first sync builds the table");
        assert_eq!(stats.skipped, 0, "{stats:?}");
        let again = proxy.sync(&services).await.unwrap();
        assert_eq!(
            (again.full, again.commands),
            (false, 0),
            "nothing changed: nothing sent"
        );
    }
    let vip = |last: u8, port: u16| sock(Ipv4Addr::new(10, 43, 0, last), port);

    // ClusterIP served on the same node (the bridge answer needs the hairpin masquerade,
    // so the server sees the gateway) and on another node (the client address is kept).
    http_get(&client.ns, vip(20, 80)).expect("ClusterIP, endpoint on the same node");
    assert_eq!(seen_from(&remote.ns, vip(20, 80)), r, "pod of another node");
    assert_eq!(
        seen_from(&client.ns, vip(21, 80)),
        c.ip,
        "endpoint on another node"
    );
    // The nodes themselves.
    http_get(&n2.ns, vip(20, 80)).expect("ClusterIP from another node itself");
    http_get(&n1.ns, vip(21, 80)).expect("ClusterIP from the node itself");
    // Hairpin: the pod reaches itself through its Service.
    assert_eq!(seen_from(&web1.ns, vip(20, 80)), c.gateway);
    // UDP.
    assert_eq!(udp_ask(&remote.ns, vip(24, 53)).unwrap(), r.to_string());

    // NodePort from outside the cluster, masqueraded to the address of the interface it
    // leaves by: the uplink towards an endpoint on another node, the bridge for a local one.
    assert_eq!(seen_from(&cluster.host, sock(n1.ip, 30080)), n1.ip);
    assert_eq!(
        seen_from(&cluster.host, sock(n2.ip, 30080)),
        Ipv4Addr::new(10, 42, 2, 1)
    );
    // Not on localhost (upstream's nftables proxy does not accept node ports there).
    assert_unreachable(&n1.ns, sock(Ipv4Addr::LOCALHOST, 30080));
    // externalTrafficPolicy: Local keeps the client address; a node without a local
    // endpoint drops the traffic.
    assert_eq!(
        seen_from(&cluster.host, sock(n1.ip, 30081)),
        cluster.host_ips[0]
    );
    assert_unreachable(&cluster.host, sock(n2.ip, 30081));

    // Random balancing reaches both endpoints; affinity sticks to one.
    assert_eq!(names(&client.ns, vip(25, 7000), 24).len(), 2);
    assert_eq!(names(&client.ns, vip(22, 7000), 24).len(), 1);
    assert_eq!(names(&remote.ns, vip(22, 7000), 24).len(), 1);

    // No endpoints: refused at once, not a timeout.
    for ns in [&client.ns, &n1.ns] {
        let started = Instant::now();
        let err = ask_name(ns, vip(23, 80)).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "from {}: {err}",
            ns.name
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    // The cluster DNS address is the node's own (on lo), never DNATed.
    let device = n1
        .ns
        .ip(&["-o", "addr", "show", "label", SERVICE_ADDRESS_LABEL]);
    assert!(device.contains("10.43.0.10/32"), "{device}");
    let rules = n1.ns.exec(&["nft", "list", "table", "inet", "skiff-proxy"]);
    assert!(!rules.contains("10.43.0.10"), "{rules}");

    // An update removing an endpoint takes effect, touching only what changed.
    let mut updated = services.clone();
    updated[2].endpoints = vec![name1.clone()];
    let stats = proxy1.sync(&updated).await.unwrap();
    assert!(!stats.full && stats.commands > 0, "{stats:?}");
    assert_eq!(
        names(&client.ns, vip(25, 7000), 16),
        ["web1".to_string()].into()
    );
    // ... and an endpoint appearing for the empty Service.
    updated[4].endpoints = vec![ep2.clone()];
    proxy1.sync(&updated).await.unwrap();
    assert_eq!(seen_from(&client.ns, vip(23, 80)), c.ip);
    // Services that go take their rules with them.
    let stats = proxy1.sync(&updated[..1]).await.unwrap();
    assert_eq!(stats.services, 1);
    assert_unreachable(&client.ns, vip(21, 80));
    let rules = n1.ns.exec(&["nft", "list", "table", "inet", "skiff-proxy"]);
    assert!(
        !rules.contains("ep-") || rules.matches("chain ep-").count() == 1,
        "{rules}"
    );

    let own = run(&["ip", "-o", "addr", "show", "label", SERVICE_ADDRESS_LABEL]);
    assert!(
        own.trim().is_empty(),
        "leaked into the runner's namespace: {own}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_skips_bad_input_survives_restarts_and_cleans_up() {
    if !root_or_skip("proxy_skips_bad_input_survives_restarts_and_cleans_up") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let web = Pod::new("web");
    let client = Pod::new("client");
    let w = net.attach(&web.request()).await.unwrap().ip;
    net.attach(&client.request()).await.unwrap();
    let _httpd = Httpd::start(&web.ns, CGI_PORT);
    let ep = endpoint(w, "node-1", "TCP", CGI_PORT);

    // Bad values in some Services: each one skipped, the good Service still served.
    let mut bad_ip = service("bad-ip", "10.43.0.300", "TCP", 80, vec![ep.clone()]);
    bad_ip.external_ips = vec!["1.2.3.4; drop".into()];
    let mut bad_ep = service("bad-ep", "10.43.0.41", "TCP", 80, vec![ep.clone()]);
    bad_ep.endpoints[0].addresses = vec!["10.42.1.2\"; flush ruleset".into()];
    let outside = service("outside", "192.168.50.1", "TCP", 80, vec![ep.clone()]);
    let bad_proto = service("bad-proto", "10.43.0.42", "ICMP", 80, vec![ep.clone()]);
    let thief = service("thief", "10.43.0.40", "TCP", 80, vec![ep.clone()]);
    let good = service("good", "10.43.0.40", "TCP", 80, vec![ep.clone()]);
    let services = vec![good, bad_ip, bad_ep, outside, bad_proto, thief];

    let proxy = ServiceProxy::new(&net, settings(n1)).await.unwrap();
    let stats = proxy.sync(&services).await.unwrap();
    assert_eq!(stats.skipped, 6, "{stats:?}");
    assert_eq!(
        seen_from(&client.ns, sock(Ipv4Addr::new(10, 43, 0, 40), 80)),
        { net.config().gateway() }
    );
    let rules = n1.ns.exec(&["nft", "list", "table", "inet", "skiff-proxy"]);
    assert!(
        !rules.contains("1.2.3.4") && !rules.contains("flush"),
        "{rules}"
    );

    // The agent goes away: the rules stay. A new one reconciles on its first sync.
    drop(proxy);
    http_get(&client.ns, sock(Ipv4Addr::new(10, 43, 0, 40), 80)).expect("rules outlive the agent");
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let proxy = ServiceProxy::new(&net, settings(n1)).await.unwrap();
    let stats = proxy.sync(&services[..1]).await.unwrap();
    assert!(stats.full && stats.skipped == 0, "{stats:?}");
    http_get(&client.ns, sock(Ipv4Addr::new(10, 43, 0, 40), 80)).expect("after the restart");

    // Someone deletes the table: the next change rebuilds it.
    n1.ns
        .exec(&["nft", "delete", "table", "inet", "skiff-proxy"]);
    let moved = service("good", "10.43.0.43", "TCP", 80, vec![ep.clone()]);
    let stats = proxy.sync(&[moved]).await.unwrap();
    assert!(stats.full, "{stats:?}");
    http_get(&client.ns, sock(Ipv4Addr::new(10, 43, 0, 43), 80)).expect("rebuilt");

    // --cleanup removes the table and the local Service addresses.
    drop(proxy);
    drop(net);
    let mut cleanup = CleanupConfig::new(n1.state_dir.path());
    cleanup.netns = Some(n1.ns.path.clone());
    let report = PodNetwork::cleanup_all(&cleanup).await.unwrap();
    assert_eq!(report.service_addresses, 1, "{report:?}");
    let ruleset = n1.ns.exec(&["nft", "list", "ruleset"]);
    assert!(!ruleset.contains("skiff"), "{ruleset}");
    let left = n1
        .ns
        .ip(&["-o", "addr", "show", "label", SERVICE_ADDRESS_LABEL]);
    assert!(left.trim().is_empty(), "{left}");
}

/// Polls `check` every 50 ms until it holds, or panics after `timeout` naming `what`.
async fn eventually(timeout: Duration, what: &str, check: impl Fn() -> bool) {
    skiff_testkit::wait::wait_for(timeout, what, || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await
}

/// Issue 13: UDP clients that keep their source port follow endpoint changes at once, instead
/// of talking to the old endpoint (or into the void) until their conntrack entry times out —
/// which it never does while they keep sending. The proxy deletes the stale entries after the
/// sync that changed the Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_clients_follow_endpoint_changes_despite_conntrack() {
    if !root_or_skip("udp_clients_follow_endpoint_changes_despite_conntrack") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let (a, b, client) = (Pod::new("udp-a"), Pod::new("udp-b"), Pod::new("udp-client"));
    let ip_a = net.attach(&a.request()).await.unwrap().ip;
    let ip_b = net.attach(&b.request()).await.unwrap().ip;
    net.attach(&client.request()).await.unwrap();
    let _server_a = UdpName::start(&a.ns, 5300, "A");
    let _server_b = UdpName::start(&b.ns, 5300, "B");
    let (on_a, on_b) = (
        endpoint(ip_a, "node-1", "UDP", 5300),
        endpoint(ip_b, "node-1", "UDP", 5300),
    );
    let proxy = ServiceProxy::new(&net, settings(n1)).await.unwrap();
    let period = Duration::from_millis(100);

    // The endpoint changes from A to B while a client sends from a fixed port every 100 ms:
    // its datagrams reach B within about a second (A still answers: without the cleanup
    // they would keep going there).
    let dns = |eps: Vec<EndpointSummary>| service("udp-dns", "10.43.0.60", "UDP", 53, eps);
    proxy.sync(&[dns(vec![on_a.clone()])]).await.unwrap();
    let steady = UdpClient::start(&client.ns, 40053, sock([10, 43, 0, 60].into(), 53), period);
    eventually(Duration::from_secs(5), "A to answer", || {
        steady.answers().iter().any(|x| x == "A")
    })
    .await;
    let stats = proxy.sync(&[dns(vec![on_b.clone()])]).await.unwrap();
    let changed = Instant::now();
    let before = steady.answers().len();
    eventually(
        Duration::from_millis(1500),
        "the client's datagrams to reach B",
        || steady.answers()[before..].iter().any(|x| x == "B"),
    )
    .await;
    eprintln!(
        "B answered {:?} after the change ({stats:?})",
        changed.elapsed()
    );
    assert!(stats.conntrack_deleted >= 1, "{stats:?}");
    let after: Vec<String> = steady.answers()[before..].to_vec();
    let last_a = after.iter().rposition(|x| x == "A");
    let first_b = after.iter().position(|x| x == "B");
    assert!(last_a < first_b, "A answered after B took over: {after:?}");

    // The first endpoint: a client started before the node had rules for its Service (a
    // pod starting while the agent syncs), so its datagrams left through the default route
    // and their conntrack entry is not DNATed. Once the Service has an endpoint, they reach
    // it.
    let early = UdpClient::start(&client.ns, 40054, sock([10, 43, 0, 61].into(), 53), period);
    eventually(Duration::from_secs(5), "the early client to send", || {
        early.sent() >= 3
    })
    .await;
    assert!(early.answers().is_empty(), "{:?}", early.answers());
    let late = service("udp-late", "10.43.0.61", "UDP", 53, vec![on_a.clone()]);
    let stats = proxy.sync(&[dns(vec![on_b.clone()]), late]).await.unwrap();
    assert!(stats.conntrack_deleted >= 1, "{stats:?}");
    eventually(
        Duration::from_millis(1500),
        "the early client's datagrams to reach A",
        || early.answers().iter().any(|x| x == "A"),
    )
    .await;
    // The first client was not disturbed.
    let now = steady.answers().len();
    eventually(Duration::from_secs(2), "B to keep answering", || {
        steady.answers()[now..].iter().any(|x| x == "B")
    })
    .await;
}
