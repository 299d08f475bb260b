//! The server side of the image hand-over: `skiff server` serves the images of its own store
//! (the one `skiff image import --data-dir DIR` fills) to agents that lack them.
//!
//! It lives in the binary because the binary is where the two sides meet: the image store is a
//! node-side crate (`skiff-image`), which `skiff-server` may not depend on, and the link's
//! [`ImageSource`] keeps the protocol free of any store.

use skiff_image::{Digest, ImageStore};
use skiff_link::proto::image::OfferedManifest;
use skiff_link::quic::{ImageFuture, ImageSource, LogReader};

/// Serves a store's images to agents.
#[derive(Debug, Clone)]
pub(crate) struct StoreImages {
    store: ImageStore,
}

impl StoreImages {
    /// Serves the images of `store`.
    pub(crate) fn new(store: ImageStore) -> Self {
        StoreImages { store }
    }
}

impl ImageSource for StoreImages {
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> ImageFuture<'a, Result<Option<OfferedManifest>, String>> {
        Box::pin(async move {
            let store = self.store.clone();
            let name = reference.to_string();
            let exported = tokio::task::spawn_blocking(move || store.export(&name))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot read image {reference:?} at the server: {e}"))?;
            let Some(exported) = exported else {
                return Ok(None);
            };
            let content = String::from_utf8(exported.manifest).map_err(|_| {
                format!("the manifest of {reference:?} at the server is not UTF-8 JSON")
            })?;
            Ok(Some(OfferedManifest {
                digest: exported.manifest_digest.to_string(),
                media_type: exported.media_type,
                content,
                repo_digest: exported.repo_digest,
            }))
        })
    }

    fn open_blob<'a>(
        &'a self,
        digest: &'a str,
    ) -> ImageFuture<'a, Result<(u64, LogReader), String>> {
        Box::pin(async move {
            let parsed = Digest::parse(digest).map_err(|e| e.to_string())?;
            let store = self.store.clone();
            let (size, file) = tokio::task::spawn_blocking(move || store.open_blob(&parsed))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok((size, Box::new(tokio::fs::File::from_std(file)) as LogReader))
        })
    }
}
