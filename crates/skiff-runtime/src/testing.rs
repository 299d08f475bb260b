//! Introspection shared by this crate's tests, the driver binary and the benchmark: what only
//! the runtime's internals can see (its mounts, cgroups, leftovers). Generic scaffolding (the
//! root gate, test images) lives in `skiff-testkit`. Not part of the API.

use std::path::{Path, PathBuf};

use crate::inputs::ContainerImage;

/// Imports an image archive into an image store at `store` and returns it as the runtime's
/// image type.
pub fn import_image(store: &Path, archive: &Path) -> ContainerImage {
    let store = skiff_image::ImageStore::open(store).expect("open image store");
    let images = store
        .import_archive(archive, &skiff_image::NoProgress)
        .expect("import the image archive");
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
