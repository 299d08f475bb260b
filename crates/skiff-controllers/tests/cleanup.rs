//! Deletion and cleanup against a real API server: cascading deletion of a Deployment in the
//! background, in the foreground and with orphaning; namespace deletion; pod GC; node IPAM.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use serde_json::json;

const T: Duration = Duration::from_secs(20);

async fn deploy(client: &Client, namespace: &str, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("app={name}");
    wait_for(T, &format!("{replicas} running pods of {name}"), || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let running = l
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == replicas as usize).then_some(())
        }
    })
    .await;
}

async fn count(client: &Client, name: &str) -> (usize, usize) {
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = ListParams::default().labels(&format!("app={name}"));
    (
        sets.list(&lp).await.map(|l| l.items.len()).unwrap_or(99),
        pods.list(&lp).await.map(|l| l.items.len()).unwrap_or(99),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_deployment_background_foreground_and_orphan() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("n1").create(&c).await;
    cluster.kubelet(&[], Act::Run);
    let api: Api<Deployment> = Api::default_namespaced(c.clone());

    // Background: the Deployment goes at once, the GC removes its ReplicaSet and pods.
    deploy(&c, "default", "bg", 3).await;
    api.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(api.get("bg").await.is_err());
    wait_for(T, "background cascade", || {
        let c = c.clone();
        async move { (count(&c, "bg").await == (0, 0)).then_some(()) }
    })
    .await;

    // Foreground: the Deployment stays (with its finalizer) until its dependents are gone.
    deploy(&c, "default", "fg", 3).await;
    api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let d = api
        .get("fg")
        .await
        .expect("still there during foreground deletion");
    assert!(d.metadata.deletion_timestamp.is_some());
    assert!(d
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"foregroundDeletion".to_string()));
    wait_for(T, "foreground cascade", || {
        let (c, api) = (c.clone(), api.clone());
        async move { (count(&c, "fg").await == (0, 0) && api.get("fg").await.is_err()).then_some(()) }
    })
    .await;

    // Orphan: the ReplicaSet and pods stay, without owner references.
    deploy(&c, "default", "orph", 2).await;
    api.delete(
        "orph",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    wait_for(T, "the orphaned Deployment to go", || {
        let api = api.clone();
        async move { api.get("orph").await.err().map(|_| ()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count(&c, "orph").await, (1, 2));
    let sets: Api<ReplicaSet> = Api::default_namespaced(c.clone());
    let rs = sets
        .list(&ListParams::default().labels("app=orph"))
        .await
        .unwrap()
        .items
        .remove(0);
    assert!(rs.metadata.owner_references.unwrap_or_default().is_empty());
    // The ReplicaSet still controls its pods.
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    for p in pods
        .list(&ListParams::default().labels("app=orph"))
        .await
        .unwrap()
        .items
    {
        assert_eq!(
            p.metadata.owner_references.unwrap()[0].uid,
            rs.metadata.uid.clone().unwrap()
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_is_emptied_then_removed() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("n1").create(&c).await;
    cluster.kubelet(&[], Act::Run);
    let namespaces: Api<Namespace> = Api::all(c.clone());
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    deploy(&c, "team", "app", 2).await;
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = namespaces.get("team").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    wait_for(T, "the namespace to be gone", || {
        let namespaces = namespaces.clone();
        async move { namespaces.get("team").await.err().map(|_| ()) }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "team");
    assert!(pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_gc_and_node_ipam() {
    let mut config = fast_config();
    config.terminated_pod_gc_threshold = 2;
    config.cluster_cidr = Some("10.50.0.0/22".into());
    let mut cluster = Cluster::start(config).await;
    let c = cluster.client.clone();
    node("done").create(&c).await;
    node("doomed").create(&c).await;
    cluster.kubelet(&["done"], Act::Succeed);

    // Node IPAM: each node gets its own /24 of the cluster CIDR.
    let nodes: Api<Node> = Api::all(c.clone());
    let cidrs = wait_for(T, "pod CIDRs", || {
        let nodes = nodes.clone();
        async move {
            let mut cidrs = Vec::new();
            for n in ["done", "doomed"] {
                let spec = nodes.get(n).await.ok()?.spec?;
                let cidr = spec.pod_cidr?;
                assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
                cidrs.push(cidr);
            }
            Some(cidrs)
        }
    })
    .await;
    assert_ne!(cidrs[0], cidrs[1]);
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.50.") && c.ends_with(".0/24")),
        "{cidrs:?}"
    );

    // Finished pods beyond the threshold of 2 are deleted, oldest first.
    for i in 0..4 {
        create_pod(
            &c,
            with_spec(
                pod(&format!("finished-{i}"), "", ""),
                json!({"nodeName": "done", "restartPolicy": "Never"}),
            ),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let pods: Api<Pod> = Api::default_namespaced(c.clone());
    wait_for(T, "finished pods over the threshold to go", || {
        let pods = pods.clone();
        async move {
            let names: Vec<String> = pods
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .filter(|n| n.starts_with("finished-"))
                .collect();
            (names.len() == 2).then_some(names)
        }
    })
    .await
    .iter()
    .for_each(|n| assert!(n == "finished-2" || n == "finished-3", "kept {n}"));

    // Pods of a deleted node are removed.
    create_pod(
        &c,
        with_spec(pod("stranded", "", ""), json!({"nodeName": "doomed"})),
    )
    .await;
    nodes
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(T, "the stranded pod to go", || {
        let pods = pods.clone();
        async move { pods.get("stranded").await.err().map(|_| ()) }
    })
    .await;
    // Its CIDR is free again for a new node (round robin: after the unused ones).
    let _ = nodes
        .patch(
            "done",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await;
    cluster.stop().await;
}
