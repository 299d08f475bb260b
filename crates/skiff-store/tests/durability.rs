//! Durability: state, revision and history survive reopening; compaction bounds the file
//! under churn; every acknowledged write survives `kill -9` of the writing process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use skiff_store::{ListOptions, Preconditions, Store, StoreOptions};

#[tokio::test]
async fn reopen_keeps_objects_and_the_revision_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let first_uid;
    {
        let store = open(&dir);
        let a = store
            .create(&pod_key("d", "a"), pod("a", None, json!({})))
            .await
            .unwrap();
        first_uid = a.value()["metadata"]["uid"].clone();
        store
            .create(&pod_key("d", "b"), pod("b", None, json!({})))
            .await
            .unwrap();
        // Deleting the newest object must not let its revision be handed out again.
        store
            .delete(&pod_key("d", "b"), Preconditions::default())
            .await
            .unwrap();
        assert_eq!(store.revision(), 3);
        store.compact(3).await.unwrap();
        store.close().await;
    }
    let store = open(&dir);
    assert_eq!(store.revision(), 3);
    assert_eq!(store.compacted_revision(), 3);
    let a = store.get(&pod_key("d", "a")).unwrap();
    assert_eq!(a.revision(), 1);
    assert_eq!(a.value()["metadata"]["uid"], first_uid);
    assert!(store.get(&pod_key("d", "b")).is_none());
    let c = store
        .create(&pod_key("d", "c"), pod("c", None, json!({})))
        .await
        .unwrap();
    assert_eq!(c.revision(), 4);
    let page = store.list("pods", None, &ListOptions::default()).unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.revision, 4);
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .create(&pod_key("d", "a"), pod("a", None, json!({})))
        .await
        .unwrap();
    drop(store);
    // Reopening works only if the file lock was released.
    let store = open(&dir);
    assert!(store.get(&pod_key("d", "a")).is_some());
    // A second open of a live database is refused with a clear error.
    let err = Store::open(&dir.path().join("store.redb"), options()).unwrap_err();
    assert!(err.to_string().starts_with("database error:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_with_compaction_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("churn.redb");
    let store = Store::open(
        &path,
        StoreOptions {
            compaction_interval: Duration::from_millis(50),
            compaction_retain: Duration::ZERO,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let filler = "x".repeat(2000);
    let round = |r: usize| {
        let store = store.clone();
        let filler = filler.clone();
        async move {
            let mut tasks = Vec::new();
            for w in 0..8 {
                let store = store.clone();
                let filler = filler.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..25 {
                        let name = format!("p-{r}-{w}-{i}");
                        let mut p = pod(&name, None, json!({}));
                        p["metadata"]["annotations"] = json!({"filler": filler});
                        store.create(&pod_key("d", &name), p).await.unwrap();
                        store
                            .delete(&pod_key("d", &name), Preconditions::default())
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    let mut sizes = Vec::new();
    for r in 0..16 {
        round(r).await;
        // Let the timer compact.
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.compacted_revision() < store.revision() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            store.compacted_revision(),
            store.revision(),
            "timer compaction ran"
        );
        sizes.push(std::fs::metadata(&path).unwrap().len());
    }
    assert_eq!(store.count("pods", None), 0);
    assert_eq!(store.revision(), 16 * 400);
    // 6,400 writes of ~2 KiB objects (each also logged as an event): without compaction and
    // page reuse the file would pass 25 MiB. With them it settles after the first rounds.
    let settled = sizes[4];
    let last = *sizes.last().unwrap();
    assert!(
        last <= settled * 2 && last < 16 << 20,
        "file keeps growing under churn: {sizes:?}"
    );
}

/// Child side of `acknowledged_writes_survive_kill_9`: runs only when that test spawns it.
#[test]
#[ignore = "helper process for acknowledged_writes_survive_kill_9"]
fn kill9_child() {
    let Ok(path) = std::env::var("SKIFF_STORE_KILL9_DB") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::open(std::path::Path::new(&path), options()).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for w in 0..32 {
            let store = store.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let o = store
                        .create(&pod_key("burst", &name), pod(&name, None, json!({})))
                        .await
                        .unwrap();
                    if tx.send(format!("ack {name} {}", o.revision())).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        println!("ready");
        while let Some(line) = rx.recv().await {
            writeln!(out, "{line}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill9.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill9_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SKIFF_STORE_KILL9_DB", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Read acknowledgements until well into the burst, then SIGKILL mid-stream.
    while acked.len() < 3000 {
        assert!(
            Instant::now() < deadline,
            "child too slow: {} acks",
            acked.len()
        );
        let Some(line) = lines.next() else { break };
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let (name, rev) = rest.split_once(' ').unwrap();
            acked.push((name.to_string(), rev.parse().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL
                           // Everything the child printed before dying was acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("ack ") {
            let (name, rev) = rest.split_once(' ').unwrap();
            acked.push((name.to_string(), rev.parse().unwrap()));
        }
    }
    child.wait().unwrap();
    assert!(
        acked.len() >= 3000,
        "only {} acknowledged writes",
        acked.len()
    );

    let store = Store::open(&db, options()).unwrap();
    let max_acked = acked.iter().map(|(_, r)| *r).max().unwrap();
    for (name, rev) in &acked {
        let o = store
            .get(&pod_key("burst", name))
            .unwrap_or_else(|| panic!("acknowledged {name} (revision {rev}) lost"));
        assert_eq!(o.revision(), *rev);
    }
    assert!(store.revision() >= max_acked);
    let next = store
        .create(
            &pod_key("burst", "after-restart"),
            pod("after-restart", None, json!({})),
        )
        .await
        .unwrap();
    assert!(next.revision() > max_acked);
    // Watches resume from an acknowledged revision.
    let mut w = store
        .watch(
            "pods",
            None,
            skiff_store::WatchOptions {
                from_revision: Some(max_acked),
                ..Default::default()
            },
        )
        .unwrap();
    let mut saw_after_restart = false;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        assert!(ev.revision() > max_acked);
        saw_after_restart |= ev.object().is_some_and(|o| o.key().name == "after-restart");
    }
    assert!(saw_after_restart);
}
