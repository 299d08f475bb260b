//! The test network: a bridge in the host namespace (the "LAN"), and one network namespace per
//! node joined to it by a veth pair, each with its own address. Nothing else of the host is
//! touched; dropping it removes the namespaces, the veth pairs and the bridge.

use std::net::Ipv4Addr;
use std::process::Command;

/// Runs a command; `Err` carries its stderr.
pub fn run(cmd: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A short id unique enough for interface and namespace names of concurrent tests.
pub fn unique_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id().wrapping_mul(2654435761) ^ nanos ^ N.fetch_add(1, Ordering::Relaxed) << 16)
        & 0xfffff
}

/// One node's network namespace on the LAN.
#[derive(Debug, Clone)]
pub struct NodeNs {
    /// `ip netns` name (its file is `/var/run/netns/<name>`).
    pub name: String,
    /// The node's address.
    pub ip: Ipv4Addr,
    /// The host end of its veth pair.
    pub host_veth: String,
}

impl NodeNs {
    /// The namespace file.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Takes the node off the LAN (its cable pulled) or puts it back.
    pub fn set_link(&self, up: bool) -> Result<(), String> {
        run(&[
            "ip",
            "link",
            "set",
            &self.host_veth,
            if up { "up" } else { "down" },
        ])
        .map(|_| ())
    }
}

/// The bridge and the node namespaces.
#[derive(Debug)]
pub struct Lan {
    /// Bridge name.
    pub bridge: String,
    /// The host's address on the bridge (the nodes' default gateway).
    pub host_ip: Ipv4Addr,
    /// Prefix of the LAN (`10.A.B`).
    prefix: [u8; 3],
    id: u32,
    /// The nodes' namespaces, in creation order.
    pub nodes: Vec<NodeNs>,
}

fn subnet_in_use(prefix: [u8; 3]) -> bool {
    let needle = format!("{}.{}.{}.", prefix[0], prefix[1], prefix[2]);
    let addrs = run(&["ip", "-o", "-4", "addr"]).unwrap_or_default();
    let routes = run(&["ip", "-4", "route"]).unwrap_or_default();
    addrs.contains(&needle) || routes.contains(&needle)
}

impl Lan {
    /// A bridge with the host at `.1` of a free `10.A.B.0/24`.
    pub fn create() -> Result<Lan, String> {
        let id = unique_id();
        let mut prefix = [10, 100 + (id % 100) as u8, ((id >> 7) % 250) as u8];
        let mut tries = 0;
        while subnet_in_use(prefix) {
            tries += 1;
            if tries > 50 {
                return Err("no free 10.x.y.0/24 for the test LAN".into());
            }
            prefix[2] = prefix[2].wrapping_add(7) % 250;
        }
        let lan = Lan {
            bridge: format!("skb{id:05x}"),
            host_ip: Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 1),
            prefix,
            id,
            nodes: Vec::new(),
        };
        run(&["ip", "link", "add", &lan.bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", lan.host_ip),
            "dev",
            &lan.bridge,
        ])?;
        run(&["ip", "link", "set", &lan.bridge, "up"])?;
        Ok(lan)
    }

    /// Adds a node namespace with address `.host` (2..=254).
    pub fn add_node(&mut self, host: u8) -> Result<NodeNs, String> {
        let index = self.nodes.len();
        let ip = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host);
        let node = NodeNs {
            name: format!("skiff-t{:05x}-{index}", self.id),
            ip,
            host_veth: format!("skv{:05x}{index}", self.id),
        };
        let peer = format!("skp{:05x}{index}", self.id);
        run(&["ip", "netns", "add", &node.name])?;
        self.nodes.push(node.clone());
        run(&[
            "ip",
            "link",
            "add",
            &node.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        run(&["ip", "link", "set", &node.host_veth, "master", &self.bridge])?;
        run(&["ip", "link", "set", &node.host_veth, "up"])?;
        run(&["ip", "link", "set", &peer, "netns", &node.name])?;
        node.exec(&["ip", "link", "set", &peer, "name", "eth0"])?;
        node.exec(&["ip", "link", "set", "lo", "up"])?;
        node.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        node.exec(&["ip", "link", "set", "eth0", "up"])?;
        node.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &self.host_ip.to_string(),
        ])?;
        Ok(node)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = run(&["ip", "netns", "del", &node.name]);
            let _ = run(&["ip", "link", "del", &node.host_veth]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}
