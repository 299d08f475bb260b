//! Removing everything of a pod, also of a half-created or half-removed one.

use crate::context::Inner;
use crate::error::{Result, RuntimeError};
use crate::state::{PodPaths, PodRecord};
use crate::{sandbox, volumes};

/// Removes everything of a pod (containers, network, volumes, namespaces, cgroups, files).
/// Works on partial pods; idempotent.
pub(crate) fn destroy_pod(
    inner: &Inner,
    paths: &PodPaths,
    record: Option<&PodRecord>,
) -> Result<()> {
    let uid = paths
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    let loaded;
    let record = match record {
        Some(r) => Some(r),
        None => {
            loaded = PodRecord::load(paths).ok();
            loaded.as_ref()
        }
    };
    let mut first_error: Option<RuntimeError> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!(pod = %uid, error = %e, "cleanup step failed");
            first_error.get_or_insert(e);
        }
    };
    let mut phases = crate::timing::Phases::new("pod removal");
    // Anything still running in the pod's cgroup is killed.
    let pod_cgroup = inner.pod_cgroup(&uid);
    for pid in crate::cgroups::pids(&inner.cgroups, &pod_cgroup) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(r) = record {
        for c in r.containers.values() {
            let ids = c
                .instance
                .iter()
                .map(|i| i.id.clone())
                .chain(c.creating.clone());
            for id in ids {
                let dir = inner.libcontainer_root.join(&id);
                if dir.exists() {
                    let _ = libcontainer::container::Container::load(dir.clone())
                        .and_then(|mut lc| lc.delete(true));
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        if r.sandbox.network_ready {
            if let Some(netns) = &r.sandbox.namespaces.net {
                let done = match tokio::runtime::Handle::try_current() {
                    Ok(handle) => handle.block_on(inner.network.teardown(&r.pod, netns)),
                    Err(_) => Err("no tokio runtime to run the network teardown on".to_owned()),
                };
                keep(done.map_err(|message| RuntimeError::Network {
                    pod: uid.clone(),
                    message,
                }));
            }
        }
    }
    phases.mark("containers+network");
    // Container root file systems, volumes, shm, namespace files: every mount under the pod.
    keep(crate::fsutil::unmount_all_under(
        &paths.dir.join("containers"),
    ));
    keep(crate::subpath::teardown(&paths.dir));
    keep(volumes::teardown(&paths.volumes()));
    phases.mark("rootfs+volumes");
    keep(sandbox::destroy_namespaces(&paths.dir));
    keep(crate::fsutil::unmount_all_under(&paths.dir));
    phases.mark("namespaces+shm");
    keep(crate::cgroups::remove(&inner.cgroups, &pod_cgroup));
    phases.mark("cgroups");
    if let Some(left) = crate::fsutil::mounts_under(&paths.dir).first() {
        // Never delete through a mount (a subPath bind may show a hostPath directory): the
        // files stay for the next attempt.
        keep(Err(RuntimeError::sys(
            "umount",
            left.display(),
            nix::Error::EBUSY,
        )));
    } else if paths.dir.exists() {
        keep(
            std::fs::remove_dir_all(&paths.dir)
                .map_err(|e| RuntimeError::io("remove", &paths.dir, e)),
        );
    }
    phases.mark("files");
    phases.log(&uid);
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
