//! The node's persisted network state: pod addresses (IPAM), their interfaces and host ports,
//! the known peers, and the names of the devices skiff created (for `cleanup_all`).
//!
//! Stored as one JSON file, `<state_dir>/network.json`, replaced atomically (write a temporary
//! file, rename it over the old one), so an agent crash leaves either the old or the new state
//! and an address recorded as taken is never handed out twice.
//!
//! Durability against power loss is deliberately relaxed on the pod start path: `fsync` costs
//! milliseconds (tens on a busy disk or an SD card), and pods do not survive a reboot anyway —
//! their network namespaces die with the kernel. So attach and detach rename without waiting
//! and the manager flushes in the background ([`sync`]); setup and cleanup write durably. The
//! state records the kernel's boot id: after a reboot, the pod entries of the previous boot
//! are dropped (their addresses are free again), and a file left half-written by a power loss
//! (older than the current boot) is set aside instead of blocking the node.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::{HostPort, Peer};
use crate::NetError;

/// File name of the state inside the state directory.
pub const STATE_FILE: &str = "network.json";
const VERSION: u32 = 1;

/// Everything skiff-net remembers about a node's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeState {
    pub version: u32,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    pub node_ip: Ipv4Addr,
    pub bridge: String,
    #[serde(default)]
    pub vxlan_device: Option<String>,
    #[serde(default)]
    pub last_allocated: Option<Ipv4Addr>,
    #[serde(default)]
    pub pods: BTreeMap<String, PodRecord>,
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// `/proc/sys/kernel/random/boot_id` of the boot the pod entries belong to.
    #[serde(default)]
    pub boot_id: Option<String>,
}

/// One attached pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PodRecord {
    pub ip: Ipv4Addr,
    pub namespace: String,
    pub name: String,
    pub netns: PathBuf,
    pub host_veth: String,
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
}

impl NodeState {
    pub(crate) fn new(
        pod_cidr: Ipv4Net,
        cluster_cidr: Ipv4Net,
        node_ip: Ipv4Addr,
        bridge: &str,
        vxlan_device: Option<String>,
    ) -> Self {
        Self {
            version: VERSION,
            pod_cidr,
            cluster_cidr,
            node_ip,
            bridge: bridge.to_string(),
            vxlan_device,
            last_allocated: None,
            pods: BTreeMap::new(),
            peers: Vec::new(),
            boot_id: current_boot_id(),
        }
    }

    /// Addresses held by pods.
    pub(crate) fn used_ips(&self) -> BTreeSet<Ipv4Addr> {
        self.pods.values().map(|p| p.ip).collect()
    }
}

/// Path of the state file in `state_dir`.
pub(crate) fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// Reads the state, or `None` if there is none yet.
pub(crate) fn load(path: &Path) -> Result<Option<NodeState>, NetError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NetError::state(path)(e)),
    };
    let state: NodeState = serde_json::from_slice(&bytes).map_err(|e| NetError::CorruptState {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if state.version != VERSION {
        return Err(NetError::CorruptState {
            path: path.to_path_buf(),
            reason: format!("unsupported version {} (expected {VERSION})", state.version),
        });
    }
    let mut seen = BTreeMap::new();
    for (uid, pod) in &state.pods {
        if let Some(other) = seen.insert(pod.ip, uid) {
            return Err(NetError::CorruptState {
                path: path.to_path_buf(),
                reason: format!("address {} is recorded for pods {other} and {uid}", pod.ip),
            });
        }
    }
    Ok(Some(state))
}

/// The kernel's id of the current boot.
pub(crate) fn current_boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether the file at `path` was last written before the current boot.
pub(crate) fn written_before_this_boot(path: &Path) -> bool {
    let uptime = fs::read_to_string("/proc/uptime").ok().and_then(|s| {
        s.split_whitespace()
            .next()
            .and_then(|secs| secs.parse::<f64>().ok())
    });
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
    match (uptime, modified) {
        (Some(uptime), Some(modified)) => {
            let booted = SystemTime::now() - Duration::from_secs_f64(uptime);
            modified < booted
        }
        _ => false,
    }
}

/// Replaces the state file atomically (safe against an agent crash); call [`sync`] for
/// durability against power loss.
pub(crate) fn save(path: &Path, state: &NodeState) -> Result<(), NetError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(NetError::state(dir))?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| NetError::CorruptState {
        path: path.to_path_buf(),
        reason: format!("cannot serialize: {e}"),
    })?;
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        fs::rename(&tmp, path)
    };
    write().map_err(NetError::state(path))
}

/// Flushes the state file and its directory to disk.
pub(crate) fn sync(path: &Path) -> Result<(), NetError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let flush = || -> std::io::Result<()> {
        fs::File::open(path)?.sync_all()?;
        fs::File::open(dir)?.sync_all()
    };
    flush().map_err(NetError::state(path))
}

/// [`save`] then [`sync`].
pub(crate) fn save_durably(path: &Path, state: &NodeState) -> Result<(), NetError> {
    save(path, state)?;
    sync(path)
}

/// Moves an unusable state file aside (to `network.json.corrupt`) and returns that path.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf, NetError> {
    let aside = path.with_extension("json.corrupt");
    fs::rename(path, &aside).map_err(NetError::state(path))?;
    Ok(aside)
}

/// Removes the state file (and leftover temporary or set-aside files); absent files are fine.
pub(crate) fn remove(path: &Path) -> Result<(), NetError> {
    for p in [
        path.to_path_buf(),
        path.with_extension("json.tmp"),
        path.with_extension("json.corrupt"),
    ] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NetError::state(&p)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn sample() -> NodeState {
        let mut s = NodeState::new(
            "10.42.1.0/24".parse().unwrap(),
            "10.42.0.0/16".parse().unwrap(),
            "192.168.1.11".parse().unwrap(),
            "skiff0",
            Some("skiff.1".into()),
        );
        s.last_allocated = Some("10.42.1.3".parse().unwrap());
        s.pods.insert(
            "uid-1".into(),
            PodRecord {
                ip: "10.42.1.3".parse().unwrap(),
                namespace: "default".into(),
                name: "web".into(),
                netns: "/run/netns/x".into(),
                host_veth: "skf0123456789ab".into(),
                host_ports: vec![HostPort {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None,
                }],
            },
        );
        s.peers.push(Peer {
            name: "n2".into(),
            node_ip: "192.168.1.12".parse().unwrap(),
            pod_cidr: "10.42.2.0/24".parse().unwrap(),
        });
        s
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        assert_eq!(load(&path).unwrap(), None);
        let state = sample();
        save_durably(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state.clone()));
        assert!(!written_before_this_boot(&path));
        save(&path, &state).unwrap();
        sync(&path).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state));
        assert!(!path.with_extension("json.tmp").exists());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(load(&path).unwrap(), None);
    }

    #[test]
    fn a_file_from_before_this_boot_is_recognised_and_can_be_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        fs::write(&path, b"").unwrap();
        assert!(!written_before_this_boot(&path));
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
            .unwrap();
        assert!(written_before_this_boot(&path));
        let aside = set_aside(&path).unwrap();
        assert!(aside.ends_with("network.json.corrupt") && aside.exists() && !path.exists());
        remove(&path).unwrap();
        assert!(!aside.exists());
    }

    #[test]
    fn corrupt_or_duplicated_state_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path());
        fs::write(&path, b"{not json").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("network.json") && err.contains("corrupt"),
            "{err}"
        );

        let mut state = sample();
        let mut twin = state.pods["uid-1"].clone();
        twin.name = "twin".into();
        state.pods.insert("uid-2".into(), twin);
        fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("10.42.1.3") && err.contains("uid-2"), "{err}");

        let mut state = sample();
        state.version = 99;
        fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("version 99"));
    }
}
