//! [`ImageStore`]: names, content and unpacked layers of one node, under one directory:
//!
//! ```text
//! ROOT/oci-layout, ROOT/index.json   OCI image layout; index entries are the image names
//! ROOT/blobs/sha256/<hex>            content (manifests, configs, compressed layers)
//! ROOT/layers/<diff id hex>/         unpacked layers (overlayfs lower dirs), one per diff id
//! ROOT/tmp/                          work in progress (blobs being written, layers unpacking)
//! ROOT/index.lock, ROOT/gc.lock      flock(2) locks shared with other skiff processes
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::index::{self, NameIndex, Record};
use crate::manifest::{self, Manifest, Platform, MAX_METADATA_BYTES};
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;
use crate::singleflight::KeyedLocks;
use crate::tmp::{self, TempDir};
use crate::unpack::{self, UnpackPolicy};

/// Directory of the image store below the data directory (`DATA_DIR/agent/images-store`).
/// (`DATA_DIR/agent/images/` holds archives to import at start, per the CLI contract.)
pub const STORE_DIR: &str = "agent/images-store";

/// The store directory for a data directory.
pub fn store_root(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_DIR)
}

/// An image id: `sha256:<config digest>`, as [`ImageInfo::id`].
pub type ImageId = String;

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The name it was resolved by (normalized), e.g. `docker.io/library/busybox:latest`.
    pub reference: Reference,
    /// `sha256:<config digest>`, what Kubernetes shows as the imageID tail.
    pub id: String,
    /// `registry/repository@sha256:<digest>` of what the name pointed to at its source (registry
    /// manifest or index, or the OCI archive's descriptor); `None` for docker-save imports.
    pub repo_digest: Option<String>,
    /// `sha256:<digest>` of the single-platform manifest.
    pub manifest_digest: String,
    /// Entrypoint, Cmd, Env, WorkingDir, User, ... of the image.
    pub config: ImageConfiguration,
    /// Unpacked layer directories, bottom layer first; read-only, shared by all containers.
    /// Whiteouts are in overlayfs form, so they stack directly as `lowerdir`s (give them to
    /// overlayfs top first). A layer repeated in the image is listed once, at its topmost place
    /// (which stacks identically).
    pub layers: Vec<PathBuf>,
    /// Bytes of content (config and compressed layers), as registries and `crictl` report it.
    pub size: u64,
}

/// One image in [`ImageStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Tagged names (`docker.io/library/busybox:latest`).
    pub repo_tags: Vec<String>,
    /// Digest names (`docker.io/library/busybox@sha256:...`).
    pub repo_digests: Vec<String>,
    /// Bytes of content.
    pub size: u64,
}

/// What [`ImageStore::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub removed_blobs: usize,
    /// Unpacked layer directories deleted.
    pub removed_layers: usize,
    /// Leftovers of interrupted work deleted from `tmp/`.
    pub removed_temporaries: usize,
    /// Bytes freed (blobs and layer files).
    pub freed_bytes: u64,
}

/// Options of a store; [`ImageStore::open`] uses the defaults.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Limits and policies for unpacking layers.
    pub unpack: UnpackPolicy,
    /// Platform picked from multi-platform images (default: this machine's).
    pub platform: Platform,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            unpack: UnpackPolicy::default(),
            platform: Platform::current(),
        }
    }
}

/// The node's image store. Cheap to clone; safe to share between threads, and between
/// processes (file locks guard the names and garbage collection).
#[derive(Clone)]
pub struct ImageStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) layers: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) names: NameIndex,
    pub(crate) options: StoreOptions,
    /// One unpack per diff id at a time in this process.
    pub(crate) unpacks: KeyedLocks<Mutex<()>>,
    /// One download per blob at a time in this process.
    pub(crate) downloads: KeyedLocks<tokio::sync::Mutex<()>>,
    /// Registry clients by endpoint, reused for their connections and tokens.
    pub(crate) clients: Mutex<HashMap<String, oci_client::Client>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish()
    }
}

/// How a textual reference selects records.
#[derive(Debug)]
pub(crate) enum Query {
    /// An image id or manifest digest.
    Digest(Digest),
    /// The start of an image id (at least 4 hex digits), as `docker`/`crictl` accept.
    IdPrefix(String),
    Name(Reference),
}

impl Query {
    /// Parses `text` against the current `records`: hex that starts exactly one image id is
    /// that id (as Docker does; otherwise it is a name).
    pub(crate) fn parse(text: &str, records: &[Record]) -> Result<Query> {
        if let Some(digest) = Digest::from_hex(text) {
            return Ok(Query::Digest(digest));
        }
        if text.starts_with("sha256:") {
            return Ok(Query::Digest(Digest::parse(text)?));
        }
        if text.len() >= 4 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            let ids: BTreeSet<&Digest> = records
                .iter()
                .filter(|r| r.id.hex().starts_with(text))
                .map(|r| &r.id)
                .collect();
            if ids.len() > 1 {
                return Err(ImageError::AmbiguousId {
                    prefix: text.to_owned(),
                    count: ids.len(),
                });
            }
            if !ids.is_empty() {
                return Ok(Query::IdPrefix(text.to_owned()));
            }
        }
        Ok(Query::Name(Reference::parse(text)?))
    }

    pub(crate) fn matches(&self, record: &Record) -> bool {
        match self {
            Query::Digest(digest) => record.id == *digest || record.manifest == *digest,
            Query::IdPrefix(prefix) => record.id.hex().starts_with(prefix.as_str()),
            Query::Name(name) => match name.digest() {
                Some(digest) => {
                    record.name.name() == name.name()
                        && (record.manifest == *digest
                            || record.name.digest() == Some(digest)
                            || record
                                .repo_digest
                                .as_deref()
                                .is_some_and(|r| r.ends_with(&format!("@{digest}"))))
                }
                None => record.name == *name,
            },
        }
    }
}

impl ImageStore {
    /// Opens (creating it if needed) the store at `root`, e.g. [`store_root`]`(DATA_DIR)`.
    pub fn open(root: &Path) -> Result<ImageStore> {
        Self::open_with(root, StoreOptions::default())
    }

    /// Opens the store with non-default options.
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<ImageStore> {
        fs::create_dir_all(root).map_err(|e| ImageError::io("create", root, e))?;
        // Absolute paths: layer directories are handed to overlayfs, and GC matches them
        // against the mount table.
        let root = &fs::canonicalize(root).map_err(|e| ImageError::io("resolve", root, e))?;
        let tmp = root.join("tmp");
        let layers = root.join("layers");
        for dir in [root, &tmp, &layers] {
            fs::create_dir_all(dir).map_err(|e| ImageError::io("create", dir, e))?;
        }
        // Layers hold image files as the image has them, setuid binaries included: other users
        // of the host must not reach them (containers see them through overlayfs).
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io("restrict access to", root, e))?;
        let content = ContentStore::open(root.join("blobs/sha256"), tmp.clone())?;
        let names = NameIndex::open(root)?;
        let removed = tmp::clean_stale(&tmp);
        if removed > 0 {
            tracing::info!(removed, "removed leftovers of interrupted image work");
        }
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                content,
                layers,
                tmp,
                names,
                options,
                unpacks: KeyedLocks::default(),
                downloads: KeyedLocks::default(),
                clients: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The image a name (`busybox`, `registry/repo:tag`, `repo@sha256:...`) or an id
    /// (`sha256:<hex>` or the bare hex, image id or manifest digest) refers to, with its layers
    /// unpacked; `None` if the store has no such image.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let records = self.inner.names.load()?;
        let query = Query::parse(reference, &records)?;
        let mut matching: Vec<&Record> = records.iter().filter(|r| query.matches(r)).collect();
        // For ids, prefer a tagged name.
        matching.sort_by_key(|r| r.name.tag().is_none());
        let Some(record) = matching.first() else {
            return Ok(None);
        };
        let _gc = self.gc_lock(false)?;
        self.image_info(record, &crate::progress::NoProgress)
            .map(Some)
    }

    /// Every image, with all its names.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let records = self.inner.names.load()?;
        let mut summaries: Vec<ImageSummary> = Vec::new();
        for record in &records {
            let id = record.id.to_string();
            let position = match summaries.iter().position(|s| s.id == id) {
                Some(position) => position,
                None => {
                    let size = self
                        .content_size(&record.manifest, &record.name)
                        .unwrap_or_else(|error| {
                            tracing::warn!(image = %record.name, %error, "cannot size image");
                            0
                        });
                    summaries.push(ImageSummary {
                        id,
                        repo_tags: Vec::new(),
                        repo_digests: Vec::new(),
                        size,
                    });
                    summaries.len() - 1
                }
            };
            let summary = &mut summaries[position];
            let name = record.name.to_string();
            let list = if record.name.tag().is_some() {
                &mut summary.repo_tags
            } else {
                &mut summary.repo_digests
            };
            if !list.contains(&name) {
                list.push(name);
            }
            if let Some(repo_digest) = &record.repo_digest {
                if !summary.repo_digests.contains(repo_digest) {
                    summary.repo_digests.push(repo_digest.clone());
                }
            }
        }
        Ok(summaries)
    }

    /// Removes a name (`busybox:1.36`), or every name of an image given by id or digest. The
    /// content stays until [`ImageStore::gc`].
    pub fn remove(&self, reference: &str) -> Result<()> {
        self.inner.names.update(|records| {
            let query = Query::parse(reference, records)?;
            let before = records.len();
            records.retain(|r| !query.matches(r));
            if records.len() == before {
                return Err(ImageError::NotFound {
                    reference: reference.to_owned(),
                });
            }
            Ok(())
        })
    }

    /// Builds the [`ImageInfo`] of a record, unpacking layers that are not unpacked yet.
    pub(crate) fn image_info(&self, record: &Record, progress: &dyn Progress) -> Result<ImageInfo> {
        let name = &record.name;
        let manifest = self.read_image_manifest(&record.manifest, name)?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config_what = format!("config of {name}");
        let config_bytes =
            self.inner
                .content
                .read_verified(&config_digest, &config_what, MAX_METADATA_BYTES)?;
        let config = manifest::parse_config(&config_bytes, &config_what)?;
        let diff_ids = manifest::diff_ids(&config, &config_what)?;
        let blobs = manifest::layer_digests(&manifest, &diff_ids, &format!("manifest of {name}"))?;
        let mut layers: Vec<PathBuf> = Vec::with_capacity(diff_ids.len());
        for (diff_id, blob) in diff_ids.iter().zip(&blobs) {
            let path = self.ensure_layer(diff_id, blob, progress)?;
            // Keep only the topmost occurrence of a repeated layer.
            layers.retain(|p| *p != path);
            layers.push(path);
        }
        let size =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(ImageInfo {
            reference: name.clone(),
            id: record.id.to_string(),
            repo_digest: record.repo_digest.clone(),
            manifest_digest: record.manifest.to_string(),
            config,
            layers,
            size,
        })
    }

    /// Reads a single-platform manifest from the content store.
    pub(crate) fn read_image_manifest(
        &self,
        digest: &Digest,
        name: &Reference,
    ) -> Result<ImageManifest> {
        let what = format!("manifest of {name}");
        let bytes = self
            .inner
            .content
            .read_verified(digest, &what, MAX_METADATA_BYTES)?;
        match manifest::parse_manifest(&bytes, &what)? {
            Manifest::Image(manifest) => Ok(*manifest),
            Manifest::Index(_) => Err(ImageError::invalid(
                what,
                "is an index, not an image manifest",
            )),
        }
    }

    fn content_size(&self, manifest: &Digest, name: &Reference) -> Result<u64> {
        let manifest = self.read_image_manifest(manifest, name)?;
        Ok(manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>())
    }

    /// Follows a descriptor that may be an index down to the manifest for this platform, reading
    /// documents from the content store. Returns the manifest digest and its size.
    pub(crate) fn platform_manifest(
        &self,
        top: &Digest,
        top_size: u64,
        what: &str,
    ) -> Result<(Digest, u64, String)> {
        let mut digest = top.clone();
        let mut size = top_size;
        for _ in 0..4 {
            let bytes = self
                .inner
                .content
                .read_verified(&digest, what, MAX_METADATA_BYTES)?;
            match manifest::parse_manifest(&bytes, what)? {
                Manifest::Image(m) => {
                    let media_type = m
                        .media_type()
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned());
                    return Ok((digest, size, media_type));
                }
                Manifest::Index(index) => {
                    let chosen = manifest::select_platform(
                        index.manifests(),
                        &self.inner.options.platform,
                        what,
                    )?;
                    digest = Digest::try_from(chosen.digest())?;
                    size = chosen.size();
                }
            }
        }
        Err(ImageError::invalid(what, "indexes nested too deeply"))
    }

    /// Verifies a manifest's config and layers are present, unpacks the layers, and names the
    /// image. `repo_digest` is what the name pointed to at the source.
    pub(crate) fn install(
        &self,
        name: Reference,
        manifest_digest: Digest,
        manifest_size: u64,
        media_type: String,
        repo_digest: Option<String>,
        progress: &dyn Progress,
    ) -> Result<ImageInfo> {
        let manifest = self.read_image_manifest(&manifest_digest, &name)?;
        let id = Digest::try_from(manifest.config().digest())?;
        let record = Record {
            name,
            manifest: manifest_digest,
            manifest_size,
            media_type,
            id,
            repo_digest,
        };
        // Unpack everything before the name appears, so a named image is always complete.
        let info = self.image_info(&record, progress)?;
        self.inner.names.update(|records| {
            index::upsert(records, record);
            Ok(())
        })?;
        tracing::info!(image = %info.reference, id = %info.id, "image stored");
        Ok(info)
    }

    /// The unpacked directory of a layer, unpacking it from its blob first if needed. Concurrent
    /// callers for one layer share one unpack; a crash never leaves a partial layer in place.
    pub(crate) fn ensure_layer(
        &self,
        diff_id: &Digest,
        blob: &Digest,
        progress: &dyn Progress,
    ) -> Result<PathBuf> {
        let target = self.inner.layers.join(diff_id.hex());
        if target.is_dir() {
            return Ok(target);
        }
        let handle = self.inner.unpacks.get(diff_id.hex());
        let _unpacking = handle.lock().unwrap_or_else(PoisonError::into_inner);
        if target.is_dir() {
            return Ok(target);
        }
        let layer_name = format!("{diff_id}");
        let task = format!("unpack {}", diff_id.short());
        let total = self.inner.content.size(blob)?;
        progress.begin(
            &task,
            &format!("unpacking layer {}", diff_id.short()),
            Some(total),
        );
        let dir = TempDir::new(&self.inner.tmp, "layer")?;
        // Dropping `dir` on this error removes the empty directory: nothing stays named.
        let needs = crate::space::estimated_unpacked_size(&self.inner.content.path(blob), total)?;
        crate::space::ensure_room(&layer_name, dir.path(), needs)?;
        let mut blob_reader = self
            .inner
            .content
            .open_blob(blob, &format!("layer {diff_id}"))?;
        let started = std::time::Instant::now();
        let stats = {
            let counted = ProgressReader::new(&mut blob_reader, progress, &task);
            let mut buffered = BufReader::with_capacity(256 * 1024, counted);
            let stats = unpack::unpack_layer(
                &mut buffered,
                dir.path(),
                &layer_name,
                &self.inner.options.unpack,
            )?;
            // Whatever follows the compressed stream still belongs to the blob's digest.
            std::io::copy(&mut buffered, &mut std::io::sink())
                .map_err(|e| ImageError::io("read", self.inner.content.path(blob), e))?;
            stats
        };
        blob_reader.verify()?;
        if stats.diff_id != *diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("uncompressed layer {blob}"),
                expected: diff_id.to_string(),
                actual: stats.diff_id.to_string(),
            });
        }
        match dir.persist(&target) {
            Ok(()) => {}
            // Another process finished the same layer first; its copy is as good as ours.
            Err(_) if target.is_dir() => {}
            Err(e) => return Err(ImageError::io("move layer into", &target, e)),
        }
        tracing::debug!(
            layer = %diff_id,
            entries = stats.entries,
            bytes = stats.file_bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "layer unpacked"
        );
        progress.finish(&task, "unpacked");
        Ok(target)
    }

    /// Takes the store-wide GC lock: shared for work that adds content, exclusive for GC.
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Result<File> {
        let path = self.inner.root.join("gc.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io("open", &path, e))?;
        let operation = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, operation).map_err(|e| ImageError::io("lock", &path, e.into()))?;
        Ok(file)
    }

    /// Blobs and layer directories reachable from the names and from `in_use` image ids.
    pub(crate) fn reachable(
        &self,
        in_use: &[ImageId],
    ) -> Result<(BTreeSet<Digest>, BTreeSet<String>)> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        let content = &self.inner.content;
        let keep_config = |config: &Digest,
                           blobs: &mut BTreeSet<Digest>,
                           layers: &mut BTreeSet<String>| {
            blobs.insert(config.clone());
            let what = format!("config {config}");
            match content
                .read_verified(config, &what, MAX_METADATA_BYTES)
                .and_then(|bytes| manifest::parse_config(&bytes, &what))
                .and_then(|config| manifest::diff_ids(&config, &what))
            {
                Ok(diff_ids) => layers.extend(diff_ids.iter().map(|d| d.hex().to_owned())),
                Err(error) => {
                    tracing::warn!(%error, "image GC: cannot read config; its layers are not protected by it")
                }
            }
        };
        for record in self.inner.names.load()? {
            blobs.insert(record.manifest.clone());
            match self.read_image_manifest(&record.manifest, &record.name) {
                Ok(manifest) => {
                    for layer in manifest.layers() {
                        blobs.insert(Digest::try_from(layer.digest())?);
                    }
                    keep_config(
                        &Digest::try_from(manifest.config().digest())?,
                        &mut blobs,
                        &mut layers,
                    );
                }
                Err(error) => {
                    tracing::warn!(image = %record.name, %error, "image GC: cannot read manifest");
                    keep_config(&record.id, &mut blobs, &mut layers);
                }
            }
        }
        for id in in_use {
            match Digest::parse(id) {
                Ok(config) => keep_config(&config, &mut blobs, &mut layers),
                Err(error) => tracing::warn!(%error, "image GC: ignoring invalid in-use image id"),
            }
        }
        Ok((blobs, layers))
    }
}

/// Reads at most `limit` bytes of `reader` whole, failing when there is more.
pub(crate) fn read_limited(reader: &mut dyn Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| ImageError::io("read", what, e))?;
    if data.len() as u64 > limit {
        return Err(ImageError::invalid(
            what,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, id: &str) -> Record {
        Record {
            name: Reference::parse(name).unwrap(),
            manifest: Digest::of(name.as_bytes()),
            manifest_size: 1,
            media_type: manifest::OCI_MANIFEST.into(),
            id: Digest::from_hex(&format!("{id:0<64}")).unwrap(),
            repo_digest: None,
        }
    }

    #[test]
    fn short_ids_select_one_image_or_are_names() {
        let records = [
            record("a:1", "abcd1"),
            record("a:2", "abcd1"),
            record("b:1", "abcd2"),
        ];
        let query = Query::parse("abcd1", &records).unwrap();
        let hits: Vec<_> = records
            .iter()
            .filter(|r| query.matches(r))
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(hits, ["docker.io/library/a:1", "docker.io/library/a:2"]);
        let error = Query::parse("abcd", &records).unwrap_err();
        assert!(
            matches!(error, ImageError::AmbiguousId { count: 2, .. }),
            "{error}"
        );
        // Hex that starts no id is a name.
        assert!(matches!(
            Query::parse("beef", &records).unwrap(),
            Query::Name(_)
        ));
    }
}
