//! Network namespaces for tests: [`Netns`], a named namespace removed on drop, and [`Lan`], a
//! bridge in the caller's namespace with one node namespace per simulated machine, each on a
//! veth pair with its own address. Agents join such a namespace with `--netns PATH` (never
//! under `ip netns exec`, which remounts `/sys` and hides the cgroup hierarchy).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::cmd::{run, run_ok};

/// A short id unique enough for interface and namespace names of concurrent tests (20 bits).
pub fn unique_id() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id().wrapping_mul(2654435761) ^ nanos ^ N.fetch_add(1, Ordering::Relaxed) << 16)
        & 0xfffff
}

/// A named network namespace (`/run/netns/NAME`) with `lo` up, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// `ip netns` name.
    pub name: String,
    /// The namespace file.
    pub path: PathBuf,
}

impl Netns {
    /// Creates a namespace whose name contains `tag` (keep it short: names of interfaces
    /// derived from it must fit 15 bytes). Panics when `ip netns add` fails.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("skt{}-{n}-{tag}", std::process::id());
        run_ok(&["ip", "netns", "add", &name]);
        let ns = Netns {
            path: PathBuf::from(format!("/run/netns/{name}")),
            name,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok(&full)
    }

    /// Runs a command inside the namespace (`ip netns exec`), panicking on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        self.try_exec(args)
            .unwrap_or_else(|e| panic!("in netns {}: {e}", self.name))
    }

    /// Runs a command inside the namespace; `Err` carries its output.
    pub fn try_exec(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Writes `/proc/sys/KEY` (e.g. `net/ipv4/ip_forward`) inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.within(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("write {path} in {}: {e}", self.name));
    }

    /// Runs `f` on a fresh thread that has entered this namespace (the caller's threads stay
    /// where they are).
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file =
            File::open(&self.path).unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "setns into {}: {}",
                    self.name,
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .expect("thread inside netns")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// One node's network namespace on a [`Lan`].
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
    /// The namespace file (what `skiff agent --netns` takes).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// Runs `f` on a new thread inside the namespace (sockets it creates stay there) and
    /// returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "setns into {}: {}",
                    self.name,
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .expect("thread inside the node's namespace")
        })
    }

    /// Adds another address (same /24) to the node's `eth0`.
    pub fn add_address(&self, ip: Ipv4Addr) -> Result<(), String> {
        self.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .map(|_| ())
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

/// A bridge in the caller's namespace (the "LAN", the host at `.1`) and the node namespaces
/// on it. Nothing else of the host is touched; dropping it removes the namespaces, the veth
/// pairs and the bridge.
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

    /// The LAN's address `.host`.
    pub fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }

    /// Adds a node namespace with address `.host` (2..=254) on `eth0`, default route via the
    /// host.
    pub fn add_node(&mut self, host: u8) -> Result<NodeNs, String> {
        let index = self.nodes.len();
        let ip = self.address(host);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_fit_interface_names() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
        assert!(format!("skv{a:05x}9").len() <= 15);
    }

    #[test]
    fn a_lan_connects_its_nodes_and_is_removed_on_drop() {
        if !crate::gate::require("a_lan_connects_its_nodes", true, &["ip", "ping"]) {
            return;
        }
        let mut lan = Lan::create().expect("create the LAN");
        let a = lan.add_node(2).expect("node a");
        let b = lan.add_node(3).expect("node b");
        b.exec(&["ping", "-c", "1", "-W", "2", &a.ip.to_string()])
            .expect("b reaches a over the bridge");
        a.set_link(false).expect("pull a's cable");
        assert!(b
            .exec(&["ping", "-c", "1", "-W", "1", &a.ip.to_string()])
            .is_err());
        let bridge = lan.bridge.clone();
        drop(lan);
        assert!(
            run(&["ip", "link", "show", &bridge]).is_err(),
            "bridge left"
        );
        assert!(!a.path().exists(), "namespace left");
    }
}
