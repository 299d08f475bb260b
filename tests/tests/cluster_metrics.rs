//! Issue 11, items 4 (`nodes/proxy`) and 5 (the metrics API), with real containers, real
//! cgroups and real kubectl: the nodes report their cgroup usage over the link every 15 s and
//! the server turns the last two reports into metrics-server's rates, so `kubectl top nodes`,
//! `kubectl top pods` (with `-l` and `--containers`) work with no extra component; a pod
//! burning CPU shows far more CPU than an idle one; `nodes/{name}/proxy/...` reaches each
//! node's own endpoints (`/healthz`, `/stats/summary`, `/pods`, `/metrics/resource`) through a
//! link stream (the agents listen on no port for it).
//!
//! One cluster (the server's own node and one agent) serves every case. Needs root.

use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: burn, labels: {app: burn}}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while :; do :; done"]
  - name: idle
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: quiet, labels: {app: quiet}}
spec:
  nodeName: server
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;

/// Millicores from a `kubectl top` CPU column (`123m`, `1`).
fn millicores(text: &str) -> u64 {
    match text.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => text.parse::<u64>().map(|c| c * 1000).unwrap_or(0),
    }
}

/// Mebibytes from a `kubectl top` memory column (`12Mi`).
fn mebibytes(text: &str) -> u64 {
    text.trim_end_matches("Mi").parse().unwrap_or(0)
}

/// `kubectl top …` rows (header dropped) as columns, or nothing while it fails.
fn top(cluster: &Cluster, args: &[&str]) -> Vec<Vec<String>> {
    let mut full = vec!["top"];
    full.extend_from_slice(args);
    let run = cluster.kubectl(&full);
    if !run.ok {
        return Vec::new();
    }
    run.stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn kubectl_top_and_node_proxy_work_from_the_nodes_cgroups() {
    let Some(cluster) = Cluster::start(
        ClusterSpec::new("metrics")
            .server_agent(true)
            .agents(&["node-a"]),
    ) else {
        return;
    };
    cluster.wait_nodes_ready(2);
    cluster.apply(PODS);
    cluster.wait_for("both pods Running", Duration::from_secs(90), || {
        ["burn", "quiet"]
            .iter()
            .all(|p| pod_running(&cluster.get_json(&["pod", p])))
    });

    // Discovery shows the group, as `kubectl top` checks before asking.
    let resources = cluster.kubectl_ok(&["api-resources", "--api-group=metrics.k8s.io"]);
    assert!(
        resources.contains("NodeMetrics") && resources.contains("PodMetrics"),
        "{resources}"
    );

    // kubectl top nodes: both nodes, non-zero CPU and memory (two reports: ≤ 30 s).
    cluster.wait_for(
        "kubectl top nodes listing both nodes",
        Duration::from_secs(60),
        || {
            // kubectl lists every Node, with `<unknown>` until its metrics exist.
            let rows = top(&cluster, &["nodes"]);
            rows.len() == 2 && rows.iter().all(|r| r[1] != "<unknown>")
        },
    );
    let nodes = top(&cluster, &["nodes"]);
    for row in &nodes {
        assert!(
            row[0] == "server" || row[0] == "node-a",
            "unexpected node row {row:?}"
        );
        assert!(millicores(&row[1]) > 0, "node CPU is non-zero: {row:?}");
        assert!(mebibytes(&row[3]) > 0, "node memory is non-zero: {row:?}");
    }

    // The raw API parses and has metrics-server's shape.
    let raw = cluster.kubectl_ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]);
    let list: serde_json::Value = serde_json::from_str(&raw).expect("NodeMetricsList JSON");
    assert_eq!(list["kind"], "NodeMetricsList");
    let item = &list["items"][0];
    assert!(
        item["usage"]["cpu"].is_string()
            && item["usage"]["memory"]
                .as_str()
                .is_some_and(|m| m.ends_with("Ki"))
            && item["window"].as_str().is_some_and(|w| w.ends_with('s'))
            && item["timestamp"].is_string(),
        "{item}"
    );

    // kubectl top pods: the burning pod far above the idle one.
    cluster.wait_for(
        "kubectl top pods listing both pods",
        Duration::from_secs(60),
        || top(&cluster, &["pods"]).len() == 2,
    );
    let cpu_of = |pod: &str| {
        top(&cluster, &["pods"])
            .iter()
            .find(|r| r[0] == pod)
            .map(|r| millicores(&r[1]))
            .unwrap_or(0)
    };
    cluster.wait_for(
        "the burning pod near a full core",
        Duration::from_secs(45),
        || cpu_of("burn") >= 300,
    );
    let (burn, quiet) = (cpu_of("burn"), cpu_of("quiet"));
    assert!(
        burn >= 300 && quiet < 50 && burn > 10 * quiet.max(1),
        "burn {burn}m vs quiet {quiet}m"
    );
    // -l selects by the pods' labels.
    let selected = top(&cluster, &["pods", "-l", "app=quiet"]);
    assert_eq!(selected.len(), 1, "{selected:?}");
    assert_eq!(selected[0][0], "quiet");
    // --containers: one row per container, the spinning one hot, the sleeping one cold.
    let rows = top(&cluster, &["pods", "burn", "--containers"]);
    let container = |name: &str| {
        rows.iter()
            .find(|r| r[1] == name)
            .map(|r| millicores(&r[2]))
            .unwrap_or_else(|| panic!("no row for container {name}: {rows:?}"))
    };
    assert!(
        container("spin") >= 300 && container("idle") < 50,
        "{rows:?}"
    );
    // A pod that does not exist: metrics-server's 404.
    let missing = cluster.kubectl(&["top", "pod", "nosuchpod"]);
    assert!(
        !missing.ok && missing.stderr.contains("not found"),
        "{}",
        missing.stderr
    );

    // nodes/proxy reaches each node's own endpoints over its link.
    for node in ["server", "node-a"] {
        let base = format!("/api/v1/nodes/{node}/proxy");
        assert_eq!(
            cluster
                .kubectl_ok(&["get", "--raw", &format!("{base}/healthz")])
                .trim(),
            "ok"
        );
        let summary: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
            "get",
            "--raw",
            &format!("{base}/stats/summary"),
        ]))
        .expect("Summary JSON");
        assert_eq!(summary["node"]["nodeName"], node, "{summary}");
        assert!(
            summary["node"]["memory"]["workingSetBytes"]
                .as_u64()
                .is_some_and(|b| b > 0),
            "{summary}"
        );
        let expected = if node == "server" { "quiet" } else { "burn" };
        let pods = summary["pods"].as_array().cloned().unwrap_or_default();
        assert!(
            pods.iter().any(|p| p["podRef"]["name"] == expected
                && p["containers"][0]["cpu"]["usageCoreNanoSeconds"]
                    .as_u64()
                    .is_some_and(|n| n > 0)),
            "{node}: {summary}"
        );
        // The port form (the kubelet's 10250) is the same node; another port is refused.
        let pod_list: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{node}:10250/proxy/pods"),
        ]))
        .expect("PodList JSON");
        assert_eq!(pod_list["kind"], "PodList");
        assert!(
            pod_list["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|p| p["metadata"]["name"] == expected)),
            "{pod_list}"
        );
        let metrics = cluster.kubectl_ok(&["get", "--raw", &format!("{base}/metrics/resource")]);
        assert!(
            metrics.contains("node_cpu_usage_seconds_total ")
                && metrics.contains(&format!("pod=\"{expected}\""))
                && metrics.contains("scrape_error 0"),
            "{metrics}"
        );
        let unknown = cluster.kubectl(&["get", "--raw", &format!("{base}/no/such/path")]);
        assert!(
            !unknown.ok && unknown.stderr.contains("NotFound"),
            "{}",
            unknown.stderr
        );
    }
    let wrong_port = cluster.kubectl(&["get", "--raw", "/api/v1/nodes/node-a:22/proxy/healthz"]);
    assert!(!wrong_port.ok, "{}", wrong_port.stdout);
    let no_node = cluster.kubectl(&["get", "--raw", "/api/v1/nodes/ghost/proxy/healthz"]);
    assert!(
        !no_node.ok && no_node.stderr.contains("not found"),
        "{}",
        no_node.stderr
    );
}
