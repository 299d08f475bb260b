//! Copying an image from one store to another (a server handing images to its agents over the
//! node link): [`ImageStore::export`] gives the manifest as stored, [`ImageStore::open_blob`]
//! its blobs; [`ImageStore::receive`] takes them in on the other side, verifying the manifest
//! against its digest and every blob against the manifest (size and digest) before it becomes
//! visible, and names the image only once everything is there and unpacked.

use std::fs::File;
use std::io;

use crate::content::BlobWriter;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::index::Record;
use crate::manifest::{self, Manifest, MAX_METADATA_BYTES};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{ImageInfo, ImageStore, Query};

/// An image's manifest as stored, for handing it to another store.
#[derive(Debug, Clone)]
pub struct ExportedImage {
    /// The name it was found by.
    pub reference: Reference,
    /// `sha256:` digest of `manifest`.
    pub manifest_digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// The single-platform manifest, byte for byte.
    pub manifest: Vec<u8>,
    /// What the name pointed to where this store got it, if known.
    pub repo_digest: Option<String>,
}

impl ImageStore {
    /// The manifest of the image `reference` names (as [`ImageStore::resolve`] finds it), without
    /// unpacking anything; `None` if the store has no such image.
    pub fn export(&self, reference: &str) -> Result<Option<ExportedImage>> {
        let records = self.inner.names.load()?;
        let query = Query::parse(reference, &records)?;
        let mut matching: Vec<&Record> = records.iter().filter(|r| query.matches(r)).collect();
        matching.sort_by_key(|r| r.name.tag().is_none());
        let Some(record) = matching.first() else {
            return Ok(None);
        };
        let what = format!("manifest of {}", record.name);
        let bytes =
            self.inner
                .content
                .read_verified(&record.manifest, &what, MAX_METADATA_BYTES)?;
        if !matches!(manifest::parse_manifest(&bytes, &what)?, Manifest::Image(_)) {
            return Err(ImageError::invalid(
                what,
                "is an index, not an image manifest",
            ));
        }
        Ok(Some(ExportedImage {
            reference: record.name.clone(),
            manifest_digest: record.manifest.clone(),
            media_type: record.media_type.clone(),
            manifest: bytes,
            repo_digest: record.repo_digest.clone(),
        }))
    }

    /// Opens a stored blob for reading: its size and the file. (The receiver verifies the
    /// digest; [`ImageStore::receive`] does.)
    pub fn open_blob(&self, digest: &Digest) -> Result<(u64, File)> {
        let path = self.inner.content.path(digest);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::BlobMissing {
                digest: digest.to_string(),
                what: "content store".into(),
            },
            _ => ImageError::io("open", &path, e),
        })?;
        let size = file
            .metadata()
            .map_err(|e| ImageError::io("stat", &path, e))?
            .len();
        Ok((size, file))
    }

    /// Starts taking in the image `reference` from another store: `manifest` must hash to
    /// `manifest_digest` and be a single-platform image manifest. Garbage collection waits
    /// until the returned [`Receiving`] is finished or dropped.
    pub fn receive(
        &self,
        reference: &str,
        manifest_digest: &str,
        media_type: &str,
        manifest: &[u8],
        repo_digest: Option<String>,
    ) -> Result<Receiving> {
        let name = Reference::parse(reference)?;
        let expected = Digest::parse(manifest_digest)?;
        let what = format!("manifest of {name}");
        if manifest.len() as u64 > MAX_METADATA_BYTES {
            return Err(ImageError::invalid(
                what,
                format!(
                    "{} bytes is over the limit of {MAX_METADATA_BYTES}",
                    manifest.len()
                ),
            ));
        }
        let parsed = match manifest::parse_manifest(manifest, &what)? {
            Manifest::Image(parsed) => parsed,
            Manifest::Index(_) => {
                return Err(ImageError::invalid(
                    what,
                    "is an index, not an image manifest",
                ))
            }
        };
        let config = parsed.config();
        if config.size() > MAX_METADATA_BYTES {
            return Err(ImageError::invalid(
                format!("config of {name}"),
                format!(
                    "{} bytes is over the limit of {MAX_METADATA_BYTES}",
                    config.size()
                ),
            ));
        }
        let mut blobs: Vec<(Digest, u64, String)> = Vec::with_capacity(parsed.layers().len() + 1);
        blobs.push((
            Digest::try_from(config.digest())?,
            config.size(),
            format!("config of {name}"),
        ));
        for layer in parsed.layers() {
            let media_type = layer.media_type().to_string();
            if media_type.contains("foreign") || media_type.contains("nondistributable") {
                return Err(ImageError::UnsupportedMediaType {
                    what: format!("{what} layer {}", layer.digest()),
                    media_type,
                });
            }
            let digest = Digest::try_from(layer.digest())?;
            if blobs.iter().any(|(d, _, _)| *d == digest) {
                continue;
            }
            let label = format!("layer {digest} of {name}");
            blobs.push((digest, layer.size(), label));
        }
        let gc = self.gc_lock(false)?;
        // Verified against the digest: a manifest that does not match is not stored.
        self.inner
            .content
            .write_bytes(manifest, Some(&expected), &what)?;
        Ok(Receiving {
            store: self.clone(),
            name,
            manifest_digest: expected,
            manifest_size: manifest.len() as u64,
            media_type: media_type.to_owned(),
            repo_digest,
            blobs,
            _gc: gc,
        })
    }
}

/// An image being taken in from another store ([`ImageStore::receive`]).
pub struct Receiving {
    store: ImageStore,
    name: Reference,
    manifest_digest: Digest,
    manifest_size: u64,
    media_type: String,
    repo_digest: Option<String>,
    /// Config first, then the layers, each once: digest, size, label for messages.
    blobs: Vec<(Digest, u64, String)>,
    _gc: File,
}

impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("name", &self.name)
            .field("manifest", &self.manifest_digest)
            .finish_non_exhaustive()
    }
}

impl Receiving {
    /// The image's config and layer blobs (config first, each once) with their sizes.
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        self.blobs.iter().map(|(d, s, _)| (d.clone(), *s)).collect()
    }

    /// The blobs the store does not have yet.
    pub fn missing(&self) -> Vec<(Digest, u64)> {
        self.blobs
            .iter()
            .filter(|(d, _, _)| !self.store.inner.content.contains(d))
            .map(|(d, s, _)| (d.clone(), *s))
            .collect()
    }

    /// A writer for one of the image's blobs; it refuses more bytes than the manifest says, and
    /// stores the blob only if it hashes to its digest.
    pub fn blob(&self, digest: &Digest) -> Result<IncomingBlob> {
        let (digest, size, what) =
            self.blobs
                .iter()
                .find(|(d, _, _)| d == digest)
                .ok_or_else(|| {
                    ImageError::invalid(
                        format!("manifest of {}", self.name),
                        format!("does not list blob {digest}"),
                    )
                })?;
        Ok(IncomingBlob {
            writer: self.store.inner.content.writer(what)?,
            digest: digest.clone(),
            size: *size,
            what: what.clone(),
        })
    }

    /// Checks that every blob is there, unpacks the layers (verifying their diff ids) and names
    /// the image.
    pub fn finish(self, progress: &dyn Progress) -> Result<ImageInfo> {
        for (digest, _, what) in &self.blobs {
            if !self.store.inner.content.contains(digest) {
                return Err(ImageError::BlobMissing {
                    digest: digest.to_string(),
                    what: what.clone(),
                });
            }
        }
        self.store.install(
            self.name,
            self.manifest_digest,
            self.manifest_size,
            self.media_type,
            self.repo_digest,
            progress,
        )
    }
}

/// One blob being received.
pub struct IncomingBlob {
    writer: BlobWriter,
    digest: Digest,
    size: u64,
    what: String,
}

impl std::fmt::Debug for IncomingBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingBlob")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl IncomingBlob {
    /// Appends received bytes; more than the manifest's size is an error.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        let total = self.writer.len() + data.len() as u64;
        if total > self.size {
            return Err(ImageError::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                actual: total,
            });
        }
        self.writer.write(data)
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.writer.len()
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.writer.len() == 0
    }

    /// Stores the blob if it has the manifest's size and digest; otherwise nothing is stored.
    pub fn commit(self) -> Result<()> {
        self.writer
            .commit(Some(&self.digest), Some(self.size))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    /// A one-layer image written straight into `store` under `name`.
    fn seed(store: &ImageStore, name: &str) -> (Digest, Vec<u8>) {
        let mut builder = tar::Builder::new(Vec::new());
        let data = b"hello from the server\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append_data(&mut header, "hello.txt", &data[..])
            .unwrap();
        let layer = builder.into_inner().unwrap();
        let layer_digest = Digest::of(&layer);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
        })
        .to_string()
        .into_bytes();
        let config_digest = Digest::of(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": manifest::OCI_LAYER, "digest": layer_digest.to_string(), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        let content = &store.inner.content;
        content.write_bytes(&config, None, "config").unwrap();
        content.write_bytes(&layer, None, "layer").unwrap();
        let manifest_digest = content.write_bytes(&manifest, None, "manifest").unwrap();
        store
            .install(
                Reference::parse(name).unwrap(),
                manifest_digest,
                manifest.len() as u64,
                manifest::OCI_MANIFEST.into(),
                None,
                &NoProgress,
            )
            .unwrap();
        (layer_digest, layer)
    }

    fn copy_blob(from: &ImageStore, to: &Receiving, digest: &Digest) -> Result<()> {
        let (_, mut file) = from.open_blob(digest)?;
        let mut data = Vec::new();
        io::Read::read_to_end(&mut file, &mut data).unwrap();
        let mut blob = to.blob(digest)?;
        blob.write(&data)?;
        blob.commit()
    }

    #[test]
    fn an_exported_image_is_received_verified_and_runs_from_the_other_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (server, agent) = (
            ImageStore::open(a.path()).unwrap(),
            ImageStore::open(b.path()).unwrap(),
        );
        seed(&server, "busybox:1.36");
        assert!(server.export("nginx:1").unwrap().is_none());
        let exported = server.export("busybox:1.36").unwrap().unwrap();
        assert_eq!(
            exported.reference.to_string(),
            "docker.io/library/busybox:1.36"
        );
        let receiving = agent
            .receive(
                "busybox:1.36",
                &exported.manifest_digest.to_string(),
                &exported.media_type,
                &exported.manifest,
                None,
            )
            .unwrap();
        assert_eq!(receiving.missing().len(), 2);
        // Not named before it is complete.
        assert!(agent.resolve("busybox:1.36").unwrap().is_none());
        for (digest, _) in receiving.missing() {
            copy_blob(&server, &receiving, &digest).unwrap();
        }
        assert!(receiving.missing().is_empty());
        let info = receiving.finish(&NoProgress).unwrap();
        assert_eq!(info.layers.len(), 1);
        assert!(info.layers[0].join("hello.txt").is_file());
        assert!(agent.resolve("busybox:1.36").unwrap().is_some());
    }

    #[test]
    fn hostile_manifests_and_blobs_store_nothing() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (server, agent) = (
            ImageStore::open(a.path()).unwrap(),
            ImageStore::open(b.path()).unwrap(),
        );
        let (layer_digest, layer) = seed(&server, "busybox:1.36");
        let exported = server.export("busybox").unwrap();
        assert!(exported.is_none(), "busybox:latest was never stored");
        let exported = server.export("busybox:1.36").unwrap().unwrap();
        // A manifest that does not match its digest.
        let wrong = Digest::of(b"something else").to_string();
        let error = agent
            .receive(
                "busybox:1.36",
                &wrong,
                &exported.media_type,
                &exported.manifest,
                None,
            )
            .unwrap_err();
        assert!(
            matches!(error, ImageError::DigestMismatch { .. }),
            "{error}"
        );
        let receiving = agent
            .receive(
                "busybox:1.36",
                &exported.manifest_digest.to_string(),
                &exported.media_type,
                &exported.manifest,
                None,
            )
            .unwrap();
        // Bytes that do not hash to the digest: refused, not stored.
        let mut blob = receiving.blob(&layer_digest).unwrap();
        let mut tampered = layer.clone();
        tampered[600] ^= 0xff;
        blob.write(&tampered).unwrap();
        let error = blob.commit().unwrap_err();
        assert!(
            matches!(error, ImageError::DigestMismatch { .. }),
            "{error}"
        );
        assert!(receiving.missing().iter().any(|(d, _)| *d == layer_digest));
        // More bytes than the manifest says.
        let mut blob = receiving.blob(&layer_digest).unwrap();
        blob.write(&layer).unwrap();
        let error = blob.write(b"x").unwrap_err();
        assert!(matches!(error, ImageError::SizeMismatch { .. }), "{error}");
        // A blob the manifest does not list.
        let error = receiving.blob(&Digest::of(b"other")).unwrap_err();
        assert!(error.to_string().contains("does not list blob"), "{error}");
        // Finishing with blobs missing names nothing.
        let error = receiving.finish(&NoProgress).unwrap_err();
        assert!(matches!(error, ImageError::BlobMissing { .. }), "{error}");
        assert!(agent.resolve("busybox:1.36").unwrap().is_none());
    }
}
