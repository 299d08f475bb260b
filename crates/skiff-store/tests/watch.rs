//! Watches: replay from a revision then live, synthetic initial events, 410 after compaction,
//! namespace and selector filtering with moves in/out, node-indexed watchers, bookmarks,
//! slow watchers ending.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use skiff_store::{
    FieldSelector, LabelSelector, Preconditions, Store, StoreError, StoreOptions, WatchEvent,
    WatchOptions,
};

fn from(rev: u64) -> WatchOptions {
    WatchOptions {
        from_revision: Some(rev),
        ..Default::default()
    }
}

#[tokio::test]
async fn replay_then_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store
        .create(&pod_key("d", "a"), pod("a", None, json!({})))
        .await
        .unwrap(); // 1
    let mut v = a.value();
    v["status"]["phase"] = json!("Running");
    store.update(&pod_key("d", "a"), v).await.unwrap(); // 2
    store
        .create(&pod_key("d", "b"), pod("b", None, json!({})))
        .await
        .unwrap(); // 3

    let mut w = store.watch("pods", None, from(1)).unwrap();
    assert_eq!(summary(&next(&mut w).await), ("MODIFIED", "a".into(), 2));
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "b".into(), 3));
    quiet(&mut w).await;
    store
        .delete(&pod_key("d", "a"), Preconditions::default())
        .await
        .unwrap(); // 4
    let ev = next(&mut w).await;
    assert_eq!(summary(&ev), ("DELETED", "a".into(), 4));
    assert_eq!(
        ev.object().unwrap().value()["metadata"]["resourceVersion"],
        "4"
    );
    assert_eq!(ev.object().unwrap().value()["status"]["phase"], "Running");

    // From the current revision: nothing to replay.
    let mut w2 = store.watch("pods", None, from(4)).unwrap();
    quiet(&mut w2).await;
    store
        .create(&pod_key("d", "c"), pod("c", None, json!({})))
        .await
        .unwrap();
    assert_eq!(summary(&next(&mut w2).await), ("ADDED", "c".into(), 5));
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "c".into(), 5));

    let err = store.watch("pods", None, from(99)).unwrap_err();
    assert!(matches!(err, StoreError::TooLargeResourceVersion { .. }));
}

#[tokio::test]
async fn from_now_sends_synthetic_added_then_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for (ns, name) in [("b", "x"), ("a", "y"), ("a", "z")] {
        store
            .create(&pod_key(ns, name), pod(name, None, json!({})))
            .await
            .unwrap();
    }
    let mut w = store
        .watch(
            "pods",
            Some("a"),
            WatchOptions {
                initial_events_end_bookmark: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "y".into(), 2));
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "z".into(), 3));
    assert!(matches!(next(&mut w).await, WatchEvent::Bookmark(3)));
    quiet(&mut w).await;
    // Other namespaces and other resources are not seen.
    store
        .create(&pod_key("b", "q"), pod("q", None, json!({})))
        .await
        .unwrap();
    store
        .create(
            &skiff_store::Key::namespaced("configmaps", "a", "cm"),
            json!({}),
        )
        .await
        .unwrap();
    store
        .create(&pod_key("a", "w"), pod("w", None, json!({})))
        .await
        .unwrap();
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "w".into(), 6));
    quiet(&mut w).await;
}

#[tokio::test]
async fn gone_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..5 {
        let n = format!("p{i}");
        store
            .create(&pod_key("d", &n), pod(&n, None, json!({})))
            .await
            .unwrap();
    }
    store.compact(3).await.unwrap();
    let err = store.watch("pods", None, from(2)).unwrap_err();
    assert!(matches!(
        err,
        StoreError::Gone {
            requested: 2,
            compacted: 3
        }
    ));
    assert_eq!(err.to_string(), "too old resource version: 2 (3)");
    let mut w = store.watch("pods", None, from(3)).unwrap();
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "p3".into(), 4));
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "p4".into(), 5));
    // Compacting to the future clamps to the current revision.
    store.compact(1000).await.unwrap();
    assert_eq!(store.compacted_revision(), 5);
}

#[tokio::test]
async fn label_selector_moves_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = pod_key("d", "a");
    let mut w = store
        .watch(
            "pods",
            None,
            WatchOptions {
                label_selector: Some(LabelSelector::parse("app=web").unwrap()),
                ..from(0)
            },
        )
        .unwrap();
    let o = store
        .create(&key, pod("a", None, json!({"app": "db"})))
        .await
        .unwrap();
    quiet(&mut w).await;
    let mut v = o.value();
    v["metadata"]["labels"]["app"] = json!("web");
    let o = store.update(&key, v).await.unwrap();
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "a".into(), 2));
    let mut v = o.value();
    v["status"]["phase"] = json!("Running");
    let o = store.update(&key, v).await.unwrap();
    assert_eq!(summary(&next(&mut w).await), ("MODIFIED", "a".into(), 3));
    let mut v = o.value();
    v["metadata"]["labels"]["app"] = json!("db");
    store.update(&key, v).await.unwrap();
    let ev = next(&mut w).await;
    assert_eq!(summary(&ev), ("DELETED", "a".into(), 4));
    // The DELETED object is the last state that matched, at the revision it stopped matching.
    let dv = ev.object().unwrap().value();
    assert_eq!(dv["metadata"]["labels"]["app"], "web");
    assert_eq!(dv["metadata"]["resourceVersion"], "4");
    store.delete(&key, Preconditions::default()).await.unwrap();
    quiet(&mut w).await;
}

#[tokio::test]
async fn node_watchers_see_only_their_pods() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut watchers = Vec::new();
    for n in 0..50 {
        let w = store
            .watch(
                "pods",
                None,
                WatchOptions {
                    field_selector: Some(
                        FieldSelector::parse(&format!("spec.nodeName=node-{n}")).unwrap(),
                    ),
                    ..from(0)
                },
            )
            .unwrap();
        watchers.push(w);
    }
    let mut unscheduled = store
        .watch(
            "pods",
            None,
            WatchOptions {
                field_selector: Some(FieldSelector::parse("spec.nodeName=").unwrap()),
                ..from(0)
            },
        )
        .unwrap();
    assert_eq!(store.watcher_count(), 51);
    let key = pod_key("d", "p");
    let o = store.create(&key, pod("p", None, json!({}))).await.unwrap();
    assert_eq!(
        summary(&next(&mut unscheduled).await),
        ("ADDED", "p".into(), 1)
    );
    // Binding: leaves the unscheduled watcher, arrives at node-7's.
    let mut v = o.value();
    v["spec"]["nodeName"] = json!("node-7");
    let o = store.update(&key, v).await.unwrap();
    assert_eq!(
        summary(&next(&mut unscheduled).await),
        ("DELETED", "p".into(), 2)
    );
    assert_eq!(
        summary(&next(&mut watchers[7]).await),
        ("ADDED", "p".into(), 2)
    );
    let mut v = o.value();
    v["status"]["phase"] = json!("Running");
    store.update(&key, v).await.unwrap();
    assert_eq!(
        summary(&next(&mut watchers[7]).await),
        ("MODIFIED", "p".into(), 3)
    );
    store.delete(&key, Preconditions::default()).await.unwrap();
    assert_eq!(
        summary(&next(&mut watchers[7]).await),
        ("DELETED", "p".into(), 4)
    );
    for (i, w) in watchers.iter_mut().enumerate() {
        if i != 7 {
            quiet_now(w);
        }
    }
    drop(watchers);
    assert_eq!(store.watcher_count(), 1);
}

/// No event is already queued.
fn quiet_now(w: &mut skiff_store::Watcher) {
    use futures::FutureExt;
    if let Some(ev) = w.next().now_or_never() {
        panic!("unexpected event {ev:?}");
    }
}

#[tokio::test]
async fn name_field_selector_and_stream_trait() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut w = store
        .watch(
            "pods",
            Some("d"),
            WatchOptions {
                field_selector: Some(FieldSelector::parse("metadata.name=b").unwrap()),
                ..from(0)
            },
        )
        .unwrap();
    store
        .create(&pod_key("d", "a"), pod("a", None, json!({})))
        .await
        .unwrap();
    store
        .create(&pod_key("e", "b"), pod("b", None, json!({})))
        .await
        .unwrap();
    store
        .create(&pod_key("d", "b"), pod("b", None, json!({})))
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary(&ev), ("ADDED", "b".into(), 3));
    let ev = tokio::time::timeout(Duration::from_millis(100), StreamExt::next(&mut w)).await;
    assert!(ev.is_err(), "nothing else");
}

#[tokio::test]
async fn bookmarks_carry_the_current_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("s.redb"),
        StoreOptions {
            bookmark_interval: Duration::from_millis(100),
            ..options()
        },
    )
    .unwrap();
    let mut w = store
        .watch(
            "pods",
            None,
            WatchOptions {
                bookmarks: true,
                label_selector: Some(LabelSelector::parse("app=none").unwrap()),
                ..from(0)
            },
        )
        .unwrap();
    store
        .create(&pod_key("d", "a"), pod("a", None, json!({})))
        .await
        .unwrap();
    store
        .create(&pod_key("d", "b"), pod("b", None, json!({})))
        .await
        .unwrap();
    // Filtered-out events still advance the bookmark revision.
    let mut last = 0;
    for _ in 0..3 {
        match next(&mut w).await {
            WatchEvent::Bookmark(r) => last = r,
            other => panic!("expected a bookmark, got {other:?}"),
        }
    }
    assert_eq!(last, 2);
    // Without bookmarks asked: none.
    let mut quiet_w = store.watch("pods", None, from(2)).unwrap();
    quiet(&mut quiet_w).await;
}

#[tokio::test]
async fn slow_watcher_is_ended_and_others_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("s.redb"),
        StoreOptions {
            watch_queue_capacity: 4,
            ..options()
        },
    )
    .unwrap();
    let mut slow = store.watch("pods", None, from(0)).unwrap();
    let mut fast = store.watch("pods", None, from(0)).unwrap();
    for i in 0..10 {
        let n = format!("p{i}");
        store
            .create(&pod_key("d", &n), pod(&n, None, json!({})))
            .await
            .unwrap();
        assert_eq!(summary(&next(&mut fast).await).2, i + 1);
    }
    // The slow one gets what was queued, then its stream ends.
    let mut got = 0;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), slow.next())
        .await
        .unwrap()
    {
        assert!(matches!(ev, WatchEvent::Added(_)));
        got += 1;
    }
    assert_eq!(got, 4);
    assert_eq!(store.watcher_count(), 1);
}

#[tokio::test]
async fn replay_respects_selectors_and_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let o = store
        .create(&pod_key("d", "a"), pod("a", None, json!({"app": "web"})))
        .await
        .unwrap(); // 1
    store
        .create(&pod_key("e", "a"), pod("a", None, json!({"app": "web"})))
        .await
        .unwrap(); // 2
    let mut v = o.value();
    v["metadata"]["labels"]["app"] = json!("db");
    store.update(&pod_key("d", "a"), v).await.unwrap(); // 3
    let mut w = store
        .watch(
            "pods",
            Some("d"),
            WatchOptions {
                label_selector: Some(LabelSelector::parse("app=web").unwrap()),
                ..from(1)
            },
        )
        .unwrap();
    let ev = next(&mut w).await;
    assert_eq!(summary(&ev), ("DELETED", "a".into(), 3));
    quiet(&mut w).await;
}

#[tokio::test]
async fn watches_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        for i in 0..3 {
            let n = format!("p{i}");
            store
                .create(&pod_key("d", &n), pod(&n, None, json!({})))
                .await
                .unwrap();
        }
        store.close().await;
    }
    let store = open(&dir);
    let mut w = store.watch("pods", None, from(1)).unwrap();
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "p1".into(), 2));
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "p2".into(), 3));
    store
        .create(&pod_key("d", "p3"), pod("p3", None, json!({})))
        .await
        .unwrap();
    assert_eq!(summary(&next(&mut w).await), ("ADDED", "p3".into(), 4));
}

#[tokio::test]
async fn closed_store_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let other = store.clone();
    store
        .create(&pod_key("d", "a"), pod("a", None, json!({})))
        .await
        .unwrap();
    store.close().await;
    let err = other
        .create(&pod_key("d", "b"), pod("b", None, json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed));
    assert!(
        other.get(&pod_key("d", "a")).is_some(),
        "reads still served"
    );
}
