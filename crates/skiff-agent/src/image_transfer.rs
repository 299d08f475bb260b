//! Image hand-over over the node link, the agent's end: [`LinkImages`] fetches an image from
//! the server into this node's store, asking only for the blobs it lacks and verifying every
//! byte (the store checks sizes and digests before anything becomes visible). The server's end
//! (serving its store's images) is in the binary, where server and node crates meet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use skiff_image::{Digest, ImageInfo, ImageStore, LogProgress};
use skiff_link::proto::image::BlobRef;
use skiff_link::quic::AgentLink;
use tokio::sync::OnceCell;

use crate::images::ImageOrigin;

/// How long the server may take to offer an image.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Progress is logged every this many bytes.
const PROGRESS_EVERY: u64 = 32 << 20;

/// Fetches images from the server over the link, once the link is up (agent side).
#[derive(Debug)]
pub struct LinkImages {
    link: Arc<OnceCell<Arc<AgentLink>>>,
}

impl LinkImages {
    /// Fetches through the link `link` will hold.
    pub fn new(link: Arc<OnceCell<Arc<AgentLink>>>) -> Self {
        LinkImages { link }
    }
}

impl ImageOrigin for LinkImages {
    fn fetch<'a>(
        &'a self,
        store: &'a ImageStore,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<ImageInfo, String>> {
        Box::pin(async move {
            let link = self
                .link
                .get()
                .ok_or_else(|| "the link to the server is not started".to_string())?;
            fetch(link, store, reference).await
        })
    }
}

/// Fetches `reference` from the server into `store`.
pub async fn fetch(
    link: &AgentLink,
    store: &ImageStore,
    reference: &str,
) -> Result<ImageInfo, String> {
    let started = Instant::now();
    let download = link
        .fetch_image(reference, OFFER_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let manifest = {
        let (manifest, _) = download
            .offer()
            .verify(reference)
            .map_err(|e| e.to_string())?;
        manifest.clone()
    };
    let receiving = {
        let store = store.clone();
        let name = reference.to_string();
        tokio::task::spawn_blocking(move || {
            store.receive(
                &name,
                &manifest.digest,
                &manifest.media_type,
                manifest.content.as_bytes(),
                manifest.repo_digest.clone(),
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
    };
    let wanted: Vec<BlobRef> = receiving
        .missing()
        .into_iter()
        .map(|(digest, size)| BlobRef {
            digest: digest.to_string(),
            size,
        })
        .collect();
    let total: u64 = wanted.iter().map(|b| b.size).sum();
    tracing::info!(
        image = reference,
        blobs = wanted.len(),
        bytes = total,
        "fetching the image from the server"
    );
    let mut receiver = download.request(wanted).await.map_err(|e| e.to_string())?;
    let mut received = 0u64;
    let mut next_report = PROGRESS_EVERY;
    while let Some(blob) = receiver.next_blob().await.map_err(|e| e.to_string())? {
        let digest = Digest::parse(&blob.digest).map_err(|e| e.to_string())?;
        let incoming = receiving.blob(&digest).map_err(|e| e.to_string())?;
        // File writes happen on a blocking thread, fed through a small queue.
        let (chunks, mut queue) = tokio::sync::mpsc::channel::<Bytes>(8);
        let writer = tokio::task::spawn_blocking(move || {
            let mut incoming = incoming;
            while let Some(chunk) = queue.blocking_recv() {
                incoming.write(&chunk)?;
            }
            incoming.commit()
        });
        let mut failure = None;
        loop {
            match receiver.next_chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    if received >= next_report {
                        next_report += PROGRESS_EVERY;
                        tracing::info!(
                            image = reference,
                            bytes = received,
                            total,
                            "fetching the image from the server"
                        );
                    }
                    if chunks.send(chunk).await.is_err() {
                        break; // the writer refused the bytes; its error says why
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    failure = Some(error.to_string());
                    break;
                }
            }
        }
        drop(chunks);
        let written = writer.await.map_err(|e| e.to_string())?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        written.map_err(|e| e.to_string())?;
    }
    let store_name = reference.to_string();
    let info = tokio::task::spawn_blocking(move || receiving.finish(&LogProgress))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!(image = %store_name, id = %info.id, bytes = received, elapsed_ms = started.elapsed().as_millis() as u64, "image fetched from the server");
    Ok(info)
}
