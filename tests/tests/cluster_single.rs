//! Issue 6, acceptance 1: one command, `skiff server` (with its own node), then `kubectl apply`
//! of a Deployment of 3 busybox replicas → 3 pods Running; `kubectl logs` and `kubectl exec`
//! work; `kubectl delete` stops the containers and frees everything (processes, cgroups,
//! mounts, pod network interfaces, runtime state).
//!
//! Real containers, real kubectl; needs root (the server runs in its own network namespace).

use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 3
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; echo hello from $(hostname); i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
"#;

#[test]
fn one_command_server_runs_a_deployment_with_logs_exec_and_clean_delete() {
    let Some(cluster) = Cluster::start(ClusterSpec::new("single").server_agent(true)) else {
        return;
    };
    // The server's node carries the control-plane role.
    let nodes = cluster.kubectl_ok(&["get", "nodes"]);
    assert!(
        nodes.contains("server") && nodes.contains("control-plane"),
        "{nodes}"
    );

    cluster.apply(DEPLOYMENT);
    cluster.wait_for("3 Running pods", Duration::from_secs(60), || {
        let pods = cluster.pods("app=hello");
        pods.len() == 3 && pods.iter().all(pod_running)
    });
    let pods = cluster.pods("app=hello");
    let names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(
            ip.starts_with("10.42."),
            "pod IP from the node's pod CIDR: {pod}"
        );
        assert_eq!(pod["spec"]["nodeName"], "server");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }
    let wide = cluster.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(wide.matches("Running").count(), 3, "{wide}");

    // kubectl logs: whole, --tail, -f (bounded by --limit-bytes... here by a timeout).
    let name = &names[0];
    cluster.wait_for("some log lines", Duration::from_secs(10), || {
        cluster.kubectl(&["logs", name]).stdout.contains("tick 2")
    });
    let logs = cluster.kubectl_ok(&["logs", name]);
    assert!(
        logs.starts_with(&format!("hello from {name}\n")),
        "first line names the pod (hostname = pod name): {logs}"
    );
    let tail = cluster.kubectl_ok(&["logs", name, "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");
    let stamped = cluster.kubectl_ok(&["logs", name, "--tail=1", "--timestamps"]);
    assert!(stamped.contains("Z tick "), "{stamped}");
    let mut follow = cluster
        .kubectl
        .command(&["logs", "-f", name, "--tail=1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = follow.kill();
    let out = follow.wait_with_output().expect("kubectl logs -f output");
    let followed = String::from_utf8_lossy(&out.stdout);
    assert!(
        followed.lines().filter(|l| l.starts_with("tick ")).count() >= 3,
        "-f keeps streaming new lines: {followed}"
    );

    // kubectl exec: output, exit code, stdin.
    let exec = cluster.kubectl(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "cat /etc/hostname; echo oops >&2; exit 7",
    ]);
    assert!(!exec.ok);
    assert_eq!(exec.stdout, format!("{name}\n"));
    assert!(exec.stderr.contains("oops"), "{}", exec.stderr);
    assert!(exec.stderr.contains("exit code 7"), "{}", exec.stderr);
    let cat = cluster.kubectl.run_with_input(
        &["exec", "-i", name, "--", "sh", "-c", "tr a-z A-Z"],
        "shout\n",
    );
    assert!(cat.ok, "{}", cat.stderr);
    assert_eq!(cat.stdout, "SHOUT\n");
    // kubectl cp both ways (tar over exec with stdin): a tree with a nested file.
    let local = skiff_tests::temp_dir("cp");
    let upload = local.path().join("upload");
    std::fs::create_dir_all(upload.join("nested")).expect("create the upload tree");
    std::fs::write(upload.join("nested/data.txt"), "copied into the pod\n").expect("write");
    let dest = format!("{name}:/tmp/up");
    cluster.kubectl_ok(&["cp", upload.to_str().unwrap(), &dest]);
    let inside = cluster.kubectl_ok(&["exec", name, "--", "cat", "/tmp/up/nested/data.txt"]);
    assert_eq!(inside, "copied into the pod\n");
    cluster.kubectl_ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "echo made in the pod > /tmp/out.txt",
    ]);
    let download = local.path().join("out.txt");
    let source = format!("{name}:/tmp/out.txt");
    cluster.kubectl_ok(&["cp", &source, download.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&download).expect("the copied file"),
        "made in the pod\n"
    );

    let missing = cluster.kubectl(&["exec", name, "-c", "nope", "--", "true"]);
    assert!(
        missing.stderr.contains("container nope is not valid"),
        "{}",
        missing.stderr
    );

    // Containers are real: their processes live in the node's cgroups.
    assert!(cluster.server.container_pids().len() >= 3);

    // kubectl delete frees everything.
    cluster.kubectl_ok(&["delete", "deployment", "hello"]);
    cluster.wait_for("the pods to be gone", Duration::from_secs(60), || {
        cluster.pods("app=hello").is_empty()
    });
    cluster.wait_for("the containers to be gone", Duration::from_secs(20), || {
        cluster.server.container_pids().is_empty()
    });
    let runtime_pods = cluster.server.data_dir.join("agent/runtime/pods");
    let left: Vec<_> = std::fs::read_dir(&runtime_pods)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime state left: {left:?}");
    let mounts =
        skiff_tests::harness::node::mounts_under(&cluster.server.data_dir.join("agent/runtime"));
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let links = cluster.server.ns.exec(&["ip", "-o", "link"]).unwrap();
    assert!(!links.contains("skf"), "pod veths left: {links}");
    for dir in cluster.server.cgroup_dirs() {
        let children: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(children.is_empty(), "pod cgroups left: {children:?}");
    }
}
