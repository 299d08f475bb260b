//! Issue 6, acceptance 4 and 5: offline autonomy. A node whose link is cut keeps its pods
//! running; restarted while still cut off — after a simulated power loss that also killed its
//! containers and dropped its mounts — it brings the same pods back from its local state; when
//! the link returns the server's state wins (pods replaced elsewhere meanwhile are stopped)
//! and the cluster converges without duplicates. A brief outage restarts nothing, and
//! `kill -9` of an agent leaves its containers and restart counts untouched.
//!
//! Real containers, real kubectl; needs root.

use std::collections::BTreeSet;
use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec, FAST_NODE_LIFECYCLE as FAST};

/// httpd pods answering with their name on port 8080, evicted 1 s after their node is lost.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 1}
      containers:
      - name: httpd
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;

fn live(pods: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    pods.into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn name(p: &serde_json::Value) -> String {
    p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether `pod` answers HTTP from inside `node`'s network namespace.
fn answers(cluster: &Cluster, node: &str, ip: &str, pod: &str) -> bool {
    cluster
        .node(node)
        .ns
        .exec(&["wget", "-qO-", "-T", "2", &format!("http://{ip}:8080/")])
        .map(|body| body.trim() == pod)
        .unwrap_or(false)
}

#[test]
fn a_cut_off_node_keeps_and_restores_its_pods_then_the_server_wins() {
    let Some(mut cluster) = Cluster::start(
        ClusterSpec::new("offline")
            .agents(&["node-a", "node-b"])
            .server_args(FAST),
    ) else {
        return;
    };
    // All replicas on node-b first.
    cluster.kubectl_ok(&["cordon", "node-a"]);
    cluster.apply(WEB);
    cluster.wait_for(
        "3 Running replicas on node-b",
        Duration::from_secs(120),
        || {
            let pods = cluster.pods("app=web");
            pods.len() == 3
                && pods.iter().all(pod_running)
                && pods.iter().all(|p| p["spec"]["nodeName"] == "node-b")
        },
    );
    cluster.kubectl_ok(&["uncordon", "node-a"]);
    let originals: Vec<(String, String, String)> = cluster
        .pods("app=web")
        .iter()
        .map(|p| {
            (
                name(p),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
                p["status"]["podIP"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    // Cut node-b's link: its pods keep running (they answer inside node-b's network).
    let (server_ip, port) = (cluster.server_ip(), cluster.port);
    cluster
        .agent("node-b")
        .cut_link(server_ip, port)
        .expect("cut node-b's link");
    std::thread::sleep(Duration::from_secs(3));
    for (pod, _, ip) in &originals {
        assert!(
            answers(&cluster, "node-b", ip, pod),
            "{pod} serves while cut off"
        );
    }

    // Power loss while still cut off: agent and containers die, mounts are gone. The agent
    // starts again without the server and brings the same pods back from its local state.
    let b = cluster.agent("node-b");
    b.kill9();
    b.kill_containers();
    b.unmount_all();
    assert!(b.container_pids().is_empty());
    b.start().expect("restart node-b's agent");
    cluster.wait_for(
        "node-b's pods serving again from local state",
        Duration::from_secs(120),
        || {
            // New sandboxes: the same pods, maybe at new addresses (the node's own state says).
            originals.iter().all(|(pod, uid, _)| {
                cluster
                    .node("node-b")
                    .pod_ip(uid)
                    .is_some_and(|ip| answers(&cluster, "node-b", &ip, pod))
            })
        },
    );
    assert!(cluster
        .agent("node-b")
        .log_text()
        .contains("pod sandboxes of a previous boot"));

    // Meanwhile the server lost node-b and replaced its pods on node-a.
    cluster.wait_for(
        "3 replacements Running on node-a",
        Duration::from_secs(120),
        || {
            let pods = live(cluster.pods("app=web"));
            pods.len() == 3
                && pods.iter().all(pod_running)
                && pods.iter().all(|p| p["spec"]["nodeName"] == "node-a")
        },
    );
    let replacements: BTreeSet<String> = live(cluster.pods("app=web")).iter().map(name).collect();

    // The link comes back: node-b stops the pods the server deleted; nothing else changes.
    cluster
        .agent("node-b")
        .restore_link()
        .expect("restore node-b's link");
    cluster.wait_for("node-b Ready again", Duration::from_secs(120), || {
        cluster
            .kubectl_ok(&["get", "node", "node-b"])
            .lines()
            .any(|l| l.starts_with("node-b") && l.contains(" Ready"))
    });
    cluster.wait_for(
        "the evicted pods gone and node-b's containers stopped",
        Duration::from_secs(120),
        || {
            let pods = cluster.pods("app=web");
            pods.len() == 3 && cluster.node("node-b").container_pids().is_empty()
        },
    );
    let now: BTreeSet<String> = cluster.pods("app=web").iter().map(name).collect();
    assert_eq!(now, replacements, "no duplicates; the replacements stay");
    for pod in cluster.pods("app=web") {
        assert!(pod_running(&pod));
        assert_eq!(pod["spec"]["nodeName"], "node-a");
        assert_eq!(
            pod["status"]["containerStatuses"][0]["restartCount"], 0,
            "nothing restarted because the link came back"
        );
    }
}

#[test]
fn kill_9_and_short_outages_leave_containers_and_restart_counts_alone() {
    let Some(mut cluster) = Cluster::start(ClusterSpec::new("kill9").agents(&["node-a"])) else {
        return;
    };
    cluster.apply(WEB);
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 1; exit 3"]
"#,
    );
    cluster.wait_for("3 Running web pods", Duration::from_secs(90), || {
        let pods = cluster.pods("app=web");
        pods.len() == 3 && pods.iter().all(pod_running)
    });
    cluster.wait_for(
        "crashy restarted at least once",
        Duration::from_secs(60),
        || {
            cluster.get_json(&["pod", "crashy"])["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0)
                >= 1
        },
    );
    let snapshot = |cluster: &Cluster| -> Vec<(String, String, i64)> {
        let mut all: Vec<(String, String, i64)> = cluster
            .pods("app=web")
            .iter()
            .map(|p| {
                let cs = &p["status"]["containerStatuses"][0];
                (
                    name(p),
                    cs["containerID"].as_str().unwrap_or_default().to_string(),
                    cs["restartCount"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        all.sort();
        all
    };
    let before = snapshot(&cluster);
    let crashy_before = cluster.get_json(&["pod", "crashy"])["status"]["containerStatuses"][0]
        ["restartCount"]
        .as_i64()
        .unwrap_or(0);

    // kill -9: the containers do not notice.
    let a = cluster.agent("node-a");
    a.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let web_pids: Vec<i32> = cluster.node("node-a").container_pids();
    assert!(
        web_pids.len() >= 3,
        "containers survive the agent: {web_pids:?}"
    );
    let adoptions = log_count(&cluster, "node-a", "re-adopted running pods");
    cluster.agent("node-a").start().expect("restart the agent");
    cluster.wait_for("the agent back", Duration::from_secs(30), || {
        log_count(&cluster, "node-a", "re-adopted running pods") > adoptions
    });
    let after = snapshot(&cluster);
    assert_eq!(before, after, "same containers, same restart counts");
    for (pod, _, _) in &after {
        let ip = cluster.get_json(&["pod", pod])["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(answers(&cluster, "node-a", &ip, pod), "{pod} still serves");
    }
    // The re-adopted crash-looping pod keeps its count (and goes on from there).
    let crashy_after = cluster.get_json(&["pod", "crashy"])["status"]["containerStatuses"][0]
        ["restartCount"]
        .as_i64()
        .unwrap_or(0);
    assert!(
        crashy_after >= crashy_before,
        "{crashy_before} -> {crashy_after}"
    );
    // Re-adopted pods are still managed: exec works, deletion stops them.
    let pod = &after[0].0;
    let hostname = cluster.kubectl_ok(&["exec", pod, "--", "hostname"]);
    assert_eq!(hostname.trim(), pod);

    // A short outage (shorter than the node monitor's grace period) restarts nothing.
    let (server_ip, port) = (cluster.server_ip(), cluster.port);
    cluster
        .agent("node-a")
        .cut_link(server_ip, port)
        .expect("cut the link");
    std::thread::sleep(Duration::from_secs(5));
    let renewed = |c: &Cluster| {
        c.get_json(&["lease", "-n", "kube-node-lease", "node-a"])["spec"]["renewTime"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let during_outage = renewed(&cluster);
    cluster
        .agent("node-a")
        .restore_link()
        .expect("restore the link");
    // Back when a heartbeat gets through again (whether or not the connection dropped).
    cluster.wait_for(
        "a heartbeat after the outage",
        Duration::from_secs(30),
        || renewed(&cluster) != during_outage,
    );
    assert_eq!(
        snapshot(&cluster),
        before,
        "the link coming back restarted nothing"
    );

    cluster.kubectl_ok(&["delete", "deployment", "web"]);
    cluster.kubectl_ok(&["delete", "pod", "crashy"]);
    cluster.wait_for("everything stopped", Duration::from_secs(60), || {
        cluster.node("node-a").container_pids().is_empty()
    });
}

/// How many lines of `node`'s log (all its starts) contain `what`.
fn log_count(cluster: &Cluster, node: &str, what: &str) -> usize {
    cluster
        .node(node)
        .log_text()
        .lines()
        .filter(|line| line.contains(what))
        .count()
}
