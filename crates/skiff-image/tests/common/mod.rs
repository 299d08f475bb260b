//! Helpers shared by the integration tests: test images and archives built on the fly.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// Whether the tests run as root; a loud skip (or a failure under `SKIFF_E2E_REQUIRED=1`)
/// when not (`skiff_testkit::gate`).
pub(crate) fn require_root(test: &str) -> bool {
    skiff_testkit::gate::require_root(test)
}

/// Whether `tool` is installed; a loud skip (or a failure under `SKIFF_E2E_REQUIRED=1`) when
/// not (see scripts/install-deps.sh).
pub(crate) fn require_tool(test: &str, tool: &str) -> bool {
    skiff_testkit::gate::require(test, false, &[tool])
}

/// Builds the busybox test image into `dir`: the OCI archive, and the docker-save archive
/// when `docker` is set (`skiff_testkit::image`).
#[allow(unused_imports)] // not every test binary builds images
pub(crate) use skiff_testkit::image::build_busybox as busybox;

/// A tar entry for hand-made layers and archives.
pub(crate) enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str, u32, u32),
    Fifo(&'a str),
    /// A header written byte by byte, bypassing the tar crate's path checks (for `..` and
    /// absolute paths): name, type, size, content.
    Raw(Vec<u8>, tar::EntryType, &'a [u8]),
}

/// Builds an uncompressed tar stream from entries.
pub(crate) fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::File(path, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, *data).unwrap();
            }
            Entry::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
            Entry::Hardlink(path, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
            Entry::CharDevice(path, major, minor) => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(0o666);
                header.set_size(0);
                header.set_device_major(*major).unwrap();
                header.set_device_minor(*minor).unwrap();
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Entry::Fifo(path) => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(0o644);
                header.set_size(0);
                builder.append_data(&mut header, path, &[][..]).unwrap();
            }
            Entry::Raw(name, kind, data) => {
                header.set_entry_type(*kind);
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                let bytes = header.as_old_mut();
                bytes.name = [0; 100];
                bytes.name[..name.len()].copy_from_slice(name);
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// gzip-compresses `data`.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// sha256 of `data` as `sha256:<hex>`.
pub(crate) fn sha256(data: &[u8]) -> String {
    skiff_image::Digest::of(data).to_string()
}

/// An image for `write_oci_archive`: named layers (uncompressed tars) and a platform.
pub(crate) struct TestImage<'a> {
    pub name: Option<&'a str>,
    pub layers: Vec<Vec<u8>>,
    pub architecture: &'a str,
    pub compress: bool,
    /// Diff ids to write in the config instead of the real ones.
    pub diff_ids: Option<Vec<String>>,
}

/// Writes an OCI image-layout archive holding `images`; when `index_name` is set the images
/// are wrapped in one multi-platform index named that.
pub(crate) fn write_oci_archive(path: &Path, images: &[TestImage], index_name: Option<&str>) {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |data: Vec<u8>| -> (String, u64) {
        let digest = sha256(&data);
        let size = data.len() as u64;
        if !blobs.iter().any(|(d, _)| *d == digest) {
            blobs.push((digest.clone(), data));
        }
        (digest, size)
    };
    let mut descriptors = Vec::new();
    for image in images {
        let diff_ids: Vec<String> = match &image.diff_ids {
            Some(ids) => ids.clone(),
            None => image.layers.iter().map(|l| sha256(l)).collect(),
        };
        let mut layer_descriptors = Vec::new();
        for layer in &image.layers {
            let (data, media_type) = if image.compress {
                (gzip(layer), "application/vnd.oci.image.layer.v1.tar+gzip")
            } else {
                (layer.clone(), "application/vnd.oci.image.layer.v1.tar")
            };
            let (digest, size) = add(data);
            layer_descriptors
                .push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
        }
        let config = serde_json::json!({
            "architecture": image.architecture, "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let (config_digest, config_size) = add(serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": layer_descriptors,
        });
        let (digest, size) = add(serde_json::to_vec(&manifest).unwrap());
        let mut descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": image.architecture},
        });
        if let Some(name) = image.name {
            descriptor["annotations"] = serde_json::json!({"io.containerd.image.name": name});
        }
        descriptors.push(descriptor);
    }
    if let Some(name) = index_name {
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors,
        });
        let (digest, size) = add(serde_json::to_vec(&index).unwrap());
        descriptors = vec![serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": size,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"},
        })];
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": descriptors});
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut put = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data).unwrap();
    };
    put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for (digest, data) in &blobs {
        put(&format!("blobs/sha256/{}", &digest[7..]), data);
    }
    put("index.json", &serde_json::to_vec(&index).unwrap());
    builder.finish().unwrap();
}

/// Snapshot of a directory tree (path, kind, size, mode, content hash) to show it unchanged.
pub(crate) fn snapshot(root: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            sha256(&std::fs::read(&path).unwrap())
        } else if meta.file_type().is_symlink() {
            std::fs::read_link(&path).unwrap().display().to_string()
        } else {
            String::new()
        };
        out.push(format!(
            "{} {:o} {} {content}",
            path.display(),
            meta.permissions().mode(),
            meta.len()
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// A read-only overlayfs mount, unmounted on drop (also when the test fails).
pub(crate) struct Mount(PathBuf);

impl Mount {
    pub(crate) fn overlay(lower: &str, target: &Path) -> Mount {
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!("lowerdir={lower}"),
            ])
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "mount overlay");
        Mount(target.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
