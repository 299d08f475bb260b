//! Issue 13 acceptance: a 5-minute uplink outage keeps Services and DNS answering. node-b,
//! which runs a Service's endpoint and a client pod, loses its uplink (nothing in or out of
//! its LAN interface: no server, no other node) for 300 s for real. Throughout, the client
//! reaches the Service by ClusterIP (its local endpoint), and its short name and FQDN resolve
//! through the node's cluster DNS; in the middle of the outage the agent is restarted and
//! carries on from its persisted state. A Service created on the server during the outage
//! reaches the node once the uplink is back.
//!
//! Runs about 6 minutes. Needs root.

use std::time::{Duration, Instant};

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

/// The outage.
const OUTAGE: Duration = Duration::from_secs(300);

/// An httpd endpoint and a client, both on node-b, tolerating an unreachable node for ever
/// (the outage must not get them evicted meanwhile).
const WORKLOAD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute}
  containers:
  - name: httpd
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo web > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute}
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#;

/// A Service created while node-b is cut off.
const LATER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: later}
spec:
  selector: {app: web}
  ports: [{port: 81, targetPort: 8080}]
"#;

/// What the client gets from the Service at `host` (`web` when its endpoint answered).
fn fetch(cluster: &Cluster, client: &str, host: &str) -> Result<String, String> {
    cluster
        .node("node-b")
        .exec_in_pod(
            client,
            &["timeout", "5", "wget", "-qO-", &format!("http://{host}/")],
        )
        .map(|body| body.trim().to_string())
}

/// Whether `name` resolves to `ip` in the client (its resolv.conf: the cluster DNS and the
/// search path).
fn resolves(cluster: &Cluster, client: &str, name: &str, ip: &str) -> Result<(), String> {
    let answer = cluster
        .node("node-b")
        .exec_in_pod(client, &["timeout", "5", "nslookup", name])?;
    if answer.contains(ip) {
        Ok(())
    } else {
        Err(format!("{name} did not resolve to {ip}:\n{answer}"))
    }
}

/// One round of checks from the client: ClusterIP, short name, FQDN.
fn all_answer(cluster: &Cluster, client: &str, cluster_ip: &str) -> Result<(), String> {
    match fetch(cluster, client, cluster_ip)? {
        body if body == "web" => {}
        other => return Err(format!("{cluster_ip} answered {other:?}")),
    }
    match fetch(cluster, client, "web")? {
        body if body == "web" => {}
        other => return Err(format!("web answered {other:?}")),
    }
    // (The short name resolved through the search path just above; busybox's nslookup would
    // fail on the search suffixes that do not exist, so it asks for the FQDN only.)
    resolves(cluster, client, "web.default.svc.cluster.local", cluster_ip)
}

#[test]
fn services_and_dns_keep_answering_through_a_five_minute_uplink_outage() {
    let Some(mut cluster) =
        Cluster::start(ClusterSpec::new("outage").agents(&["node-a", "node-b"]))
    else {
        return;
    };
    cluster.apply(WORKLOAD);
    cluster.wait_for(
        "web and client Running, web in the Service",
        Duration::from_secs(120),
        || {
            pod_running(&cluster.get_json(&["pod", "web"]))
                && pod_running(&cluster.get_json(&["pod", "client"]))
                && cluster.get_json(&["endpoints", "web"])["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        },
    );
    let cluster_ip = cluster.get_json(&["service", "web"])["spec"]["clusterIP"]
        .as_str()
        .expect("web has a cluster IP")
        .to_string();
    let client = cluster.get_json(&["pod", "client"])["metadata"]["uid"]
        .as_str()
        .expect("client uid")
        .to_string();
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = all_answer(&cluster, &client, &cluster_ip) {
        assert!(
            Instant::now() < deadline,
            "the Service and its names do not answer before the outage: {error}\n{}",
            cluster.logs()
        );
        last = error;
    }

    // The outage: 300 s, polled through; the agent restarts once in the middle.
    cluster
        .node("node-b")
        .cut_uplink()
        .expect("cut node-b's uplink");
    let started = Instant::now();
    let mut restarted = false;
    let mut created = false;
    let mut rounds = 0u32;
    while started.elapsed() < OUTAGE {
        if !created {
            // The server's side of the outage: a new Service node-b cannot hear about yet.
            cluster.apply(LATER);
            created = true;
        }
        if !restarted && started.elapsed() >= OUTAGE / 2 {
            let b = cluster.agent("node-b");
            b.kill9();
            b.start().expect("restart node-b's agent");
            restarted = true;
            cluster.wait_for(
                "node-b's agent up again without the server",
                Duration::from_secs(30),
                || {
                    cluster
                        .node("node-b")
                        .log_text()
                        .contains("re-adopted running pods")
                },
            );
        }
        // Each round must pass within a short grace (an agent restart takes a moment).
        let round_deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match all_answer(&cluster, &client, &cluster_ip) {
                Ok(()) => break,
                Err(error) => {
                    assert!(
                        Instant::now() < round_deadline,
                        "{:?} into the outage (agent restarted: {restarted}), the cut-off node stopped answering: {error}\n{}",
                        started.elapsed(),
                        cluster.node("node-b").log_tail(80)
                    );
                    last = error;
                }
            }
        }
        rounds += 1;
    }
    assert!(
        restarted && rounds > 10,
        "{rounds} rounds; last error: {last}"
    );
    // Still cut off: the Service created meanwhile is unknown there.
    let unknown = cluster.node("node-b").exec_in_pod(
        &client,
        &[
            "timeout",
            "5",
            "nslookup",
            "later.default.svc.cluster.local",
        ],
    );
    assert!(
        unknown.is_err(),
        "node-b cannot know of a Service created during its outage: {unknown:?}"
    );

    cluster
        .node("node-b")
        .restore_uplink()
        .expect("restore node-b's uplink");
    let later_ip = cluster.get_json(&["service", "later"])["spec"]["clusterIP"]
        .as_str()
        .expect("later has a cluster IP")
        .to_string();
    cluster.wait_for(
        "the Service created during the outage reaches node-b",
        Duration::from_secs(60),
        || {
            resolves(
                &cluster,
                &client,
                "later.default.svc.cluster.local",
                &later_ip,
            )
            .is_ok()
                && fetch(&cluster, &client, &format!("{later_ip}:81")).is_ok_and(|b| b == "web")
        },
    );
    // And the node is back in the cluster.
    cluster.wait_for("node-b Ready again", Duration::from_secs(60), || {
        cluster.node_ready_now("node-b") == Some(true)
    });
}
