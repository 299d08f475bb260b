//! Parsing of manifests, indexes and configs (OCI and Docker schema 2), and platform selection.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ImageError, Result};

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer.
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Largest manifest, index or config accepted.
pub(crate) const MAX_METADATA_BYTES: u64 = 16 << 20;

/// A manifest document: a single-platform image or an index of them.
#[derive(Debug, Clone)]
pub(crate) enum Manifest {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
}

/// Parses a manifest or index, recognising it by `mediaType` or, when absent (allowed by OCI),
/// by its fields. `what` names the document in errors.
pub(crate) fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest> {
    let json_error = |source| ImageError::InvalidJson {
        what: what.to_owned(),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(json_error)?;
    if probe.schema_version != Some(2) {
        return Err(ImageError::invalid(
            what,
            format!(
                "schema version {:?} is not supported (only 2)",
                probe.schema_version
            ),
        ));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(ImageError::UnsupportedMediaType {
                what: what.to_owned(),
                media_type: other.to_owned(),
            })
        }
        None => probe.manifests.is_some() && probe.layers.is_none(),
    };
    if is_index {
        Ok(Manifest::Index(
            serde_json::from_slice(bytes).map_err(json_error)?,
        ))
    } else {
        Ok(Manifest::Image(
            serde_json::from_slice(bytes).map_err(json_error)?,
        ))
    }
}

/// Parses an image config (OCI or Docker).
pub(crate) fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::InvalidJson {
        what: what.to_owned(),
        source,
    })
}

/// The config's layer diff ids, bottom first.
pub(crate) fn diff_ids(config: &ImageConfiguration, what: &str) -> Result<Vec<Digest>> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            Digest::parse(d).map_err(|e| ImageError::invalid(what, format!("rootfs.diff_ids: {e}")))
        })
        .collect()
}

/// Checks that a manifest and its config agree and returns the layer descriptors' digests.
pub(crate) fn layer_digests(
    manifest: &ImageManifest,
    diff_ids: &[Digest],
    what: &str,
) -> Result<Vec<Digest>> {
    if manifest.layers().len() != diff_ids.len() {
        return Err(ImageError::invalid(
            what,
            format!(
                "manifest lists {} layers but the config has {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    manifest
        .layers()
        .iter()
        .map(|layer| {
            let media_type = layer.media_type().to_string();
            if media_type.contains("foreign") || media_type.contains("nondistributable") {
                return Err(ImageError::UnsupportedMediaType {
                    what: format!("{what} layer {}", layer.digest()),
                    media_type,
                });
            }
            Digest::try_from(layer.digest())
        })
        .collect()
}

/// The platform this process runs on, in OCI terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH name: `amd64`, `arm64`, `arm`, ...
    pub architecture: String,
    /// CPU variant when it matters (`v8` for arm64, `v7` for arm).
    pub variant: Option<String>,
}

impl Platform {
    /// The current machine.
    pub fn current() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_owned),
        }
    }

    /// How well a descriptor's platform fits: `None` when it does not run here, higher is better.
    fn score(&self, platform: &oci_spec::image::Platform) -> Option<u8> {
        if platform.os().to_string() != self.os
            || platform.architecture().to_string() != self.architecture
        {
            return None;
        }
        match (platform.variant().as_deref(), self.variant.as_deref()) {
            (None, _) => Some(1),
            (Some(theirs), Some(ours)) if theirs == ours => Some(2),
            // Older ARM variants run on newer cores (v6 code on a v7 machine).
            (Some(theirs), Some(ours)) if self.architecture == "arm" && theirs < ours => Some(0),
            _ => None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Picks the entry of a multi-platform index that runs on `platform`.
pub(crate) fn select_platform<'a>(
    manifests: &'a [Descriptor],
    platform: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let best = manifests
        .iter()
        .filter_map(|d| {
            d.platform()
                .as_ref()
                .and_then(|p| platform.score(p))
                .map(|s| (s, d))
        })
        .max_by_key(|(score, _)| *score)
        .map(|(_, d)| d);
    if let Some(descriptor) = best {
        return Ok(descriptor);
    }
    // An index with one entry and no platform information is a plain image.
    if let [only] = manifests {
        if only.platform().is_none() {
            return Ok(only);
        }
    }
    let available: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            let mut text = format!("{}/{}", p.os(), p.architecture());
            if let Some(variant) = p.variant() {
                text = format!("{text}/{variant}");
            }
            text
        })
        .collect();
    Err(ImageError::NoMatchingPlatform {
        what: what.to_owned(),
        platform: platform.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        let json =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        match parse_manifest(json.to_string().as_bytes(), "test index").unwrap() {
            Manifest::Index(index) => *index,
            Manifest::Image(_) => panic!("parsed as an image"),
        }
    }

    #[test]
    fn selects_the_current_platform() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let arm64 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let idx = index(&[
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("windows", "amd64", None),
        ]);
        let pick = |p: &Platform| {
            select_platform(idx.manifests(), p, "x")
                .unwrap()
                .digest()
                .to_string()
        };
        assert!(pick(&amd64).starts_with("sha256:2222"));
        assert!(pick(&arm64).starts_with("sha256:1111"));

        let only_arm = index(&[("linux", "arm", Some("v7"))]);
        let error = select_platform(only_arm.manifests(), &amd64, "busybox")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("linux/amd64") && error.contains("linux/arm/v7"),
            "{error}"
        );
    }

    #[test]
    fn recognises_documents_and_refuses_schema_1() {
        let image = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
            "layers": []
        });
        assert!(matches!(
            parse_manifest(image.to_string().as_bytes(), "m").unwrap(),
            Manifest::Image(_)
        ));
        let v1 = serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []});
        let error = parse_manifest(v1.to_string().as_bytes(), "old manifest")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("old manifest") && error.contains("schema version"),
            "{error}"
        );
        let helm =
            serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.cncf.helm.chart"});
        assert!(matches!(
            parse_manifest(helm.to_string().as_bytes(), "chart").unwrap_err(),
            ImageError::UnsupportedMediaType { .. }
        ));
    }
}
