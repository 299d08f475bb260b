//! subPath mounts that a container sharing the volume cannot redirect (CVE-2021-25741 class).
//!
//! Resolving a subPath by name and letting libcontainer bind that name later leaves a window:
//! a container that shares the volume swaps a path component for a symlink to `/` between the
//! check and the mount, and the next container gets the host's root. So, as the kubelet does
//! (pkg/volume/util/subpath/subpath_linux.go, `doSafeOpen`/`doSafeMakeDir`/`doBindSubPath`):
//!
//! - the subPath is *opened* beneath the volume root, never following a symlink out of it
//!   (`openat2` with `RESOLVE_BENEATH`; where openat2 is missing, a walk of
//!   `openat(O_PATH|O_NOFOLLOW)` per component that refuses every symlink);
//! - missing directories are created the same way (`mkdirat` + `openat(O_NOFOLLOW)` per
//!   component, with the volume root's mode, like the kubelet);
//! - the open descriptor itself (`/proc/self/fd/N`) is bind-mounted, in the runtime's (host)
//!   mount namespace, to a private place under the pod directory,
//!   `volume-subpaths/<volume>/<container>/<index>`, and libcontainer binds *that* place, which
//!   no container can see or change. Whatever is swapped after the open changes nothing.
//!
//! The binds are (re)made before each instance is created and removed with the pod.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, RuntimeError};
use crate::fsutil;

/// Directory of the pod that holds the subPath binds (the kubelet's name).
const SUBPATHS_DIR: &str = "volume-subpaths";

/// One subPath of a container to bind before its instances are created.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SubpathBind {
    /// The volume's name (for messages).
    pub volume: String,
    /// The container's name (for messages).
    pub container: String,
    /// The `volumeMounts[i].subPath` field (for messages).
    pub field: String,
    /// Host directory of the volume.
    pub volume_path: PathBuf,
    /// The subPath (subPathExpr expanded), relative, without `..`.
    pub sub_path: String,
    /// Where the bind is made; the source of the container's OCI mount.
    pub target: PathBuf,
}

/// The private bind place of mount `index` of `container` in volume `volume`.
pub(crate) fn target(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join(SUBPATHS_DIR)
        .join(volume)
        .join(container)
        .join(index.to_string())
}

fn components(rel: &Path) -> std::io::Result<Vec<&OsStr>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        })
        .collect()
}

fn cstr(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn openat(dir: &OwnedFd, name: &OsStr, flags: i32) -> std::io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: openat relative to an owned directory fd with a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: fstat into a zeroed local struct; works on O_PATH descriptors.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// The kubelet's walk (`doSafeOpen`), for kernels without openat2: each component is opened
/// with `O_PATH|O_NOFOLLOW` relative to the previous one; a symlink anywhere is refused.
fn open_nofollow(root: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let names = components(rel)?;
    let mut current = root.try_clone()?;
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let extra = if last {
            flags & libc::O_DIRECTORY
        } else {
            libc::O_DIRECTORY
        };
        let fd = openat(&current, name, libc::O_PATH | libc::O_NOFOLLOW | extra)?;
        // O_PATH|O_NOFOLLOW opens a symlink itself rather than failing: refuse it here.
        if fstat(&fd)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
        }
        current = fd;
    }
    Ok(current)
}

/// Opens `rel` beneath `root` as an `O_PATH` descriptor (plus `O_DIRECTORY` in `flags` if
/// given). Symlinks are followed only while they stay inside `root`.
pub(crate) fn open_beneath(root: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    components(rel)?;
    match fsutil::openat_beneath(root, rel, libc::O_PATH | flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => open_nofollow(root, rel, flags),
        r => r,
    }
}

/// Creates the missing directories of `rel` beneath `root` with `mode` (`doSafeMakeDir`): the
/// existing part is opened beneath the root, each new directory is created with `mkdirat` in
/// its parent's descriptor and reopened with `O_NOFOLLOW` before going on.
pub(crate) fn make_dirs(root: &OwnedFd, rel: &Path, mode: u32) -> std::io::Result<()> {
    let names = components(rel)?;
    let mut existing = names.len();
    let mut dir = loop {
        if existing == 0 {
            break root.try_clone()?;
        }
        let prefix: PathBuf = names[..existing].iter().collect();
        match open_beneath(root, &prefix, libc::O_DIRECTORY) {
            Ok(fd) => break fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => existing -= 1,
            Err(e) => return Err(e),
        }
    };
    for name in &names[existing..] {
        let c = cstr(name)?;
        // SAFETY: mkdirat relative to an owned directory fd.
        let created = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) } == 0;
        if !created {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
        let child = openat(
            &dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )?;
        if created {
            // mkdirat applied the umask.
            // SAFETY: fchmod of an owned descriptor.
            if unsafe { libc::fchmod(child.as_raw_fd(), mode) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        dir = child;
    }
    Ok(())
}

/// Removes every mount stacked at `target`.
fn unmount_stack(target: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    for _ in 0..16 {
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(nix::Error::EBUSY) => {
                umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
                    .map_err(|e| RuntimeError::sys("umount", target.display(), e))?;
            }
            Err(e) => return Err(RuntimeError::sys("umount", target.display(), e)),
        }
    }
    Err(RuntimeError::sys(
        "umount",
        target.display(),
        nix::Error::EBUSY,
    ))
}

/// Bind-mounts what `fd` refers to (through `/proc/self/fd/N`, never by name) at `target`,
/// replacing an earlier bind there. `target` becomes a directory or an empty file to match.
pub(crate) fn bind_fd(fd: &OwnedFd, target: &Path) -> Result<()> {
    let st = fstat(fd).map_err(|e| RuntimeError::io("stat", target, e))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    unmount_stack(target)?;
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() == is_dir && !m.file_type().is_symlink() => {}
        Ok(m) => {
            let removed = if m.is_dir() {
                std::fs::remove_dir(target)
            } else {
                std::fs::remove_file(target)
            };
            removed.map_err(|e| RuntimeError::io("remove", target, e))?;
        }
        Err(_) => {}
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io("create", parent, e))?;
    }
    if !target.exists() {
        let made = if is_dir {
            std::fs::create_dir(target)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(target)
                .map(drop)
        };
        made.map_err(|e| RuntimeError::io("create", target, e))?;
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| RuntimeError::sys("mount", target.display(), e))
}

/// Why a subPath was refused, without host paths (the kubelet does not show them either).
fn reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ELOOP) => "a symlink leads out of the volume".to_owned(),
        Some(libc::ENOTDIR) => "a component is not a directory".to_owned(),
        _ => e.to_string(),
    }
}

/// Opens the subPath safely (creating missing directories) and binds it at its target.
pub(crate) fn prepare(b: &SubpathBind) -> Result<()> {
    prepare_with(b, || {})
}

/// `prepare`, running `between` after the subPath is opened and before it is bound: the
/// window a container sharing the volume has (tests put the swap there).
fn prepare_with(b: &SubpathBind, between: impl FnOnce()) -> Result<()> {
    let refused = |what: &str, e: &std::io::Error| {
        RuntimeError::invalid(
            &b.field,
            format!(
                "failed to {what} subPath {:?} for volumeMount {:?} of container {:?}: {}",
                b.sub_path,
                b.volume,
                b.container,
                reason(e)
            ),
        )
    };
    let root = fsutil::open_dir(&b.volume_path)
        .map_err(|e| RuntimeError::io("open", &b.volume_path, e))?;
    let rel = Path::new(&b.sub_path);
    let fd = match open_beneath(&root, rel, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // Created with the volume's mode, as the kubelet does (so fsGroup and emptyDir's
            // 0777 carry over to the new directories).
            let mode = fstat(&root)
                .map_err(|e| RuntimeError::io("stat", &b.volume_path, e))?
                .st_mode
                & 0o777;
            make_dirs(&root, rel, mode).map_err(|e| refused("create", &e))?;
            open_beneath(&root, rel, 0).map_err(|e| refused("prepare", &e))?
        }
        Err(e) => return Err(refused("prepare", &e)),
    };
    between();
    bind_fd(&fd, &b.target)
}

/// Removes every subPath bind of the pod. The directory is removed only once nothing is
/// mounted under it (a bind of a hostPath subPath must never be deleted through).
pub(crate) fn teardown(pod_dir: &Path) -> Result<()> {
    let root = pod_dir.join(SUBPATHS_DIR);
    if !root.exists() {
        return Ok(());
    }
    for target in fsutil::mounts_under(&root) {
        unmount_stack(&target)?;
    }
    if let Some(left) = fsutil::mounts_under(&root).first() {
        return Err(RuntimeError::sys(
            "umount",
            left.display(),
            nix::Error::EBUSY,
        ));
    }
    std::fs::remove_dir_all(&root).map_err(|e| RuntimeError::io("remove", &root, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume() -> (tempfile::TempDir, PathBuf, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(vol.join("data/logs")).unwrap();
        std::fs::write(vol.join("data/logs/inside"), "inside").unwrap();
        let fd = fsutil::open_dir(&vol).unwrap();
        (dir, vol, fd)
    }

    #[test]
    fn links_may_not_lead_out_of_the_volume() {
        let (dir, vol, root) = volume();
        std::fs::write(dir.path().join("host-secret"), "host").unwrap();
        std::os::unix::fs::symlink("/", vol.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", vol.join("climb")).unwrap();
        std::os::unix::fs::symlink("data/logs", vol.join("current")).unwrap();
        for open in [open_beneath, open_nofollow] {
            for bad in ["abs", "abs/etc", "climb", "climb/host-secret", "data/../.."] {
                assert!(open(&root, Path::new(bad), 0).is_err(), "{bad} opened");
            }
        }
        // A link that stays inside is followed with openat2 (as the kubelet allows); the
        // fallback walk refuses every link.
        assert!(open_beneath(&root, Path::new("current/inside"), 0).is_ok());
        assert!(open_nofollow(&root, Path::new("current/inside"), 0).is_err());
        assert!(open_nofollow(&root, Path::new("data/logs/inside"), 0).is_ok());
        // Directories are not created through a link either.
        assert!(make_dirs(&root, Path::new("abs/tmp/skiff-made-here"), 0o755).is_err());
        assert!(!Path::new("/tmp/skiff-made-here").exists());
        make_dirs(&root, Path::new("data/new/deeper"), 0o751).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(vol.join("data/new/deeper"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o751);
    }

    /// The attack: `data` is a directory when the subPath is checked and a symlink to a host
    /// directory when the mount is made. The bind is of what was opened, so the container
    /// sees the volume's directory, never the host's.
    #[test]
    fn a_component_swapped_for_a_symlink_after_the_check_is_not_followed() {
        if !skiff_testkit::gate::require_root("bind mounts need root") {
            return;
        }
        let (dir, vol, _root) = volume();
        let host = dir.path().join("host");
        std::fs::create_dir_all(host.join("logs")).unwrap();
        std::fs::write(host.join("logs/marker"), "host").unwrap();
        let target = target(&dir.path().join("pod"), "data", "c", 1);
        let b = SubpathBind {
            volume: "data".into(),
            container: "c".into(),
            field: "spec.containers[0].volumeMounts[0].subPath".into(),
            volume_path: vol.clone(),
            sub_path: "data/logs".into(),
            target: target.clone(),
        };

        // Checked (opened) inside the volume, then swapped in the window, then mounted.
        prepare_with(&b, || {
            std::fs::rename(vol.join("data"), vol.join("moved")).unwrap();
            std::os::unix::fs::symlink(&host, vol.join("data")).unwrap();
        })
        .unwrap();
        let seen = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<Vec<_>>();
        let _ = unmount_stack(&target);
        assert_eq!(
            seen,
            vec!["inside".to_string()],
            "the bind followed the swap"
        );

        // A subPath that is a symlink out at check time is refused outright.
        let err = prepare(&b).unwrap_err();
        assert!(err.is_config_error(), "{err}");
        assert!(err.to_string().contains("leads out of the volume"), "{err}");
        assert!(fsutil::mounts_under(dir.path()).is_empty());

        // A file subPath binds as a file; a missing directory is created with the volume's
        // mode; teardown unmounts and removes everything.
        let file = SubpathBind {
            sub_path: "moved/logs/inside".into(),
            ..b.clone()
        };
        prepare(&file).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "inside");
        let made = SubpathBind {
            sub_path: "fresh/dir".into(),
            target: target.with_file_name("2"),
            ..b
        };
        prepare(&made).unwrap();
        assert!(vol.join("fresh/dir").is_dir());
        assert_eq!(fsutil::mounts_under(dir.path()).len(), 2);
        teardown(&dir.path().join("pod")).unwrap();
        assert!(fsutil::mounts_under(dir.path()).is_empty());
        assert!(!dir.path().join("pod").join(SUBPATHS_DIR).exists());
        assert_eq!(
            std::fs::read_to_string(vol.join("moved/logs/inside")).unwrap(),
            "inside"
        );
    }
}
