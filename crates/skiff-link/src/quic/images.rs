//! Image hand-over streams ([`crate::proto::image`]): the server side sends an image from an
//! [`ImageSource`]; the agent side receives the offer ([`ImageDownload`]), says which blobs it
//! lacks and reads them ([`BlobReceiver`]). Neither side knows how images are stored.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::streams::LogReader;
use super::LinkError;
use crate::proto::image::{
    check_want, manifest_blobs, BlobHeader, BlobRef, ImageOffer, ImageTransferError, ImageWant,
    OfferedManifest, MAX_MANIFEST_LEN,
};
use crate::proto::{decode, encode, FrameDecoder, StreamRequest};

/// Largest `ImageWant` or `BlobHeader` frame.
const MAX_CONTROL_FRAME: usize = 256 * 1024;
/// Largest offer frame (the manifest and a little more).
pub(crate) const MAX_OFFER_FRAME: usize = MAX_MANIFEST_LEN + 64 * 1024;
/// Bytes read from the stream at once.
const CHUNK: usize = 256 * 1024;
/// Progress is logged every this many bytes.
const PROGRESS_EVERY: u64 = 32 << 20;
/// Error code sent when an image stream is abandoned.
const IMAGE_ABORTED: u32 = 2;

/// A boxed future for the [`ImageSource`] trait.
pub type ImageFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a server finds the images it hands over (the binary implements it over the server's
/// image store).
pub trait ImageSource: Send + Sync + std::fmt::Debug + 'static {
    /// The single-platform manifest `reference` names, byte for byte; `Ok(None)` if the server
    /// does not hold the image.
    fn manifest<'a>(
        &'a self,
        reference: &'a str,
    ) -> ImageFuture<'a, Result<Option<OfferedManifest>, String>>;

    /// Opens a blob (`sha256:<hex>`): its size and its bytes.
    fn open_blob<'a>(
        &'a self,
        digest: &'a str,
    ) -> ImageFuture<'a, Result<(u64, LogReader), String>>;
}

/// What a hand-over sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImageSent {
    /// Whether a manifest was offered (false: the server does not hold the image).
    pub offered: bool,
    /// Blobs sent (the agent had the others).
    pub blobs: usize,
    /// Bytes of blobs sent.
    pub bytes: u64,
}

fn stream_error(error: impl std::fmt::Display) -> ImageTransferError {
    ImageTransferError::Stream(error.to_string())
}

/// Reads one length-prefixed frame of at most `max` bytes from `buffer` and `recv`.
async fn read_frame(
    recv: &mut quinn::RecvStream,
    buffer: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, ImageTransferError> {
    let mut decoder = FrameDecoder::new(max);
    decoder.push(buffer);
    buffer.clear();
    loop {
        if let Some(frame) = decoder.next_frame()? {
            buffer.extend_from_slice(&decoder.into_remaining());
            return Ok(Some(frame));
        }
        match recv.read_chunk(CHUNK, true).await.map_err(stream_error)? {
            Some(chunk) => decoder.push(&chunk.bytes),
            None if decoder.buffered() == 0 => return Ok(None),
            None => {
                return Err(ImageTransferError::Truncated(
                    "the stream ended inside a frame".into(),
                ))
            }
        }
    }
}

/// Server side: answers `FetchImage { request, reference }` by opening an image stream on
/// `connection` and sending what the agent lacks from `source`.
pub(crate) async fn send_image(
    connection: &quinn::Connection,
    node: &str,
    request: u64,
    reference: String,
    source: Option<&dyn ImageSource>,
) -> Result<ImageSent, ImageTransferError> {
    let mut offer = ImageOffer {
        request,
        reference: reference.clone(),
        manifest: None,
        not_found: false,
        error: None,
    };
    let mut blobs = Vec::new();
    match source {
        None => offer.error = Some("this server hands no images over".into()),
        Some(source) => match source.manifest(&reference).await {
            Ok(Some(manifest)) => match manifest_blobs(&reference, &manifest.content) {
                Ok(listed) => {
                    blobs = listed;
                    offer.manifest = Some(manifest);
                }
                Err(error) => offer.error = Some(error.to_string()),
            },
            Ok(None) => {
                offer.not_found = true;
                offer.error = Some(format!("the server holds no image {reference:?}"));
            }
            Err(message) => offer.error = Some(message),
        },
    }
    let (mut send, mut recv) = connection.open_bi().await.map_err(stream_error)?;
    let header = encode(&StreamRequest::Image(offer.clone()), MAX_OFFER_FRAME)?;
    send.write_all(&header).await.map_err(stream_error)?;
    if offer.manifest.is_none() {
        let _ = send.finish();
        tracing::info!(%node, image = %reference, reason = offer.error.as_deref().unwrap_or(""), "cannot hand the image over");
        return Ok(ImageSent::default());
    }
    let mut buffer = BytesMut::new();
    let want = match read_frame(&mut recv, &mut buffer, MAX_CONTROL_FRAME).await? {
        Some(frame) => decode::<ImageWant>(&frame)?,
        None => {
            return Err(ImageTransferError::Truncated(
                "the node sent no blob list".into(),
            ))
        }
    };
    let wanted = match check_want(&blobs, &want) {
        Ok(wanted) => wanted,
        Err(error) => {
            let _ = send.reset(IMAGE_ABORTED.into());
            return Err(error);
        }
    };
    let Some(source) = source else {
        return Ok(ImageSent::default());
    };
    let total: u64 = wanted.iter().map(|b| b.size).sum();
    tracing::info!(%node, image = %reference, blobs = wanted.len(), of = blobs.len(), bytes = total, "handing the image over");
    let started = Instant::now();
    let mut sent = ImageSent {
        offered: true,
        ..ImageSent::default()
    };
    let mut next_report = PROGRESS_EVERY;
    let mut buf = vec![0u8; CHUNK];
    for blob in &wanted {
        let (size, reader) = match source.open_blob(&blob.digest).await {
            Ok(opened) => opened,
            Err(message) => return fail_blob(send, message).await,
        };
        if size != blob.size {
            let message = format!(
                "blob {} is {size} bytes in the server's store, the manifest says {}",
                blob.digest, blob.size
            );
            return fail_blob(send, message).await;
        }
        let header = encode(
            &BlobHeader::Blob {
                digest: blob.digest.clone(),
                size,
            },
            MAX_CONTROL_FRAME,
        )?;
        send.write_all(&header).await.map_err(stream_error)?;
        let mut reader = reader.take(size);
        let mut copied = 0u64;
        loop {
            let n = reader.read(&mut buf).await.map_err(stream_error)?;
            if n == 0 {
                break;
            }
            send.write_all(&buf[..n]).await.map_err(stream_error)?;
            copied += n as u64;
            sent.bytes += n as u64;
            if sent.bytes >= next_report {
                next_report += PROGRESS_EVERY;
                tracing::info!(%node, image = %reference, bytes = sent.bytes, total, "handing the image over");
            }
        }
        if copied != size {
            // The agent cannot tell a short blob from a slow one: abort the stream.
            let _ = send.reset(IMAGE_ABORTED.into());
            return Err(ImageTransferError::Truncated(format!(
                "blob {} ended after {copied} of {size} bytes in the server's store",
                blob.digest
            )));
        }
        sent.blobs += 1;
    }
    let _ = send.finish();
    // Wait until the node has read everything (or gone), so callers see the real outcome.
    let _ = send.stopped().await;
    tracing::info!(%node, image = %reference, blobs = sent.blobs, bytes = sent.bytes, elapsed_ms = started.elapsed().as_millis() as u64, "image handed over");
    Ok(sent)
}

async fn fail_blob(
    mut send: quinn::SendStream,
    message: String,
) -> Result<ImageSent, ImageTransferError> {
    if let Ok(frame) = encode(
        &BlobHeader::Failed {
            message: message.clone(),
        },
        MAX_CONTROL_FRAME,
    ) {
        let _ = send.write_all(&frame).await;
    }
    let _ = send.finish();
    Err(ImageTransferError::ServerFailed(message))
}

/// Agent side: image requests waiting for the server's stream, by request number.
#[derive(Default)]
pub(crate) struct ImageWaiters {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<ImageDownload, LinkError>>>>,
}

impl ImageWaiters {
    pub(crate) fn insert(
        &self,
        request: u64,
        reply: oneshot::Sender<Result<ImageDownload, LinkError>>,
    ) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        // Forget requests whose caller gave up.
        waiting.retain(|_, reply| !reply.is_closed());
        waiting.insert(request, reply);
    }

    /// Fails every waiting request (the session ended).
    pub(crate) fn fail_all(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for (_, reply) in waiting.drain() {
            let _ = reply.send(Err(LinkError::NotConnected));
        }
    }

    /// Hands a server's image stream to the request it answers.
    pub(crate) fn deliver(
        &self,
        offer: ImageOffer,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        leftover: Bytes,
    ) {
        let reply = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&offer.request);
        match reply {
            Some(reply) => {
                let download = ImageDownload {
                    offer,
                    send,
                    recv,
                    buffer: BytesMut::from(&leftover[..]),
                };
                let _ = reply.send(Ok(download));
            }
            None => {
                tracing::debug!(
                    request = offer.request,
                    "image stream for no waiting request"
                );
                let _ = recv.stop(IMAGE_ABORTED.into());
            }
        }
    }
}

pub(crate) type SharedImageWaiters = Arc<ImageWaiters>;

/// An image the server offers (agent side): check [`ImageDownload::offer`] (see
/// [`ImageOffer::verify`]), then ask for the blobs missing locally with
/// [`ImageDownload::request`].
pub struct ImageDownload {
    offer: ImageOffer,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buffer: BytesMut,
}

impl std::fmt::Debug for ImageDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDownload")
            .field("offer", &self.offer)
            .finish_non_exhaustive()
    }
}

impl ImageDownload {
    /// The server's offer.
    pub fn offer(&self) -> &ImageOffer {
        &self.offer
    }

    /// Asks for `wanted` (blobs of the offered manifest, as [`ImageOffer::verify`] lists them);
    /// the receiver yields them in this order.
    pub async fn request(
        mut self,
        wanted: Vec<BlobRef>,
    ) -> Result<BlobReceiver, ImageTransferError> {
        let want = ImageWant {
            blobs: wanted.iter().map(|b| b.digest.clone()).collect(),
        };
        let frame = encode(&want, MAX_CONTROL_FRAME)?;
        self.send.write_all(&frame).await.map_err(stream_error)?;
        let _ = self.send.finish();
        Ok(BlobReceiver {
            recv: self.recv,
            buffer: self.buffer,
            queue: wanted.into(),
            remaining: 0,
            current: None,
        })
    }
}

/// The blobs of an image as they arrive (agent side). For each blob: [`BlobReceiver::next_blob`],
/// then [`BlobReceiver::next_chunk`] until `None`. The bytes are exactly as many as the manifest
/// says; whether they hash to the digest is for the receiving store to check.
pub struct BlobReceiver {
    recv: quinn::RecvStream,
    buffer: BytesMut,
    queue: VecDeque<BlobRef>,
    remaining: u64,
    current: Option<BlobRef>,
}

impl std::fmt::Debug for BlobReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReceiver")
            .field("current", &self.current)
            .field("remaining", &self.remaining)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl BlobReceiver {
    /// Starts the next wanted blob; `None` once all arrived.
    pub async fn next_blob(&mut self) -> Result<Option<BlobRef>, ImageTransferError> {
        if self.remaining > 0 {
            return Err(ImageTransferError::Stream(format!(
                "{} bytes of the previous blob were not read",
                self.remaining
            )));
        }
        let Some(expected) = self.queue.pop_front() else {
            let _ = self.recv.stop(0u32.into());
            return Ok(None);
        };
        let frame = read_frame(&mut self.recv, &mut self.buffer, MAX_CONTROL_FRAME)
            .await?
            .ok_or_else(|| {
                ImageTransferError::Truncated(format!(
                    "the server ended the stream before blob {}",
                    expected.digest
                ))
            })?;
        match decode::<BlobHeader>(&frame)? {
            BlobHeader::Blob { digest, size } => {
                if digest != expected.digest || size != expected.size {
                    return Err(ImageTransferError::UnexpectedBlob {
                        expected: expected.digest,
                        expected_size: expected.size,
                        actual: digest,
                        actual_size: size,
                    });
                }
                self.remaining = size;
                self.current = Some(expected.clone());
                Ok(Some(expected))
            }
            BlobHeader::Failed { message } => Err(ImageTransferError::ServerFailed(message)),
        }
    }

    /// The next piece of the current blob; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ImageTransferError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let limit = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        if !self.buffer.is_empty() {
            let n = self.buffer.len().min(limit);
            let piece = self.buffer.split_to(n).freeze();
            self.remaining -= n as u64;
            return Ok(Some(piece));
        }
        match self
            .recv
            .read_chunk(limit.min(CHUNK), true)
            .await
            .map_err(stream_error)?
        {
            Some(chunk) => {
                let mut bytes = chunk.bytes;
                if bytes.len() > limit {
                    // Cannot happen (read_chunk honours the limit); keep the rest anyway.
                    self.buffer.extend_from_slice(&bytes.split_off(limit));
                }
                self.remaining -= bytes.len() as u64;
                Ok(Some(bytes))
            }
            None => Err(ImageTransferError::Truncated(format!(
                "blob {} is missing its last {} bytes",
                self.current
                    .as_ref()
                    .map(|b| b.digest.as_str())
                    .unwrap_or("?"),
                self.remaining
            ))),
        }
    }
}
