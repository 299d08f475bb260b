//! Group commit: concurrent writers share transactions; within a batch later operations see
//! earlier ones.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::json;
use skiff_store::StoreError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_all_land_with_unique_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut tasks = Vec::new();
    for w in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                let name = format!("p-{w}-{i}");
                let o = store
                    .create(&pod_key("default", &name), pod(&name, None, json!({})))
                    .await
                    .unwrap();
                revs.push(o.revision());
            }
            revs
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for r in t.await.unwrap() {
            assert!(all.insert(r), "revision {r} handed out twice");
        }
    }
    assert_eq!(all.len(), 640);
    assert_eq!(store.revision(), 640);
    assert_eq!(*all.iter().max().unwrap(), 640);
    let stats = store.commit_stats();
    assert_eq!(stats.writes, 640);
    assert!(
        stats.commits < 640,
        "32 concurrent writers should share transactions: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_in_one_batch_second_gets_already_exists() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // Many rounds of racing creates of one name: exactly one wins each time, whichever
    // batch they land in.
    for round in 0..20 {
        let name = format!("race-{round}");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create(&pod_key("default", &name), pod(&name, None, json!({})))
                    .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok, 1, "round {round}");
    }
    assert_eq!(store.count("pods", None), 20);
    assert_eq!(store.revision(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_in_flight_together_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = pod_key("default", "x");
    // Issue without awaiting in between so they queue into the same batch.
    let (c, u, d) = tokio::join!(
        store.create(&key, pod("x", None, json!({}))),
        store.update(&key, pod("x", None, json!({"a": "b"}))),
        store.delete(&key, Default::default()),
    );
    let c = c.unwrap();
    // join! polls in order, so the requests were queued create, update, delete.
    let u = u.unwrap();
    assert_eq!(u.revision(), c.revision() + 1);
    assert_eq!(u.value()["metadata"]["labels"]["a"], "b");
    let d = d.unwrap();
    assert_eq!(d.revision(), 3);
    assert!(store.get(&key).is_none());
}
