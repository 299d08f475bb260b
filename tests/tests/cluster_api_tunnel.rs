//! Issue 13: the `kubernetes` Service reaches the API from every node, also from a node
//! without a direct path to it. node-b's namespace drops TCP to the server's API port (only
//! the link's UDP passes, as behind a NAT or a firewall): its agent finds the API's address
//! unreachable and carries its pods' connections to `kubernetes.default.svc` through the link
//! (API tunnel), TLS end to end; node-a reaches the API directly and keeps the direct path.
//!
//! Needs root.

use std::time::{Duration, Instant};

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

const CLIENTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client-a}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: client-b}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#;

/// The API's `/version` as a real client gets it from `pod`'s network namespace through the
/// `kubernetes` Service's cluster IP: the host's kubectl, run inside that namespace, with the
/// cluster's CA (the serving certificate names 10.43.0.1), so TLS is verified end to end.
/// (busybox's TLS client offers nothing the API server accepts.)
fn api_version_from(cluster: &Cluster, pod: &str, node: &str) -> Result<String, String> {
    let uid = cluster.get_json(&["pod", pod])["metadata"]["uid"]
        .as_str()
        .ok_or_else(|| format!("{pod} has no uid"))?
        .to_string();
    let net = cluster
        .node(node)
        .data_dir
        .join(format!("agent/runtime/pods/{uid}/ns/net"));
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", net.display()))
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args([
            "--server",
            "https://10.43.0.1:443",
            "--request-timeout=5s",
            "get",
            "--raw",
            "/version",
        ])
        .output()
        .map_err(|e| format!("run kubectl in {pod}'s network: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() && stdout.contains("gitVersion") {
        Ok(stdout)
    } else {
        Err(format!(
            "stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn pods_reach_the_api_through_the_link_when_the_node_has_no_direct_path() {
    let Some(cluster) = Cluster::start(
        ClusterSpec::new("api-tunnel")
            .agents(&["node-a", "node-b"])
            .api_tcp_blocked("node-b"),
    ) else {
        return;
    };
    cluster.apply(CLIENTS);
    cluster.wait_for("both clients Running", Duration::from_secs(120), || {
        pod_running(&cluster.get_json(&["pod", "client-a"]))
            && pod_running(&cluster.get_json(&["pod", "client-b"]))
    });
    // The node without a direct path: TCP to the API's address really is dropped there.
    let direct = cluster.kubectl(&[
        "exec",
        "client-b",
        "--",
        "timeout",
        "3",
        "nc",
        &cluster.server_ip().to_string(),
        &cluster.port.to_string(),
        "-e",
        "true",
    ]);
    assert!(
        !direct.ok,
        "node-b must not reach the API's address directly"
    );

    for (pod, node) in [("client-b", "node-b"), ("client-a", "node-a")] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match api_version_from(&cluster, pod, node) {
                Ok(_) => break,
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "{pod} on {node} gets no answer from the API through the kubernetes Service: {error}\n{}",
                    cluster.logs()
                ),
            }
        }
    }
    // Also by cluster IP and port, a plain TCP connect.
    let connect = cluster.kubectl(&[
        "exec",
        "client-b",
        "--",
        "timeout",
        "5",
        "nc",
        "10.43.0.1",
        "443",
        "-e",
        "true",
    ]);
    assert!(connect.ok, "10.43.0.1:443 from node-b: {}", connect.stderr);

    // node-b went through the link; node-a kept the direct path.
    let b = cluster.node("node-b").log_text();
    assert!(
        b.contains("pods reach the kubernetes Service through the link"),
        "node-b's agent did not switch to the API tunnel:\n{}",
        cluster.node("node-b").log_tail(60)
    );
    let a = cluster.node("node-a").log_text();
    assert!(
        !a.contains("pods reach the kubernetes Service through the link"),
        "node-a has a direct path and must use it:\n{}",
        cluster.node("node-a").log_tail(60)
    );
}
