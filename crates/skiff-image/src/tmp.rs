//! Temporary directories inside the store (same file system as their final place, so a finished
//! blob or layer is moved in with one atomic rename). Names carry the creating process id so a
//! later process can tell leftovers of a crashed one from work in progress.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ImageError, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory removed (with its content) when dropped, unless [`TempDir::keep`] moved it away.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    /// Creates `PARENT/<pid>-<n>-<purpose>`.
    pub(crate) fn new(parent: &Path, purpose: &str) -> Result<Self> {
        fs::create_dir_all(parent).map_err(|e| ImageError::io("create", parent, e))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{}-{n}-{purpose}", std::process::id()));
        fs::create_dir(&path).map_err(|e| ImageError::io("create", &path, e))?;
        Ok(TempDir { path: Some(path) })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames the directory to `target` (atomically) and stops tracking it. Fails with
    /// `AlreadyExists`-like errors when `target` exists; the temporary directory is then removed
    /// on drop as usual.
    pub(crate) fn persist(mut self, target: &Path) -> io::Result<()> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        match fs::rename(&path, target) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.path = Some(path);
                Err(e)
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(error) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove temporary directory");
            }
        }
    }
}

/// Removes a directory tree, also when it holds read-only directories (unpacked layers do).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

/// Gives the owner write and search permission on every directory of the tree (needed to delete
/// entries of read-only directories when not running as root).
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Removes the entries of `tmp` left by processes that no longer run. Returns how many.
pub(crate) fn clean_stale(tmp: &Path) -> usize {
    let Ok(entries) = fs::read_dir(tmp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive && remove_tree(&entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_and_kept_when_persisted() {
        let root = tempfile::tempdir().unwrap();
        let dropped = TempDir::new(root.path(), "x").unwrap();
        let dropped_path = dropped.path().to_path_buf();
        drop(dropped);
        assert!(!dropped_path.exists());

        let kept = TempDir::new(root.path(), "y").unwrap();
        fs::write(kept.path().join("f"), b"1").unwrap();
        kept.persist(&root.path().join("final")).unwrap();
        assert_eq!(fs::read(root.path().join("final/f")).unwrap(), b"1");
    }

    #[test]
    fn cleans_only_leftovers_of_dead_processes() {
        let root = tempfile::tempdir().unwrap();
        let live = TempDir::new(root.path(), "live").unwrap();
        // pid 0 never names a user process, so this entry is a leftover.
        fs::create_dir(root.path().join("0-1-dead")).unwrap();
        fs::create_dir(root.path().join("garbage")).unwrap();
        assert_eq!(clean_stale(root.path()), 2);
        assert!(live.path().exists());
    }
}
