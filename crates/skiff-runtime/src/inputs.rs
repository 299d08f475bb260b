//! What the caller resolves for a pod before the runtime can run it: images, config maps,
//! secrets, tokens and node facts. The runtime never fetches anything itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

/// An unpacked image as the runtime needs it: the config and the layer directories to stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerImage {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest` (shown as `image`).
    pub reference: String,
    /// Image id, `sha256:<config digest>` (shown as `imageID`).
    pub id: String,
    /// The image configuration (Entrypoint, Cmd, Env, User, WorkingDir, StopSignal).
    pub config: ImageConfiguration,
    /// Unpacked layer directories, bottom layer first; stacked read-only with overlayfs.
    pub layers: Vec<PathBuf>,
    /// `registry/repository@sha256:<digest>` when known (preferred for `imageID`).
    #[serde(default)]
    pub repo_digest: Option<String>,
}

impl ContainerImage {
    /// What `containerStatuses[].imageID` shows: the repo digest, else the image id.
    pub fn image_id(&self) -> &str {
        self.repo_digest.as_deref().unwrap_or(&self.id)
    }
}

impl From<&skiff_image::ImageInfo> for ContainerImage {
    fn from(info: &skiff_image::ImageInfo) -> Self {
        ContainerImage {
            reference: info.reference.to_string(),
            id: info.id.clone(),
            config: info.config.clone(),
            layers: info.layers.clone(),
            repo_digest: info.repo_digest.clone(),
        }
    }
}

/// Facts about the node that pods can see (downward API, resource defaults).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeFacts {
    /// `spec.nodeName` as the pod sees it.
    pub node_name: String,
    /// `status.hostIPs`.
    pub host_ips: Vec<String>,
    /// Allocatable CPU in millicores: the value of `limits.cpu` in the downward API when the
    /// container sets none. 0 means "read from the machine".
    pub allocatable_cpu_millis: i64,
    /// Allocatable memory in bytes, likewise for `limits.memory`. 0 means "read from the machine".
    pub allocatable_memory_bytes: i64,
}

/// Everything a pod references that the caller must resolve.
#[derive(Debug, Clone, Default)]
pub struct PodInputs {
    /// Image of every container (init and app), keyed by container name.
    pub images: BTreeMap<String, ContainerImage>,
    /// Config maps of the pod's namespace that the pod references, keyed by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace that the pod references, keyed by name.
    pub secrets: BTreeMap<String, Secret>,
    /// Service account token for `projected.sources[].serviceAccountToken`, keyed by audience
    /// (`""` for the API server's default audience).
    pub service_account_tokens: BTreeMap<String, String>,
    /// Service environment variables (`enableServiceLinks`), e.g. `KUBERNETES_SERVICE_HOST`.
    pub service_env: BTreeMap<String, String>,
    /// Node facts.
    pub node: NodeFacts,
}
