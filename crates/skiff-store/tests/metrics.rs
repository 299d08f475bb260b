//! What the store reports for `/metrics`: its gauges and the commit histogram.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_and_commit_latency_follow_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.gauges().revision, 0);
    for i in 0..3 {
        let name = format!("m-{i}");
        store
            .create(&pod_key("default", &name), pod(&name, None, json!({})))
            .await
            .unwrap();
    }
    let _watch = store.watch("pods", None, Default::default()).unwrap();
    let gauges = store.gauges();
    assert_eq!(gauges.revision, 3);
    assert_eq!(gauges.watchers, 1);
    let on_disk = std::fs::metadata(store.path()).unwrap().len();
    assert!(on_disk > 0);
    assert_eq!(gauges.db_size_bytes, on_disk);

    // The commits were timed into the process-wide histogram (other tests of this binary may
    // add theirs, so at least ours are there).
    let text = skiff_metrics::global().encode(Some(&gauges));
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("skiff_store_commit_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("commit histogram in the exposition");
    assert!(count >= 1, "{text}");
    assert!(text.contains("skiff_store_revision 3\n"), "{text}");
}
