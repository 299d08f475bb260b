//! The runtime's own records of pods and containers, persisted as one JSON file per pod
//! (`<root>/pods/<uid>/pod.json`, written atomically) so a restarted runtime can re-adopt them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::inputs::ContainerImage;
use crate::spec::NamespacePaths;

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Terminated {
    /// Exit code (128 + signal for signals).
    pub exit_code: i32,
    /// The signal, if it was killed by one.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, `ContainerStatusUnknown`.
    pub reason: String,
    /// Termination message or error text.
    pub message: Option<String>,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// `skiff://<id>`.
    pub container_id: String,
}

/// One run of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Instance {
    /// libcontainer id (random hex).
    pub id: String,
    /// Sequence number, also the log file name (`<number>.log`) — equals the restart count
    /// the container had when this instance was created.
    pub number: u32,
    /// Host pid of the init process while it runs.
    pub pid: Option<i32>,
    /// Start time of that pid (clock ticks since boot), to detect pid reuse.
    pub pid_start_time: Option<u64>,
    /// When it started running.
    pub started_at: Option<Timestamp>,
    /// Signal sent first on a graceful stop (image StopSignal or SIGTERM).
    pub stop_signal: i32,
    /// Its cgroup path (absolute, inside the hierarchy).
    pub cgroup: PathBuf,
    /// Set once it ended.
    pub terminated: Option<Terminated>,
}

impl Instance {
    /// Whether the instance is running.
    pub(crate) fn is_running(&self) -> bool {
        self.terminated.is_none() && self.pid.is_some()
    }
}

/// Back-off state of a container (upstream `flowcontrol.Backoff` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Backoff {
    /// Current delay in milliseconds.
    pub delay_ms: u64,
    /// When the delay was last advanced (a restart happened).
    pub last_update: Timestamp,
}

/// Why a container is waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Waiting {
    /// `ContainerCreating`, `PodInitializing`, `CrashLoopBackOff`, `CreateContainerConfigError`...
    pub reason: String,
    /// Details.
    pub message: Option<String>,
}

/// Everything the runtime knows about one container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    /// How many times it was restarted.
    pub restart_count: u32,
    /// The current (or last) instance.
    pub instance: Option<Instance>,
    /// The previous instance's end (`lastState`).
    pub last_termination: Option<Terminated>,
    /// Set while it is not running for a reason other than having ended.
    pub waiting: Option<Waiting>,
    /// Back-off state.
    pub backoff: Option<Backoff>,
    /// Not before this time may it be (re)started.
    pub not_before: Option<Timestamp>,
    /// Id of an instance being created right now: if the runtime dies meanwhile, a restarted
    /// runtime removes whatever of it exists.
    #[serde(default)]
    pub creating: Option<String>,
    /// Set when the container's spec changed (a new image): its running instance is stopped
    /// (SIGKILL at this time) and a new one started whatever the restart policy says.
    #[serde(default)]
    pub replace_by: Option<Timestamp>,
}

impl ContainerRecord {
    /// Whether the current instance runs.
    pub(crate) fn is_running(&self) -> bool {
        self.instance
            .as_ref()
            .map(Instance::is_running)
            .unwrap_or(false)
    }

    /// The termination of the current instance, if it ended.
    pub(crate) fn terminated(&self) -> Option<&Terminated> {
        self.instance.as_ref().and_then(|i| i.terminated.as_ref())
    }
}

/// The sandbox's resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    /// Namespace files (None = host namespace).
    pub namespaces: NamespacePaths,
    /// Shared /dev/shm tmpfs.
    pub shm: Option<PathBuf>,
    /// Hostname in the UTS namespace.
    pub hostname: String,
    /// Whether the network was set up (and must be torn down).
    pub network_ready: bool,
}

/// Why the pod is stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Termination {
    /// Grace period in milliseconds.
    pub grace_ms: u64,
    /// When the grace period ends (then SIGKILL).
    pub deadline: Timestamp,
    /// Whether SIGKILL has been sent.
    pub killed: bool,
}

/// The persisted record of one pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PodRecord {
    /// The pod as given to `run_pod`.
    pub pod: Pod,
    /// Images per container name.
    pub images: BTreeMap<String, ContainerImage>,
    /// When the runtime accepted it.
    pub created_at: Timestamp,
    /// When the sandbox was ready (`status.startTime`).
    pub start_time: Option<Timestamp>,
    /// Pod IPs from the network.
    pub pod_ips: Vec<String>,
    /// Node IPs.
    pub host_ips: Vec<String>,
    /// Sandbox resources.
    pub sandbox: SandboxRecord,
    /// Pod cgroup path.
    pub cgroup: PathBuf,
    /// Containers by name.
    pub containers: BTreeMap<String, ContainerRecord>,
    /// Set when a stop was requested.
    pub terminating: Option<Termination>,
    /// Set when the pod was stopped (all containers ended on request): its phase is final.
    pub terminal: bool,
    /// Set when removal was requested (finished after a restart if interrupted).
    #[serde(default)]
    pub removing: bool,
    /// Set when the pod failed for good (an init container failed under restartPolicy Never).
    pub failed: bool,
}

/// Where a pod's files live.
#[derive(Debug, Clone)]
pub(crate) struct PodPaths {
    /// `<root>/pods/<uid>`.
    pub dir: PathBuf,
}

impl PodPaths {
    /// Paths of pod `uid` under the runtime root.
    pub(crate) fn new(root: &Path, uid: &str) -> PodPaths {
        PodPaths {
            dir: root.join("pods").join(uid),
        }
    }
    /// The record file.
    pub(crate) fn record(&self) -> PathBuf {
        self.dir.join("pod.json")
    }
    /// Volumes directory.
    pub(crate) fn volumes(&self) -> PathBuf {
        self.dir.join("volumes")
    }
    /// Directory of container `name`.
    pub(crate) fn container(&self, name: &str) -> PathBuf {
        self.dir.join("containers").join(name)
    }
    /// Directory of instance `number` of container `name`.
    pub(crate) fn instance(&self, name: &str, number: u32) -> PathBuf {
        self.container(name).join(number.to_string())
    }
    /// Generated spec template of container `name`.
    pub(crate) fn spec_template(&self, name: &str) -> PathBuf {
        self.container(name).join("spec.json")
    }
    /// Log file of instance `number` of container `name`.
    pub(crate) fn log(&self, name: &str, number: u32) -> PathBuf {
        self.dir
            .join("logs")
            .join(name)
            .join(format!("{number}.log"))
    }
    /// `/etc/hosts` of the pod.
    pub(crate) fn hosts(&self) -> PathBuf {
        self.dir.join("etc/hosts")
    }
    /// `/etc/resolv.conf` of the pod.
    pub(crate) fn resolv(&self) -> PathBuf {
        self.dir.join("etc/resolv.conf")
    }
    /// `/etc/hostname` of the pod.
    pub(crate) fn hostname(&self) -> PathBuf {
        self.dir.join("etc/hostname")
    }
}

impl PodRecord {
    /// Saves the record atomically.
    pub(crate) fn save(&self, paths: &PodPaths) -> Result<()> {
        let path = paths.record();
        let bytes = serde_json::to_vec(self).map_err(|source| RuntimeError::State {
            path: path.clone(),
            source,
        })?;
        crate::fsutil::write_atomic(&path, &bytes, 0o600)
    }

    /// Loads a saved record.
    pub(crate) fn load(paths: &PodPaths) -> Result<PodRecord> {
        let path = paths.record();
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::State { path, source })
    }

    /// The pod's UID.
    pub(crate) fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or("")
    }

    /// `namespace/name` for messages.
    pub(crate) fn display_name(&self) -> String {
        format!(
            "{}_{}({})",
            self.pod.metadata.name.as_deref().unwrap_or(""),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            self.uid()
        )
    }

    /// The pod's restart policy.
    pub(crate) fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// Init containers in order.
    pub(crate) fn init_containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or(&[])
    }

    /// App containers in order.
    pub(crate) fn app_containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or(&[])
    }

    /// The container spec and JSON path of container `name`.
    pub(crate) fn container_spec(&self, name: &str) -> Option<(&Container, String)> {
        if let Some((i, c)) = self
            .init_containers()
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
        {
            return Some((c, format!("spec.initContainers[{i}]")));
        }
        self.app_containers()
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .map(|(i, c)| (c, format!("spec.containers[{i}]")))
    }
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub(crate) fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}
