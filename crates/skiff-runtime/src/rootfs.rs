//! A container's root file system: the image's unpacked layers stacked read-only with overlayfs
//! under a per-container upper directory.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::error::{Result, RuntimeError};
use crate::fsutil::unmount;

/// Paths of one container instance's root file system.
#[derive(Debug, Clone)]
pub(crate) struct Rootfs {
    /// The merged view (the OCI `root.path`).
    pub merged: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

/// Escapes a layer path for overlayfs' option string (`\`, `:` and `,` are special).
fn escape(path: &Path) -> Result<String> {
    let bytes = path.as_os_str().as_bytes();
    let s = std::str::from_utf8(bytes).map_err(|_| {
        RuntimeError::invalid(path.display().to_string(), "layer path is not UTF-8")
    })?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

impl Rootfs {
    /// Paths under the container instance directory `dir`.
    pub(crate) fn at(dir: &Path) -> Rootfs {
        Rootfs {
            merged: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }

    /// Mounts the layers (bottom first) with a fresh upper directory.
    pub(crate) fn mount(&self, layers: &[PathBuf], image: &str) -> Result<()> {
        if layers.is_empty() {
            return Err(RuntimeError::invalid(
                image.to_owned(),
                "image has no layers",
            ));
        }
        for dir in [&self.merged, &self.upper, &self.work] {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io("create", dir, e))?;
        }
        let mut lower = Vec::with_capacity(layers.len());
        for layer in layers.iter().rev() {
            if !layer.is_dir() {
                return Err(RuntimeError::invalid(
                    image.to_owned(),
                    format!("layer directory {} is missing", layer.display()),
                ));
            }
            lower.push(escape(layer)?);
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            escape(&self.upper)?,
            escape(&self.work)?
        );
        // The option string must fit in a page.
        if options.len() >= 4000 {
            return Err(RuntimeError::unsupported(
                image.to_owned(),
                format!(
                    "{} layers make an overlay option string too long ({} bytes)",
                    layers.len(),
                    options.len()
                ),
            ));
        }
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| RuntimeError::sys("mount overlay", self.merged.display(), e))
    }

    /// Unmounts (idempotent).
    pub(crate) fn unmount(&self) -> Result<()> {
        crate::fsutil::unmount_all_under(&self.merged)?;
        unmount(&self.merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_are_escaped() {
        assert_eq!(escape(Path::new("/a:b,c\\d")).unwrap(), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn layers_stack_top_down_and_writes_stay_in_upper() {
        if !skiff_testkit::gate::require_root("overlay mounts need root") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bottom = dir.path().join("l0");
        let top = dir.path().join("l1");
        std::fs::create_dir_all(&bottom).unwrap();
        std::fs::create_dir_all(&top).unwrap();
        std::fs::write(bottom.join("f"), "bottom").unwrap();
        std::fs::write(top.join("f"), "top").unwrap();
        std::fs::write(bottom.join("only-bottom"), "b").unwrap();
        let rootfs = Rootfs::at(&dir.path().join("c"));
        rootfs
            .mount(&[bottom.clone(), top.clone()], "test")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(rootfs.merged.join("f")).unwrap(),
            "top"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.merged.join("only-bottom")).unwrap(),
            "b"
        );
        std::fs::write(rootfs.merged.join("new"), "x").unwrap();
        assert!(!bottom.join("new").exists() && !top.join("new").exists());
        rootfs.unmount().unwrap();
        assert!(!rootfs.merged.join("f").exists());
        rootfs.unmount().unwrap();
        assert!(rootfs.mount(&[dir.path().join("missing")], "img").is_err());
    }
}
