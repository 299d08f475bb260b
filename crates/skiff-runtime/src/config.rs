//! Runtime settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::dns::ClusterDns;
use crate::logs::pump::Rotation;
use crate::spec::SecurityDefaults;

/// Restart back-off (upstream: 10 s doubling to 5 min, reset after 10 min of running).
#[derive(Debug, Clone, Copy)]
pub struct BackoffConfig {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A container that ran this long since its last restart starts over at `initial`
    /// (upstream: twice `max`).
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// Log settings.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Rotation by size.
    pub rotation: Rotation,
    /// Pipe buffer of each output FIFO (F_SETPIPE_SZ): how much a container can write while
    /// the runtime is down before its writes block.
    pub pipe_size: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            rotation: Rotation {
                max_size: 10 << 20,
                max_files: 5,
            },
            pipe_size: 1 << 20,
        }
    }
}

/// Everything the runtime is configured with.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// State directory: pod records, sandboxes, volumes, logs, libcontainer state.
    pub root: PathBuf,
    /// Parent cgroup of all pods (`<parent>/pod<uid>/<container id>`), in every v1 hierarchy
    /// or in the unified tree.
    pub cgroup_parent: PathBuf,
    /// pids limit of every pod cgroup (`None` = unlimited).
    pub pod_pids_limit: Option<i64>,
    /// Restart back-off.
    pub backoff: BackoffConfig,
    /// Log files and pipes.
    pub logs: LogConfig,
    /// Cluster DNS for `dnsPolicy: ClusterFirst`.
    pub dns: ClusterDns,
    /// Node-wide security defaults.
    pub security: SecurityDefaults,
    /// Size of each pod's /dev/shm.
    pub shm_size: u64,
    /// Grace period used when a pod sets none.
    pub default_grace: Duration,
    /// The initial network namespace (a namespace file), when the runtime's process runs in
    /// another one: container exit codes come from the kernel's proc connector, which only
    /// exists there. `None`: the process's own namespace is the initial one.
    pub connector_netns: Option<PathBuf>,
    /// Memory cap of the pods' parent cgroup (node allocatable: capacity minus
    /// system-reserved); `None` leaves the parent unlimited.
    pub pods_memory_limit: Option<u64>,
}

impl RuntimeConfig {
    /// Defaults with state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> RuntimeConfig {
        let root = root.into();
        RuntimeConfig {
            security: SecurityDefaults {
                seccomp_default: true,
                no_new_privileges_default: true,
                seccomp_root: root.join("seccomp"),
            },
            root,
            cgroup_parent: PathBuf::from("/skiff"),
            pod_pids_limit: Some(4096),
            backoff: BackoffConfig::default(),
            logs: LogConfig::default(),
            dns: ClusterDns::default(),
            shm_size: 64 << 20,
            default_grace: Duration::from_secs(30),
            connector_netns: None,
            pods_memory_limit: None,
        }
    }
}
