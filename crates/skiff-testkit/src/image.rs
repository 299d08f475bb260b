//! Test images built from the repository's `images/` recipes, with no network.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The busybox recipe, `images/busybox/build.sh`.
pub fn busybox_recipe() -> PathBuf {
    crate::workspace_root().join("images/busybox/build.sh")
}

/// Builds the busybox image `docker.io/library/busybox:TAG` into `dir`: the OCI archive, and
/// the same image as a `docker save` archive when `docker` is set.
pub fn build_busybox(dir: &Path, tag: &str, docker: bool) -> (PathBuf, Option<PathBuf>) {
    let oci = dir.join(format!("busybox-{tag}.tar"));
    let mut command = Command::new("bash");
    command.arg(busybox_recipe()).arg(&oci).args(["--tag", tag]);
    let docker_archive = docker.then(|| dir.join(format!("busybox-{tag}-docker.tar")));
    if let Some(path) = &docker_archive {
        command.arg("--docker-archive").arg(path);
    }
    let output = command.output().expect("run images/busybox/build.sh");
    assert!(
        output.status.success(),
        "images/busybox/build.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (oci, docker_archive)
}

/// The busybox image with `tag` as an OCI archive, built once per build tree (under
/// `target/test-images`) and shared by every test; built atomically, so concurrent tests
/// share one build.
pub fn busybox(tag: &str) -> PathBuf {
    cached("busybox", tag)
}

/// The stand-in for `docker.io/library/nginx:TAG` (`images/nginx/build.sh`: busybox httpd
/// serving nginx's welcome page on port 80), built once per build tree like [`busybox`].
pub fn nginx(tag: &str) -> PathBuf {
    cached("nginx", tag)
}

/// The stand-in for `docker.io/library/python:TAG` (`images/python/build.sh`: Debian's
/// CPython on the busybox image), built once per build tree like [`busybox`].
pub fn python(tag: &str) -> PathBuf {
    cached("python", tag)
}

/// `images/RECIPE/build.sh --tag TAG`, built into `target/test-images/RECIPE-TAG.tar` unless
/// it is there already.
fn cached(recipe: &str, tag: &str) -> PathBuf {
    let dir = crate::workspace_root().join("target").join("test-images");
    std::fs::create_dir_all(&dir).expect("create target/test-images");
    let path = dir.join(format!("{recipe}-{tag}.tar"));
    if path.exists() {
        return path;
    }
    let tmp = dir.join(format!("{recipe}-{tag}.tar.{}.tmp", std::process::id()));
    let script = crate::workspace_root().join(format!("images/{recipe}/build.sh"));
    let status = Command::new("bash")
        .arg(&script)
        .arg(&tmp)
        .args(["--tag", tag])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(status.success(), "{} failed", script.display());
    std::fs::rename(&tmp, &path).expect("publish the test image");
    path
}
