//! Writing PKI files atomically with safe permissions, and the private-directory check both
//! halves run on their data directories at start (`skiff-server`'s `DIR/server`, the agent's
//! `DIR/agent`): they hold keys, tokens and databases of Secrets.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::PkiError;

/// Mode of private keys and files that embed them.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// Creates `dir` (and missing parents) with mode 0700, or makes an existing one 0700: it
/// holds private keys, which no other local user may list or read.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |action: &'static str| {
        move |source| PkiError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    if !dir.is_dir() {
        return fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create directory"));
    }
    let mode = fs::metadata(dir)
        .map_err(io("inspect"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io("set permissions of"))?;
    }
    Ok(())
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never leaves
/// a half-written file; the file gets `mode` before any byte is written. The directory is
/// synced after the rename, so the new name itself survives a power loss (without it, a
/// crash right after could bring back the old file, or none, beside state already built on
/// the new one).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let io = |action: &'static str, source: std::io::Error| PkiError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    file.write_all(contents).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    drop(file);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(|e| io("set permissions of", e))?;
    fs::rename(&tmp, path).map_err(|e| io("rename into place", e))?;
    sync_parent(path).map_err(|e| io("sync the directory of", e))
}

/// Flushes the directory entry of `path` to disk.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Reads a whole file as UTF-8 text, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Why a private directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// A directory others may write to.
    #[error(
        "refusing to start: {path} has mode {mode:04o}, writable by group or others (anyone \
         could replace the cluster's keys or database); check its contents, then `chmod 700 {path}`"
    )]
    Writable {
        /// The directory.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path exists but is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: std::path::PathBuf,
    },
    /// A filesystem call failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn dir_io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PrivateDirError + 'a {
    move |source| PrivateDirError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents, each 0700) or checks an existing one: refuses it when
/// group or others may write to it (nothing can tell what was swapped), tightens it to 0700
/// with a log line when they may only read it.
pub fn secure_dir(dir: &Path) -> Result<(), PrivateDirError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_io("create directory", dir)),
        Err(e) => Err(dir_io("inspect", dir)(e)),
        Ok(meta) if !meta.is_dir() => Err(PrivateDirError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                return Err(PrivateDirError::Writable {
                    path: dir.to_path_buf(),
                    mode,
                });
            }
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(dir_io("set permissions of", dir))?;
                tracing::warn!(
                    path = %dir.display(),
                    from = format!("{mode:04o}"),
                    to = "0700",
                    "tightened the permissions of a data directory others could read"
                );
            }
            Ok(())
        }
    }
}

/// Makes sure the file at `path` exists with mode [`SECRET_MODE`] before anyone (a database
/// library) writes to it: a new file is created 0600, an existing one others could read is
/// tightened with a log line.
pub fn secure_file(path: &Path) -> Result<(), PrivateDirError> {
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(SECRET_MODE)
            .open(path)
            .map(drop)
            .map_err(dir_io("create", path)),
        Err(e) => Err(dir_io("inspect", path)(e)),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                fs::set_permissions(path, fs::Permissions::from_mode(SECRET_MODE))
                    .map_err(dir_io("set permissions of", path))?;
                tracing::warn!(
                    path = %path.display(),
                    from = format!("{mode:04o}"),
                    to = "0600",
                    "tightened the permissions of a private file others could read"
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod private_tests {
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
    fn private_files_are_created_0600_and_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("state.redb");
        secure_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        secure_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(
            fs::read(&f).unwrap(),
            b"x",
            "an existing file keeps its contents"
        );
    }
}
