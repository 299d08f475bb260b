//! The node's persisted network state: pod addresses (IPAM), their interfaces and host ports,
//! the known peers, and the names of the devices skiff created (for `cleanup_all`).
//!
//! Stored as one JSON file, `<state_dir>/network.json`, replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory), so a crash leaves either the old or the new
//! state and an address recorded as taken is never handed out twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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
    pub fn new(
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
        }
    }

    /// Addresses held by pods.
    pub fn used_ips(&self) -> BTreeSet<Ipv4Addr> {
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

/// Replaces the state file atomically and durably.
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
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(NetError::state(path))
}

/// Removes the state file (and a leftover temporary file); absent files are fine.
pub(crate) fn remove(path: &Path) -> Result<(), NetError> {
    for p in [path.to_path_buf(), path.with_extension("json.tmp")] {
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
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state));
        assert!(!path.with_extension("json.tmp").exists());
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(load(&path).unwrap(), None);
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
