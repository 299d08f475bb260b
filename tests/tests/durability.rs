//! Acceptance 3 of issue 2: `kill -9` the real server in the middle of a burst of concurrent
//! creates, restart it: every create that got a 201 is there, the revision continues, and
//! watches resume from a revision seen before the crash.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use skiff_tests::inproc::kube_client;
use skiff_tests::process::SkiffProcess;

const WRITERS: usize = 32;
const ACKS_BEFORE_KILL: usize = 400;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"burst": "yes"}},
        "data": {"payload": "x".repeat(200)},
    }))
    .expect("configmap")
}

#[test]
fn kill9_mid_burst_keeps_every_acknowledged_create() {
    let dir = skiff_tests::temp_dir("durability");
    let data = dir.path().join("data");
    let server = SkiffProcess::start(&data);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // (name, resourceVersion) of every create answered 201.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut server = server;
    runtime.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let maps = maps.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("burst-{w}-{i}");
                    match maps
                        .create(&PostParams::default(), &config_map(&name))
                        .await
                    {
                        Ok(created) => {
                            let rv = created
                                .metadata
                                .resource_version
                                .and_then(|rv| rv.parse().ok())
                                .expect("numeric resourceVersion");
                            acked.lock().unwrap().push((name, rv));
                        }
                        // The server is gone: this writer is done.
                        Err(_) => return,
                    }
                }
            }));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < ACKS_BEFORE_KILL {
            assert!(tokio::time::Instant::now() < deadline, "burst too slow");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill9();
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    let max_acked = acked.iter().map(|(_, rv)| *rv).max().expect("some acks");
    eprintln!(
        "{} creates acknowledged before kill -9 (max resourceVersion {max_acked})",
        acked.len()
    );

    let server = SkiffProcess::start(&data);
    runtime.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        let list = maps
            .list(&ListParams::default().labels("burst=yes"))
            .await
            .expect("list after restart");
        let present: std::collections::HashSet<String> = list
            .items
            .iter()
            .filter_map(|m| m.metadata.name.clone())
            .collect();
        let missing: Vec<&String> = acked
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !present.contains(*n))
            .collect();
        assert!(missing.is_empty(), "acknowledged creates lost: {missing:?}");
        let revision: u64 = list
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse().ok())
            .expect("list revision");
        assert!(
            revision >= max_acked,
            "revision {revision} went back below {max_acked}"
        );

        // A watch from a revision seen before the crash replays what followed it, then
        // streams new events whose revisions continue after the old ones.
        let (first_name, first_rv) = acked
            .iter()
            .min_by_key(|(_, rv)| *rv)
            .expect("acks")
            .clone();
        let mut stream = maps
            .watch(
                &WatchParams::default().labels("burst=yes").timeout(30),
                &first_rv.to_string(),
            )
            .await
            .expect("watch from a pre-crash revision")
            .boxed();
        let after = acked.iter().filter(|(_, rv)| *rv > first_rv).count();
        let mut replayed = 0;
        while replayed < after {
            match stream.try_next().await.expect("event").expect("open") {
                WatchEvent::Added(m) => {
                    assert_ne!(m.metadata.name.as_deref(), Some(first_name.as_str()));
                    replayed += 1;
                }
                WatchEvent::Error(e) => panic!("watch failed after restart: {e:?}"),
                _ => {}
            }
        }
        let created = maps
            .create(&PostParams::default(), &config_map("after-restart"))
            .await
            .expect("create after restart");
        let new_rv: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
        assert!(
            new_rv > revision,
            "new revision {new_rv} continues after {revision}"
        );
        loop {
            match stream.try_next().await.expect("live event").expect("open") {
                WatchEvent::Added(m) if m.metadata.name.as_deref() == Some("after-restart") => {
                    break
                }
                WatchEvent::Error(e) => panic!("watch failed: {e:?}"),
                _ => {}
            }
        }
    });
    drop(server);
}
