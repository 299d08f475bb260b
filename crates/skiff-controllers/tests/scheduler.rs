//! The scheduler against a real API server: every filter, the unschedulable explanation
//! (condition and event, upstream's wording), retries when the cluster changes, and the
//! node kinds (control-plane, dedicated, spot).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use skiff_metrics::scheduler::AttemptResult;

const SETTLE: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_filters_and_explanations() {
    let cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("small")
        .cpu("1")
        .memory("1Gi")
        .pods("2")
        .create(&c)
        .await;

    // cpu, memory and ephemeral-storage against allocatable.
    create_pod(&c, pod("too-much-cpu", "2", "")).await;
    create_pod(&c, pod("too-much-memory", "", "2Gi")).await;
    create_pod(
        &c,
        with_spec(
            pod("too-much-disk", "", ""),
            json!({"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"ephemeral-storage": "30Gi"}}}]}),
        ),
    )
    .await;
    assert_eq!(
        wait_unschedulable(&c, "too-much-cpu").await,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        wait_unschedulable(&c, "too-much-memory").await,
        "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: \
         1 Preemption is not helpful for scheduling."
    );
    assert!(wait_unschedulable(&c, "too-much-disk")
        .await
        .starts_with("0/1 nodes are available: 1 Insufficient ephemeral-storage."));

    // Requests add up over bound pods: 600m fits, a second 600m does not.
    create_pod(&c, pod("first", "600m", "256Mi")).await;
    assert_eq!(wait_bound(&c, "first").await, "small");
    create_pod(&c, pod("second", "600m", "256Mi")).await;
    assert_eq!(
        wait_unschedulable(&c, "second").await,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod."
    );
    // The event says the same.
    let events = wait_for(Duration::from_secs(5), "a FailedScheduling event", || {
        let c = c.clone();
        async move {
            let e = events_for(&c, "second").await;
            e.into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        }
    })
    .await;
    assert_eq!(events.type_.as_deref(), Some("Warning"));
    assert!(events
        .message
        .unwrap_or_default()
        .contains("1 Insufficient cpu"));
    let scheduled = events_for(&c, "first").await;
    assert!(scheduled
        .iter()
        .any(|e| e.reason.as_deref() == Some("Scheduled")
            && e.message.as_deref() == Some("Successfully assigned default/first to small")));

    // Pod count: the node takes 2 pods.
    create_pod(&c, pod("tiny-1", "10m", "")).await;
    wait_bound(&c, "tiny-1").await;
    create_pod(&c, pod("tiny-2", "10m", "")).await;
    assert!(wait_unschedulable(&c, "tiny-2")
        .await
        .contains("1 Too many pods"));

    // A new node is a cluster change: the waiting pods are retried and land there.
    node("big")
        .cpu("8")
        .memory("16Gi")
        .ephemeral("100Gi")
        .create(&c)
        .await;
    assert_eq!(wait_bound(&c, "second").await, "big");
    assert_eq!(wait_bound(&c, "tiny-2").await, "big");
    assert_eq!(wait_bound(&c, "too-much-disk").await, "big");

    // Attempts are counted by result for /metrics (the binding is visible a moment before the
    // attempt is recorded, hence the wait; other tests may share the process: at least).
    let metrics = &skiff_metrics::global().scheduler;
    wait_for(
        Duration::from_secs(5),
        "scheduled attempts counted",
        || async { (metrics.attempts(AttemptResult::Scheduled) >= 5).then_some(()) },
    )
    .await;
    assert!(metrics.attempts(AttemptResult::Unschedulable) >= 5);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_affinity_taints_cordon_and_readiness() {
    let cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("ssd").label("disk", "ssd").create(&c).await;
    node("hdd").label("disk", "hdd").create(&c).await;
    node("tainted")
        .taint("dedicated", "db", "NoSchedule")
        .create(&c)
        .await;
    node("evicting")
        .taint("maintenance", "", "NoExecute")
        .create(&c)
        .await;
    node("cordoned").cordoned().create(&c).await;
    node("down").ready("False").create(&c).await;

    // nodeSelector.
    create_pod(
        &c,
        with_spec(
            pod("wants-ssd", "", ""),
            json!({"nodeSelector": {"disk": "ssd"}}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "wants-ssd").await, "ssd");
    // Required node affinity: matchExpressions ...
    create_pod(
        &c,
        with_spec(
            pod("not-ssd", "", ""),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["ssd", "hdd"]},
                    {"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "not-ssd").await, "hdd");
    // ... and matchFields.
    create_pod(
        &c,
        with_spec(
            pod("by-name", "", ""),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["tainted"]}]}]}}},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "by-name").await, "tainted");

    // Nothing matches: every reason is counted, sorted as upstream.
    create_pod(
        &c,
        with_spec(
            pod("nowhere", "", ""),
            json!({"nodeSelector": {"disk": "nvme"}}),
        ),
    )
    .await;
    assert_eq!(
        wait_unschedulable(&c, "nowhere").await,
        "0/6 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, \
         1 node(s) had untolerated taint {maintenance: }, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
    );

    // Taints: tolerated NoExecute and NoSchedule taints let a pod in; the cordon and the
    // not-Ready node keep everything else out.
    for i in 0..6 {
        create_pod(
            &c,
            with_spec(
                pod(&format!("tolerant-{i}"), "", ""),
                json!({"nodeSelector": {"kubernetes.io/hostname": "evicting"},
                    "tolerations": [{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]}),
            ),
        )
        .await;
    }
    for i in 0..6 {
        assert_eq!(wait_bound(&c, &format!("tolerant-{i}")).await, "evicting");
    }
    let mut placed: HashMap<String, usize> = HashMap::new();
    for i in 0..8 {
        create_pod(&c, pod(&format!("plain-{i}"), "100m", "")).await;
    }
    for i in 0..8 {
        *placed
            .entry(wait_bound(&c, &format!("plain-{i}")).await)
            .or_default() += 1;
    }
    assert!(
        placed.keys().all(|n| n == "ssd" || n == "hdd"),
        "placed on {placed:?}"
    );
    // Spread over the two eligible nodes.
    assert_eq!(placed.get("ssd"), Some(&4), "placed on {placed:?}");

    // A pod with spec.nodeName set is not scheduled (it stays where it was put).
    create_pod(
        &c,
        with_spec(pod("pinned", "", ""), json!({"nodeName": "down"})),
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    let pinned: Pod = Api::default_namespaced(c.clone())
        .get("pinned")
        .await
        .unwrap();
    assert_eq!(pinned.spec.unwrap().node_name.as_deref(), Some("down"));
    assert!(!pinned
        .status
        .unwrap()
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "False"));

    // Another scheduler's pods are left alone.
    create_pod(
        &c,
        with_spec(
            pod("other-scheduler", "", ""),
            json!({"schedulerName": "my-scheduler"}),
        ),
    )
    .await;
    assert!(stays_unbound(&c, "other-scheduler", SETTLE).await);

    // Uncordoning is a cluster change.
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .patch(
            "cordoned",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": false}})),
        )
        .await
        .unwrap();
    create_pod(
        &c,
        with_spec(
            pod("after-uncordon", "", ""),
            json!({"nodeSelector": {"kubernetes.io/hostname": "cordoned"}}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "after-uncordon").await, "cordoned");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_no_schedule_host_ports_and_spread_constraints() {
    let cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("a")
        .taint("soft", "", "PreferNoSchedule")
        .create(&c)
        .await;
    node("b").create(&c).await;
    // PreferNoSchedule is only a preference.
    create_pod(&c, pod("prefers-b", "", "")).await;
    assert_eq!(wait_bound(&c, "prefers-b").await, "b");

    // Host ports: the second claim of 8080 goes to the other node, the third fits nowhere.
    let ported = |name: &str| {
        with_spec(
            pod(name, "", ""),
            json!({"containers": [{"name": "c", "image": "busybox",
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        )
    };
    create_pod(&c, ported("port-1")).await;
    create_pod(&c, ported("port-2")).await;
    let n1 = wait_bound(&c, "port-1").await;
    let n2 = wait_bound(&c, "port-2").await;
    assert_ne!(n1, n2);
    create_pod(&c, ported("port-3")).await;
    assert!(wait_unschedulable(&c, "port-3").await.starts_with(
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    ));

    // topologySpreadConstraints on kubernetes.io/hostname, maxSkew 1: 2 + 2.
    let spread = |name: &str| {
        let mut p = with_spec(
            pod(name, "", ""),
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"group": "spread"}}}]}),
        );
        p["metadata"]["labels"] = json!({"group": "spread"});
        p
    };
    let mut placed: HashMap<String, usize> = HashMap::new();
    for i in 0..4 {
        create_pod(&c, spread(&format!("spread-{i}"))).await;
        *placed
            .entry(wait_bound(&c, &format!("spread-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(placed.get("a"), Some(&2), "placed on {placed:?}");
    assert_eq!(placed.get("b"), Some(&2), "placed on {placed:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kinds_control_plane_dedicated_and_spot() {
    let cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("server")
        .label("node-role.kubernetes.io/control-plane", "true")
        .taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")
        .create(&c)
        .await;
    node("gpu")
        .label("dedicated", "gpu")
        .taint("dedicated", "gpu", "NoSchedule")
        .create(&c)
        .await;
    node("spot")
        .label("node.kubernetes.io/lifecycle", "spot")
        .create(&c)
        .await;
    node("regular").create(&c).await;

    // Ordinary workloads stay off the control plane and the dedicated node.
    for i in 0..6 {
        create_pod(&c, pod(&format!("web-{i}"), "100m", "")).await;
    }
    for i in 0..6 {
        let n = wait_bound(&c, &format!("web-{i}")).await;
        assert!(n == "spot" || n == "regular", "web-{i} on {n}");
    }
    // Only tolerating pods reach the dedicated node (selecting it, too).
    create_pod(
        &c,
        with_spec(
            pod("trainer", "", ""),
            json!({"nodeSelector": {"dedicated": "gpu"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "trainer").await, "gpu");
    create_pod(
        &c,
        with_spec(
            pod("sneaky", "", ""),
            json!({"nodeSelector": {"dedicated": "gpu"}}),
        ),
    )
    .await;
    assert!(wait_unschedulable(&c, "sneaky")
        .await
        .contains("1 node(s) had untolerated taint {dedicated: gpu}"));
    // System pods tolerate the control-plane taint and select it.
    create_pod(
        &c,
        with_spec(
            pod("system", "", ""),
            json!({"nodeSelector": {"node-role.kubernetes.io/control-plane": "true"},
                "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "system").await, "server");
    // Spot: a batch pod selects it, a critical one avoids it.
    create_pod(
        &c,
        with_spec(
            pod("batch", "", ""),
            json!({"nodeSelector": {"node.kubernetes.io/lifecycle": "spot"}}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "batch").await, "spot");
    create_pod(
        &c,
        with_spec(
            pod("critical", "", ""),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "node.kubernetes.io/lifecycle", "operator": "NotIn", "values": ["spot"]}]}]}}}}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "critical").await, "regular");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_pods_preempt_lower_ones() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    // The node confirms deletions, so the victim goes away.
    cluster.kubelet(&[], Act::Run);
    node("only").cpu("1").create(&c).await;
    create_pod(
        &c,
        with_spec(pod("low", "800m", ""), json!({"priority": 1})),
    )
    .await;
    wait_bound(&c, "low").await;
    create_pod(
        &c,
        with_spec(pod("high", "800m", ""), json!({"priority": 100})),
    )
    .await;
    // The low-priority pod is deleted; the high one then fits.
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    wait_for(Duration::from_secs(10), "the victim to be deleted", || {
        let pods = pods.clone();
        async move {
            match pods.get("low").await {
                Err(_) => Some(()),
                Ok(p) if p.metadata.deletion_timestamp.is_some() => Some(()),
                Ok(_) => None,
            }
        }
    })
    .await;
    let preempted = events_for(&c, "low").await;
    assert!(preempted
        .iter()
        .any(|e| e.reason.as_deref() == Some("Preempted")));
    assert_eq!(wait_bound(&c, "high").await, "only");
    cluster.stop().await;
}
