//! File helpers: path resolution confined to a root (`openat2` with `RESOLVE_IN_ROOT`), atomic
//! writes, and mount-table queries.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, RuntimeError};

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `root` as a directory handle.
pub(crate) fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(dirfd, rel, flags, RESOLVE_IN_ROOT)`: symlinks and `..` in `rel` resolve as if
/// `dirfd` were `/`, so nothing outside it can be reached.
pub(crate) fn openat_in_root(
    dir: &OwnedFd,
    rel: &Path,
    flags: i32,
    mode: u32,
) -> std::io::Result<OwnedFd> {
    openat2(
        dir,
        rel,
        flags,
        mode,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// `openat2(dirfd, rel, flags, RESOLVE_BENEATH)`: symlinks inside `dirfd` are followed, but an
/// absolute symlink or a `..` that would leave it fails with `EXDEV` (the kubelet's rule for
/// subPaths: links may not lead out of the volume). `ENOSYS` on kernels before 5.6.
pub(crate) fn openat_beneath(dir: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    openat2(dir, rel, flags, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
}

fn openat2(
    dir: &OwnedFd,
    rel: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> std::io::Result<OwnedFd> {
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve,
    };
    // SAFETY: openat2 with a valid dirfd, NUL-terminated path and a correctly sized `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reads a file of a container root file system without following links out of it.
/// Returns `None` when it does not exist.
pub(crate) fn read_in_root(root: &Path, rel: &str) -> Result<Option<String>> {
    let dir = open_dir(root).map_err(|e| RuntimeError::io("open", root, e))?;
    let rel = rel.trim_start_matches('/');
    match openat_in_root(&dir, Path::new(rel), libc::O_RDONLY, 0) {
        Ok(fd) => {
            let mut s = String::new();
            use std::io::Read;
            File::from(fd)
                .take(4 << 20)
                .read_to_string(&mut s)
                .map_err(|e| RuntimeError::io("read", root.join(rel), e))?;
            Ok(Some(s))
        }
        Err(e)
            if e.raw_os_error() == Some(libc::ENOENT)
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(None)
        }
        Err(e) => Err(RuntimeError::io("open", root.join(rel), e)),
    }
}

/// Creates directory `rel` (and its parents) inside `root`, never leaving it. Returns the real
/// host path of the directory.
pub(crate) fn mkdir_all_in_root(root: &Path, rel: &Path, mode: u32) -> Result<PathBuf> {
    let mut current = open_dir(root).map_err(|e| RuntimeError::io("open", root, e))?;
    let mut real = root.to_path_buf();
    for component in rel.components() {
        let name = match component {
            Component::Normal(n) => n,
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RuntimeError::invalid(
                    rel.display().to_string(),
                    "path must not contain '..'",
                ))
            }
        };
        let c = CString::new(name.as_bytes())
            .map_err(|_| RuntimeError::invalid(rel.display().to_string(), "NUL in path"))?;
        // SAFETY: mkdirat relative to an owned directory fd.
        let rc = unsafe { libc::mkdirat(current.as_raw_fd(), c.as_ptr(), mode) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(RuntimeError::io("mkdir", real.join(name), e));
            }
        }
        let next = openat_in_root(
            &current,
            Path::new(name),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(|e| RuntimeError::io("open", real.join(name), e))?;
        current = next;
        real.push(name);
    }
    // Report the path the kernel resolved, in case a component was a symlink inside the root.
    let proc_path = format!("/proc/self/fd/{}", current.as_raw_fd());
    std::fs::read_link(&proc_path).map_err(|e| RuntimeError::io("readlink", proc_path, e))
}

/// Writes `data` to `path` atomically (temporary file in the same directory, then rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| RuntimeError::io("create", &tmp, e))?;
    f.write_all(data)
        .map_err(|e| RuntimeError::io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| RuntimeError::io("rename", path, e))
}

/// Mount points at or below `prefix`, deepest first (for unmounting in order).
pub(crate) fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(prefix))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo paths.
fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Unmounts everything at or below `prefix` (deepest first, lazily if busy).
pub(crate) fn unmount_all_under(prefix: &Path) -> Result<()> {
    for target in mounts_under(prefix) {
        unmount(&target)?;
    }
    Ok(())
}

/// Unmounts `target`; not mounted is fine; busy falls back to a lazy detach.
pub(crate) fn unmount(target: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(nix::Error::EBUSY) => match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) => Ok(()),
            Err(e) => Err(RuntimeError::sys("umount", target.display(), e)),
        },
        Err(e) => Err(RuntimeError::sys("umount", target.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_root_do_not_escape_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(dir.path().join("secret"), "host secret").unwrap();
        std::fs::write(root.join("secret"), "inside").unwrap();
        // An absolute link and a climbing link both resolve inside the root.
        std::os::unix::fs::symlink("/secret", root.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../secret", root.join("etc/rel")).unwrap();
        assert_eq!(
            read_in_root(&root, "/etc/abs").unwrap().as_deref(),
            Some("inside")
        );
        assert_eq!(
            read_in_root(&root, "etc/rel").unwrap().as_deref(),
            Some("inside")
        );
        assert_eq!(read_in_root(&root, "/etc/none").unwrap(), None);
    }

    #[test]
    fn mkdir_in_root_follows_links_inside_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        let made = mkdir_all_in_root(&root, Path::new("/up/work/dir"), 0o755).unwrap();
        assert_eq!(made, root.join("work/dir"));
        assert!(root.join("work/dir").is_dir());
        assert!(mkdir_all_in_root(&root, Path::new("a/../../b"), 0o755).is_err());
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
