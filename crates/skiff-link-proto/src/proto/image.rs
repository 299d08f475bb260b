//! Image hand-over: a server gives an image it holds to an agent that lacks it, so one import
//! at the server reaches every node of an offline site.
//!
//! 1. Agent → server, on the control stream: [`super::AgentMessage::FetchImage`] (protocol
//!    version [`IMAGE_PROTOCOL_VERSION`] and later only).
//! 2. The server opens a stream whose header is [`super::StreamRequest::Image`] with an
//!    [`ImageOffer`]: the image's manifest (exact bytes and digest), or why it cannot.
//! 3. Agent → server: one [`ImageWant`] frame naming the blobs of that manifest (config,
//!    layers) it lacks, in the order it wants them.
//! 4. Server → agent, per wanted blob: one [`BlobHeader`] frame, then exactly `size` raw bytes;
//!    then the server finishes the stream.
//!
//! The agent trusts nothing it did not check: the manifest must hash to the offered digest,
//! only blobs that manifest lists are sent, each with the size the manifest gives, and the
//! receiving store verifies every blob's digest before it becomes visible.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::frame::FrameError;

/// First protocol version whose agents may ask for images.
pub const IMAGE_PROTOCOL_VERSION: u32 = 2;
/// Largest manifest handed over (the whole offer travels in one header frame).
pub const MAX_MANIFEST_LEN: usize = 1 << 20;
/// Largest single blob accepted.
pub const MAX_BLOB_SIZE: u64 = 16 << 30;
/// Largest image (sum of its config and layers) accepted.
pub const MAX_IMAGE_SIZE: u64 = 32 << 30;
/// Most blobs (config and layers) of one image.
pub const MAX_BLOBS: usize = 512;

/// The server's answer to `FetchImage`: the manifest, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageOffer {
    /// The agent's request number.
    pub request: u64,
    /// The reference asked for.
    pub reference: String,
    /// The single-platform image manifest; `None` when the server cannot hand the image over.
    #[serde(default)]
    pub manifest: Option<OfferedManifest>,
    /// Whether the server simply does not hold the image (as opposed to failing).
    #[serde(default)]
    pub not_found: bool,
    /// Why there is no manifest.
    #[serde(default)]
    pub error: Option<String>,
}

/// A manifest as stored at the server, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferedManifest {
    /// `sha256:<hex>` of `content`.
    pub digest: String,
    /// Its media type (OCI or Docker schema 2 manifest).
    pub media_type: String,
    /// The manifest's JSON text.
    pub content: String,
    /// `registry/repository@sha256:...` the name pointed to where the server got it, if known.
    #[serde(default)]
    pub repo_digest: Option<String>,
}

/// The blobs the agent lacks, in the order it wants them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageWant {
    /// `sha256:<hex>` digests, each listed by the offered manifest.
    pub blobs: Vec<String>,
}

/// Precedes each blob's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BlobHeader {
    /// Exactly `size` bytes of the blob follow.
    Blob {
        /// Its digest.
        digest: String,
        /// Its size.
        size: u64,
    },
    /// The server cannot send the blob; the stream ends.
    Failed {
        /// Why.
        message: String,
    },
}

/// A blob a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes, as the manifest says.
    pub size: u64,
}

/// What is wrong with an image hand-over.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ImageTransferError {
    /// The manifest is not one this protocol hands over.
    #[error("invalid manifest of {reference}: {reason}")]
    BadManifest {
        /// The image.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The manifest's bytes do not hash to the offered digest.
    #[error("manifest of {reference} does not match its digest: offered {expected}, content hashes to {actual}")]
    ManifestDigestMismatch {
        /// The image.
        reference: String,
        /// The offered digest.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A blob, or the whole image, is over the limits.
    #[error("{what} of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The blob or image.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The agent asked for a blob the manifest does not list (or twice).
    #[error("blob {digest} is not part of the offered image (or was asked for twice)")]
    UnknownBlob {
        /// The digest.
        digest: String,
    },
    /// The server sent another blob than the next one wanted, or with another size.
    #[error("expected blob {expected} ({expected_size} bytes), the server sent {actual} ({actual_size} bytes)")]
    UnexpectedBlob {
        /// Wanted digest.
        expected: String,
        /// Its size per the manifest.
        expected_size: u64,
        /// Sent digest.
        actual: String,
        /// Sent size.
        actual_size: u64,
    },
    /// The stream ended inside a blob or before all wanted blobs.
    #[error("the transfer ended early: {0}")]
    Truncated(String),
    /// The server does not have the image or refused.
    #[error("the server cannot hand over {reference}: {message}")]
    Unavailable {
        /// The image.
        reference: String,
        /// Whether it simply does not hold it.
        not_found: bool,
        /// The server's explanation.
        message: String,
    },
    /// The server failed while sending a blob.
    #[error("the server failed to send a blob: {0}")]
    ServerFailed(String),
    /// A frame was malformed or too large.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection or stream failed.
    #[error("image stream: {0}")]
    Stream(String),
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestShape {
    schema_version: Option<u32>,
    config: Option<DescriptorShape>,
    layers: Option<Vec<DescriptorShape>>,
    manifests: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct DescriptorShape {
    digest: String,
    size: i64,
}

impl ImageOffer {
    /// Checks an offer against what was asked for and returns the manifest and its blobs
    /// (config first, then the layers; each once).
    pub fn verify(
        &self,
        reference: &str,
    ) -> Result<(&OfferedManifest, Vec<BlobRef>), ImageTransferError> {
        let Some(manifest) = &self.manifest else {
            return Err(ImageTransferError::Unavailable {
                reference: reference.to_string(),
                not_found: self.not_found,
                message: self
                    .error
                    .clone()
                    .unwrap_or_else(|| "no manifest offered".to_string()),
            });
        };
        if self.reference != reference {
            return Err(ImageTransferError::BadManifest {
                reference: reference.to_string(),
                reason: format!("the server offered {:?} instead", self.reference),
            });
        }
        let actual = sha256_digest(manifest.content.as_bytes());
        if actual != manifest.digest {
            return Err(ImageTransferError::ManifestDigestMismatch {
                reference: reference.to_string(),
                expected: manifest.digest.clone(),
                actual,
            });
        }
        let blobs = manifest_blobs(reference, &manifest.content)?;
        Ok((manifest, blobs))
    }
}

/// The config and layer blobs of a single-platform manifest, each once, checked against the
/// limits.
pub fn manifest_blobs(reference: &str, content: &str) -> Result<Vec<BlobRef>, ImageTransferError> {
    let bad = |reason: String| ImageTransferError::BadManifest {
        reference: reference.to_string(),
        reason,
    };
    if content.len() > MAX_MANIFEST_LEN {
        return Err(bad(format!(
            "{} bytes is over the limit of {MAX_MANIFEST_LEN}",
            content.len()
        )));
    }
    let shape: ManifestShape =
        serde_json::from_str(content).map_err(|e| bad(format!("not a manifest: {e}")))?;
    if shape.schema_version != Some(2) {
        return Err(bad(format!(
            "schemaVersion {:?} is not supported (only 2)",
            shape.schema_version
        )));
    }
    if shape.manifests.is_some() {
        return Err(bad("is an index, not a single-platform manifest".into()));
    }
    let config = shape.config.ok_or_else(|| bad("has no config".into()))?;
    let layers = shape.layers.unwrap_or_default();
    if layers.len() + 1 > MAX_BLOBS {
        return Err(bad(format!(
            "{} layers is over the limit of {}",
            layers.len(),
            MAX_BLOBS - 1
        )));
    }
    let mut blobs: Vec<BlobRef> = Vec::with_capacity(layers.len() + 1);
    let mut total: u64 = 0;
    for (index, descriptor) in std::iter::once(config).chain(layers).enumerate() {
        let what = if index == 0 {
            "config".to_string()
        } else {
            format!("layers[{}]", index - 1)
        };
        if !is_sha256_digest(&descriptor.digest) {
            return Err(bad(format!(
                "{what}.digest {:?} is not a sha256 digest",
                descriptor.digest
            )));
        }
        let size = u64::try_from(descriptor.size)
            .map_err(|_| bad(format!("{what}.size {} is negative", descriptor.size)))?;
        if size > MAX_BLOB_SIZE {
            return Err(ImageTransferError::TooLarge {
                what: format!("{what} ({}) of {reference}", descriptor.digest),
                size,
                max: MAX_BLOB_SIZE,
            });
        }
        if let Some(seen) = blobs.iter().find(|b| b.digest == descriptor.digest) {
            if seen.size != size {
                return Err(bad(format!(
                    "{what}: blob {} is listed with sizes {} and {size}",
                    descriptor.digest, seen.size
                )));
            }
            continue;
        }
        total = total.saturating_add(size);
        blobs.push(BlobRef {
            digest: descriptor.digest,
            size,
        });
    }
    if total > MAX_IMAGE_SIZE {
        return Err(ImageTransferError::TooLarge {
            what: format!("image {reference}"),
            size: total,
            max: MAX_IMAGE_SIZE,
        });
    }
    Ok(blobs)
}

/// Checks what an agent wants against the offered blobs; returns them in the wanted order.
pub fn check_want(
    offered: &[BlobRef],
    want: &ImageWant,
) -> Result<Vec<BlobRef>, ImageTransferError> {
    let mut chosen: Vec<BlobRef> = Vec::with_capacity(want.blobs.len());
    for digest in &want.blobs {
        let blob = offered
            .iter()
            .find(|b| b.digest == *digest)
            .filter(|_| !chosen.iter().any(|c| c.digest == *digest))
            .ok_or_else(|| ImageTransferError::UnknownBlob {
                digest: digest.clone(),
            })?;
        chosen.push(blob.clone());
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest(layers: &[(String, i64)]) -> String {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest('c'), "size": 10},
            "layers": layers.iter().map(|(d, s)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s
            })).collect::<Vec<_>>(),
        })
        .to_string()
    }

    fn offer(content: String) -> ImageOffer {
        ImageOffer {
            request: 1,
            reference: "busybox:1.36".into(),
            manifest: Some(OfferedManifest {
                digest: sha256_digest(content.as_bytes()),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                content,
                repo_digest: None,
            }),
            not_found: false,
            error: None,
        }
    }

    #[test]
    fn offers_round_trip_and_list_config_then_layers_once() {
        let content = manifest(&[(digest('a'), 5), (digest('b'), 7), (digest('a'), 5)]);
        let offer = offer(content);
        let wire =
            super::super::encode(&super::super::StreamRequest::Image(offer.clone()), 1 << 20)
                .unwrap();
        let back: super::super::StreamRequest = super::super::decode(&wire[4..]).unwrap();
        assert_eq!(back, super::super::StreamRequest::Image(offer.clone()));
        let (_, blobs) = offer.verify("busybox:1.36").unwrap();
        let digests: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(digests, [digest('c'), digest('a'), digest('b')]);
        assert_eq!(blobs[2].size, 7);
    }

    #[test]
    fn hostile_offers_are_refused_with_clear_errors() {
        // Content that does not hash to the offered digest.
        let mut tampered = offer(manifest(&[(digest('a'), 5)]));
        tampered.manifest.as_mut().unwrap().content = manifest(&[(digest('b'), 5)]);
        let error = tampered.verify("busybox:1.36").unwrap_err();
        assert!(
            matches!(error, ImageTransferError::ManifestDigestMismatch { .. }),
            "{error}"
        );
        // Another image than asked for.
        let error = offer(manifest(&[])).verify("nginx:1").unwrap_err();
        assert!(
            error.to_string().contains("offered \"busybox:1.36\""),
            "{error}"
        );
        // Oversized, negative, malformed digests, indexes.
        let error = offer(manifest(&[(digest('a'), (MAX_BLOB_SIZE + 1) as i64)]))
            .verify("busybox:1.36")
            .unwrap_err();
        assert!(
            matches!(error, ImageTransferError::TooLarge { .. }),
            "{error}"
        );
        let error = offer(manifest(&[(digest('a'), -1)]))
            .verify("busybox:1.36")
            .unwrap_err();
        assert!(
            error.to_string().contains("layers[0].size -1 is negative"),
            "{error}"
        );
        let error = offer(manifest(&[("sha256:../../etc/passwd".into(), 1)]))
            .verify("busybox:1.36")
            .unwrap_err();
        assert!(error.to_string().contains("layers[0].digest"), "{error}");
        let index = serde_json::json!({"schemaVersion": 2, "manifests": []}).to_string();
        let error = offer(index).verify("busybox:1.36").unwrap_err();
        assert!(error.to_string().contains("is an index"), "{error}");
        let many: Vec<(String, i64)> = (0..MAX_BLOBS)
            .map(|i| (format!("sha256:{i:064x}"), 1))
            .collect();
        let error = offer(manifest(&many)).verify("busybox:1.36").unwrap_err();
        assert!(error.to_string().contains("over the limit"), "{error}");
        // No manifest: the server's reason.
        let missing = ImageOffer {
            manifest: None,
            not_found: true,
            error: Some("no image busybox:1.36 at the server".into()),
            ..offer(String::new())
        };
        let error = missing.verify("busybox:1.36").unwrap_err();
        assert!(
            matches!(
                error,
                ImageTransferError::Unavailable {
                    not_found: true,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn wants_must_be_listed_blobs_each_once() {
        let offered = vec![
            BlobRef {
                digest: digest('c'),
                size: 1,
            },
            BlobRef {
                digest: digest('a'),
                size: 2,
            },
        ];
        let want = ImageWant {
            blobs: vec![digest('a'), digest('c')],
        };
        let chosen = check_want(&offered, &want).unwrap();
        assert_eq!(chosen[0].size, 2);
        for bad in [vec![digest('f')], vec![digest('a'), digest('a')]] {
            let error = check_want(&offered, &ImageWant { blobs: bad }).unwrap_err();
            assert!(
                matches!(error, ImageTransferError::UnknownBlob { .. }),
                "{error}"
            );
        }
        assert!(check_want(&offered, &ImageWant::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn blob_headers_are_tagged() {
        let header = BlobHeader::Blob {
            digest: digest('a'),
            size: 3,
        };
        let text = serde_json::to_string(&header).unwrap();
        assert!(text.starts_with(r#"{"type":"blob""#), "{text}");
        assert_eq!(serde_json::from_str::<BlobHeader>(&text).unwrap(), header);
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
