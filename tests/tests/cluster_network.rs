//! Issue 7 acceptance on the multi-node harness (each node in its own network namespace on a
//! test bridge): a pod's IP answers from its node, from the other node and from a pod on the
//! other node, which is seen with its real pod IP; pods reach the outside masqueraded; hostPort
//! reaches the container through the node address; 110 pods on one node get distinct
//! addresses, nothing leaks after deleting and recreating them, and an agent restart keeps
//! addresses and connectivity.
//!
//! Real containers, real kubectl; needs root.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

/// A busybox web server on 8080 whose `/cgi-bin/ip` answers the client's address.
const WHOAMI: &str = r#"mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"#;

fn pod_ip(cluster: &Cluster, name: &str) -> String {
    cluster.get_json(&["pod", name])["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// busybox httpd reports IPv4 clients as `[::ffff:A.B.C.D]` (it listens on a dual socket).
fn ipv4_of(remote_addr: &str) -> String {
    let trimmed = remote_addr.trim();
    trimmed
        .strip_prefix("[::ffff:")
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(trimmed)
        .to_string()
}

/// Fetches `url` from inside a node's network namespace; the answer's client address.
fn fetch_from_node(cluster: &Cluster, node: &str, url: &str) -> String {
    let answer = cluster
        .node(node)
        .ns
        .exec(&["curl", "-sS", "-m", "5", url])
        .unwrap_or_else(|e| panic!("curl {url} from {node}: {e}"));
    ipv4_of(&answer)
}

#[test]
fn pod_ips_answer_across_nodes_with_real_addresses_egress_masquerades_and_host_ports_work() {
    let Some(cluster) = Cluster::start(ClusterSpec::new("net").agents(&["node-a", "node-b"]))
    else {
        return;
    };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {whoami:?}]
    ports:
    - {{containerPort: 8080, hostPort: 18080}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#,
        whoami = WHOAMI
    ));
    cluster.wait_for("web and client Running", Duration::from_secs(90), || {
        ["web", "client"]
            .iter()
            .all(|p| pod_running(&cluster.get_json(&["pod", p])))
    });
    let web_ip = pod_ip(&cluster, "web");
    let client_ip = pod_ip(&cluster, "client");
    assert!(
        web_ip.starts_with("10.42.") && client_ip.starts_with("10.42."),
        "pod IPs from the cluster CIDR: {web_ip} {client_ip}"
    );
    assert_ne!(web_ip, client_ip);
    let wide = cluster.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains(&web_ip) && wide.contains(&client_ip),
        "{wide}"
    );
    let url = format!("http://{web_ip}:8080/cgi-bin/ip");

    // 1. From the node the pod runs on, from the other node, from a pod on the other node.
    let from_a = fetch_from_node(&cluster, "node-a", &url);
    assert!(
        from_a.parse::<std::net::Ipv4Addr>().is_ok(),
        "answer from node-a: {from_a:?}"
    );
    let node_b_ip = cluster.node("node-b").ns.ip.to_string();
    assert_eq!(
        fetch_from_node(&cluster, "node-b", &url),
        node_b_ip,
        "routed, not NATed, from the other node"
    );
    let from_pod = cluster.kubectl_ok(&["exec", "client", "--", "wget", "-qO-", &url]);
    assert_eq!(
        ipv4_of(&from_pod),
        client_ip,
        "the web pod sees the client pod's real IP"
    );

    // 2. Egress to an address outside the cluster (the host on the test bridge) is
    // masqueraded to the node's address: the host has no route back to pod addresses.
    let listener = TcpListener::bind((cluster.host_ip(), 0)).expect("listen on the test bridge");
    let outside = listener.local_addr().expect("listener address");
    let accept = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().expect("accept the pod's connection");
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        peer.ip().to_string()
    });
    let answer = cluster.kubectl_ok(&[
        "exec",
        "client",
        "--",
        "wget",
        "-qO-",
        &format!("http://{outside}/"),
    ]);
    assert_eq!(answer.trim(), "ok");
    let seen = accept.join().expect("listener thread");
    assert_eq!(
        seen, node_b_ip,
        "egress is masqueraded to the node's address"
    );

    // 4. hostPort: the node's address, port 18080, reaches the web container.
    let node_a_ip = cluster.node("node-a").ns.ip.to_string();
    assert_eq!(
        fetch_from_node(
            &cluster,
            "node-b",
            &format!("http://{node_a_ip}:18080/cgi-bin/ip")
        ),
        node_b_ip,
        "hostPort answers through node-a's address (DNAT only: the client keeps its address)"
    );
}

/// What skiff created in a node's network namespace: links, routes, nft rules.
fn network_footprint(cluster: &Cluster, node: &str) -> (usize, Vec<String>, usize) {
    let ns = &cluster.node(node).ns;
    let veths = ns
        .exec(&["ip", "-o", "link", "show", "type", "veth"])
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains(" eth0@"))
        .count();
    let routes: Vec<String> = ns
        .exec(&["ip", "route", "show"])
        .unwrap_or_default()
        .lines()
        // `linkdown` follows the bridge's carrier (its last port going away), not skiff.
        .map(|route| route.replace(" linkdown", "").trim().to_string())
        .collect();
    let rules = ns
        .exec(&["nft", "list", "ruleset"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("dnat") || l.contains("masquerade") || l.contains("ip saddr"))
        .count();
    (veths, routes, rules)
}

const PODS: usize = 110;

fn deployment(replicas: usize) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: many}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: many}}}}
  template:
    metadata: {{labels: {{app: many}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

fn running_ips(cluster: &Cluster) -> BTreeMap<String, String> {
    cluster
        .pods("app=many")
        .iter()
        .filter(|p| pod_running(p) && p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["status"]["podIP"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn run_all(cluster: &Cluster) -> BTreeMap<String, String> {
    cluster.apply(&deployment(PODS));
    cluster.wait_for(
        &format!("{PODS} Running pods with IPs"),
        Duration::from_secs(400),
        || running_ips(cluster).len() == PODS,
    );
    let ips = running_ips(cluster);
    let distinct: BTreeSet<&String> = ips.values().collect();
    assert_eq!(
        distinct.len(),
        PODS,
        "every pod has its own address: {ips:?}"
    );
    ips
}

fn delete_all(cluster: &Cluster) {
    cluster.kubectl_ok(&[
        "delete",
        "deployment",
        "many",
        "--wait=true",
        "--timeout=300s",
    ]);
    cluster.wait_for("every pod gone", Duration::from_secs(300), || {
        cluster.pods("app=many").is_empty()
    });
}

fn ping(cluster: &Cluster, node: &str, ip: &str) -> bool {
    cluster
        .node(node)
        .ns
        .exec(&["busybox", "ping", "-c", "1", "-W", "3", ip])
        .is_ok()
}

#[test]
fn a_full_node_of_pods_gets_distinct_addresses_leaks_nothing_and_survives_an_agent_restart() {
    let Some(mut cluster) = Cluster::start(ClusterSpec::new("net110").agents(&["node-a"])) else {
        return;
    };
    // Round 1: a full node, then nothing left but what the node itself needs.
    run_all(&cluster);
    delete_all(&cluster);
    let (veths, routes, rules) = network_footprint(&cluster, "node-a");
    assert_eq!(veths, 0, "no pod veth left after deleting every pod");
    // The agent's own record of addresses is empty again.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            cluster
                .node("node-a")
                .data_dir
                .join("agent/net/network.json"),
        )
        .expect("the agent's network state"),
    )
    .expect("network state is JSON");
    assert_eq!(
        state["pods"].as_object().map(|m| m.len()).unwrap_or(0),
        0,
        "no address still allocated: {state}"
    );

    // Round 2: recreated pods get distinct addresses again; an agent restart keeps every
    // running pod's address and connectivity.
    let before = run_all(&cluster);
    let sample: Vec<String> = before.values().take(3).cloned().collect();
    for ip in &sample {
        assert!(
            ping(&cluster, "node-a", ip),
            "{ip} answers before the restart"
        );
    }
    cluster.agent("node-a").stop();
    cluster.agent("node-a").start().expect("restart the agent");
    cluster.wait_nodes_ready(1);
    cluster.wait_for(
        "every pod Running again after the restart",
        Duration::from_secs(60),
        || running_ips(&cluster) == before,
    );
    let after = running_ips(&cluster);
    assert_eq!(
        after, before,
        "same pods, same addresses after the agent restart"
    );
    for ip in &sample {
        assert!(
            ping(&cluster, "node-a", ip),
            "{ip} answers after the restart"
        );
    }
    delete_all(&cluster);
    assert_eq!(
        network_footprint(&cluster, "node-a"),
        (0, routes, rules),
        "the second round leaked no link, route or rule"
    );
}
