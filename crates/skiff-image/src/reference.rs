//! Image references, normalized as Docker does: `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::ImageError;

/// A normalized image reference: registry, repository, and a tag and/or a digest.
///
/// Parsing follows Docker (distribution/reference): the first path component is a registry when
/// it contains `.` or `:` or is `localhost`; `docker.io` (also spelled `index.docker.io`) is the
/// default registry and single-component Docker Hub names get `library/`; a reference with
/// neither tag nor digest gets the tag `latest`. Only sha256 digests are accepted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes `text`.
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let parsed: oci_spec::distribution::Reference =
            text.parse()
                .map_err(|source| ImageError::InvalidReference {
                    reference: text.to_owned(),
                    source,
                })?;
        // A first component without `.`/`:` is part of the repository, which Docker requires to
        // be lowercase (the parser let it through as a possible registry host).
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImageError::InvalidReference {
                reference: text.to_owned(),
                source: oci_spec::distribution::ParseError::NameContainsUppercase,
            });
        }
        let digest = parsed.digest().map(Digest::parse).transpose()?;
        Ok(Reference {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag: parsed.tag().map(str::to_owned),
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest` (no tag): `registry/repository@digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Reference {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Self, ImageError> {
        Reference::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[test]
    fn normalizes_as_docker_does() {
        for (input, normalized) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("docker.io/rancher/k3s:v1", "docker.io/rancher/k3s:v1"),
            ("localhost/app", "localhost/app:latest"),
            (
                "127.0.0.1:5000/test/busybox:v2",
                "127.0.0.1:5000/test/busybox:v2",
            ),
            ("ghcr.io/a/b/c", "ghcr.io/a/b/c:latest"),
        ] {
            assert_eq!(
                Reference::parse(input).unwrap().to_string(),
                normalized,
                "{input}"
            );
        }
        let pinned = Reference::parse(&format!("busybox@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.digest().unwrap().hex(), HEX);
        assert_eq!(pinned.name(), "docker.io/library/busybox");
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
    }

    #[test]
    fn refuses_malformed_references_naming_them() {
        for bad in [
            "",
            "UPPER/case",
            "busybox:",
            "busybox@sha256:abc",
            "bad..name",
            ":tag",
            "busybox:a/b",
        ] {
            let error = Reference::parse(bad).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
        let sha512 = format!("busybox@sha512:{HEX}{HEX}");
        assert!(Reference::parse(&sha512).is_err());
    }
}
