//! Test images built from the `images/` recipes once per build tree and shared by tests.

use std::path::PathBuf;
use std::process::Command;

/// The busybox image (`docker.io/library/busybox:TAG`) as an OCI archive, built with
/// `images/busybox/build.sh` on first use (atomically, so concurrent tests share one build).
pub fn busybox(tag: &str) -> PathBuf {
    let dir = crate::workspace_root().join("target").join("test-images");
    std::fs::create_dir_all(&dir).expect("create target/test-images");
    let path = dir.join(format!("busybox-{tag}.tar"));
    if path.exists() {
        return path;
    }
    let tmp = dir.join(format!("busybox-{tag}.tar.{}.tmp", std::process::id()));
    let status = Command::new(crate::workspace_root().join("images/busybox/build.sh"))
        .arg(&tmp)
        .args(["--tag", tag])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run images/busybox/build.sh");
    assert!(status.success(), "images/busybox/build.sh failed");
    std::fs::rename(&tmp, &path).expect("publish the test image");
    path
}
