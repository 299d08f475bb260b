//! The crate's error type: every variant names the object it is about (image, blob, layer entry,
//! archive, registry) so a user can act on the message.

use std::path::PathBuf;

use thiserror::Error;

use crate::unpack::UnsafeEntry;

/// Everything that can go wrong in the image store.
#[derive(Debug, Error)]
pub enum ImageError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image reference does not follow Docker's syntax.
    #[error("invalid image reference {reference:?}: {source}")]
    InvalidReference {
        reference: String,
        #[source]
        source: oci_spec::distribution::ParseError,
    },
    /// A digest is malformed or uses an algorithm other than sha256.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
    /// No image in the store has this name, id or digest.
    #[error("image {reference} not found")]
    NotFound { reference: String },
    /// A short image id matches several images.
    #[error("image id prefix {prefix} is ambiguous: it matches {count} images")]
    AmbiguousId { prefix: String, count: usize },
    /// Content read or received does not hash to its digest.
    #[error("{what}: content does not match its digest (expected {expected}, got {actual})")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content is larger or smaller than its descriptor says.
    #[error("{what}: size mismatch (expected {expected} bytes, got {actual})")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A blob the image needs is not in the store (or not in the archive being imported).
    #[error("blob {digest} ({what}) is missing")]
    BlobMissing { digest: String, what: String },
    /// A JSON document (manifest, index, config, archive metadata) does not parse.
    #[error("{what} is not valid: {source}")]
    InvalidJson {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest, index or config is well-formed JSON but unusable.
    #[error("{what}: {reason}")]
    InvalidImage { what: String, reason: String },
    /// A manifest or index has a media type skiff does not handle.
    #[error("{what}: unsupported media type {media_type}")]
    UnsupportedMediaType { what: String, media_type: String },
    /// A multi-platform image has no entry for this machine.
    #[error("{what}: no image for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        what: String,
        platform: String,
        available: String,
    },
    /// An archive given to `import` is not an OCI layout or docker-save archive, or is broken.
    #[error("archive {}: {reason}", archive.display())]
    InvalidArchive { archive: PathBuf, reason: String },
    /// A layer entry is hostile or breaks the unpack policy; nothing of the layer was kept.
    #[error("layer {layer}: entry {entry:?} refused: {reason}")]
    UnsafeLayerEntry {
        layer: String,
        entry: String,
        reason: UnsafeEntry,
    },
    /// A layer exceeds a size or count limit (decompression bombs, absurd sizes).
    #[error("layer {layer}: {reason}")]
    LayerLimit { layer: String, reason: String },
    /// A layer could not be read or written while unpacking.
    #[error("layer {layer}: entry {entry:?}: cannot {action}: {source}")]
    Unpack {
        layer: String,
        entry: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The layer would not fit on the disk of the image store; nothing of it was kept.
    #[error("no space left for layer {layer} (needs {needs}, free {free})")]
    NoSpace {
        layer: String,
        needs: u64,
        free: u64,
    },
    /// The layer stream is not a valid (compressed) tar archive.
    #[error("layer {layer}: not a valid tar stream: {source}")]
    CorruptLayer {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    /// The registry configuration is unusable (unreadable CA file, bad YAML, bad endpoint).
    #[error("registry configuration: {reason}")]
    RegistryConfig { reason: String },
    /// A registry request failed.
    #[error("registry {registry}: {operation}: {source}")]
    Registry {
        registry: String,
        operation: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// Every endpoint of a registry (mirrors, then the registry itself) failed.
    #[error("cannot pull {reference}: {}", errors.join("; "))]
    PullFailed {
        reference: String,
        errors: Vec<String>,
    },
    /// A background task (blocking unpack thread) died.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ImageError {
    /// Wraps an IO error with the action and path it happened on.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`ImageError::InvalidImage`].
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::InvalidImage {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Short for `Result<T, ImageError>`.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
