//! The content store: blobs in OCI layout (`blobs/sha256/<hex>`), verified when written (a blob
//! only appears under its name once its bytes hashed to it) and when read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::digest::{Digest, Hasher, HashingReader};
use crate::error::{ImageError, Result};
use crate::tmp::TempDir;

/// Blob storage under `ROOT/blobs/sha256`, with temporary files in `ROOT/tmp`.
#[derive(Debug, Clone)]
pub(crate) struct ContentStore {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    /// Uses `blobs` for content and `tmp` (same file system) for files being written.
    pub(crate) fn open(blobs: PathBuf, tmp: PathBuf) -> Result<Self> {
        fs::create_dir_all(&blobs).map_err(|e| ImageError::io("create", &blobs, e))?;
        Ok(ContentStore { blobs, tmp })
    }

    /// Where the blob `digest` lives.
    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is present.
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size of a present blob.
    pub(crate) fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::BlobMissing {
                digest: digest.to_string(),
                what: "content store".into(),
            }),
            Err(e) => Err(ImageError::io("stat", path, e)),
        }
    }

    /// Opens a blob for streaming; call [`VerifiedBlob::verify`] after reading to check it.
    pub(crate) fn open_blob(&self, digest: &Digest, what: &str) -> Result<VerifiedBlob> {
        let path = self.path(digest);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::BlobMissing {
                digest: digest.to_string(),
                what: what.to_owned(),
            },
            _ => ImageError::io("open", &path, e),
        })?;
        Ok(VerifiedBlob {
            reader: HashingReader::new(file),
            expected: digest.clone(),
            what: what.to_owned(),
            path,
        })
    }

    /// Reads a small blob (manifest, config) whole, verifying its digest; refuses blobs over `max`.
    pub(crate) fn read_verified(&self, digest: &Digest, what: &str, max: u64) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > max {
            return Err(ImageError::invalid(
                format!("{what} {digest}"),
                format!("{size} bytes is over the limit of {max}"),
            ));
        }
        let mut blob = self.open_blob(digest, what)?;
        let mut data = Vec::with_capacity(size as usize);
        blob.read_to_end(&mut data)
            .map_err(|e| ImageError::io("read", &blob.path, e))?;
        blob.verify()?;
        Ok(data)
    }

    /// Stores `data`, which must hash to `expected` when given; returns its digest.
    pub(crate) fn write_bytes(
        &self,
        data: &[u8],
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<Digest> {
        let mut writer = self.writer(what)?;
        writer.write(data)?;
        writer.commit(expected, None)
    }

    /// Stores everything `reader` yields (verified against `expected` when given).
    pub(crate) fn write_from(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if let Some(digest) = expected {
            if self.contains(digest) {
                let copied = io::copy(reader, &mut io::sink())
                    .map_err(|e| ImageError::io("read", what, e))?;
                return Ok((digest.clone(), copied));
            }
        }
        let mut writer = self.writer(what)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| ImageError::io("read", what, e))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n])?;
        }
        let len = writer.len();
        let digest = writer.commit(expected, expected_size)?;
        Ok((digest, len))
    }

    /// A writer for a new blob; nothing is visible until [`BlobWriter::commit`].
    pub(crate) fn writer(&self, what: &str) -> Result<BlobWriter> {
        let dir = TempDir::new(&self.tmp, "blob")?;
        let path = dir.path().join("data");
        let file = File::create(&path).map_err(|e| ImageError::io("create", &path, e))?;
        Ok(BlobWriter {
            file,
            path,
            _dir: dir,
            hasher: Hasher::default(),
            blobs: self.blobs.clone(),
            what: what.to_owned(),
        })
    }

    /// Deletes a blob (absent blobs are fine).
    pub(crate) fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ImageError::io("remove", path, e)),
            _ => Ok(()),
        }
    }

    /// Every blob present, with its size. Files whose names are not digests are ignored.
    pub(crate) fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let entries =
            fs::read_dir(&self.blobs).map_err(|e| ImageError::io("list", &self.blobs, e))?;
        let mut blobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("list", &self.blobs, e))?;
            let Some(digest) = entry.file_name().to_str().and_then(Digest::from_hex) else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            blobs.push((digest, size));
        }
        Ok(blobs)
    }
}

/// A blob being read; the digest is checked by [`VerifiedBlob::verify`] once all was read.
pub(crate) struct VerifiedBlob {
    reader: HashingReader<File>,
    expected: Digest,
    what: String,
    path: PathBuf,
}

impl VerifiedBlob {
    /// Reads any rest and checks that the whole blob hashes to its name.
    pub(crate) fn verify(self) -> Result<()> {
        let path = self.path;
        let (actual, _) = self
            .reader
            .finish()
            .map_err(|e| ImageError::io("read", &path, e))?;
        if actual != self.expected {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {} ({})", path.display(), self.what),
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// A blob being written into a temporary file.
pub(crate) struct BlobWriter {
    file: File,
    path: PathBuf,
    _dir: TempDir,
    hasher: Hasher,
    blobs: PathBuf,
    what: String,
}

impl BlobWriter {
    /// Appends bytes.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.file
            .write_all(data)
            .map_err(|e| ImageError::io("write", &self.path, e))
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// Checks the digest (and size) and moves the blob into place. On a mismatch nothing is
    /// stored.
    pub(crate) fn commit(
        self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest> {
        let len = self.hasher.len();
        if let Some(size) = expected_size {
            if size != len {
                return Err(ImageError::SizeMismatch {
                    what: self.what,
                    expected: size,
                    actual: len,
                });
            }
        }
        let actual = self.hasher.finish();
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(ImageError::DigestMismatch {
                    what: self.what,
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        self.file
            .sync_all()
            .map_err(|e| ImageError::io("sync", &self.path, e))?;
        let target = self.blobs.join(actual.hex());
        fs::rename(&self.path, &target).map_err(|e| ImageError::io("store blob", &target, e))?;
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("blobs"), dir.path().join("tmp")).unwrap();
        (dir, store)
    }

    #[test]
    fn stores_verified_content_and_refuses_mismatches() {
        let (dir, store) = store();
        let digest = store.write_bytes(b"hello", None, "test").unwrap();
        assert_eq!(digest, Digest::of(b"hello"));
        assert!(store.path(&digest).starts_with(dir.path()));
        assert_eq!(store.read_verified(&digest, "test", 100).unwrap(), b"hello");

        let wrong = Digest::of(b"other");
        let error = store
            .write_bytes(b"hello again", Some(&wrong), "blob x")
            .unwrap_err();
        assert!(
            matches!(error, ImageError::DigestMismatch { .. }),
            "{error}"
        );
        assert!(!store.contains(&wrong));
        assert!(!store.contains(&Digest::of(b"hello again")));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "temp files left"
        );
    }

    #[test]
    fn detects_corruption_on_read() {
        let (_dir, store) = store();
        let digest = store.write_bytes(b"precious bytes", None, "test").unwrap();
        fs::write(store.path(&digest), b"tampered bytes").unwrap();
        let error = store.read_verified(&digest, "config", 100).unwrap_err();
        assert!(
            matches!(error, ImageError::DigestMismatch { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("config"), "{error}");
        let missing = Digest::of(b"absent");
        let error = store.read_verified(&missing, "config", 100).unwrap_err();
        assert!(matches!(error, ImageError::BlobMissing { .. }), "{error}");
    }
}
