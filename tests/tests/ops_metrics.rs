//! Observability and first start (issue 8) through the real binary and real kubectl:
//! `kubectl get --raw /metrics` shows the requests made, the store, and a scheduling attempt;
//! anonymous clients get 401; `skiff server` prints the kubeconfig, a kubectl line and the
//! exact `skiff agent` join line (the token itself only on the first start).

use std::process::Command;
use std::time::{Duration, Instant};

use skiff_tests::kubectl::{self, Kubectl};
use skiff_tests::process::SkiffProcess;

/// The value of the first sample of `name` whose labels include every `want` pair.
fn sample(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let labels = match series.strip_prefix(name)? {
            "" => "",
            rest => rest.strip_prefix('{')?.strip_suffix('}')?,
        };
        let all = want
            .iter()
            .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// The server's log once it holds the banner's join line.
fn wait_for_banner(server: &SkiffProcess) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = server.log();
        if log.contains("join a node: ") {
            return log;
        }
        assert!(Instant::now() < deadline, "no banner in:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn node_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n"
    )
}

#[test]
fn metrics_show_requests_store_and_scheduling_and_the_banner_shows_how_to_join() {
    skiff_tests::install_crypto();
    let Some(bin) = kubectl::find("1.32") else {
        skiff_tests::skip("kubectl 1.32 (/usr/bin/kubectl) is not installed");
        return;
    };
    let dir = skiff_tests::temp_dir("ops-metrics");
    let mut server = SkiffProcess::start(dir.path());
    let k = Kubectl::new(&bin, &server.kubeconfig());

    // The banner of the first start: kubeconfig, kubectl, and the join line with the token.
    // (The API answers a moment before the node link is up and the banner printed.)
    let log = wait_for_banner(&server);
    let token_file = dir.path().join("server").join("node-token");
    let token = std::fs::read_to_string(&token_file).expect("node-token written");
    let kubeconfig = server.kubeconfig().display().to_string();
    assert!(
        log.contains(&format!("kubeconfig:  {kubeconfig}\n")),
        "{log}"
    );
    assert!(
        log.contains(&format!("KUBECONFIG={kubeconfig} kubectl get nodes\n")),
        "{log}"
    );
    let join = format!(
        "skiff agent --server https://127.0.0.1:{} --token {}\n",
        server.port,
        token.trim()
    );
    assert!(log.contains(&join), "no {join:?} in:\n{log}");

    // Requests: a create, a conflicting create, a list.
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=edge",
    ]);
    let again = k.run(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=edge",
    ]);
    assert!(
        !again.ok && again.stderr.contains("already exists"),
        "{again:?}"
    );
    k.ok(&["get", "configmaps"]);

    // A schedulable node (created through the API, no agent) and a pod the scheduler binds.
    k.ok_with_input(&["apply", "-f", "-"], &node_yaml("metrics-node"));
    let status = r#"{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}]}}"#;
    k.ok(&[
        "patch",
        "node",
        "metrics-node",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    k.ok(&["run", "web", "--image=busybox", "--restart=Never"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let node = k.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"]);
        if node.trim() == "metrics-node" {
            break;
        }
        assert!(Instant::now() < deadline, "pod web not scheduled");
        std::thread::sleep(Duration::from_millis(100));
    }

    // /metrics through kubectl, as an administrator. The scheduler records its attempt right
    // after the binding answers, so look again until it shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = k.ok(&["get", "--raw", "/metrics"]);
        let scheduled = sample(
            &text,
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled")],
        );
        if scheduled.unwrap_or(0.0) >= 1.0 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| {
        let value = sample(&text, name, labels);
        assert!(
            value.is_some_and(|v| v >= min),
            "{name}{labels:?} = {value:?}, expected >= {min}, in:\n{text}"
        );
    };
    let configmaps = [("resource", "configmaps"), ("version", "v1")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = configmaps.to_vec();
        l.extend_from_slice(extra);
        l
    };
    at_least(
        "apiserver_request_total",
        &with(&[("verb", "POST"), ("code", "201")]),
        1.0,
    );
    at_least(
        "apiserver_request_total",
        &with(&[("verb", "POST"), ("code", "409")]),
        1.0,
    );
    at_least(
        "apiserver_request_total",
        &with(&[("verb", "LIST"), ("code", "200")]),
        1.0,
    );
    at_least(
        "apiserver_request_duration_seconds_count",
        &with(&[("verb", "POST")]),
        2.0,
    );
    // The scheduler's binding went through the API too.
    at_least(
        "apiserver_request_total",
        &[
            ("verb", "POST"),
            ("resource", "pods"),
            ("subresource", "binding"),
            ("code", "201"),
        ],
        1.0,
    );
    at_least(
        "scheduler_schedule_attempts_total",
        &[("result", "scheduled")],
        1.0,
    );
    at_least(
        "scheduler_scheduling_attempt_duration_seconds_count",
        &[("result", "scheduled")],
        1.0,
    );
    at_least("skiff_store_revision", &[], 2.0);
    at_least("skiff_store_db_size_bytes", &[], 4096.0);
    at_least("skiff_store_commit_duration_seconds_count", &[], 1.0);
    at_least("skiff_store_commit_batch_size_count", &[], 1.0);
    // No node is connected over the link (the agent is disabled).
    assert_eq!(
        sample(&text, "skiff_link_sessions", &[]),
        Some(0.0),
        "{text}"
    );

    // Anonymous: 401.
    let url = format!("https://127.0.0.1:{}/metrics", server.port);
    let curl = Command::new("curl")
        .args(["-k", "-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output();
    match curl {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "401"),
        Err(e) => skiff_tests::skip(&format!("curl is not available: {e}")),
    }

    // A later start prints where the token is, not the token.
    server.stop();
    let again = SkiffProcess::start(dir.path());
    let log = wait_for_banner(&again);
    assert!(
        log.contains(&format!(
            "skiff agent --server https://127.0.0.1:{} --token <the token in {}>\n",
            again.port,
            token_file.display()
        )),
        "{log}"
    );
    assert!(!log.contains(token.trim()), "the token is repeated:\n{log}");
}
