//! The node's image store: an OCI-layout content store (blobs by sha256, verified on write and
//! on read), Docker-style reference normalization, import of OCI and docker-save archives,
//! registry pulls through `oci-client`, safe layer unpacking into per-layer directories that
//! overlayfs stacks directly, and garbage collection.
//!
//! ```no_run
//! # fn main() -> Result<(), skiff_image::ImageError> {
//! use skiff_image::{ImageStore, NoProgress};
//! let store = ImageStore::open(&skiff_image::store_root("/var/lib/skiff".as_ref()))?;
//! store.import_archive("busybox.tar".as_ref(), &NoProgress)?;
//! let image = store.resolve("busybox")?.expect("imported");
//! println!("{} {} layers={:?}", image.reference, image.id, image.layers);
//! # Ok(()) }
//! ```
//!
//! Knows nothing of pods: the runtime mounts [`ImageInfo::layers`] as overlayfs lower dirs
//! with an upper dir of its own per container.

mod archive;
mod content;
mod digest;
mod error;
mod gc;
mod index;
mod manifest;
mod progress;
mod reference;
mod registry;
mod singleflight;
mod space;
mod store;
mod tmp;
mod transfer;
pub mod unpack;

pub use digest::Digest;
pub use error::{ImageError, Result};
pub use manifest::Platform;
pub use progress::{LogProgress, NoProgress, Progress};
pub use reference::Reference;
pub use registry::{
    AuthConfig, Endpoint, HostConfig, MirrorConfig, RegistryConfig, TlsConfig,
    DEFAULT_REGISTRY_CONFIG,
};
pub use store::{
    store_root, GcReport, ImageId, ImageInfo, ImageStore, ImageSummary, StoreOptions, STORE_DIR,
};
pub use transfer::{ExportedImage, IncomingBlob, Receiving};
pub use unpack::{DevicePolicy, SetidPolicy, UnpackPolicy, UnsafeEntry};
