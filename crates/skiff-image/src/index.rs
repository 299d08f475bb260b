//! The store's image names: `ROOT/index.json`, an OCI image index whose entries point at image
//! manifests and carry the image name (as containerd writes it), so the store root is also a
//! valid OCI image layout that `skopeo` and `umoci` can read.
//!
//! Writers take an exclusive `flock` on `ROOT/index.lock` (so the CLI and a running agent can
//! both change names) and replace the file atomically; readers just read it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::OCI_INDEX;
use crate::reference::Reference;

/// Full image name, as containerd's `ctr` and CRI write it.
pub(crate) const ANNOTATION_NAME: &str = "io.containerd.image.name";
/// OCI layout tag annotation.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_ID: &str = "dev.skiff.image.id";
const ANNOTATION_REPO_DIGEST: &str = "dev.skiff.image.repo-digest";

/// One name of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The name (tagged, or pinned by digest).
    pub name: Reference,
    /// The image manifest (single platform).
    pub manifest: Digest,
    pub manifest_size: u64,
    pub media_type: String,
    /// The config digest: the image id.
    pub id: Digest,
    /// `registry/repository@digest` of what the name pointed to at the source, if known.
    pub repo_digest: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl Record {
    fn to_entry(&self) -> IndexEntry {
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_NAME.to_owned(), self.name.to_string());
        if let Some(tag) = self.name.tag() {
            annotations.insert(ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        }
        annotations.insert(ANNOTATION_ID.to_owned(), self.id.to_string());
        if let Some(repo_digest) = &self.repo_digest {
            annotations.insert(ANNOTATION_REPO_DIGEST.to_owned(), repo_digest.clone());
        }
        IndexEntry {
            media_type: self.media_type.clone(),
            digest: self.manifest.to_string(),
            size: self.manifest_size,
            annotations,
        }
    }

    fn from_entry(entry: &IndexEntry, path: &Path) -> Result<Record> {
        let what = || format!("image index {}", path.display());
        let field = |key: &str| {
            entry.annotations.get(key).ok_or_else(|| {
                ImageError::invalid(what(), format!("entry {} lacks {key}", entry.digest))
            })
        };
        Ok(Record {
            name: Reference::parse(field(ANNOTATION_NAME)?)?,
            manifest: Digest::parse(&entry.digest)?,
            manifest_size: entry.size,
            media_type: entry.media_type.clone(),
            id: Digest::parse(field(ANNOTATION_ID)?)?,
            repo_digest: entry.annotations.get(ANNOTATION_REPO_DIGEST).cloned(),
        })
    }
}

/// Reads and writes `index.json`.
#[derive(Debug, Clone)]
pub(crate) struct NameIndex {
    path: PathBuf,
    lock: PathBuf,
}

impl NameIndex {
    /// The index of the store at `root`, created empty when missing.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let index = NameIndex {
            path: root.join("index.json"),
            lock: root.join("index.lock"),
        };
        if !index.path.exists() {
            index.update(|_| Ok(()))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| ImageError::io("write", &layout, e))?;
        }
        Ok(index)
    }

    /// All records, in index order.
    pub(crate) fn load(&self) -> Result<Vec<Record>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("read", &self.path, e)),
        };
        let file: IndexFile =
            serde_json::from_slice(&bytes).map_err(|source| ImageError::InvalidJson {
                what: format!("image index {}", self.path.display()),
                source,
            })?;
        file.manifests
            .iter()
            .map(|entry| Record::from_entry(entry, &self.path))
            .collect()
    }

    /// Changes the records under the index lock and writes them back atomically. `change` may
    /// fail, leaving the index as it was.
    pub(crate) fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<Record>) -> Result<T>,
    ) -> Result<T> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| ImageError::io("open", &self.lock, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| ImageError::io("lock", &self.lock, e.into()))?;
        let mut records = self.load()?;
        let result = change(&mut records)?;
        let file = IndexFile {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            manifests: records.iter().map(Record::to_entry).collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|source| ImageError::InvalidJson {
            what: "image index".into(),
            source,
        })?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let mut out = File::create(&tmp).map_err(|e| ImageError::io("create", &tmp, e))?;
        out.write_all(&json)
            .and_then(|()| out.sync_all())
            .map_err(|e| ImageError::io("write", &tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| ImageError::io("replace", &self.path, e))?;
        // The lock is released when `lock` is closed.
        Ok(result)
    }
}

/// Sets `record` as the image named `record.name`, replacing what the name pointed to before.
pub(crate) fn upsert(records: &mut Vec<Record>, record: Record) {
    match records.iter_mut().find(|r| r.name == record.name) {
        Some(existing) => *existing = record,
        None => records.push(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, byte: char) -> Record {
        Record {
            name: Reference::parse(name).unwrap(),
            manifest: Digest::from_hex(&byte.to_string().repeat(64)).unwrap(),
            manifest_size: 400,
            media_type: crate::manifest::OCI_MANIFEST.into(),
            id: Digest::from_hex(&"e".repeat(64)).unwrap(),
            repo_digest: Some(format!(
                "docker.io/library/busybox@sha256:{}",
                "f".repeat(64)
            )),
        }
    }

    #[test]
    fn round_trips_and_replaces_names() {
        let root = tempfile::tempdir().unwrap();
        let index = NameIndex::open(root.path()).unwrap();
        assert!(index.load().unwrap().is_empty());
        index
            .update(|records| {
                upsert(records, record("busybox", 'a'));
                upsert(records, record("busybox:v2", 'b'));
                upsert(records, record("busybox", 'c'));
                Ok(())
            })
            .unwrap();
        let records = index.load().unwrap();
        assert_eq!(
            records,
            vec![record("busybox", 'c'), record("busybox:v2", 'b')]
        );
        // A valid OCI layout index, names as containerd writes them.
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(root.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            json["manifests"][0]["annotations"][ANNOTATION_NAME],
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            json["manifests"][0]["annotations"][ANNOTATION_REF_NAME],
            "latest"
        );
        assert!(root.path().join("oci-layout").exists());
    }

    #[test]
    fn a_failed_change_keeps_the_index() {
        let root = tempfile::tempdir().unwrap();
        let index = NameIndex::open(root.path()).unwrap();
        index
            .update(|r| {
                upsert(r, record("busybox", 'a'));
                Ok(())
            })
            .unwrap();
        let result: Result<()> = index.update(|r| {
            r.clear();
            Err(ImageError::NotFound {
                reference: "x".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(index.load().unwrap().len(), 1);
    }
}
