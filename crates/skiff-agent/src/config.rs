//! Settings of `skiff agent` (and of the local agent inside `skiff server`), filled in by the
//! binary from flags, environment and config file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use skiff_types::quantity::Quantity;

use crate::error::AgentError;

/// Label every node of the control plane carries.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// Everything the agent is told on start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Root of all state; the agent keeps its files under `DIR/agent/`.
    pub data_dir: PathBuf,
    /// URL of the server (`https://HOST:PORT`).
    pub server: String,
    /// Join token; needed only until the node has its certificate.
    pub token: Option<String>,
    /// Node name.
    pub node_name: String,
    /// Node labels (`K=V`).
    pub node_labels: Vec<String>,
    /// Node taints (`K=V:EFFECT`), applied when the Node is created.
    pub node_taints: Vec<String>,
    /// Pod capacity.
    pub max_pods: u32,
    /// The node's address (`InternalIP`); detected from the route to the server when `None`.
    pub node_ip: Option<IpAddr>,
    /// Resources kept for the system (`cpu=500m,memory=512Mi,ephemeral-storage=1Gi,pid=1000`),
    /// subtracted from capacity for `allocatable`.
    pub system_reserved: String,
    /// Parent cgroup of every pod (`<parent>/pod<uid>/...`).
    pub cgroup_parent: PathBuf,
    /// Registry mirrors, credentials and TLS (k3s `registries.yaml`); read when it exists.
    pub registry_config: Option<PathBuf>,
    /// This node runs the control plane (label `node-role.kubernetes.io/control-plane`).
    pub control_plane: bool,
    /// The initial network namespace, when the process runs in another one (`--netns`): the
    /// runtime's exit-code source lives there.
    pub connector_netns: Option<PathBuf>,
    /// Whether pods reach the `kubernetes` Service through the link (`--api-via-link`).
    pub api_via_link: ApiViaLink,
    /// Timings (tests shorten them).
    pub timings: AgentTimings,
}

/// `--api-via-link`: how the node's pods reach the `kubernetes` Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiViaLink {
    /// Through the link when a TCP connect to the Service's endpoints (the server's API
    /// address) fails, probed at start, on every reconnect and periodically.
    #[default]
    Auto,
    /// Always through the link.
    Always,
    /// Never: the proxy sends it to the endpoints, reachable or not.
    Never,
}

/// How often the agent looks at things.
#[derive(Debug, Clone)]
pub struct AgentTimings {
    /// Node conditions (memory, disk, PID pressure) and the image list are re-read this often.
    pub node_status_interval: Duration,
    /// First delay before retrying a failed image pull (doubles up to `image_backoff_max`).
    pub image_backoff_initial: Duration,
    /// Longest delay between image pull attempts.
    pub image_backoff_max: Duration,
    /// Restart back-off of crashing containers (upstream: 10 s doubling to 5 min).
    pub restart_backoff_initial: Duration,
    /// Longest restart back-off.
    pub restart_backoff_max: Duration,
}

impl Default for AgentTimings {
    fn default() -> Self {
        AgentTimings {
            node_status_interval: Duration::from_secs(10),
            image_backoff_initial: Duration::from_secs(10),
            image_backoff_max: Duration::from_secs(300),
            restart_backoff_initial: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
        }
    }
}

impl AgentConfig {
    /// A configuration with defaults for everything but the essentials.
    pub fn new(data_dir: impl Into<PathBuf>, server: &str, node_name: &str) -> Self {
        AgentConfig {
            data_dir: data_dir.into(),
            server: server.to_string(),
            token: None,
            node_name: node_name.to_string(),
            node_labels: Vec::new(),
            node_taints: Vec::new(),
            max_pods: 110,
            node_ip: None,
            system_reserved: String::new(),
            cgroup_parent: PathBuf::from("/skiff"),
            registry_config: None,
            control_plane: false,
            connector_netns: None,
            api_via_link: ApiViaLink::default(),
            timings: AgentTimings::default(),
        }
    }

    /// `DIR/agent`.
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }

    /// Checks everything that can be checked before starting.
    pub fn validate(&self) -> Result<(), AgentError> {
        if !valid_node_name(&self.node_name) {
            return Err(AgentError::InvalidConfig {
                field: "node-name",
                reason: format!(
                    "{:?} is not a valid node name (lower-case letters, digits, '-' and '.', \
                     at most 253 characters, starting and ending with a letter or digit)",
                    self.node_name
                ),
            });
        }
        if self.max_pods == 0 {
            return Err(AgentError::InvalidConfig {
                field: "max-pods",
                reason: "must be at least 1".into(),
            });
        }
        parse_labels(&self.node_labels)?;
        parse_taints(&self.node_taints)?;
        SystemReserved::parse(&self.system_reserved)?;
        if !self.cgroup_parent.is_absolute() {
            return Err(AgentError::InvalidConfig {
                field: "cgroup-parent",
                reason: format!("{} is not an absolute path", self.cgroup_parent.display()),
            });
        }
        Ok(())
    }
}

/// Whether `name` is a DNS subdomain (what Kubernetes requires of node names).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Parses `K=V` labels (a value may be empty: `K=`).
pub fn parse_labels(labels: &[String]) -> Result<Vec<(String, String)>, AgentError> {
    labels
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|label| {
            let (key, value) = label
                .split_once('=')
                .ok_or_else(|| AgentError::InvalidConfig {
                    field: "node-label",
                    reason: format!("{label:?} is not KEY=VALUE"),
                })?;
            if key.is_empty() {
                return Err(AgentError::InvalidConfig {
                    field: "node-label",
                    reason: format!("{label:?} has an empty key"),
                });
            }
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// A parsed `--node-taint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintSpec {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// Parses `KEY[=VALUE]:EFFECT` taints.
pub fn parse_taints(taints: &[String]) -> Result<Vec<TaintSpec>, AgentError> {
    taints
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|taint| {
            let bad = |reason: &str| AgentError::InvalidConfig {
                field: "node-taint",
                reason: format!("{taint:?}: {reason}"),
            };
            let (kv, effect) = taint
                .rsplit_once(':')
                .ok_or_else(|| bad("expected KEY=VALUE:EFFECT"))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                return Err(bad(
                    "the effect must be NoSchedule, PreferNoSchedule or NoExecute",
                ));
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            if key.is_empty() {
                return Err(bad("the key is empty"));
            }
            Ok(TaintSpec {
                key: key.to_string(),
                value,
                effect: effect.to_string(),
            })
        })
        .collect()
}

/// Resources kept back from pods (`--system-reserved`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemReserved {
    /// Milli-CPUs.
    pub cpu_millis: i64,
    /// Bytes of memory.
    pub memory_bytes: i64,
    /// Bytes of the data directory's file system.
    pub ephemeral_storage_bytes: i64,
    /// Process ids.
    pub pids: i64,
}

impl SystemReserved {
    /// Parses `cpu=500m,memory=512Mi,ephemeral-storage=1Gi,pid=1000` (every part optional).
    pub fn parse(text: &str) -> Result<SystemReserved, AgentError> {
        let mut reserved = SystemReserved::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |reason: String| AgentError::InvalidConfig {
                field: "system-reserved",
                reason: format!("{part:?}: {reason}"),
            };
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| bad("expected RESOURCE=QUANTITY".into()))?;
            let quantity = Quantity::parse(value).map_err(|e| bad(e.to_string()))?;
            if quantity.signum() < 0 {
                return Err(bad("must not be negative".into()));
            }
            match name {
                "cpu" => reserved.cpu_millis = quantity.milli_value(),
                "memory" => reserved.memory_bytes = quantity.value(),
                "ephemeral-storage" => reserved.ephemeral_storage_bytes = quantity.value(),
                "pid" => reserved.pids = quantity.value(),
                other => {
                    return Err(bad(format!(
                        "unknown resource {other:?} (cpu, memory, ephemeral-storage, pid)"
                    )))
                }
            }
        }
        Ok(reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_reserved_parses_every_resource() {
        let r = SystemReserved::parse("cpu=250m, memory=1Gi,ephemeral-storage=2G,pid=100").unwrap();
        assert_eq!(
            r,
            SystemReserved {
                cpu_millis: 250,
                memory_bytes: 1 << 30,
                ephemeral_storage_bytes: 2_000_000_000,
                pids: 100
            }
        );
        assert_eq!(
            SystemReserved::parse("").unwrap(),
            SystemReserved::default()
        );
    }

    #[test]
    fn system_reserved_errors_name_the_part() {
        let e = SystemReserved::parse("cpu=1,gpu=2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("system-reserved") && e.contains("gpu"), "{e}");
        let e = SystemReserved::parse("memory=lots")
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory=lots"), "{e}");
        let e = SystemReserved::parse("cpu=-1").unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn taints_and_labels() {
        let t =
            parse_taints(&["dedicated=edge:NoSchedule".into(), "spot:NoExecute".into()]).unwrap();
        assert_eq!(t[0].value.as_deref(), Some("edge"));
        assert_eq!(t[1].value, None);
        assert!(parse_taints(&["a=b:Sometimes".into()]).is_err());
        assert!(parse_taints(&["a=b".into()]).is_err());
        assert_eq!(
            parse_labels(&["zone=a".into(), "empty=".into()]).unwrap(),
            vec![("zone".into(), "a".into()), ("empty".into(), "".into())]
        );
        assert!(parse_labels(&["novalue".into()]).is_err());
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("node-1.example"));
        assert!(!valid_node_name("Node"));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name(""));
    }
}
