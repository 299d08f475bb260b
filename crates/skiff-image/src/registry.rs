//! Registry configuration (modelled on k3s' `registries.yaml`) and pulling images with
//! `oci-client`.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.example.com:5000", "http://10.0.0.1:5000"]
//!   "*":                               # mirrors for every registry
//!     endpoint: ["https://cache.example.com"]
//! configs:
//!   mirror.example.com:5000:           # keyed by registry or endpoint host
//!     auth: {username: robot, password: secret}   # or `auth: <base64 user:pass>`, or identity_token
//!     tls: {ca_file: /etc/ssl/my-ca.pem, insecure_skip_verify: false}
//!   10.0.0.1:5000:
//!     insecure: true                   # plain HTTP
//! ```
//!
//! Endpoints are tried in order (mirrors, then the registry itself); the first that serves the
//! image wins. Authentication: anonymous, HTTP basic, and bearer tokens (the registry's token
//! service is asked with the basic credentials, or an identity token is sent as is). TLS uses
//! the system roots plus `ca_file`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, ImageManifest};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::{
    self, Manifest, DOCKER_LIST, DOCKER_MANIFEST, MAX_METADATA_BYTES, OCI_INDEX, OCI_MANIFEST,
};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::{ImageInfo, ImageStore};

/// Default location of the registry configuration (as k3s' `/etc/rancher/k3s/registries.yaml`).
pub const DEFAULT_REGISTRY_CONFIG: &str = "/etc/skiff/registries.yaml";

/// Media types asked for when fetching manifests.
const ACCEPT: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
/// Blobs downloaded at once per image.
const CONCURRENT_DOWNLOADS: usize = 3;

/// Registry mirrors, credentials and TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Mirror endpoints per registry name (`docker.io`, `127.0.0.1:5000`, or `*` for all).
    #[serde(default)]
    pub mirrors: BTreeMap<String, MirrorConfig>,
    /// Settings per registry or endpoint host.
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// The mirrors of one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Endpoint URLs (`https://host:port` or `http://host:port`; no scheme means https), tried
    /// in order before the registry itself.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

/// Settings of one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Credentials.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS settings.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Talk plain HTTP to this host.
    #[serde(default)]
    pub insecure: bool,
}

/// Registry credentials.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// User name for basic auth (also used to obtain bearer tokens).
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// `base64(username:password)`, as in Docker's config.json.
    #[serde(default)]
    pub auth: Option<String>,
    /// A bearer token sent as is.
    #[serde(default)]
    pub identity_token: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// TLS settings of a registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with CA certificates trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// Credentials and TLS for this endpoint.
    pub config: HostConfig,
}

impl Endpoint {
    /// `https://host` or `http://host`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }
}

impl RegistryConfig {
    /// Parses the YAML form; `source` names the file in errors.
    pub fn from_yaml(text: &str, source: &str) -> Result<RegistryConfig> {
        if text.trim().is_empty() {
            return Ok(RegistryConfig::default());
        }
        let config: RegistryConfig =
            serde_saphyr::from_str(text).map_err(|e| ImageError::RegistryConfig {
                reason: format!("{source}: {e}"),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistryConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_yaml(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistryConfig::default()),
            Err(e) => Err(ImageError::io("read", path, e)),
        }
    }

    fn validate(&self) -> Result<()> {
        for (registry, mirror) in &self.mirrors {
            for endpoint in &mirror.endpoint {
                parse_endpoint(endpoint).map_err(|reason| ImageError::RegistryConfig {
                    reason: format!("mirrors.{registry}.endpoint {endpoint:?}: {reason}"),
                })?;
            }
        }
        for (host, config) in &self.configs {
            if let Some(auth) = &config.auth {
                auth_of(auth).map_err(|reason| ImageError::RegistryConfig {
                    reason: format!("configs.{host}.auth: {reason}"),
                })?;
            }
        }
        Ok(())
    }

    /// Where to pull images of `registry` from, in order: its mirrors (or the `*` mirrors), then
    /// the registry itself.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>> {
        let mirrors = self
            .mirrors
            .get(registry)
            .or_else(|| self.mirrors.get("*"))
            .map(|m| m.endpoint.as_slice())
            .unwrap_or_default();
        let mut endpoints = Vec::new();
        for text in mirrors {
            let (host, plain_http) =
                parse_endpoint(text).map_err(|reason| ImageError::RegistryConfig {
                    reason: format!("mirror endpoint {text:?} of {registry}: {reason}"),
                })?;
            let config = self.host_config(&host, registry);
            endpoints.push(Endpoint {
                host,
                plain_http: plain_http || config.insecure,
                config,
            });
        }
        let host = match registry {
            "docker.io" => "registry-1.docker.io".to_owned(),
            other => other.to_owned(),
        };
        let config = self.host_config(&host, registry);
        let own = Endpoint {
            plain_http: config.insecure,
            host,
            config,
        };
        if !endpoints.contains(&own) {
            endpoints.push(own);
        }
        Ok(endpoints)
    }

    fn host_config(&self, host: &str, registry: &str) -> HostConfig {
        self.configs
            .get(host)
            .or_else(|| self.configs.get(registry))
            .cloned()
            .unwrap_or_default()
    }
}

/// `(host, plain_http)` of an endpoint URL.
fn parse_endpoint(text: &str) -> Result<(String, bool), String> {
    let (plain_http, rest) = if let Some(rest) = text.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("https://") {
        (false, rest)
    } else if text.contains("://") {
        return Err("only http:// and https:// endpoints are supported".into());
    } else {
        (false, text)
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err("expected scheme://host[:port]".into());
    }
    if !matches!(path.trim_end_matches('/'), "" | "v2") {
        return Err("endpoint paths other than /v2 are not supported".into());
    }
    Ok((host.to_owned(), plain_http))
}

fn auth_of(config: &AuthConfig) -> Result<RegistryAuth, String> {
    if let Some(token) = &config.identity_token {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    if let Some(encoded) = &config.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("auth is not base64: {e}"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_owned())?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or("auth must encode username:password")?;
        return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user.clone(), password.clone())),
        (None, None) => Ok(RegistryAuth::Anonymous),
        _ => Err("username and password go together".into()),
    }
}

/// Progress events sent from blocking threads to the pulling task.
enum Event {
    Begin(String, String, Option<u64>),
    Advance(String, u64),
    Finish(String, String),
}

struct ChannelProgress(mpsc::UnboundedSender<Event>);

impl Progress for ChannelProgress {
    fn begin(&self, task: &str, label: &str, total: Option<u64>) {
        let _ = self.0.send(Event::Begin(task.into(), label.into(), total));
    }
    fn advance(&self, task: &str, bytes: u64) {
        let _ = self.0.send(Event::Advance(task.into(), bytes));
    }
    fn finish(&self, task: &str, message: &str) {
        let _ = self.0.send(Event::Finish(task.into(), message.into()));
    }
}

fn replay(event: Event, progress: &dyn Progress) {
    match event {
        Event::Begin(task, label, total) => progress.begin(&task, &label, total),
        Event::Advance(task, bytes) => progress.advance(&task, bytes),
        Event::Finish(task, message) => progress.finish(&task, &message),
    }
}

impl ImageStore {
    /// Pulls `reference` (normalized as Docker does) through the configured endpoints and
    /// returns it with its layers unpacked. Blobs already in the store are not fetched again;
    /// concurrent pulls of the same blobs share one download.
    pub async fn pull(
        &self,
        reference: &str,
        config: &RegistryConfig,
        progress: &dyn Progress,
    ) -> Result<ImageInfo> {
        let reference = Reference::parse(reference)?;
        let endpoints = config.endpoints(reference.registry())?;
        let mut errors = Vec::new();
        for endpoint in &endpoints {
            match self.pull_from(&reference, endpoint, progress).await {
                Ok(info) => return Ok(info),
                Err(error) if endpoints.len() == 1 => return Err(error),
                Err(error) => {
                    tracing::warn!(image = %reference, endpoint = %endpoint.url(), %error, "pull from endpoint failed");
                    errors.push(format!("{}: {error}", endpoint.url()));
                }
            }
        }
        Err(ImageError::PullFailed {
            reference: reference.to_string(),
            errors,
        })
    }

    async fn pull_from(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        progress: &dyn Progress,
    ) -> Result<ImageInfo> {
        let client = self.client_for(endpoint)?;
        let auth = match &endpoint.config.auth {
            Some(auth) => auth_of(auth).map_err(|reason| ImageError::RegistryConfig { reason })?,
            None => RegistryAuth::Anonymous,
        };
        let registry_error = |operation: String| {
            let host = endpoint.url();
            move |source| ImageError::Registry {
                registry: host,
                operation,
                source,
            }
        };
        let remote = |tag: Option<&str>, digest: Option<&Digest>| match digest {
            Some(digest) => oci_client::Reference::with_digest(
                endpoint.host.clone(),
                reference.repository().to_owned(),
                digest.to_string(),
            ),
            None => oci_client::Reference::with_tag(
                endpoint.host.clone(),
                reference.repository().to_owned(),
                tag.unwrap_or("latest").to_owned(),
            ),
        };
        let target = remote(reference.tag(), reference.digest());
        let _gc = {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.gc_lock(false)).await??
        };

        // The manifest the name points to; for an index, the one for this platform.
        let (bytes, digest) = client
            .pull_manifest_raw(&target, &auth, ACCEPT)
            .await
            .map_err(registry_error(format!("fetch manifest of {reference}")))?;
        let top = Digest::parse(&digest)?;
        let content = &self.inner.content;
        content.write_bytes(&bytes, Some(&top), &format!("manifest of {reference}"))?;
        let (mut digest, mut size, mut document) = (top.clone(), bytes.len() as u64, bytes);
        let manifest: ImageManifest = loop {
            let what = format!("manifest {digest} of {reference}");
            match manifest::parse_manifest(&document, &what)? {
                Manifest::Image(manifest) => break *manifest,
                Manifest::Index(index) => {
                    let chosen = manifest::select_platform(
                        index.manifests(),
                        &self.inner.options.platform,
                        &what,
                    )?;
                    let chosen_digest = Digest::try_from(chosen.digest())?;
                    if chosen_digest == digest {
                        return Err(ImageError::invalid(what, "index refers to itself"));
                    }
                    let (bytes, _) = client
                        .pull_manifest_raw(&remote(None, Some(&chosen_digest)), &auth, ACCEPT)
                        .await
                        .map_err(registry_error(format!(
                            "fetch manifest {chosen_digest} of {reference}"
                        )))?;
                    content.write_bytes(&bytes, Some(&chosen_digest), &what)?;
                    (digest, size, document) = (chosen_digest, bytes.len() as u64, bytes);
                }
            }
        };
        let media_type = manifest
            .media_type()
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());

        // Config first (small, gives the diff ids), then the layers, each unpacked as soon as
        // it is downloaded, while the others are still downloading.
        let config_descriptor = manifest.config();
        if config_descriptor.size() > MAX_METADATA_BYTES {
            return Err(ImageError::invalid(
                format!("config of {reference}"),
                format!(
                    "{} bytes is over the limit of {MAX_METADATA_BYTES}",
                    config_descriptor.size()
                ),
            ));
        }
        self.download(
            &client,
            &target,
            config_descriptor,
            &format!("config of {reference}"),
            progress,
        )
        .await?;
        let config_digest = Digest::try_from(config_descriptor.digest())?;
        let config_what = format!("config of {reference}");
        let config = manifest::parse_config(
            &content.read_verified(&config_digest, &config_what, MAX_METADATA_BYTES)?,
            &config_what,
        )?;
        let diff_ids = manifest::diff_ids(&config, &config_what)?;
        let blobs =
            manifest::layer_digests(&manifest, &diff_ids, &format!("manifest of {reference}"))?;

        let (events, mut received) = mpsc::unbounded_channel();
        // The senders (this one and the blocking tasks' clones) drop when the work ends, which
        // ends the forwarding of progress events.
        let work = async move {
            // Owned items: closures over borrowed ones make the future fail to be `Send`
            // (higher-ranked lifetime inference), and the agent spawns pulls.
            let layers: Vec<(Descriptor, Digest, Digest)> = manifest
                .layers()
                .iter()
                .cloned()
                .zip(diff_ids.iter().cloned().zip(blobs.iter().cloned()))
                .map(|(descriptor, (diff_id, blob))| (descriptor, diff_id, blob))
                .collect();
            let (client, target) = (&client, &target);
            futures::stream::iter(layers)
                .map(|(descriptor, diff_id, blob)| {
                    let events = events.clone();
                    async move {
                        let what = format!("layer {blob} of {reference}");
                        self.download(client, target, &descriptor, &what, progress)
                            .await?;
                        let store = self.clone();
                        tokio::task::spawn_blocking(move || {
                            store.ensure_layer(&diff_id, &blob, &ChannelProgress(events))
                        })
                        .await??;
                        Ok::<(), ImageError>(())
                    }
                })
                .buffer_unordered(CONCURRENT_DOWNLOADS)
                .try_collect::<Vec<()>>()
                .await?;
            let store = self.clone();
            let name = reference.clone();
            let repo_digest = Some(format!("{}@{top}", reference.name()));
            let info = tokio::task::spawn_blocking(move || {
                store.install(
                    name,
                    digest,
                    size,
                    media_type,
                    repo_digest,
                    &ChannelProgress(events),
                )
            })
            .await??;
            Ok::<ImageInfo, ImageError>(info)
        };
        let forward = async {
            while let Some(event) = received.recv().await {
                replay(event, progress);
            }
        };
        let (result, ()) = tokio::join!(work, forward);
        result
    }

    /// Downloads one blob into the content store unless it is there already; concurrent
    /// downloads of one blob in this process share the first.
    async fn download(
        &self,
        client: &oci_client::Client,
        image: &oci_client::Reference,
        descriptor: &Descriptor,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<()> {
        let digest = Digest::try_from(descriptor.digest())?;
        let content = &self.inner.content;
        let task = format!("download {}", digest.short());
        if content.contains(&digest) {
            return Ok(());
        }
        let handle = self.inner.downloads.get(digest.hex());
        let _downloading = handle.lock().await;
        if content.contains(&digest) {
            progress.finish(&task, "already present");
            return Ok(());
        }
        let expected = descriptor.size();
        progress.begin(
            &task,
            &format!("downloading {}", digest.short()),
            Some(expected),
        );
        let host = image.registry().to_owned();
        let registry_error = |source| ImageError::Registry {
            registry: host.clone(),
            operation: format!("fetch {what}"),
            source,
        };
        let digest_text = digest.to_string();
        let mut stream = client
            .pull_blob_stream(image, digest_text.as_str())
            .await
            .map_err(registry_error)?;
        let mut writer = content.writer(what)?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ImageError::io("download", what, e))?;
            if writer.len() + chunk.len() as u64 > expected {
                return Err(ImageError::SizeMismatch {
                    what: what.to_owned(),
                    expected,
                    actual: writer.len() + chunk.len() as u64,
                });
            }
            writer.write(&chunk)?;
            progress.advance(&task, chunk.len() as u64);
        }
        let what_owned = what.to_owned();
        tokio::task::spawn_blocking(move || writer.commit(Some(&digest), Some(expected)))
            .await?
            .map_err(|error| {
                tracing::warn!(blob = %what_owned, %error, "downloaded blob refused");
                error
            })?;
        progress.finish(&task, "downloaded");
        Ok(())
    }

    /// The client for an endpoint, created once and reused (connections, tokens).
    fn client_for(&self, endpoint: &Endpoint) -> Result<oci_client::Client> {
        // Credentials are part of the key: the client caches them (and tokens obtained with
        // them), so changed credentials need a new client.
        let credentials = endpoint.config.auth.as_ref().map(|a| {
            let text = format!(
                "{:?}\0{:?}\0{:?}\0{:?}",
                a.username, a.password, a.auth, a.identity_token
            );
            Digest::of(text.as_bytes()).to_string()
        });
        let key = format!(
            "{}|{:?}|{credentials:?}",
            endpoint.url(),
            endpoint.config.tls
        );
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        // reqwest is built without a default crypto provider: use ring, as the whole binary does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = endpoint.config.tls.clone().unwrap_or_default();
        let mut extra_root_certificates = Vec::new();
        if let Some(ca_file) = &tls.ca_file {
            let data = std::fs::read(ca_file).map_err(|e| ImageError::RegistryConfig {
                reason: format!("CA file {} of {}: {e}", ca_file.display(), endpoint.host),
            })?;
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: tls.insecure_skip_verify,
            extra_root_certificates,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client =
            oci_client::Client::try_from(config).map_err(|e| ImageError::RegistryConfig {
                reason: format!("TLS settings of {}: {e}", endpoint.host),
            })?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registries_yaml_and_orders_endpoints() {
        let config = RegistryConfig::from_yaml(
            r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000", "https://mirror.example.com/v2"]
configs:
  mirror.example.com:
    auth: {username: robot, password: secret}
    tls: {ca_file: /etc/ca.pem}
  "127.0.0.1:5001":
    insecure: true
"#,
            "registries.yaml",
        )
        .unwrap();
        let endpoints = config.endpoints("docker.io").unwrap();
        let urls: Vec<String> = endpoints.iter().map(Endpoint::url).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:5000",
                "https://mirror.example.com",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(
            endpoints[1]
                .config
                .auth
                .as_ref()
                .unwrap()
                .username
                .as_deref(),
            Some("robot")
        );
        let local = config.endpoints("127.0.0.1:5001").unwrap();
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].url(), "http://127.0.0.1:5001");
    }

    #[test]
    fn refuses_bad_configuration_naming_the_key() {
        let error =
            RegistryConfig::from_yaml("mirrors:\n  docker.io:\n    endpoints: [x]\n", "r.yaml")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("endpoints") && error.contains("r.yaml"),
            "{error}"
        );
        let error = RegistryConfig::from_yaml(
            "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("mirrors.docker.io.endpoint"), "{error}");
        let error =
            RegistryConfig::from_yaml("configs:\n  h:\n    auth: {username: a}\n", "r.yaml")
                .unwrap_err()
                .to_string();
        assert!(error.contains("configs.h.auth"), "{error}");
    }

    #[test]
    fn pull_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let config = RegistryConfig::default();
        let future = store.pull("busybox", &config, &crate::NoProgress);
        assert_send(&future);
    }

    #[test]
    fn decodes_docker_style_auth() {
        let auth = AuthConfig {
            auth: Some(base64::engine::general_purpose::STANDARD.encode("user:p:w")),
            ..AuthConfig::default()
        };
        assert!(
            matches!(auth_of(&auth), Ok(RegistryAuth::Basic(u, p)) if u == "user" && p == "p:w")
        );
        assert!(format!("{auth:?}").contains("redacted"));
    }
}
