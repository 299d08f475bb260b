//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};
use skiff_store::{Key, Store, StoreOptions, WatchEvent, Watcher};

pub(crate) fn options() -> StoreOptions {
    StoreOptions {
        // Tests compact explicitly unless they test the timer.
        compaction_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

pub(crate) fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("store.redb"), options()).expect("open store")
}

pub(crate) fn pod_key(ns: &str, name: &str) -> Key {
    Key::namespaced("pods", ns, name)
}

pub(crate) fn pod(name: &str, node: Option<&str>, labels: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"phase": "Pending"}
    })
}

/// The next event, failing the test if none comes within 5 s.
pub(crate) async fn next(w: &mut Watcher) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("watch event within 5s")
        .expect("watch still open")
}

/// Asserts no event arrives within a short time.
pub(crate) async fn quiet(w: &mut Watcher) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(150), w.next()).await {
        panic!("unexpected watch event: {ev:?}");
    }
}

/// `(type, name, revision)` of an event, for compact assertions.
pub(crate) fn summary(ev: &WatchEvent) -> (&'static str, String, u64) {
    (
        ev.type_name(),
        ev.object()
            .map(|o| o.key().name.clone())
            .unwrap_or_default(),
        ev.revision(),
    )
}
