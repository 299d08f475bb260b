//! Import of image archives: OCI image-layout archives (`oci-layout`, `index.json`,
//! `blobs/sha256/...`; names from `io.containerd.image.name` or a full reference in
//! `org.opencontainers.image.ref.name`) and `docker save` archives (`manifest.json` with
//! `RepoTags`, legacy `<id>/layer.tar` or `blobs/sha256/...` entries). The archive may be gzip- or
//! zstd-compressed.
//!
//! The archive is read once, front to back: every file becomes a blob (digest verified when its
//! name is a digest), small metadata files are kept in memory, links are remembered. Archive
//! paths are only ever used as lookup keys, never as file system paths.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use oci_spec::image::Descriptor;
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::index::{ANNOTATION_NAME, ANNOTATION_REF_NAME};
use crate::manifest::{self, Manifest, MAX_METADATA_BYTES, OCI_CONFIG, OCI_MANIFEST};
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::store::{read_limited, ImageInfo, ImageStore};
use crate::unpack::{decompress, Compression, GuardedReader, StreamGuard};

/// Files of an archive after one pass.
#[derive(Default)]
struct ArchiveFiles {
    /// Metadata documents (`index.json`, `manifest.json`) by path.
    metadata: HashMap<String, Vec<u8>>,
    /// Every other regular file by path, stored as a blob.
    blobs: HashMap<String, Digest>,
    /// Symlinks and hard links: path → target path (relative to the archive root).
    links: HashMap<String, String>,
}

impl ArchiveFiles {
    /// The blob behind an archive path, following links.
    fn blob(&self, path: &str) -> Option<&Digest> {
        let mut path = normalize(path);
        for _ in 0..16 {
            if let Some(digest) = self.blobs.get(&path) {
                return Some(digest);
            }
            path = self.links.get(&path)?.clone();
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of an OCI image-layout or docker-save archive (optionally gzip or
    /// zstd compressed); returns the imported images. Images for other platforms and unnamed
    /// images are skipped (logged); an archive without any importable image is an error.
    pub fn import_archive(&self, path: &Path, progress: &dyn Progress) -> Result<Vec<ImageInfo>> {
        let _gc = self.gc_lock(false)?;
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: path.to_path_buf(),
            reason,
        };
        let files = self.read_archive(path, progress)?;

        let mut images = Vec::new();
        if let Some(index) = files.metadata.get("index.json") {
            images = self.import_oci(path, index, progress)?;
        }
        if images.is_empty() {
            if let Some(manifest) = files.metadata.get("manifest.json") {
                images = self.import_docker(path, manifest, &files, progress)?;
            }
        }
        if images.is_empty() {
            return Err(invalid(if files.metadata.is_empty() {
                "neither an OCI image layout (index.json) nor a docker-save archive (manifest.json)"
                    .into()
            } else {
                "no named image for this platform in the archive".into()
            }));
        }
        Ok(images)
    }

    /// Imports every archive (`*.tar`, `*.tar.gz`, `*.tgz`, `*.tar.zst`) of `dir`, in name
    /// order — the agent's `DATA_DIR/agent/images/` for air-gapped sites. A missing directory
    /// holds nothing. One bad archive does not stop the others: each file's outcome is returned.
    pub fn import_directory(
        &self,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<Vec<(PathBuf, Result<Vec<ImageInfo>>)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("list", dir, e)),
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                p.is_file()
                    && [".tar", ".tar.gz", ".tgz", ".tar.zst"]
                        .iter()
                        .any(|s| name.ends_with(s))
            })
            .collect();
        files.sort();
        Ok(files
            .into_iter()
            .map(|file| {
                let result = self.import_archive(&file, progress);
                if let Err(error) = &result {
                    tracing::warn!(archive = %file.display(), %error, "image archive not imported");
                }
                (file, result)
            })
            .collect())
    }

    fn read_archive(&self, path: &Path, progress: &dyn Progress) -> Result<ArchiveFiles> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
        let total = file.metadata().map(|m| m.len()).ok();
        let task = "archive";
        progress.begin(task, &format!("reading {}", path.display()), total);
        let counted = ProgressReader::new(file, progress, task);
        let decompressed = decompress(BufReader::with_capacity(256 * 1024, counted))
            .map_err(|e| invalid(format!("cannot read: {e}")))?;
        let guard = Rc::new(StreamGuard::new(u64::MAX));
        let stream = GuardedReader::new(decompressed, guard.clone());
        let mut archive = tar::Archive::new(stream);
        let mut entries = archive
            .entries()
            .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
        let mut files = ArchiveFiles::default();
        let mut seen = 0u64;
        loop {
            guard.limit_headers(MAX_METADATA_BYTES);
            let next = entries.next();
            guard.unlimit_headers();
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| {
                if seen == 0 {
                    // The parser's message would quote whatever the file holds.
                    invalid("not a tar archive (no valid tar header at the start)".into())
                } else {
                    invalid(format!("not a valid tar archive after {seen} entries: {e}"))
                }
            })?;
            seen += 1;
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            if kind.is_file() {
                if matches!(name.as_str(), "index.json" | "manifest.json") {
                    let data = read_limited(&mut entry, MAX_METADATA_BYTES, &name)?;
                    files.metadata.insert(name, data);
                } else if name == "oci-layout"
                    || name == "repositories"
                    || name.ends_with("/json")
                    || name.ends_with("/VERSION")
                {
                    // Layout marker and legacy docker metadata: not needed.
                } else {
                    let expected = match name.strip_prefix("blobs/sha256/") {
                        Some(hex) => Some(Digest::from_hex(hex).ok_or_else(|| {
                            invalid(format!("{name} is not named by a sha256 digest"))
                        })?),
                        None => None,
                    };
                    let size = entry.size();
                    let what = format!("{name} in archive {}", path.display());
                    let (digest, _) = self.inner.content.write_from(
                        &mut entry,
                        expected.as_ref(),
                        Some(size),
                        &what,
                    )?;
                    files.blobs.insert(name, digest);
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize(&format!("{dir}/{target}"))
                } else {
                    normalize(&target)
                };
                files.links.insert(name, resolved);
            }
            std::io::copy(&mut entry, &mut std::io::sink())
                .map_err(|e| invalid(format!("cannot read: {e}")))?;
        }
        progress.finish(task, "read");
        Ok(files)
    }

    fn import_oci(
        &self,
        path: &Path,
        index: &[u8],
        progress: &dyn Progress,
    ) -> Result<Vec<ImageInfo>> {
        let what = format!("index.json of {}", path.display());
        let Manifest::Index(index) = manifest::parse_manifest(index, &what)? else {
            return Err(ImageError::invalid(
                what,
                "is an image manifest, not an index",
            ));
        };
        let platform = &self.inner.options.platform;
        let mut chosen: Vec<(Reference, &Descriptor)> = Vec::new();
        for descriptor in index.manifests() {
            let Some(name) = descriptor_name(descriptor)? else {
                tracing::warn!(archive = %path.display(), digest = %descriptor.digest(),
                    "skipping image without a name ({ANNOTATION_NAME} or a full reference in {ANNOTATION_REF_NAME})");
                continue;
            };
            // Several entries with one name: one per platform; keep the one for this machine.
            let fits = descriptor.platform().is_none()
                || manifest::select_platform(std::slice::from_ref(descriptor), platform, &what)
                    .is_ok();
            if !fits {
                tracing::debug!(image = %name, digest = %descriptor.digest(), "skipping entry for another platform");
                continue;
            }
            if !chosen.iter().any(|(n, _)| *n == name) {
                chosen.push((name, descriptor));
            }
        }
        let mut images = Vec::new();
        for (name, descriptor) in chosen {
            let top = Digest::try_from(descriptor.digest())?;
            let what = format!("image {name} in {}", path.display());
            if !self.inner.content.contains(&top) {
                return Err(ImageError::BlobMissing {
                    digest: top.to_string(),
                    what,
                });
            }
            let (manifest_digest, manifest_size, media_type) =
                self.platform_manifest(&top, descriptor.size(), &what)?;
            let repo_digest = Some(format!("{}@{top}", name.name()));
            images.push(self.install(
                name,
                manifest_digest,
                manifest_size,
                media_type,
                repo_digest,
                progress,
            )?);
        }
        Ok(images)
    }

    fn import_docker(
        &self,
        path: &Path,
        manifest_json: &[u8],
        files: &ArchiveFiles,
        progress: &dyn Progress,
    ) -> Result<Vec<ImageInfo>> {
        let invalid = |reason: String| ImageError::InvalidArchive {
            archive: path.to_path_buf(),
            reason,
        };
        let entries: Vec<DockerManifest> =
            serde_json::from_slice(manifest_json).map_err(|source| ImageError::InvalidJson {
                what: format!("manifest.json of {}", path.display()),
                source,
            })?;
        let mut images = Vec::new();
        for entry in entries {
            let tags = entry.repo_tags.unwrap_or_default();
            if tags.is_empty() {
                tracing::warn!(archive = %path.display(), config = %entry.config, "skipping image without RepoTags");
                continue;
            }
            let names = tags
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>>>()?;
            let config = files.blob(&entry.config).ok_or_else(|| {
                invalid(format!(
                    "config {} listed in manifest.json is missing",
                    entry.config
                ))
            })?;
            let config_size = self.inner.content.size(config)?;
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let digest = files.blob(layer).ok_or_else(|| {
                    invalid(format!("layer {layer} listed in manifest.json is missing"))
                })?;
                let size = self.inner.content.size(digest)?;
                let media_type = match self.blob_compression(digest)? {
                    Compression::None => manifest::OCI_LAYER,
                    Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                    Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                };
                layers.push(serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}));
            }
            // docker save has no manifest of its own: write the OCI manifest it implies.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size},
                "layers": layers,
            });
            let bytes =
                serde_json::to_vec(&manifest).map_err(|source| ImageError::InvalidJson {
                    what: "generated manifest".into(),
                    source,
                })?;
            let manifest_digest =
                self.inner
                    .content
                    .write_bytes(&bytes, None, "generated manifest")?;
            for name in names {
                images.push(self.install(
                    name,
                    manifest_digest.clone(),
                    bytes.len() as u64,
                    OCI_MANIFEST.to_owned(),
                    None,
                    progress,
                )?);
            }
        }
        Ok(images)
    }

    fn blob_compression(&self, digest: &Digest) -> Result<Compression> {
        let path = self.inner.content.path(digest);
        let mut head = [0u8; 4];
        let mut file = File::open(&path).map_err(|e| ImageError::io("open", &path, e))?;
        let n = file
            .read(&mut head)
            .map_err(|e| ImageError::io("read", &path, e))?;
        Ok(Compression::detect(&head[..n]))
    }
}

/// The image name of an index entry: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` when it is a full reference (a bare tag such as `latest`
/// names no repository).
fn descriptor_name(descriptor: &Descriptor) -> Result<Option<Reference>> {
    let Some(annotations) = descriptor.annotations() else {
        return Ok(None);
    };
    if let Some(name) = annotations.get(ANNOTATION_NAME) {
        return Reference::parse(name).map(Some);
    }
    match annotations.get(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => Reference::parse(name).map(Some),
        _ => Ok(None),
    }
}

/// An archive path without `./`, leading or doubled slashes, with `..` applied.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        assert_eq!(normalize("./blobs//sha256/ab"), "blobs/sha256/ab");
        assert_eq!(normalize("abc/../def.tar"), "def.tar");
        assert_eq!(normalize("/x/"), "x");
    }
}
