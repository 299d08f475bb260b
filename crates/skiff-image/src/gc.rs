//! Garbage collection: deletes blobs and unpacked layers no image name and no running container
//! needs, and leftovers of interrupted work.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::store::{GcReport, ImageId, ImageStore};
use crate::tmp;

impl ImageStore {
    /// Deletes every blob and layer directory not reachable from an image name or from one of
    /// the `in_use` image ids (`sha256:<config digest>` of images that containers use, whose
    /// names may be gone). Layer directories that are part of a mounted overlayfs (seen in
    /// `/proc/self/mountinfo`) are always kept. Waits for imports and pulls in progress (in this
    /// and other processes) to finish first.
    pub fn gc(&self, in_use: &[ImageId]) -> Result<GcReport> {
        let _lock = self.gc_lock(true)?;
        let (keep_blobs, mut keep_layers) = self.reachable(in_use)?;
        keep_layers.extend(mounted_layers(&self.inner.layers));
        let mut report = GcReport::default();

        for (digest, size) in self.inner.content.list()? {
            if !keep_blobs.contains(&digest) {
                self.inner.content.remove(&digest)?;
                report.removed_blobs += 1;
                report.freed_bytes += size;
            }
        }

        let entries = fs::read_dir(&self.inner.layers)
            .map_err(|e| ImageError::io("list", &self.inner.layers, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("list", &self.inner.layers, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if Digest::from_hex(&name).is_none() || keep_layers.contains(&name) {
                continue;
            }
            let path = entry.path();
            let size = tree_size(&path);
            tmp::remove_tree(&path).map_err(|e| ImageError::io("remove", &path, e))?;
            report.removed_layers += 1;
            report.freed_bytes += size;
        }

        report.removed_temporaries = tmp::clean_stale(&self.inner.tmp);
        tracing::info!(
            blobs = report.removed_blobs,
            layers = report.removed_layers,
            freed_bytes = report.freed_bytes,
            "image garbage collection"
        );
        Ok(report)
    }
}

/// Names of layer directories (below `layers`) used as overlayfs lower dirs by current mounts.
fn mounted_layers(layers: &Path) -> BTreeSet<String> {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return BTreeSet::new();
    };
    let prefix = format!("{}/", layers.display());
    let mut mounted = BTreeSet::new();
    for line in mountinfo.lines() {
        // Super options (lowerdir=...) follow the " - fstype source " separator.
        let Some((_, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = tail.split(' ');
        if fields.next() != Some("overlay") {
            continue;
        }
        let options = fields.nth(1).unwrap_or("");
        for option in options.split(',') {
            // `lowerdir=a:b:c` (mount(2)), or one `lowerdir+=a` per layer (fsconfig, Linux 6.8+).
            let Some(dirs) = option
                .strip_prefix("lowerdir=")
                .or_else(|| option.strip_prefix("lowerdir+="))
            else {
                continue;
            };
            for dir in dirs.split(':') {
                if let Some(rest) = dir.strip_prefix(&prefix) {
                    let name = rest.split('/').next().unwrap_or(rest);
                    mounted.insert(name.to_owned());
                }
            }
        }
    }
    mounted
}

/// Bytes of the regular files below `path` (symlinks not followed, hard links counted once).
fn tree_size(path: &Path) -> u64 {
    fn walk(path: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::symlink_metadata(path) else {
            return 0;
        };
        if meta.is_file() {
            let first = meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()));
            return if first { meta.len() } else { 0 };
        }
        if !meta.is_dir() {
            return 0;
        }
        fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| walk(&e.path(), seen)).sum())
            .unwrap_or(0)
    }
    walk(path, &mut std::collections::HashSet::new())
}
