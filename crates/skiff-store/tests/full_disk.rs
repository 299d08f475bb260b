//! A full disk: creates fail while it is full (nothing acknowledged is lost), `health()` says
//! why, and once space is freed writes resume by themselves — no restart.
//!
//! Needs root (mounts a small tmpfs); skipped loudly otherwise, failed under
//! `SKIFF_E2E_REQUIRED=1`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{options, pod, pod_key};
use serde_json::json;
use skiff_store::Store;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs<'a>(&'a Path);

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn writes_resume_by_themselves_after_space_is_freed() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var("SKIFF_E2E_REQUIRED").is_err(),
            "full_disk needs root (SKIFF_E2E_REQUIRED=1)"
        );
        eprintln!(
            "SKIPPED writes_resume_by_themselves_after_space_is_freed: needs root to mount a tmpfs"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    let _mount = Tmpfs(&mnt);

    let path = mnt.join("db").join("state.redb");
    let store = Store::open(&path, options()).unwrap();
    // Leave about 3 MiB free; the filler stands for whatever else filled the disk.
    let filler = mnt.join("filler");
    let keep = 3 << 20;
    let size = free_bytes(&mnt).saturating_sub(keep);
    std::fs::write(&filler, vec![0u8; size as usize]).unwrap();

    let payload = "x".repeat(32 * 1024);
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..1000 {
        let mut p = pod(&format!("p{i}"), None, json!({}));
        p["metadata"]["annotations"] = json!({"payload": payload});
        match store.create(&pod_key("d", &format!("p{i}")), p).await {
            Ok(_) => acked.push(i),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    let failure = failure.expect("the disk never filled up");
    assert!(!acked.is_empty());
    let health = store
        .health()
        .expect_err("health reports the failed commit");
    assert!(!health.is_empty(), "{failure}");

    // Space comes back: the next write succeeds without a restart, and health clears.
    std::fs::remove_file(&filler).unwrap();
    let after = store
        .create(&pod_key("d", "after"), pod("after", None, json!({})))
        .await
        .unwrap_or_else(|e| panic!("writes did not resume after space was freed: {e}"));
    assert!(after.revision() > 0);
    assert_eq!(store.health(), Ok(()));
    store.close().await;

    // Every acknowledged write is there after a restart.
    let store = Store::open(&path, options()).unwrap();
    for i in &acked {
        assert!(
            store.get(&pod_key("d", &format!("p{i}"))).is_some(),
            "p{i} lost"
        );
    }
    assert!(store.get(&pod_key("d", "after")).is_some());
    store.close().await;
}
