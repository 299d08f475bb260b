//! Safety of the data directory: who may read it, and that only one server uses it.
//!
//! The data directory holds the CA key, the datastore (Secrets, join tokens) and the admin
//! kubeconfig. Any local user who can read it owns the cluster; any who can write it can swap
//! the CA. So its directories are 0700 and its files 0600, checked on every start: a directory
//! others may write is refused (we cannot know what was swapped), one they may only read is
//! tightened with a log line. The lock is taken before anything is written, so a second
//! server on a live data directory exits without touching the first one's files.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use skiff_pki::PrivateDirError;

/// Creates or checks a private directory: `skiff_pki::secure_dir` (the check the agent runs
/// on `DIR/agent` too), as a [`DataDirError`].
pub fn secure_dir(dir: &Path) -> Result<(), DataDirError> {
    Ok(skiff_pki::secure_dir(dir)?)
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A directory is not private (`skiff_pki::secure_dir`, shared with the agent).
    #[error(transparent)]
    Private(#[from] PrivateDirError),
    /// Another process holds the lock.
    #[error(
        "the data directory {dir} is in use by another skiff server (lock {lock} is held); \
         stop it first or use another --data-dir"
    )]
    InUse {
        /// `DIR/server`.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A filesystem call failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// An exclusive lock on `DIR/server/lock`, held while the server runs (released when dropped,
/// or by the kernel when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock of the server directory `server_dir`, failing at once when another
    /// process holds it.
    pub fn acquire(server_dir: &Path) -> Result<DataDirLock, DataDirError> {
        let path = server_dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("open the lock file", &path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DataDirLock { _file: file, path }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(DataDirError::InUse {
                dir: server_dir.to_path_buf(),
                lock: path,
            }),
            Err(e) => Err(io("lock", &path)(e.into())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn second_lock_fails_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(tmp.path()).unwrap();
        let err = DataDirLock::acquire(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("in use by another skiff server"), "{err}");
        assert_eq!(mode(first.path()), 0o600);
        drop(first);
        DataDirLock::acquire(tmp.path()).unwrap();
    }
}
