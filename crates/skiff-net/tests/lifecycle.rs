//! Issue 7 acceptance at crate level: 110 pods, leak checks after delete/recreate, agent
//! restarts, full cleanup, idempotency and bad input. Needs root; skips loudly otherwise.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::*;
use futures::future::try_join_all;
use skiff_net::{Backend, CleanupConfig, HostPort, NetError, PodNetRequest, PodNetwork, Protocol};

const PODS_PER_NODE: usize = 110;

fn with_port(mut request: PodNetRequest, host_port: u16) -> PodNetRequest {
    request.host_ports.push(HostPort {
        host_port,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    });
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_distinct_addresses_and_nothing_leaks_after_delete_and_recreate() {
    if !root_or_skip("pods_get_distinct_addresses_and_nothing_leaks_after_delete_and_recreate") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::vxlan()))
        .await
        .unwrap();
    net.sync_peers(&cluster.peers()).await.unwrap();
    let baseline = n1.ns.census();

    for round in 0..2 {
        let pods: Vec<Pod> = (0..PODS_PER_NODE)
            .map(|i| Pod::new(&format!("p{round}-{i}")))
            .collect();
        // Attach them concurrently, like pod workers do; every tenth pod publishes a port.
        let statuses = try_join_all(pods.iter().enumerate().map(|(i, pod)| {
            let request = if i % 10 == 0 {
                with_port(pod.request(), 9000 + i as u16)
            } else {
                pod.request()
            };
            let net = net.clone();
            async move { net.attach(&request).await }
        }))
        .await
        .unwrap();
        let ips: BTreeSet<Ipv4Addr> = statuses.iter().map(|s| s.ip).collect();
        assert_eq!(
            ips.len(),
            PODS_PER_NODE,
            "round {round}: duplicate addresses"
        );
        assert!(ips
            .iter()
            .all(|ip| n1.pod_cidr.contains(ip) && *ip != n1.pod_cidr.network()));
        assert!(
            !ips.contains(&Ipv4Addr::new(10, 42, 1, 1)),
            "gateway handed out"
        );
        // The kernel agrees: each pod's eth0 holds its address.
        for (pod, status) in pods.iter().zip(&statuses).step_by(37) {
            let addr = pod.ns.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]);
            assert!(addr.contains(&format!("{}/24", status.ip)), "{addr}");
        }
        let during = n1.ns.census();
        assert_eq!(during.links.len(), baseline.links.len() + PODS_PER_NODE);
        assert_eq!(
            during.nft_rules.len(),
            baseline.nft_rules.len() + PODS_PER_NODE / 10,
            "one DNAT rule per host port"
        );

        try_join_all(pods.iter().map(|pod| {
            let net = net.clone();
            let uid = pod.uid.clone();
            async move { net.detach(&uid).await }
        }))
        .await
        .unwrap();
        assert_eq!(n1.ns.census(), baseline, "round {round}: something leaked");
        assert!(net.attached().await.is_empty());
        let veths: Vec<String> = statuses.into_iter().map(|s| s.host_interface).collect();
        assert_absent_from_own_namespace(&veths);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_addresses_interfaces_and_connectivity() {
    if !root_or_skip("a_restart_keeps_addresses_interfaces_and_connectivity") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (net1, net2) = cluster.host_gw_pair().await;

    let server = Pod::new("server");
    let remote = Pod::new("remote");
    let server_request = with_port(server.request(), 8080);
    let s = net1.attach(&server_request).await.unwrap();
    let r = net2.attach(&remote.request()).await.unwrap();
    let _httpd = Httpd::start(&server.ns, 80);
    let before = n1.ns.census();
    let index_before = server.ns.ip(&["-o", "link", "show", "eth0"]);

    // The agent goes away (nothing is torn down) ...
    drop(net1);
    assert_eq!(seen_from(&remote.ns, sock(s.ip, 80)), r.ip);
    // ... and comes back: same state, nothing re-created.
    let net1 = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    assert_eq!(
        n1.ns.census(),
        before,
        "setup after a restart changed the node"
    );
    let again = net1.attach(&server_request).await.unwrap();
    assert_eq!(again, s, "same pod, same address");
    assert_eq!(
        server.ns.ip(&["-o", "link", "show", "eth0"]),
        index_before,
        "the pod's interface was re-created"
    );
    assert_eq!(seen_from(&remote.ns, sock(s.ip, 80)), r.ip);
    assert_eq!(
        seen_from(&cluster.host, sock(n1.ip, 8080)),
        cluster.host_ips[0]
    );
    // Peers remembered across the restart; a new pod gets a new address.
    let routes = n1.ns.ip(&["route", "show", "proto", "77"]);
    assert!(
        routes.contains(&format!("10.42.2.0/24 via {}", n2.ip)),
        "{routes}"
    );
    let newcomer = Pod::new("newcomer");
    let nc = net1.attach(&newcomer.request()).await.unwrap();
    assert_ne!(nc.ip, s.ip);

    // A restart with a different pod CIDR is refused, naming both, and changes nothing.
    let mut moved = n1.config(Backend::HostGw);
    moved.pod_cidr = "10.42.9.0/24".parse().unwrap();
    let err = PodNetwork::setup(moved)
        .await
        .expect_err("pod CIDR change refused");
    let text = err.to_string();
    assert!(
        text.contains("10.42.1.0/24") && text.contains("10.42.9.0/24"),
        "{text}"
    );
    assert!(matches!(err, NetError::PodCidrChanged { .. }));
    assert_eq!(seen_from(&remote.ns, sock(s.ip, 80)), r.ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_all_removes_everything_skiff_created() {
    if !root_or_skip("cleanup_all_removes_everything_skiff_created") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 2);
    let n1 = &cluster.nodes[0];
    let pristine = n1.ns.census();

    let net = PodNetwork::setup(n1.config(Backend::vxlan()))
        .await
        .unwrap();
    net.sync_peers(&cluster.peers()).await.unwrap();
    let pods: Vec<Pod> = (0..3).map(|i| Pod::new(&format!("c{i}"))).collect();
    for (i, pod) in pods.iter().enumerate() {
        net.attach(&with_port(pod.request(), 7000 + i as u16))
            .await
            .unwrap();
    }
    let state_file = net.state_file().to_path_buf();
    assert!(state_file.exists());
    drop(net);

    let cleanup = CleanupConfig {
        netns: Some(n1.ns.path.clone()),
        ..CleanupConfig::new(n1.state_dir.path())
    };
    let report = PodNetwork::cleanup_all(&cleanup).await.unwrap();
    assert!(report.links.contains(&"skiff0".to_string()), "{report:?}");
    assert!(report.links.contains(&"skiff.1".to_string()), "{report:?}");
    assert_eq!(report.links.len(), 2 + pods.len(), "{report:?}");
    assert_eq!(report.routes, 1);
    assert!(report.state_removed);
    assert!(!state_file.exists());
    assert_eq!(n1.ns.census(), pristine, "cleanup left something behind");
    for pod in &pods {
        let links = pod.ns.ip(&["-o", "link", "show"]);
        assert!(!links.contains("eth0"), "pod kept its interface: {links}");
    }

    // Idempotent, and works without any state file.
    let report = PodNetwork::cleanup_all(&cleanup).await.unwrap();
    assert!(report.links.is_empty() && report.routes == 0 && !report.state_removed);
    assert_eq!(n1.ns.census(), pristine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_without_state_finds_skiff_devices_by_name() {
    if !root_or_skip("cleanup_without_state_finds_skiff_devices_by_name") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let pristine = n1.ns.census();
    let net = PodNetwork::setup(n1.config(Backend::vxlan()))
        .await
        .unwrap();
    let pod = Pod::new("orphan");
    net.attach(&pod.request()).await.unwrap();
    std::fs::remove_file(net.state_file()).unwrap();
    drop(net);
    let cleanup = CleanupConfig {
        netns: Some(n1.ns.path.clone()),
        ..CleanupConfig::new(n1.state_dir.path())
    };
    let report = PodNetwork::cleanup_all(&cleanup).await.unwrap();
    assert_eq!(report.links.len(), 3, "{report:?}");
    assert_eq!(n1.ns.census(), pristine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_is_idempotent_and_bad_input_changes_nothing() {
    if !root_or_skip("attach_is_idempotent_and_bad_input_changes_nothing") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    // setup is idempotent too.
    let after_setup = n1.ns.census();
    let net = {
        drop(net);
        PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap()
    };
    assert_eq!(n1.ns.census(), after_setup);

    let pod = Pod::new("web");
    let first = net.attach(&pod.request()).await.unwrap();
    let census = n1.ns.census();
    let second = net.attach(&pod.request()).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(n1.ns.census(), census);
    net.detach(&pod.uid).await.unwrap();
    net.detach(&pod.uid).await.unwrap();
    net.detach("never-attached").await.unwrap();

    // A pod whose interface was removed behind skiff's back gets it back, same address.
    let p = net.attach(&pod.request()).await.unwrap();
    n1.ns.ip(&["link", "del", &p.host_interface]);
    let back = net.attach(&pod.request()).await.unwrap();
    assert_eq!(back.ip, p.ip);
    let addr = pod.ns.ip(&["-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&p.ip.to_string()), "{addr}");

    let attached = net.attached().await;
    let census = n1.ns.census();

    // A namespace path that does not exist.
    let mut missing = Pod::new("ghost").request();
    missing.netns = "/run/netns/does-not-exist".into();
    let err = net.attach(&missing).await.unwrap_err().to_string();
    assert!(
        err.contains("default/ghost") && err.contains("netns"),
        "{err}"
    );
    // A file that is not a network namespace.
    let not_a_namespace = tempfile::NamedTempFile::new().unwrap();
    let mut plain = Pod::new("plain").request();
    plain.netns = not_a_namespace.path().to_path_buf();
    let err = net.attach(&plain).await.unwrap_err().to_string();
    assert!(err.contains("default/plain"), "{err}");
    // The node's own namespace is not a pod's.
    let mut host_netns = Pod::new("intruder").request();
    host_netns.netns = n1.ns.path.clone();
    let err = net.attach(&host_netns).await.unwrap_err().to_string();
    assert!(
        err.contains("default/intruder") && err.contains("node's own"),
        "{err}"
    );
    // A namespace that already has an eth0 skiff did not make.
    let squatter = Pod::new("squatter");
    squatter.ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let err = net
        .attach(&squatter.request())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("default/squatter") && err.contains("eth0"),
        "{err}"
    );
    // Hostile fields.
    let mut bad = Pod::new("bad").request();
    bad.host_ports.push(HostPort {
        host_port: 0,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    });
    let err = net.attach(&bad).await.unwrap_err().to_string();
    assert!(err.contains("hostPorts[0].hostPort"), "{err}");
    let mut bad = Pod::new("bad2").request();
    bad.uid = String::new();
    assert!(net
        .attach(&bad)
        .await
        .unwrap_err()
        .to_string()
        .contains("uid"));
    let mut dup = Pod::new("dup").request();
    dup = with_port(with_port(dup, 8080), 8080);
    let err = net.attach(&dup).await.unwrap_err().to_string();
    assert!(
        err.contains("hostPorts[1]") && err.contains("hostPorts[0]"),
        "{err}"
    );

    assert_eq!(
        net.attached().await,
        attached,
        "a failure changed the recorded pods"
    );
    assert_eq!(n1.ns.census(), census, "a failure changed the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refuses_bad_configuration_by_field() {
    if !root_or_skip("setup_refuses_bad_configuration_by_field") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let pristine = n1.ns.census();

    let mut c = n1.config(Backend::HostGw);
    c.node_ip = Ipv4Addr::new(192, 168, 77, 7);
    let err = PodNetwork::setup(c).await.err().unwrap().to_string();
    assert!(err.contains("192.168.77.7"), "{err}");

    let mut c = n1.config(Backend::HostGw);
    c.pod_cidr = "10.43.0.0/24".parse().unwrap();
    let err = PodNetwork::setup(c).await.err().unwrap().to_string();
    assert!(
        err.contains("pod_cidr") && err.contains("10.42.0.0/16"),
        "{err}"
    );

    let mut c = n1.config(Backend::HostGw);
    c.bridge = "br0; rm -rf".into();
    let err = PodNetwork::setup(c).await.err().unwrap().to_string();
    assert!(err.contains("bridge"), "{err}");

    let mut c = n1.config(Backend::Vxlan {
        vni: 1 << 24,
        port: 8472,
    });
    c.mtu = None;
    let err = PodNetwork::setup(c).await.err().unwrap().to_string();
    assert!(err.contains("VNI"), "{err}");

    // An existing interface with the bridge's name that is not a bridge is left alone.
    n1.ns.ip(&[
        "link", "add", "skiff0", "type", "veth", "peer", "name", "other0",
    ]);
    let err = PodNetwork::setup(n1.config(Backend::HostGw))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("skiff0") && err.contains("not a bridge"),
        "{err}"
    );
    n1.ns.ip(&["link", "del", "skiff0"]);
    assert_eq!(n1.ns.census(), pristine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_previous_boot_are_forgotten_and_a_torn_state_file_does_not_block() {
    if !root_or_skip("pods_of_a_previous_boot_are_forgotten_and_a_torn_state_file_does_not_block") {
        return;
    }
    let cluster = Cluster::new(Layout::OneL2, 1);
    let n1 = &cluster.nodes[0];
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    let pod = Pod::new("before-reboot");
    net.attach(&pod.request()).await.unwrap();
    let path = net.state_file().to_path_buf();
    drop(net);

    // The same state, as if written during another boot.
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(state["boot_id"].is_string(), "{state}");
    state["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    assert!(
        net.attached().await.is_empty(),
        "pods of a previous boot kept"
    );
    drop(net);

    // A torn file written during this boot is an error naming it ...
    std::fs::write(&path, b"{\"version\": 1, \"pod_").unwrap();
    let err = PodNetwork::setup(n1.config(Backend::HostGw))
        .await
        .expect_err("corrupt state refused")
        .to_string();
    assert!(
        err.contains("network.json") && err.contains("corrupt"),
        "{err}"
    );
    // ... but one left by a power loss (older than this boot) is set aside.
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let net = PodNetwork::setup(n1.config(Backend::HostGw)).await.unwrap();
    assert!(path.with_extension("json.corrupt").exists());
    let again = Pod::new("after-reboot");
    net.attach(&again.request()).await.unwrap();
}
