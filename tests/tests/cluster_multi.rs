//! Issue 6, acceptance 2 and 3, with a server and two agents, each in its own network
//! namespace: a 6-replica Deployment spreads over the nodes; a DaemonSet runs one pod per
//! node (and its pods reach each other across nodes by pod IP); a failing liveness probe
//! restarts its container and the count shows in `kubectl get pods`; when a node dies its pods
//! come back Running on the other node.
//!
//! Real containers, real kubectl; needs root.

use std::collections::BTreeMap;
use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec, FAST_NODE_LIFECYCLE as FAST};

fn per_node(pods: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for pod in pods {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        *count.entry(node).or_default() += 1;
    }
    count
}

fn live(pods: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    pods.into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[test]
fn deployments_spread_daemonsets_cover_nodes_and_liveness_restarts() {
    let Some(cluster) = Cluster::start(
        ClusterSpec::new("multi")
            .agents(&["node-a", "node-b"])
            .server_args(FAST),
    ) else {
        return;
    };

    cluster.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 3600"]
    livenessProbe:
      exec: {command: ["test", "-f", "/tmp/alive"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );

    // 6 replicas spread over both nodes.
    cluster.wait_for("6 Running replicas", Duration::from_secs(90), || {
        let pods = cluster.pods("app=spread");
        pods.len() == 6 && pods.iter().all(pod_running)
    });
    let spread = per_node(&cluster.pods("app=spread"));
    assert_eq!(spread.len(), 2, "both nodes run replicas: {spread:?}");
    let (min, max) = (
        spread.values().min().copied().unwrap_or(0),
        spread.values().max().copied().unwrap_or(0),
    );
    assert!(max - min <= 2, "replicas are spread: {spread:?}");

    // The DaemonSet: one pod per node.
    cluster.wait_for(
        "a web pod Running on each node",
        Duration::from_secs(60),
        || {
            let pods = cluster.pods("app=web");
            pods.len() == 2 && pods.iter().all(pod_running) && per_node(&pods).len() == 2
        },
    );
    // Pods reach each other across nodes by pod IP, and see the real pod IP.
    let web = cluster.pods("app=web");
    let (first, second) = (&web[0], &web[1]);
    let target_ip = second["status"]["podIP"].as_str().unwrap();
    let answer = cluster.kubectl_ok(&[
        "exec",
        first["metadata"]["name"].as_str().unwrap(),
        "--",
        "wget",
        "-qO-",
        &format!("http://{target_ip}:8080/"),
    ]);
    assert_eq!(
        answer.trim(),
        second["metadata"]["name"].as_str().unwrap(),
        "the pod on the other node answered"
    );

    // The liveness probe restarts the container; kubectl shows the count.
    cluster.wait_for("a liveness restart", Duration::from_secs(60), || {
        let pod = cluster.get_json(&["pod", "flaky"]);
        pod["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let table = cluster.kubectl_ok(&["get", "pod", "flaky"]);
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    let restarts: i64 = row
        .split_whitespace()
        .nth(3)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    assert!(restarts >= 1, "RESTARTS column: {table}");
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=flaky",
    ]);
    assert!(events.contains("Unhealthy"), "{events}");
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
}

#[test]
fn pods_of_a_dead_node_come_back_on_the_other_node() {
    let Some(mut cluster) = Cluster::start(
        ClusterSpec::new("failover")
            .agents(&["node-a", "node-b"])
            .server_args(FAST),
    ) else {
        return;
    };
    cluster.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 4
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#,
    );
    cluster.wait_for(
        "4 Running replicas on both nodes",
        Duration::from_secs(90),
        || {
            let pods = cluster.pods("app=app");
            pods.len() == 4 && pods.iter().all(pod_running) && per_node(&pods).len() == 2
        },
    );

    // node-b's machine stops: agent and containers killed, cable pulled.
    let b = cluster.agent("node-b");
    b.kill9();
    b.kill_containers();
    b.ns.set_link(false).expect("take node-b off the LAN");

    cluster.wait_for(
        "4 Running replicas on node-a",
        Duration::from_secs(60),
        || {
            let pods = live(cluster.pods("app=app"));
            pods.len() == 4
                && pods.iter().all(pod_running)
                && pods.iter().all(|p| p["spec"]["nodeName"] == "node-a")
        },
    );
    let nodes = cluster.kubectl_ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node-b") && l.contains("NotReady")),
        "{nodes}"
    );
}
