//! Issue 5 acceptance with the real `skiff` binary and real kubectl: a Deployment rolls from
//! image A to B with maxUnavailable 0 and `kubectl rollout status` finishes; `rollout history`,
//! `rollout undo`, `rollout restart`, `rollout pause/resume`; scaling 3→10→0; a DaemonSet
//! covers the untainted nodes (`rollout status daemonset`); deleting a Deployment in the
//! background, the foreground and with `--cascade=orphan`. Nodes are Node objects created
//! through the API; a fake kubelet (test code) makes their pods Running and Ready.

mod controllers_support;

use std::sync::Arc;
use std::time::Duration;

use controllers_support::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use skiff_tests::kubectl::{self, Kubectl, Run};
use skiff_tests::process::SkiffProcess;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: registry.local/web:A
"#;

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: registry.local/agent:1
"#;

async fn run(k: &Arc<Kubectl>, args: &[&str]) -> Run {
    let k = k.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        k.run(&refs)
    })
    .await
    .unwrap()
}

async fn run_ok(k: &Arc<Kubectl>, args: &[&str]) -> String {
    let r = run(k, args).await;
    assert!(r.ok, "kubectl {args:?} failed: {}{}", r.stdout, r.stderr);
    r.stdout
}

async fn apply(k: &Arc<Kubectl>, manifest: &str) {
    let k2 = k.clone();
    let manifest = manifest.to_string();
    let r =
        tokio::task::spawn_blocking(move || k2.run_with_input(&["apply", "-f", "-"], &manifest))
            .await
            .unwrap();
    assert!(r.ok, "kubectl apply failed: {}{}", r.stdout, r.stderr);
}

async fn images(client: &Client, app: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut images: Vec<String> = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.spec.unwrap().containers[0]
                .image
                .clone()
                .unwrap_or_default()
        })
        .collect();
    images.sort();
    images
}

async fn counts(client: &Client, app: &str) -> (usize, usize) {
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = ListParams::default().labels(&format!("app={app}"));
    (
        sets.list(&lp).await.unwrap().items.len(),
        pods.list(&lp).await.unwrap().items.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_scale_daemonset_and_cascading_delete() {
    skiff_tests::install_crypto();
    let Some(bin) = kubectl::find("1.32") else {
        skiff_tests::skip("kubectl 1.32 is not installed at /usr/bin/kubectl");
        return;
    };
    let dir = skiff_tests::temp_dir("controllers-rollout");
    let server = SkiffProcess::start(dir.path());
    let client = skiff_tests::inproc::kube_client(&server.kubeconfig()).await;
    let k = Arc::new(Kubectl::new(&bin, &server.kubeconfig()));
    for n in ["n1", "n2", "n3"] {
        create_node(&client, n, json!({}), json!([])).await;
    }
    create_node(
        &client,
        "db",
        json!({}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    let silenced = Silenced::default();
    let kubelet = kubelet(client.clone(), silenced.clone());

    // Roll out image A, then B; rollout status waits for each and succeeds.
    apply(&k, DEPLOYMENT).await;
    let status = run_ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    assert_eq!(
        images(&client, "web").await,
        vec!["registry.local/web:A"; 3]
    );
    run_ok(
        &k,
        &[
            "set",
            "image",
            "deployment/web",
            "main=registry.local/web:B",
        ],
    )
    .await;
    let status = run_ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(
        images(&client, "web").await,
        vec!["registry.local/web:B"; 3]
    );
    let history = run_ok(&k, &["rollout", "history", "deployment/web"]).await;
    assert!(
        history.contains("REVISION") && history.contains('1') && history.contains('2'),
        "{history}"
    );
    let wide = run_ok(&k, &["get", "deployment", "web"]).await;
    assert!(
        wide.lines().nth(1).is_some_and(|l| l.contains("3/3")),
        "{wide}"
    );

    // Undo goes back to A (as revision 3).
    run_ok(&k, &["rollout", "undo", "deployment/web"]).await;
    run_ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    wait_for(Duration::from_secs(30), "pods back on image A", || {
        let client = client.clone();
        async move { (images(&client, "web").await == vec!["registry.local/web:A"; 3]).then_some(()) }
    })
    .await;
    let history = run_ok(&k, &["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('3'), "{history}");

    // Restart makes a new ReplicaSet with the same image; pause holds a change back.
    run_ok(&k, &["rollout", "restart", "deployment/web"]).await;
    run_ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    run_ok(&k, &["rollout", "pause", "deployment/web"]).await;
    run_ok(
        &k,
        &[
            "set",
            "image",
            "deployment/web",
            "main=registry.local/web:C",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        images(&client, "web").await,
        vec!["registry.local/web:A"; 3]
    );
    run_ok(&k, &["rollout", "resume", "deployment/web"]).await;
    run_ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert_eq!(
        images(&client, "web").await,
        vec!["registry.local/web:C"; 3]
    );

    // Scale 3 → 10 → 0.
    for replicas in ["10", "0"] {
        run_ok(
            &k,
            &["scale", "deployment/web", &format!("--replicas={replicas}")],
        )
        .await;
        run_ok(
            &k,
            &["rollout", "status", "deployment/web", "--timeout=60s"],
        )
        .await;
        let want: usize = replicas.parse().unwrap();
        wait_for(Duration::from_secs(30), &format!("{want} pods"), || {
            let client = client.clone();
            async move { (images(&client, "web").await.len() == want).then_some(()) }
        })
        .await;
    }
    run_ok(&k, &["scale", "deployment/web", "--replicas=3"]).await;
    run_ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;

    // A DaemonSet covers n1..n3, not the dedicated node.
    apply(&k, DAEMONSET).await;
    let status = run_ok(
        &k,
        &["rollout", "status", "daemonset/agent", "--timeout=60s"],
    )
    .await;
    assert!(
        status.contains("daemon set \"agent\" successfully rolled out"),
        "{status}"
    );
    let pods = run_ok(&k, &["get", "pods", "-l", "app=agent", "-o", "wide"]).await;
    assert_eq!(pods.lines().count(), 4, "{pods}");
    assert!(!pods.contains(" db "), "{pods}");
    let ds = run_ok(&k, &["get", "daemonset", "agent"]).await;
    assert!(
        ds.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("3")),
        "{ds}"
    );

    // Cascading deletion: foreground (kubectl waits), background, orphan.
    run_ok(
        &k,
        &[
            "delete",
            "deployment",
            "web",
            "--cascade=foreground",
            "--wait=true",
            "--timeout=60s",
        ],
    )
    .await;
    assert_eq!(counts(&client, "web").await, (0, 0));
    apply(
        &k,
        &DEPLOYMENT
            .replace("name: web", "name: bg")
            .replace("app: web", "app: bg"),
    )
    .await;
    run_ok(&k, &["rollout", "status", "deployment/bg", "--timeout=60s"]).await;
    run_ok(&k, &["delete", "deployment", "bg", "--cascade=background"]).await;
    wait_for(Duration::from_secs(30), "background cascade", || {
        let client = client.clone();
        async move { (counts(&client, "bg").await == (0, 0)).then_some(()) }
    })
    .await;
    apply(
        &k,
        &DEPLOYMENT
            .replace("name: web", "name: kept")
            .replace("app: web", "app: kept"),
    )
    .await;
    run_ok(
        &k,
        &["rollout", "status", "deployment/kept", "--timeout=60s"],
    )
    .await;
    run_ok(
        &k,
        &[
            "delete",
            "deployment",
            "kept",
            "--cascade=orphan",
            "--wait=true",
            "--timeout=60s",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counts(&client, "kept").await, (1, 3));
    let rs = run_ok(
        &k,
        &[
            "get",
            "rs",
            "-l",
            "app=kept",
            "-o",
            "jsonpath={.items[0].metadata.ownerReferences}",
        ],
    )
    .await;
    assert!(
        rs.trim().is_empty() || rs.trim() == "[]",
        "owner references left: {rs}"
    );

    // What the controllers did shows in events.
    let events = run_ok(&k, &["get", "events"]).await;
    assert!(
        events.contains("ScalingReplicaSet")
            && events.contains("Scheduled")
            && events.contains("SuccessfulCreate"),
        "{events}"
    );
    kubelet.abort();
    drop(server);
}
