//! Writing PKI files atomically with safe permissions.

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
