//! The workload controllers against a real API server, with a fake kubelet playing the
//! nodes: ReplicaSets, Deployments (rolling update with maxUnavailable 0, rollback,
//! scaling, Recreate), DaemonSets (every eligible node, dedicated nodes, rolling update), Jobs
//! (completions and parallelism, back-off limit, TTL).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

fn template(app: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": image,
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}]}
    })
}

fn deployment(name: &str, replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": template(name, image),
        }
    })
}

async fn create<K>(client: &Client, object: Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::default_namespaced(client.clone());
    let object: K = serde_json::from_value(object).expect("object json");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

/// Active pods (not finished, not being deleted) with label app=`app`.
async fn active_pods(client: &Client, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .collect()
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn sets_of(client: &Client, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn revision(rs: &ReplicaSet) -> String {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned()
        .unwrap_or_default()
}

/// Waits until the Deployment reports `replicas` updated, available replicas of the current
/// generation and Progressing=NewReplicaSetAvailable (what `kubectl rollout status` waits for).
async fn wait_rolled_out(client: &Client, name: &str, replicas: i32) -> Deployment {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    wait_for(
        T,
        &format!("deployment {name} to roll out {replicas} replicas"),
        || {
            let api = api.clone();
            async move {
                let d = api.get(name).await.ok()?;
                let s = d.status.clone()?;
                let progressing = s
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Progressing")?
                    .reason
                    .clone()?;
                (s.observed_generation >= d.metadata.generation
                    && s.updated_replicas.unwrap_or(0) == replicas
                    && s.replicas.unwrap_or(0) == replicas
                    && s.available_replicas.unwrap_or(0) == replicas
                    && (replicas == 0 || progressing == "NewReplicaSetAvailable"))
                    .then_some(d)
            }
        },
    )
    .await
}

async fn nodes(client: &Client, names: &[&str]) {
    for n in names {
        node(n).create(client).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_keep_their_pods() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    nodes(&c, &["n1", "n2"]).await;
    cluster.kubelet(&[], Act::Run);
    // An orphan pod the ReplicaSet's selector matches is adopted.
    let mut orphan = pod("orphan", "10m", "");
    orphan["metadata"]["labels"] = json!({"app": "rs"});
    create_pod(&c, orphan).await;
    create::<ReplicaSet>(
        &c,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}}, "template": template("rs", "busybox")}}),
    )
    .await;
    let api: Api<ReplicaSet> = Api::default_namespaced(c.clone());
    wait_for(T, "3 ready replicas", || {
        let api = api.clone();
        async move {
            let s = api.get("rs").await.ok()?.status?;
            (s.replicas == 3 && s.ready_replicas == Some(3) && s.available_replicas == Some(3))
                .then_some(())
        }
    })
    .await;
    let pods = active_pods(&c, "rs").await;
    assert_eq!(pods.len(), 3);
    assert!(pods
        .iter()
        .any(|p| p.metadata.name.as_deref() == Some("orphan")));
    assert!(pods.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|r| r[0].kind == "ReplicaSet" && r[0].controller == Some(true))
    }));
    // A deleted pod is replaced.
    let pod_api: Api<Pod> = Api::default_namespaced(c.clone());
    pod_api
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(T, "a replacement", || {
        let c = c.clone();
        async move {
            let pods = active_pods(&c, "rs").await;
            (pods.len() == 3
                && pods
                    .iter()
                    .all(|p| p.metadata.name.as_deref() != Some("orphan")))
            .then_some(())
        }
    })
    .await;
    // Scale down to 1 via the scale subresource.
    api.patch_scale(
        "rs",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    wait_for(T, "one replica", || {
        let c = c.clone();
        async move { (active_pods(&c, "rs").await.len() == 1).then_some(()) }
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_without_unavailability_and_rolls_back() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    nodes(&c, &["n1", "n2", "n3"]).await;
    cluster.kubelet(&[], Act::Run);
    create::<Deployment>(&c, deployment("web", 3, "web:A")).await;
    let d = wait_rolled_out(&c, "web", 3).await;
    let available = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let sets = sets_of(&c, "web").await;
    assert_eq!(sets.len(), 1);
    assert_eq!(revision(&sets[0]), "1");
    let hash = sets[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        sets[0].metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );

    // Watch readiness during the rollout: with maxUnavailable 0 there are never fewer than
    // 3 ready pods, and with maxSurge 1 never more than 4 pods.
    let done = Arc::new(AtomicBool::new(false));
    let min_ready = Arc::new(AtomicI32::new(i32::MAX));
    let max_pods = Arc::new(AtomicI32::new(0));
    let sampler = {
        let (c, done, min_ready, max_pods) =
            (c.clone(), done.clone(), min_ready.clone(), max_pods.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let pods = active_pods(&c, "web").await;
                let ready = pods.iter().filter(|p| is_ready(p)).count() as i32;
                min_ready.fetch_min(ready, Ordering::SeqCst);
                max_pods.fetch_max(pods.len() as i32, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let api: Api<Deployment> = Api::default_namespaced(c.clone());
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(&json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "web:B"}]}}}})),
    )
    .await
    .unwrap();
    wait_for(T, "all pods on image B", || {
        let c = c.clone();
        async move {
            let pods = active_pods(&c, "web").await;
            (pods.len() == 3 && pods.iter().all(|p| image_of(p) == "web:B" && is_ready(p)))
                .then_some(())
        }
    })
    .await;
    wait_rolled_out(&c, "web", 3).await;
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert!(
        min_ready.load(Ordering::SeqCst) >= 3,
        "ready pods dropped to {}",
        min_ready.load(Ordering::SeqCst)
    );
    assert!(
        max_pods.load(Ordering::SeqCst) <= 4,
        "{} pods at once",
        max_pods.load(Ordering::SeqCst)
    );
    let sets = sets_of(&c, "web").await;
    assert_eq!(sets.len(), 2);
    let old = sets
        .iter()
        .find(|rs| revision(rs) == "1")
        .expect("revision 1");
    let new = sets
        .iter()
        .find(|rs| revision(rs) == "2")
        .expect("revision 2");
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(3));
    let d = api.get("web").await.unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let events = events_for(&c, "web").await;
    assert!(events
        .iter()
        .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Scaled up replica set web-"))));

    // Rollback as kubectl does it: the template of revision 1 goes back into the Deployment.
    let mut old_template = old.spec.as_ref().unwrap().template.clone().unwrap();
    old_template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(
                json!([{"op": "replace", "path": "/spec/template", "value": old_template}]),
            )
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    wait_for(T, "all pods back on image A", || {
        let c = c.clone();
        async move {
            let pods = active_pods(&c, "web").await;
            (pods.len() == 3 && pods.iter().all(|p| image_of(p) == "web:A")).then_some(())
        }
    })
    .await;
    wait_rolled_out(&c, "web", 3).await;
    let sets = sets_of(&c, "web").await;
    assert_eq!(sets.len(), 2, "the old ReplicaSet is reused");
    let back = sets
        .iter()
        .find(|rs| rs.metadata.name == old.metadata.name)
        .unwrap();
    assert_eq!(revision(back), "3");
    assert_eq!(
        back.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision-history"],
        "1"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_scales_3_10_0_and_keeps_history_limited() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    nodes(&c, &["n1", "n2"]).await;
    cluster.kubelet(&[], Act::Run);
    let mut d = deployment("scaled", 3, "img:1");
    d["spec"]["revisionHistoryLimit"] = json!(1);
    create::<Deployment>(&c, d).await;
    wait_rolled_out(&c, "scaled", 3).await;
    let api: Api<Deployment> = Api::default_namespaced(c.clone());
    for replicas in [10, 0] {
        api.patch_scale(
            "scaled",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
        wait_rolled_out(&c, "scaled", replicas).await;
        wait_for(T, &format!("{replicas} pods"), || {
            let c = c.clone();
            async move { (active_pods(&c, "scaled").await.len() == replicas as usize).then_some(()) }
        })
        .await;
    }
    api.patch_scale(
        "scaled",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    wait_rolled_out(&c, "scaled", 2).await;
    // Three more templates: only revisionHistoryLimit=1 old ReplicaSet is kept.
    for image in ["img:2", "img:3", "img:4"] {
        api.patch(
            "scaled",
            &PatchParams::default(),
            &Patch::Strategic(&json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}})),
        )
        .await
        .unwrap();
        wait_for(T, &format!("pods on {image}"), || {
            let c = c.clone();
            async move {
                let pods = active_pods(&c, "scaled").await;
                (pods.len() == 2 && pods.iter().all(|p| image_of(p) == image && is_ready(p)))
                    .then_some(())
            }
        })
        .await;
    }
    wait_for(T, "old ReplicaSets cleaned up", || {
        let c = c.clone();
        async move { (sets_of(&c, "scaled").await.len() == 2).then_some(()) }
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_and_pause() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    nodes(&c, &["n1"]).await;
    cluster.kubelet(&[], Act::Run);
    let mut d = deployment("rec", 2, "img:1");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    create::<Deployment>(&c, d).await;
    wait_rolled_out(&c, "rec", 2).await;
    let done = Arc::new(AtomicBool::new(false));
    let mixed = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (c, done, mixed) = (c.clone(), done.clone(), mixed.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let api: Api<Pod> = Api::default_namespaced(c.clone());
                let pods = api
                    .list(&ListParams::default().labels("app=rec"))
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let images: HashSet<String> = pods.iter().map(image_of).collect();
                if images.len() > 1 {
                    mixed.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let api: Api<Deployment> = Api::default_namespaced(c.clone());
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Strategic(&json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "img:2"}]}}}})),
    )
    .await
    .unwrap();
    wait_for(T, "pods on img:2", || {
        let c = c.clone();
        async move {
            let pods = active_pods(&c, "rec").await;
            (pods.len() == 2 && pods.iter().all(|p| image_of(p) == "img:2")).then_some(())
        }
    })
    .await;
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert!(
        !mixed.load(Ordering::SeqCst),
        "Recreate ran old and new pods at once"
    );

    // Paused: template changes wait, the Progressing condition says so.
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Strategic(&json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "img:3"}]}}}})),
    )
    .await
    .unwrap();
    wait_for(T, "the paused condition", || {
        let api = api.clone();
        async move {
            let d = api.get("rec").await.ok()?;
            d.status?.conditions?.into_iter().find(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")
            })
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(active_pods(&c, "rec")
        .await
        .iter()
        .all(|p| image_of(p) == "img:2"));
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    wait_for(T, "pods on img:3 after resume", || {
        let c = c.clone();
        async move {
            let pods = active_pods(&c, "rec").await;
            (pods.len() == 2 && pods.iter().all(|p| image_of(p) == "img:3")).then_some(())
        }
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_sets_cover_eligible_nodes() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    nodes(&c, &["n1", "n2", "n3"]).await;
    node("db")
        .taint("dedicated", "db", "NoSchedule")
        .create(&c)
        .await;
    cluster.kubelet(&[], Act::Run);
    create::<DaemonSet>(
        &c,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", "agent:1")}}),
    )
    .await;
    let placed = |want: usize| {
        let c = c.clone();
        async move {
            wait_for(T, &format!("{want} daemon pods"), || {
                let c = c.clone();
                async move {
                    let pods = active_pods(&c, "agent").await;
                    let nodes: BTreeMap<String, usize> =
                        pods.iter().fold(BTreeMap::new(), |mut m, p| {
                            let n = p
                                .spec
                                .as_ref()
                                .and_then(|s| s.node_name.clone())
                                .unwrap_or_default();
                            *m.entry(n).or_default() += 1;
                            m
                        });
                    (pods.len() == want && nodes.len() == want && !nodes.contains_key(""))
                        .then_some(nodes)
                }
            })
            .await
        }
    };
    let on = placed(3).await;
    assert!(
        !on.contains_key("db"),
        "a daemon pod landed on the dedicated node: {on:?}"
    );
    let api: Api<DaemonSet> = Api::default_namespaced(c.clone());
    let status = wait_for(T, "daemon set status", || {
        let api = api.clone();
        async move {
            let s = api.get("agent").await.ok()?.status?;
            (s.number_ready == 3 && s.number_available == Some(3)).then_some(s)
        }
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.current_number_scheduled, 3);
    assert_eq!(status.updated_number_scheduled, Some(3));
    // A new node gets its pod.
    node("n4").create(&c).await;
    placed(4).await;
    // Tolerating the dedicated taint covers that node too.
    api.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}}}})),
    )
    .await
    .unwrap();
    let on = placed(5).await;
    assert!(on.contains_key("db"));
    // That was a template change: every pod is replaced by the new revision (rolling update).
    let revisions: Api<ControllerRevision> = Api::default_namespaced(c.clone());
    wait_for(T, "two controller revisions", || {
        let revisions = revisions.clone();
        async move {
            let l = revisions
                .list(&ListParams::default().labels("app=agent"))
                .await
                .ok()?;
            (l.items.len() == 2 && l.items.iter().any(|r| r.revision == 2)).then_some(())
        }
    })
    .await;
    wait_for(T, "all daemon pods updated", || {
        let api = api.clone();
        async move {
            let s = api.get("agent").await.ok()?.status?;
            (s.updated_number_scheduled == Some(5)
                && s.number_available == Some(5)
                && s.desired_number_scheduled == 5)
                .then_some(())
        }
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_fail_and_expire() {
    let mut cluster = Cluster::start(fast_config()).await;
    let c = cluster.client.clone();
    node("work").create(&c).await;
    node("broken").create(&c).await;
    cluster.kubelet(&["work"], Act::Succeed);
    cluster.kubelet(&["broken"], Act::Fail);
    let mut job_template = template("batch", "job:1");
    job_template["spec"]["restartPolicy"] = json!("Never");
    job_template["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "work"});
    create::<Job>(
        &c,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
            "spec": {"completions": 5, "parallelism": 2, "ttlSecondsAfterFinished": 2, "template": job_template}}),
    )
    .await;
    // Never more than 2 running at once.
    let done = Arc::new(AtomicBool::new(false));
    let max_active = Arc::new(AtomicI32::new(0));
    let sampler = {
        let (c, done, max_active) = (c.clone(), done.clone(), max_active.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let api: Api<Pod> = Api::default_namespaced(c.clone());
                let pods = api
                    .list(&ListParams::default().labels("batch.kubernetes.io/job-name=batch"))
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let active = pods
                    .iter()
                    .filter(|p| {
                        !matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded" | "Failed")
                        )
                    })
                    .count() as i32;
                max_active.fetch_max(active, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let jobs: Api<Job> = Api::default_namespaced(c.clone());
    let status = wait_for(T, "job completion", || {
        let jobs = jobs.clone();
        async move {
            let s = jobs.get("batch").await.ok()?.status?;
            s.conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(s)
        }
    })
    .await;
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert_eq!(status.succeeded, Some(5));
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    assert!(
        max_active.load(Ordering::SeqCst) <= 2,
        "{} pods at once",
        max_active.load(Ordering::SeqCst)
    );
    // Finished pods are kept until the TTL deletes the Job; then the GC takes them.
    wait_for(T, "the job to be deleted after its TTL", || {
        let jobs = jobs.clone();
        async move { jobs.get("batch").await.err().map(|_| ()) }
    })
    .await;

    // A failing job stops after backoffLimit + 1 failures.
    let mut failing = template("fail", "job:1");
    failing["spec"]["restartPolicy"] = json!("Never");
    failing["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "broken"});
    create::<Job>(
        &c,
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fail"},
            "spec": {"backoffLimit": 0, "template": failing}}),
    )
    .await;
    let condition = wait_for(T, "job failure", || {
        let jobs = jobs.clone();
        async move {
            let s = jobs.get("fail").await.ok()?.status?;
            s.conditions?
                .into_iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        }
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        condition.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    let s = jobs.get("fail").await.unwrap().status.unwrap();
    assert_eq!(s.failed, Some(1));
    cluster.stop().await;
}
