//! The runtime's shared context: the state every operation, pod worker and container instance
//! works on, the pod-worker message protocol, and the network hook. Imports only the machinery
//! modules (config, cgroups, exits, logs, state), never the operations, so nothing cycles back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use crate::cgroups::CgroupSetup;
use crate::config::RuntimeConfig;
use crate::error::Result;
use crate::exits::{ExitMonitor, ExitStatus};
use crate::inputs::PodInputs;
use crate::logs::pump::{LogPump, LogSink};
use crate::state::{PodPaths, PodRecord};

/// A boxed future, for [`SandboxNetwork`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Sets up and tears down the network of a pod sandbox (the agent implements it with skiff-net).
pub trait SandboxNetwork: Send + Sync + 'static {
    /// Configures the pod's network namespace (`netns` is its bind-mounted file) before any
    /// container starts; returns the pod's IPs (they go into /etc/hosts and the status).
    fn setup<'a>(
        &'a self,
        pod: &'a Pod,
        netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<Vec<String>, String>>;
    /// Releases what `setup` configured. Called on removal, also after a failed or interrupted
    /// setup, so it must be idempotent.
    fn teardown<'a>(
        &'a self,
        pod: &'a Pod,
        netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// No network besides `lo` (tests, or pods that need no connectivity).
#[derive(Debug)]
pub struct LoopbackOnly;

impl SandboxNetwork for LoopbackOnly {
    fn setup<'a>(
        &'a self,
        _pod: &'a Pod,
        _netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<Vec<String>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn teardown<'a>(
        &'a self,
        _pod: &'a Pod,
        _netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Notifications for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// Something in the pod's status may have changed: read [`Runtime::pod_status`].
    Changed {
        /// Pod UID.
        uid: String,
    },
    /// The pod was removed.
    Removed {
        /// Pod UID.
        uid: String,
    },
    /// The pod's worker panicked; it resumes from its record after a back-off.
    WorkerPanicked {
        /// Pod UID.
        uid: String,
        /// The panic's message.
        message: String,
    },
}

/// Messages to a pod worker.
pub(crate) enum PodMsg {
    /// An instance's init process exited.
    Exited {
        name: String,
        id: String,
        status: ExitStatus,
    },
    /// Stop every container: stop signal, then SIGKILL after `grace`.
    Stop {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
    /// Stop (at once if still running) and remove everything of the pod.
    Remove { done: oneshot::Sender<Result<()>> },
    /// New inputs (config maps, secrets, images); containers started later use them.
    Inputs(PodInputs),
    /// A new pod spec whose container images changed: those containers are replaced.
    Update { pod: Box<Pod>, inputs: PodInputs },
    /// The runtime shuts down: leave containers running, end the worker.
    Shutdown,
}

pub(crate) struct PodEntry {
    pub tx: mpsc::UnboundedSender<PodMsg>,
    pub state: Arc<Mutex<PodRecord>>,
    pub sinks: Arc<Mutex<HashMap<String, Arc<LogSink>>>>,
}

/// Shared state of the runtime.
pub(crate) struct Inner {
    pub config: RuntimeConfig,
    pub cgroups: CgroupSetup,
    pub swap_accounting: bool,
    pub exits: ExitMonitor,
    pub pump: LogPump,
    pub network: Arc<dyn SandboxNetwork>,
    pub libcontainer_root: PathBuf,
    pub pods: Mutex<HashMap<String, PodEntry>>,
    pub events: broadcast::Sender<PodEvent>,
    /// Bounds concurrent container launches (each forks a launcher).
    pub launches: Arc<Semaphore>,
    /// Compiled seccomp programs.
    pub seccomp: crate::seccomp_filter::Cache,
    /// The cluster DNS pods are given: `config.dns` at first, then what the agent learns
    /// from the server ([`crate::Runtime::set_cluster_dns`]).
    pub dns: std::sync::RwLock<crate::dns::ClusterDns>,
}

impl Inner {
    /// The cluster DNS settings now.
    pub(crate) fn cluster_dns(&self) -> crate::dns::ClusterDns {
        self.dns.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The pod's cgroup path.
    pub(crate) fn pod_cgroup(&self, uid: &str) -> PathBuf {
        self.config.cgroup_parent.join(format!("pod{uid}"))
    }

    /// Drops the pod from the table.
    pub(crate) fn forget(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    pub(crate) fn paths(&self, uid: &str) -> PodPaths {
        PodPaths::new(&self.config.root, uid)
    }
}
