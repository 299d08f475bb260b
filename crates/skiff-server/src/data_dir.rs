//! Safety of the data directory: who may read it, and that only one server uses it.
//!
//! The data directory holds the CA key, the datastore (Secrets, join tokens) and the admin
//! kubeconfig. Any local user who can read it owns the cluster; any who can write it can swap
//! the CA. So its directories are 0700 and its files 0600, checked on every start: a directory
//! others may write is refused (we cannot know what was swapped), one they may only read is
//! tightened with a log line. The lock is taken before anything is written, so a second
//! server on a live data directory exits without touching the first one's files.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A directory others may write to.
    #[error(
        "refusing to start: {path} has mode {mode:04o}, writable by group or others (anyone \
         could replace the cluster's keys or database); check its contents, then `chmod 700 {path}`"
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path exists but is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
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

/// Creates `dir` (and missing parents, each 0700) or checks an existing one: refuses it when
/// group or others may write to it, tightens it to 0700 when they may read it.
pub fn secure_dir(dir: &Path) -> Result<(), DataDirError> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create directory", dir));
        }
        Err(e) => return Err(io("inspect", dir)(e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(DataDirError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(DataDirError::Writable {
                    path: dir.to_path_buf(),
                    mode,
                });
            }
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(io("set permissions of", dir))?;
                tracing::warn!(
                    path = %dir.display(),
                    from = format!("{mode:04o}"),
                    to = "0700",
                    "tightened the permissions of a data directory others could read"
                );
            }
        }
    }
    Ok(())
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

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_directories_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        secure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
    }

    #[test]
    fn readable_directory_is_tightened_writable_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        secure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = secure_dir(&dir).unwrap_err().to_string();
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("0777"), "{err}");
        assert_eq!(mode(&dir), 0o777, "a refused directory is left as found");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o720)).unwrap();
        assert!(secure_dir(&dir).is_err(), "group-writable is refused too");
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
