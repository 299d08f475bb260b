//! Issue 13 acceptance for NetworkPolicy on the multi-node harness (each node in its own
//! network namespace on a test bridge), with real containers, real nftables and real kubectl:
//! a deny-all ingress policy blocks, a policy allowing `role=client` pods lets exactly those
//! through (also from the other node), a namespaceSelector admits a whole namespace, an
//! egress deny-all still lets the pod resolve names (the cluster DNS is on its node) but
//! blocks everything else, and deleting the policies opens again.
//!
//! One cluster serves every case, to keep CI time down. Needs root.

use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

/// A busybox httpd answering its pod's name on the named port `http` (8080).
fn web(name: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{name: http, containerPort: 8080}}]
"#
    )
}

/// A pod that only waits for `kubectl exec`.
fn idle(name: &str, namespace: &str, node: &str, labels: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#
    )
}

const TRUSTED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: trusted, labels: {team: trusted}}
"#;

const DENY_WEB: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"#;

const ALLOW_CLIENTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-clients}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    ports:
    - port: http
"#;

const ALLOW_TRUSTED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-trusted}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: trusted}}
"#;

const DENY_EGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress}
spec:
  podSelector: {matchLabels: {role: jailed}}
  policyTypes: [Egress]
"#;

/// Whether pod `from` (in `namespace`) gets an answer from `url` within five seconds.
fn reaches(cluster: &Cluster, namespace: &str, from: &str, url: &str) -> bool {
    // busybox's static wget crashes with -T: the timeout applet bounds it instead.
    cluster
        .kubectl(&[
            "exec", "-n", namespace, from, "--", "timeout", "5", "wget", "-qO-", url,
        ])
        .ok
}

/// Waits until each `(namespace, pod)` of `expect` reaches (or not) every URL as it says.
fn wait_reach(cluster: &Cluster, what: &str, urls: &[String], expect: &[(&str, &str, bool)]) {
    cluster.wait_for(what, Duration::from_secs(40), || {
        expect.iter().all(|(namespace, pod, allowed)| {
            urls.iter()
                .all(|url| reaches(cluster, namespace, pod, url) == *allowed)
        })
    });
}

#[test]
fn network_policies_isolate_and_admit_exactly_the_selected_pods_across_nodes() {
    let Some(cluster) = Cluster::start(ClusterSpec::new("policy").agents(&["node-a", "node-b"]))
    else {
        return;
    };
    cluster.apply(TRUSTED);
    let manifests = [
        web("web-a", "node-a"),
        web("web-b", "node-b"),
        idle("client-a", "default", "node-a", "{role: client}"),
        idle("client-b", "default", "node-b", "{role: client}"),
        idle("stranger", "default", "node-b", "{role: other}"),
        idle("jailed", "default", "node-a", "{role: jailed}"),
        idle("visitor", "trusted", "node-b", "{role: visitor}"),
    ];
    cluster.apply(&manifests.join("\n---\n"));
    cluster.wait_for("every pod Running", Duration::from_secs(120), || {
        let default = cluster.get_json(&["pods"]);
        let trusted = cluster.get_json(&["pods", "-n", "trusted"]);
        default["items"]
            .as_array()
            .is_some_and(|p| p.len() == 6 && p.iter().all(pod_running))
            && trusted["items"]
                .as_array()
                .is_some_and(|p| p.len() == 1 && p.iter().all(pod_running))
    });
    let ip = |name: &str| {
        cluster.get_json(&["pod", name])["status"]["podIP"]
            .as_str()
            .expect("pod IP")
            .to_string()
    };
    let urls: Vec<String> = ["web-a", "web-b"]
        .iter()
        .map(|w| format!("http://{}:8080/", ip(w)))
        .collect();

    // Without policies everyone reaches both web pods.
    let everyone = [
        ("default", "client-a", true),
        ("default", "client-b", true),
        ("default", "stranger", true),
        ("trusted", "visitor", true),
    ];
    wait_reach(&cluster, "open without policies", &urls, &everyone);

    // Deny-all ingress for the web pods: nobody, from either node.
    cluster.apply(DENY_WEB);
    let nobody = everyone.map(|(ns, pod, _)| (ns, pod, false));
    wait_reach(&cluster, "deny-all blocks everyone", &urls, &nobody);

    // Clients (same namespace) on the named port: exactly the clients, on both nodes.
    cluster.apply(ALLOW_CLIENTS);
    wait_reach(
        &cluster,
        "only role=client reaches the web pods",
        &urls,
        &[
            ("default", "client-a", true),
            ("default", "client-b", true),
            ("default", "stranger", false),
            ("trusted", "visitor", false),
        ],
    );

    // A namespaceSelector admits the trusted namespace's pods too.
    cluster.apply(ALLOW_TRUSTED);
    wait_reach(
        &cluster,
        "the trusted namespace reaches the web pods",
        &urls,
        &[
            ("trusted", "visitor", true),
            ("default", "client-b", true),
            ("default", "stranger", false),
        ],
    );

    // Deleting the policies opens again.
    cluster.kubectl_ok(&[
        "delete",
        "netpol",
        "deny-web",
        "allow-clients",
        "allow-trusted",
    ]);
    wait_reach(&cluster, "open again after delete", &urls, &everyone);

    // Egress deny-all: the jailed pod still resolves names (the cluster DNS is on its node)
    // but reaches nothing else; the policy deleted, it reaches the web pods again.
    assert!(reaches(&cluster, "default", "jailed", &urls[1]));
    cluster.apply(DENY_EGRESS);
    wait_reach(
        &cluster,
        "egress deny-all blocks the jailed pod",
        &urls,
        &[("default", "jailed", false), ("default", "client-a", true)],
    );
    let lookup = cluster.kubectl(&[
        "exec",
        "jailed",
        "--",
        "nslookup",
        "kubernetes.default.svc.cluster.local",
    ]);
    let api_ip = cluster.get_json(&["service", "kubernetes"])["spec"]["clusterIP"]
        .as_str()
        .expect("the kubernetes Service has a cluster IP")
        .to_string();
    assert!(
        lookup.ok && lookup.stdout.contains(&api_ip),
        "the jailed pod resolves names: {lookup:?}\n{}",
        cluster.logs()
    );
    cluster.kubectl_ok(&["delete", "netpol", "deny-egress"]);
    wait_reach(
        &cluster,
        "egress open again",
        &urls,
        &[("default", "jailed", true)],
    );
}
