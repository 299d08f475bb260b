//! Helpers shared by this crate's tests, the driver binary and the benchmark. Not part of the
//! API.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::inputs::ContainerImage;

/// Whether tests needing root must fail instead of skipping (`SKIFF_E2E_REQUIRED=1`).
pub fn e2e_required() -> bool {
    std::env::var("SKIFF_E2E_REQUIRED")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Call when a root-only test cannot run: prints a loud skip message, or panics under
/// `SKIFF_E2E_REQUIRED=1`.
pub fn skip_unless_root(what: &str) {
    if e2e_required() {
        panic!("SKIFF_E2E_REQUIRED=1 but this test cannot run: {what}");
    }
    eprintln!("\n!!!!! SKIPPED (not root): {what} !!!!!\n");
}

/// True when the caller is root; otherwise reports the skip (see [`skip_unless_root`]).
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_unless_root(what);
    false
}

/// The repository's `images/busybox/build.sh`.
pub fn busybox_recipe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/busybox/build.sh")
}

/// Builds the busybox test image archive once per machine (cached in the temp directory,
/// keyed by the recipe and the busybox binary) and returns its path.
pub fn busybox_archive() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let recipe = busybox_recipe();
        let key = [
            std::fs::metadata(&recipe).map(|m| m.mtime()).unwrap_or(0),
            std::fs::metadata("/bin/busybox")
                .map(|m| m.mtime())
                .unwrap_or(0),
        ];
        let dir = std::env::temp_dir().join("skiff-runtime-tests");
        std::fs::create_dir_all(&dir).expect("create test cache dir");
        let out = dir.join(format!("busybox-{}-{}.tar", key[0], key[1]));
        if !out.exists() {
            let tmp = dir.join(format!("busybox.{}.tmp.tar", std::process::id()));
            let status = std::process::Command::new("bash")
                .arg(&recipe)
                .arg(&tmp)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run images/busybox/build.sh");
            assert!(status.success(), "images/busybox/build.sh failed");
            std::fs::rename(&tmp, &out).expect("publish busybox archive");
        }
        out
    })
    .clone()
}

/// Imports the busybox archive into an image store at `store` and returns it as the
/// runtime's image type.
pub fn busybox_image(store: &Path) -> ContainerImage {
    let store = skiff_image::ImageStore::open(store).expect("open image store");
    let images = store
        .import_archive(&busybox_archive(), &skiff_image::NoProgress)
        .expect("import busybox archive");
    ContainerImage::from(&images[0])
}

/// Removes whatever a test left behind: kills every process in the cgroups under
/// `cgroup_parent`, unmounts everything under `root`, removes the cgroups and the directory.
pub fn force_cleanup(root: &Path, cgroup_parent: &Path) {
    let Ok(setup) = crate::cgroups::CgroupSetup::detect() else {
        return;
    };
    for _ in 0..3 {
        let pids = crate::cgroups::pids(&setup, cgroup_parent);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = crate::fsutil::unmount_all_under(root);
    let _ = crate::cgroups::remove(&setup, cgroup_parent);
    let _ = std::fs::remove_dir_all(root);
}

/// Number of mounts at or below `prefix`.
pub fn mounts_under(prefix: &Path) -> usize {
    crate::fsutil::mounts_under(prefix).len()
}

/// Host directories of the cgroups at or below `path`, across hierarchies.
pub fn cgroup_dirs(path: &Path) -> Vec<PathBuf> {
    let Ok(setup) = crate::cgroups::CgroupSetup::detect() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in setup.all_dirs(path) {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if d.is_dir() {
                if let Ok(entries) = std::fs::read_dir(&d) {
                    for e in entries.flatten() {
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            stack.push(e.path());
                        }
                    }
                }
                out.push(d);
            }
        }
    }
    out
}
