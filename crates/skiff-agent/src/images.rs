//! `imagePullPolicy` against the node's image store, with the kubelet's pull back-off and its
//! waiting reasons: `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
//! `InvalidImageName`.
//!
//! Images come from the server (image hand-over, [`ImageOrigin`]) or from registries. A missing
//! image (`IfNotPresent`) is asked of the server first, so one import at the server reaches
//! every node of an offline site; registries are the fallback. `Always` asks the registries
//! first (they know the newest image) and falls back to the server. Concurrent requests for one
//! image share one transfer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use skiff_image::{ImageInfo, ImageStore, LogProgress, Reference, RegistryConfig};

/// Another place images come from than registries: the server, over the link.
pub trait ImageOrigin: Send + Sync + 'static {
    /// Fetches `reference` into `store`.
    fn fetch<'a>(
        &'a self,
        store: &'a ImageStore,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<ImageInfo, String>>;
}

/// Why a container's image is not available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// The waiting reason (`ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
    /// `InvalidImageName`).
    pub reason: &'static str,
    /// The message shown with it.
    pub message: String,
    /// When to try again (`None`: only when the pod changes).
    pub retry_after: Option<Duration>,
}

/// A successful resolution, with what happened (for events).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The image.
    pub image: ImageInfo,
    /// Whether it was pulled now (false: already present).
    pub pulled: bool,
    /// How long the pull took.
    pub pull_time: Duration,
}

struct BackoffEntry {
    delay: Duration,
    until: Instant,
    last_error: String,
}

/// Resolves container images per pull policy; shared by all pod workers.
pub struct ImagePuller {
    store: ImageStore,
    registries: RegistryConfig,
    initial: Duration,
    max: Duration,
    backoff: Mutex<HashMap<(String, String), BackoffEntry>>,
    server: Option<Arc<dyn ImageOrigin>>,
    /// One fetch per image at a time; later callers find it in the store.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImagePuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePuller").finish_non_exhaustive()
    }
}

/// The policy upstream defaults to when none is given: `Always` for `:latest` or untagged
/// images, `IfNotPresent` otherwise.
pub fn default_policy(image: &str) -> &'static str {
    match Reference::parse(image) {
        Ok(r) if r.digest().is_some() => "IfNotPresent",
        Ok(r) if r.tag() == Some("latest") || r.tag().is_none() => "Always",
        _ => "IfNotPresent",
    }
}

impl ImagePuller {
    /// A puller over `store`; failed pulls back off from `initial` doubling to `max`.
    pub fn new(
        store: ImageStore,
        registries: RegistryConfig,
        initial: Duration,
        max: Duration,
    ) -> Self {
        ImagePuller {
            store,
            registries,
            initial,
            max,
            backoff: Mutex::new(HashMap::new()),
            server: None,
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// Also fetches images from `server` (image hand-over).
    pub fn with_server(mut self, server: Arc<dyn ImageOrigin>) -> Self {
        self.server = Some(server);
        self
    }

    /// The store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// Makes `image` available for a container of pod `pod_uid` according to `policy`.
    pub async fn ensure(
        &self,
        pod_uid: &str,
        image: &str,
        policy: Option<&str>,
    ) -> Result<Resolved, ImageFailure> {
        if image.trim().is_empty() || Reference::parse(image).is_err() {
            return Err(ImageFailure {
                reason: "InvalidImageName",
                message: format!("Failed to apply default image tag {image:?}: couldn't parse image name {image:?}"),
                retry_after: None,
            });
        }
        let policy = policy.unwrap_or_else(|| default_policy(image));
        let present = self.resolve_local(image).await;
        let must_pull = match policy {
            "Never" => false,
            "IfNotPresent" => present.is_none(),
            _ => true,
        };
        if !must_pull {
            return match present {
                Some(image) => Ok(Resolved {
                    image,
                    pulled: false,
                    pull_time: Duration::ZERO,
                }),
                None => Err(ImageFailure {
                    reason: "ErrImageNeverPull",
                    message: format!(
                        "Container image {image:?} is not present with pull policy of Never"
                    ),
                    retry_after: None,
                }),
            };
        }
        let key = (pod_uid.to_string(), image.to_string());
        {
            let backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = backoff.get(&key) {
                let now = Instant::now();
                if entry.until > now {
                    return Err(ImageFailure {
                        reason: "ImagePullBackOff",
                        message: format!("Back-off pulling image {image:?}: {}", entry.last_error),
                        retry_after: Some(entry.until - now),
                    });
                }
            }
        }
        let started = Instant::now();
        let lock = self.fetch_lock(image);
        let result = {
            let _fetching = lock.lock().await;
            // Another worker may have fetched it meanwhile.
            match self.resolve_local(image).await {
                Some(info) if policy != "Always" => Ok(info),
                _ => {
                    tracing::info!(pod = pod_uid, image, policy, "pulling image");
                    self.fetch(image, policy).await
                }
            }
        };
        drop(lock);
        self.forget_fetch_lock(image);
        match result {
            Ok(info) => {
                self.backoff
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                Ok(Resolved {
                    image: info,
                    pulled: true,
                    pull_time: started.elapsed(),
                })
            }
            Err(error) => {
                let message = format!("Failed to pull image {image:?}: {error}");
                let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                let delay = match backoff.get(&key) {
                    Some(entry) => (entry.delay * 2).min(self.max),
                    None => self.initial,
                };
                backoff.insert(
                    key,
                    BackoffEntry {
                        delay,
                        until: Instant::now() + delay,
                        last_error: error,
                    },
                );
                Err(ImageFailure {
                    reason: "ErrImagePull",
                    message,
                    retry_after: Some(delay),
                })
            }
        }
    }

    /// Gets `image` from the server and the registries, in the order `policy` calls for.
    async fn fetch(&self, image: &str, policy: &str) -> Result<ImageInfo, String> {
        let Some(server) = &self.server else {
            return self.pull(image).await.map_err(|e| e.to_string());
        };
        if policy == "Always" {
            let registry_error = match self.pull(image).await {
                Ok(info) => return Ok(info),
                Err(error) => error,
            };
            tracing::info!(image, error = %registry_error, "registry pull failed; asking the server");
            return server
                .fetch(&self.store, image)
                .await
                .map_err(|server_error| {
                    format!(
                        "{registry_error}; the server cannot hand it over either: {server_error}"
                    )
                });
        }
        let server_error = match server.fetch(&self.store, image).await {
            Ok(info) => return Ok(info),
            Err(error) => error,
        };
        tracing::info!(image, error = %server_error, "the server cannot hand the image over; pulling from registries");
        self.pull(image).await.map_err(|registry_error| {
            format!("{registry_error} (the server cannot hand it over: {server_error})")
        })
    }

    /// Pulls `image` from its registry (or mirrors).
    async fn pull(&self, image: &str) -> Result<ImageInfo, skiff_image::ImageError> {
        // The store's pull future cannot be proven `Send` (a higher-ranked closure inside it),
        // so it runs on a blocking thread of this runtime rather than inside a spawned task.
        let store = self.store.clone();
        let registries = self.registries.clone();
        let name = image.to_string();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(store.pull(&name, &registries, &LogProgress))
        })
        .await
        .unwrap_or_else(|e| {
            Err(skiff_image::ImageError::PullFailed {
                reference: image.to_string(),
                errors: vec![format!("pull task failed: {e}")],
            })
        })
    }

    fn fetch_lock(&self, image: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(image.to_string())
            .or_default()
            .clone()
    }

    fn forget_fetch_lock(&self, image: &str) {
        let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if fetching
            .get(image)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            fetching.remove(image);
        }
    }

    /// Whether making `image` available under `policy` means a registry pull.
    pub async fn needs_pull(&self, image: &str, policy: Option<&str>) -> bool {
        match policy.unwrap_or_else(|| default_policy(image)) {
            "Never" => false,
            "IfNotPresent" => self.resolve_local(image).await.is_none(),
            _ => true,
        }
    }

    /// The image if the store has it.
    pub async fn resolve_local(&self, image: &str) -> Option<ImageInfo> {
        let store = self.store.clone();
        let name = image.to_string();
        match tokio::task::spawn_blocking(move || store.resolve(&name)).await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::warn!(image, %error, "cannot look the image up in the store");
                None
            }
            Err(_) => None,
        }
    }

    /// Forgets the back-off of a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(uid, _), _| uid != pod_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_upstream() {
        assert_eq!(default_policy("busybox"), "Always");
        assert_eq!(default_policy("busybox:latest"), "Always");
        assert_eq!(default_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(
            default_policy(
                "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ),
            "IfNotPresent"
        );
    }

    fn puller(dir: &std::path::Path) -> ImagePuller {
        ImagePuller::new(
            ImageStore::open(dir).unwrap(),
            RegistryConfig::from_yaml(
                "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:9\"]\n",
                "test",
            )
            .unwrap(),
            Duration::from_millis(200),
            Duration::from_millis(400),
        )
    }

    #[tokio::test]
    async fn never_and_missing_images_give_upstream_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let p = puller(dir.path());
        let e = p
            .ensure("u1", "busybox:1.0", Some("Never"))
            .await
            .unwrap_err();
        assert_eq!(e.reason, "ErrImageNeverPull");
        assert!(e.message.contains("busybox:1.0"), "{}", e.message);
        let e = p.ensure("u1", "Not A Name", None).await.unwrap_err();
        assert_eq!(e.reason, "InvalidImageName");
    }

    #[tokio::test]
    async fn failed_pulls_back_off_then_retry() {
        let dir = tempfile::tempdir().unwrap();
        let p = puller(dir.path());
        let first = p
            .ensure("u1", "nothing:1.0", Some("IfNotPresent"))
            .await
            .unwrap_err();
        assert_eq!(first.reason, "ErrImagePull");
        assert!(
            first
                .message
                .starts_with("Failed to pull image \"nothing:1.0\""),
            "{}",
            first.message
        );
        let second = p
            .ensure("u1", "nothing:1.0", Some("IfNotPresent"))
            .await
            .unwrap_err();
        assert_eq!(second.reason, "ImagePullBackOff");
        // Another pod has its own back-off.
        let other = p
            .ensure("u2", "nothing:1.0", Some("IfNotPresent"))
            .await
            .unwrap_err();
        assert_eq!(other.reason, "ErrImagePull");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let third = p
            .ensure("u1", "nothing:1.0", Some("IfNotPresent"))
            .await
            .unwrap_err();
        assert_eq!(third.reason, "ErrImagePull");
        // The delay doubled.
        assert_eq!(third.retry_after, Some(Duration::from_millis(400)));
    }

    /// An origin that has nothing and records what it was asked, after what.
    struct Empty(Arc<Mutex<Vec<String>>>);

    impl ImageOrigin for Empty {
        fn fetch<'a>(
            &'a self,
            _store: &'a ImageStore,
            reference: &'a str,
        ) -> BoxFuture<'a, Result<ImageInfo, String>> {
            self.0.lock().unwrap().push(reference.to_string());
            Box::pin(async move { Err(format!("the server holds no image {reference:?}")) })
        }
    }

    #[tokio::test]
    async fn missing_images_are_asked_of_the_server_then_registries() {
        let dir = tempfile::tempdir().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let p = puller(dir.path()).with_server(Arc::new(Empty(asked.clone())));
        let error = p
            .ensure("u1", "nothing:1.0", Some("IfNotPresent"))
            .await
            .unwrap_err();
        assert_eq!(error.reason, "ErrImagePull");
        // Both were tried: the registry's error, and the server's reason.
        assert!(
            error.message.contains("127.0.0.1:9")
                && error.message.contains("the server cannot hand it over"),
            "{}",
            error.message
        );
        assert_eq!(*asked.lock().unwrap(), ["nothing:1.0"]);
        // Always: registries first, then the server.
        let error = p
            .ensure("u2", "nothing:2.0", Some("Always"))
            .await
            .unwrap_err();
        assert!(
            error
                .message
                .contains("the server cannot hand it over either"),
            "{}",
            error.message
        );
        assert_eq!(asked.lock().unwrap().len(), 2);
        // Never asks nobody.
        p.ensure("u3", "nothing:3.0", Some("Never"))
            .await
            .unwrap_err();
        assert_eq!(asked.lock().unwrap().len(), 2);
        assert!(
            p.fetching.lock().unwrap().is_empty(),
            "fetch locks are forgotten"
        );
    }
}
