//! The pod sandbox without a pause process: network, IPC and UTS namespaces are created by a
//! throw-away thread and kept alive by bind-mounting their `/proc/thread-self/ns/*` files onto
//! files in the pod directory (as `ip netns add` does). Containers join them by path.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Result, RuntimeError};
use crate::fsutil::unmount;
use crate::spec::NamespacePaths;

/// Which namespaces the pod gets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NamespaceRequest {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// Creates the requested namespaces under `dir/ns/`, sets the hostname in the new UTS
/// namespace and brings `lo` up in the new network namespace.
pub(crate) fn create_namespaces(
    dir: &Path,
    hostname: &str,
    req: NamespaceRequest,
) -> Result<NamespacePaths> {
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(|e| RuntimeError::io("create", &ns_dir, e))?;
    let mut flags = CloneFlags::empty();
    let mut wanted: Vec<(&str, PathBuf)> = Vec::new();
    if req.net {
        flags |= CloneFlags::CLONE_NEWNET;
        wanted.push(("net", ns_dir.join("net")));
    }
    if req.ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
        wanted.push(("ipc", ns_dir.join("ipc")));
    }
    if req.uts {
        flags |= CloneFlags::CLONE_NEWUTS;
        wanted.push(("uts", ns_dir.join("uts")));
    }
    if wanted.is_empty() {
        return Ok(NamespacePaths::default());
    }
    for (_, file) in &wanted {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(file)
            .map_err(|e| RuntimeError::io("create", file, e))?;
    }
    let hostname = hostname.to_owned();
    let targets = wanted.clone();
    // unshare(2) of these namespaces affects only the calling thread: use one that ends here.
    let outcome = std::thread::Builder::new()
        .name("skiff-sandbox".into())
        .spawn(move || -> Result<()> {
            nix::sched::unshare(flags)
                .map_err(|e| RuntimeError::sys("unshare", "pod sandbox", e))?;
            for (name, file) in &targets {
                let source = format!("/proc/thread-self/ns/{name}");
                mount(
                    Some(source.as_str()),
                    file,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| RuntimeError::sys("mount", file.display(), e))?;
            }
            if req.uts {
                nix::unistd::sethostname(&hostname)
                    .map_err(|e| RuntimeError::sys("sethostname", &hostname, e))?;
            }
            if req.net {
                loopback_up()?;
            }
            Ok(())
        })
        .map_err(|e| RuntimeError::io("spawn thread", "skiff-sandbox", e))?
        .join()
        .unwrap_or_else(|_| {
            Err(RuntimeError::Container {
                container: "sandbox".into(),
                message: "sandbox thread panicked".into(),
            })
        });
    if let Err(e) = outcome {
        let _ = destroy_namespaces(dir);
        return Err(e);
    }
    let path_of = |name: &str| {
        wanted
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
    };
    Ok(NamespacePaths {
        net: path_of("net"),
        ipc: path_of("ipc"),
        uts: path_of("uts"),
    })
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(RuntimeError::sys("socket", "lo", nix::Error::last()));
    }
    // SAFETY: fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed ifreq is valid; the name fits.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ioctl with an ifreq on a valid socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(RuntimeError::sys(
            "ioctl SIOCGIFFLAGS",
            "lo",
            nix::Error::last(),
        ));
    }
    // SAFETY: the union member for flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(RuntimeError::sys(
            "ioctl SIOCSIFFLAGS",
            "lo",
            nix::Error::last(),
        ));
    }
    Ok(())
}

/// Releases the namespaces (unmounts and removes the files). Idempotent.
pub(crate) fn destroy_namespaces(dir: &Path) -> Result<()> {
    let ns_dir = dir.join("ns");
    for name in ["net", "ipc", "uts"] {
        let file = ns_dir.join(name);
        if file.exists() {
            unmount(&file)?;
            std::fs::remove_file(&file).map_err(|e| RuntimeError::io("remove", &file, e))?;
        }
    }
    if ns_dir.exists() {
        let _ = std::fs::remove_dir(&ns_dir);
    }
    Ok(())
}

/// Mounts the pod's shared `/dev/shm` (a tmpfs in the pod directory).
pub(crate) fn create_shm(dir: &Path, size: u64) -> Result<PathBuf> {
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm).map_err(|e| RuntimeError::io("create", &shm, e))?;
    let data = format!("mode=1777,size={size}");
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|e| RuntimeError::sys("mount", shm.display(), e))?;
    Ok(shm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn namespaces_outlive_their_thread_and_are_released() {
        if !skiff_testkit::gate::require_root("sandbox namespaces need root") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ns = create_namespaces(
            dir.path(),
            "sandbox-test",
            NamespaceRequest {
                net: true,
                ipc: true,
                uts: true,
            },
        )
        .unwrap();
        let net = ns.net.clone().unwrap();
        // A bind-mounted namespace file has the namespace's inode, unlike the host's.
        assert_ne!(inode(&net), inode(Path::new("/proc/self/ns/net")));
        // Enter it from a fresh process and check hostname and loopback.
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", net.display()))
            .arg(format!("--uts={}", ns.uts.clone().unwrap().display()))
            .args(["sh", "-c", "hostname; ip -o link"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("sandbox-test"), "{text}");
        let links: Vec<&str> = lines.collect();
        assert_eq!(links.len(), 1, "only lo in a new network namespace: {text}");
        assert!(
            links[0].contains("lo:") && links[0].contains("UP"),
            "{text}"
        );
        destroy_namespaces(dir.path()).unwrap();
        assert!(!net.exists());
        assert!(crate::fsutil::mounts_under(dir.path()).is_empty());
    }
}
