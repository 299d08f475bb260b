//! The runtime's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the runtime. Variants name the object, field or path involved.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The pod (or a container in it) asks for something invalid; `field` is the JSON path.
    #[error("invalid pod: {field}: {message}")]
    InvalidPod {
        /// JSON path of the offending field, e.g. `spec.containers[0].resources.limits.cpu`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The pod asks for a feature skiff does not implement.
    #[error("unsupported: {field}: {message}")]
    Unsupported {
        /// JSON path of the field.
        field: String,
        /// Why it is not supported.
        message: String,
    },
    /// A caller-supplied input (config map, secret, image, token) that the pod references is missing.
    #[error("{kind} {name:?} not found (referenced by {field})")]
    MissingInput {
        /// `configmap`, `secret`, `image`, ...
        kind: &'static str,
        /// Name of the missing object, or key inside it.
        name: String,
        /// JSON path of the reference.
        field: String,
    },
    /// The container's security settings cannot be satisfied (e.g. runAsNonRoot with uid 0).
    #[error("container {container:?}: {message}")]
    Security {
        /// Container name.
        container: String,
        /// Why it is refused.
        message: String,
    },
    /// No pod with this UID is known to the runtime.
    #[error("pod {0} not found")]
    PodNotFound(String),
    /// A pod with this UID is already running.
    #[error("pod {0} already exists")]
    PodExists(String),
    /// No container with this name in the pod.
    #[error("container {container:?} not found in pod {pod}")]
    ContainerNotFound {
        /// Pod UID.
        pod: String,
        /// Container name.
        container: String,
    },
    /// The operation needs a running container.
    #[error("container {container:?} of pod {pod} is not running")]
    ContainerNotRunning {
        /// Pod UID.
        pod: String,
        /// Container name.
        container: String,
    },
    /// No log of the requested container instance exists.
    #[error("no logs for container {container:?} of pod {pod}: {message}")]
    LogsNotFound {
        /// Pod UID.
        pod: String,
        /// Container name.
        container: String,
        /// Which instance was asked for.
        message: String,
    },
    /// A file system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done (`create`, `write`, `read`, ...).
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{call} failed for {target}: {source}")]
    Sys {
        /// The call (`mount`, `unshare`, `pidfd_open`, ...).
        call: &'static str,
        /// What it was applied to.
        target: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// libcontainer refused or failed to create, start or exec a container.
    #[error("container {container:?}: {message}")]
    Container {
        /// Container id or name.
        container: String,
        /// libcontainer's error message.
        message: String,
    },
    /// Building the OCI runtime spec failed.
    #[error("OCI spec for container {container:?}: {source}")]
    Spec {
        /// Container name.
        container: String,
        /// oci-spec's error.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A record file of the runtime's own state could not be parsed or written.
    #[error("state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// Setting up or tearing down the pod network failed (reported by the `SandboxNetwork`).
    #[error("network for pod {pod}: {message}")]
    Network {
        /// Pod UID.
        pod: String,
        /// The network implementation's message.
        message: String,
    },
    /// The runtime is shutting down or a worker has gone away.
    #[error("runtime is shut down")]
    ShutDown,
    /// An operation did not complete in time.
    #[error("{operation} timed out after {seconds} s")]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// How long.
        seconds: u64,
    },
}

impl RuntimeError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        RuntimeError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(
        call: &'static str,
        target: impl std::fmt::Display,
        source: nix::Error,
    ) -> Self {
        RuntimeError::Sys {
            call,
            target: target.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError::InvalidPod {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuntimeError::Unsupported {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Whether the error is the pod's (or its inputs') fault rather than the node's: the agent
    /// reports it as `CreateContainerConfigError` instead of retrying.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            RuntimeError::InvalidPod { .. }
                | RuntimeError::Unsupported { .. }
                | RuntimeError::MissingInput { .. }
                | RuntimeError::Security { .. }
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
