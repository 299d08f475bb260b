//! Issue 13: a Deployment's Service gets EndpointSlices and Endpoints that follow its pods'
//! readiness, seen through real kubectl against a real server running real containers. A pod
//! whose readiness probe starts failing leaves the ready endpoints within about one probe
//! period; when it passes again it comes back. The server's `kubernetes` Service points at
//! the server, and `kube-dns` exists at the tenth service address.
//!
//! Needs root (the cluster runs in network namespaces).

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

/// Probe period of the pods (seconds).
const PERIOD: u64 = 2;

const MANIFESTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 0.2; done"]
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          exec: {command: ["test", "-f", "/tmp/ready"]}
          periodSeconds: 2
          failureThreshold: 1
          successThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {tier: front}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
"#;

/// `(pod name, ip, ready)` of every endpoint of the Service's slices, sorted by pod name.
fn slice_endpoints(cluster: &Cluster) -> Vec<(String, String, bool)> {
    let slices = cluster.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let mut out: Vec<(String, String, bool)> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e: Value| {
            (
                e["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                e["conditions"]["ready"].as_bool() == Some(true),
            )
        })
        .collect();
    out.sort();
    out
}

/// `(ready IPs, not-ready IPs)` of the Endpoints `web`, sorted.
fn endpoints_ips(cluster: &Cluster) -> (Vec<String>, Vec<String>) {
    let ep = cluster.get_json(&["endpoints", "web"]);
    let ips = |field: &str| {
        let mut ips: Vec<String> = ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        ips.sort();
        ips
    };
    (ips("addresses"), ips("notReadyAddresses"))
}

#[test]
fn service_endpoints_follow_pod_readiness() {
    let Some(cluster) = Cluster::start(ClusterSpec::new("svc-endpoints").server_agent(true)) else {
        return;
    };

    // The system Services: kube-dns at the tenth address, kubernetes pointing at the server.
    let dns = cluster.kubectl_ok(&[
        "get",
        "svc",
        "-n",
        "kube-system",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(dns, "10.43.0.10");
    let api = cluster.kubectl_ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
    ]);
    assert_eq!(api, format!("{}:{}", cluster.server_ip(), cluster.port));

    cluster.apply(MANIFESTS);
    cluster.wait_for("2 Running pods", Duration::from_secs(90), || {
        let pods = cluster.pods("app=web");
        pods.len() == 2 && pods.iter().all(pod_running)
    });
    let pods = cluster.pod_ips("app=web");
    cluster.wait_for(
        "both pods ready in the slice",
        Duration::from_secs(30),
        || {
            let endpoints = slice_endpoints(&cluster);
            endpoints.len() == 2 && endpoints.iter().all(|(_, _, ready)| *ready)
        },
    );
    let endpoints = slice_endpoints(&cluster);
    for (name, ip) in &pods {
        assert!(
            endpoints.iter().any(|(n, i, _)| n == name && i == ip),
            "{name} {ip} missing from {endpoints:?}"
        );
    }
    // The slice as kubectl shows it: named after the Service, the resolved container port.
    let table = cluster.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert!(row[0].starts_with("web-") && row[0].len() > 4, "{table}");
    assert_eq!(row[1..3], ["IPv4", "8080"], "{table}");
    let slice = cluster.get_json(&["endpointslices", row[0]]);
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["controller"], true);
    cluster.wait_for(
        "the Endpoints list both pods",
        Duration::from_secs(10),
        || endpoints_ips(&cluster).0.len() == 2,
    );

    // The first pod's probe starts failing: it leaves the ready endpoints promptly.
    let (failing, failing_ip) = pods[0].clone();
    cluster.kubectl_ok(&["exec", &failing, "--", "rm", "/tmp/ready"]);
    let started = Instant::now();
    cluster.wait_for(
        "the failing pod to turn not-ready in the slice",
        Duration::from_secs(30),
        || {
            slice_endpoints(&cluster)
                .iter()
                .any(|(n, _, ready)| n == &failing && !ready)
        },
    );
    let took = started.elapsed();
    eprintln!("not-ready in the slice after {took:?} (probe period {PERIOD}s)");
    assert!(
        took <= Duration::from_secs(PERIOD * 2 + 2),
        "took {took:?} to leave the Service with a {PERIOD}s probe period"
    );
    cluster.wait_for(
        "the Endpoints to move it to notReadyAddresses",
        Duration::from_secs(10),
        || endpoints_ips(&cluster).1 == [failing_ip.clone()],
    );

    // It passes again: back among the ready endpoints.
    cluster.kubectl_ok(&["exec", &failing, "--", "touch", "/tmp/ready"]);
    cluster.wait_for("the pod to come back", Duration::from_secs(30), || {
        slice_endpoints(&cluster).iter().all(|(_, _, ready)| *ready)
            && endpoints_ips(&cluster).0.len() == 2
    });

    // Scaled to zero: one empty placeholder slice, no subsets.
    cluster.kubectl_ok(&["scale", "deployment", "web", "--replicas=0"]);
    cluster.wait_for("the endpoints to empty", Duration::from_secs(60), || {
        let slices = cluster.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
        let items = slices["items"].as_array().cloned().unwrap_or_default();
        items.len() == 1
            && items[0]["endpoints"].as_array().is_none_or(Vec::is_empty)
            && endpoints_ips(&cluster) == (Vec::new(), Vec::new())
    });

    // Deleting the Service takes its slices (owner references) and Endpoints with it.
    cluster.kubectl_ok(&["delete", "service", "web"]);
    cluster.wait_for(
        "the slices and Endpoints to go",
        Duration::from_secs(30),
        || {
            let slices =
                cluster.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
            slices["items"].as_array().is_none_or(Vec::is_empty)
                && !cluster.kubectl(&["get", "endpoints", "web"]).ok
        },
    );
}
