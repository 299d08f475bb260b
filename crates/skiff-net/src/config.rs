//! The inputs of the node's network manager: node configuration, pods, host ports and peers.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::NetError;

/// Default name of the node's pod bridge.
pub const DEFAULT_BRIDGE: &str = "skiff0";
/// Default VXLAN network identifier (flannel's default too).
pub const DEFAULT_VXLAN_VNI: u32 = 1;
/// Default VXLAN UDP port (the Linux kernel's and flannel's default).
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// Bytes a VXLAN encapsulation adds (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Name of the interface a pod sees.
pub const POD_INTERFACE: &str = "eth0";

/// How pod traffic reaches the pods of other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Plain routes: each peer's pod CIDR via that peer's node IP. Needs all nodes on one L2
    /// segment; no encapsulation overhead.
    HostGw,
    /// VXLAN encapsulation (flannel's `vxlan` backend): works across routed networks, costs
    /// 50 bytes of MTU.
    Vxlan {
        /// VXLAN network identifier (1 ..= 16777215).
        vni: u32,
        /// UDP destination port.
        port: u16,
    },
}

impl Backend {
    /// The VXLAN backend with flannel's defaults (VNI 1, port 8472).
    pub const fn vxlan() -> Self {
        Backend::Vxlan {
            vni: DEFAULT_VXLAN_VNI,
            port: DEFAULT_VXLAN_PORT,
        }
    }

    /// Name of the VXLAN device for this backend (`skiff.<vni>`), if it uses one.
    pub fn vxlan_device(&self) -> Option<String> {
        match self {
            Backend::HostGw => None,
            Backend::Vxlan { vni, .. } => Some(format!("skiff.{vni}")),
        }
    }
}

impl FromStr for Backend {
    type Err = NetError;

    /// Parses the `--flannel-backend`-style names `host-gw` and `vxlan`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::vxlan()),
            other => Err(NetError::UnknownBackend(other.to_string())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::HostGw => f.write_str("host-gw"),
            Backend::Vxlan { .. } => f.write_str("vxlan"),
        }
    }
}

/// Everything the node's network manager needs to know about its node.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// This node's pod CIDR (`node.spec.podCIDR`); its first address goes on the bridge as
    /// the pods' gateway.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod range (`--cluster-cidr`); traffic leaving it is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// The node's own address (its InternalIP); the interface holding it is the uplink.
    pub node_ip: Ipv4Addr,
    /// How to reach other nodes' pods.
    pub backend: Backend,
    /// MTU of the bridge and pod interfaces; default: the uplink's MTU, minus 50 for VXLAN.
    pub mtu: Option<u32>,
    /// Name of the pod bridge (default `skiff0`).
    pub bridge: String,
    /// Directory for the persisted state (IPAM, host ports, peers).
    pub state_dir: PathBuf,
    /// Network namespace holding the node's network (its uplink); `None` is the namespace
    /// of the thread calling [`PodNetwork::setup`](crate::PodNetwork::setup), i.e. the host's
    /// for the agent. Tests use it to run simulated nodes inside their own namespaces.
    pub netns: Option<PathBuf>,
}

impl NetworkConfig {
    /// A configuration with the defaults: host-gw, uplink MTU, bridge `skiff0`, the calling
    /// thread's network namespace.
    pub fn new(
        pod_cidr: Ipv4Net,
        cluster_cidr: Ipv4Net,
        node_ip: Ipv4Addr,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            pod_cidr,
            cluster_cidr,
            node_ip,
            backend: Backend::HostGw,
            mtu: None,
            bridge: DEFAULT_BRIDGE.to_string(),
            state_dir: state_dir.into(),
            netns: None,
        }
    }

    /// The gateway address of the pods: the first host address of the pod CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_cidr.network()) + 1)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid =
            |field: &'static str, reason: String| NetError::InvalidConfig { field, reason };
        if self.pod_cidr != self.pod_cidr.trunc() {
            return Err(invalid(
                "pod_cidr",
                format!(
                    "{} has host bits set (did you mean {}?)",
                    self.pod_cidr,
                    self.pod_cidr.trunc()
                ),
            ));
        }
        if self.cluster_cidr != self.cluster_cidr.trunc() {
            return Err(invalid(
                "cluster_cidr",
                format!(
                    "{} has host bits set (did you mean {}?)",
                    self.cluster_cidr,
                    self.cluster_cidr.trunc()
                ),
            ));
        }
        if self.pod_cidr.prefix_len() > 30 {
            return Err(invalid(
                "pod_cidr",
                format!(
                    "{} is too small: a pod CIDR needs at least a /30",
                    self.pod_cidr
                ),
            ));
        }
        if !self.cluster_cidr.contains(&self.pod_cidr) {
            return Err(invalid(
                "pod_cidr",
                format!(
                    "{} is not inside the cluster CIDR {}",
                    self.pod_cidr, self.cluster_cidr
                ),
            ));
        }
        if self.cluster_cidr.contains(&self.node_ip) {
            return Err(invalid(
                "node_ip",
                format!(
                    "{} lies inside the cluster CIDR {}",
                    self.node_ip, self.cluster_cidr
                ),
            ));
        }
        if self.node_ip.is_unspecified()
            || self.node_ip.is_loopback()
            || self.node_ip.is_multicast()
        {
            return Err(invalid(
                "node_ip",
                format!("{} cannot be a node address", self.node_ip),
            ));
        }
        validate_ifname(&self.bridge).map_err(|reason| invalid("bridge", reason))?;
        if let Backend::Vxlan { vni, port } = self.backend {
            if vni == 0 || vni > 0x00ff_ffff {
                return Err(invalid(
                    "backend",
                    format!("VXLAN VNI {vni} is not in 1..=16777215"),
                ));
            }
            if port == 0 {
                return Err(invalid("backend", "VXLAN port 0 is not a port".to_string()));
            }
            if let Some(dev) = self.backend.vxlan_device() {
                validate_ifname(&dev).map_err(|reason| invalid("backend", reason))?;
            }
        }
        if let Some(mtu) = self.mtu {
            if !(576..=65535).contains(&mtu) {
                return Err(invalid("mtu", format!("{mtu} is not in 576..=65535")));
            }
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must not be empty".to_string()));
        }
        Ok(())
    }
}

/// Checks an interface name: 1 to 15 bytes of letters, digits, `.`, `-` and `_`.
pub(crate) fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name {name:?} must be 1 to 15 bytes long"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is reserved"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!(
            "interface name {name:?} may only contain letters, digits, '.', '-' and '_'"
        ));
    }
    Ok(())
}

/// Transport protocol of a host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// The nftables keyword.
    pub(crate) fn nft(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl FromStr for Protocol {
    type Err = NetError;

    /// Parses Kubernetes' `containerPort.protocol` values (`TCP`, `UDP`; case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            _ => Err(NetError::UnknownProtocol(s.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// A container port published on the node (`ports[].hostPort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPort {
    /// Port on the node.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Only this node address (`hostIP`); `None` = every node address, including localhost.
    pub host_ip: Option<Ipv4Addr>,
}

/// A pod to wire into the node's network.
#[derive(Debug, Clone)]
pub struct PodNetRequest {
    /// `metadata.uid`: the key of the pod's address and interfaces.
    pub uid: String,
    /// `metadata.namespace` (for messages and the state file).
    pub namespace: String,
    /// `metadata.name` (for messages and the state file).
    pub name: String,
    /// The pod sandbox's network namespace file (bind mount, like `ip netns add` makes).
    pub netns: PathBuf,
    /// The pod's host ports.
    pub host_ports: Vec<HostPort>,
}

impl PodNetRequest {
    /// `namespace/name (uid)`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}/{} ({})", self.namespace, self.name, self.uid)
    }

    pub(crate) fn validate(&self) -> Result<(), NetError> {
        let invalid = |field: String, reason: String| NetError::InvalidPod {
            pod: self.display_name(),
            field,
            reason,
        };
        if self.uid.is_empty() || self.uid.len() > 128 {
            return Err(invalid("uid".into(), "must be 1 to 128 characters".into()));
        }
        if self.uid.chars().any(|c| c.is_control()) {
            return Err(invalid(
                "uid".into(),
                "must not contain control characters".into(),
            ));
        }
        if self.netns.as_os_str().is_empty() {
            return Err(invalid("netns".into(), "no network namespace path".into()));
        }
        for (i, hp) in self.host_ports.iter().enumerate() {
            if hp.host_port == 0 {
                return Err(invalid(
                    format!("hostPorts[{i}].hostPort"),
                    "0 is not a port".into(),
                ));
            }
            if hp.container_port == 0 {
                return Err(invalid(
                    format!("hostPorts[{i}].containerPort"),
                    "0 is not a port".into(),
                ));
            }
            if let Some(ip) = hp.host_ip {
                if ip.is_multicast() || ip.is_broadcast() {
                    return Err(invalid(
                        format!("hostPorts[{i}].hostIP"),
                        format!("{ip} is not a unicast address"),
                    ));
                }
            }
            for (j, other) in self.host_ports.iter().enumerate().take(i) {
                if other.host_port == hp.host_port
                    && other.protocol == hp.protocol
                    && host_ips_overlap(other.host_ip, hp.host_ip)
                {
                    return Err(invalid(
                        format!("hostPorts[{i}].hostPort"),
                        format!(
                            "{}/{} is also published by hostPorts[{j}]",
                            hp.host_port, hp.protocol
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether two host-port bindings (by `hostIP`) could receive the same packet.
pub(crate) fn host_ips_overlap(a: Option<Ipv4Addr>, b: Option<Ipv4Addr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
        _ => true,
    }
}

/// The network identity attach gave a pod (for `status.podIP(s)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetStatus {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Prefix length of the pod's address (the pod CIDR's).
    pub prefix_len: u8,
    /// The pod's default gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// The host end of the pod's veth pair.
    pub host_interface: String,
    /// MTU of the pod's interface.
    pub mtu: u32,
}

/// Another node, as the agent learns it from the Node objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Node name.
    pub name: String,
    /// Its InternalIP.
    pub node_ip: Ipv4Addr,
    /// Its `spec.podCIDR`.
    pub pod_cidr: Ipv4Net,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetworkConfig {
        NetworkConfig::new(
            "10.42.1.0/24".parse().unwrap(),
            "10.42.0.0/16".parse().unwrap(),
            "192.168.1.11".parse().unwrap(),
            "/var/lib/skiff/agent/net",
        )
    }

    #[test]
    fn backend_names_parse_like_the_flannel_flag() {
        assert_eq!("host-gw".parse::<Backend>().unwrap(), Backend::HostGw);
        assert_eq!("vxlan".parse::<Backend>().unwrap(), Backend::vxlan());
        assert_eq!(Backend::vxlan().vxlan_device().as_deref(), Some("skiff.1"));
        assert_eq!(Backend::HostGw.to_string(), "host-gw");
        let err = "wireguard".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.contains("\"wireguard\"") && err.contains("host-gw"),
            "{err}"
        );
    }

    #[test]
    fn protocols_parse_kubernetes_spelling() {
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("udp".parse::<Protocol>().unwrap(), Protocol::Udp);
        let err = "SCTP".parse::<Protocol>().unwrap_err().to_string();
        assert!(err.contains("SCTP"), "{err}");
    }

    #[test]
    fn the_gateway_is_the_first_address() {
        assert_eq!(config().gateway(), Ipv4Addr::new(10, 42, 1, 1));
        config().validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        type Mutation = Box<dyn Fn(&mut NetworkConfig)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|c| c.pod_cidr = "10.42.1.7/24".parse().unwrap()),
                "pod_cidr",
            ),
            (
                Box::new(|c| c.pod_cidr = "10.42.1.0/31".parse().unwrap()),
                "pod_cidr",
            ),
            (
                Box::new(|c| c.pod_cidr = "10.43.1.0/24".parse().unwrap()),
                "pod_cidr",
            ),
            (
                Box::new(|c| c.cluster_cidr = "10.42.0.1/16".parse().unwrap()),
                "cluster_cidr",
            ),
            (
                Box::new(|c| c.node_ip = "10.42.9.9".parse().unwrap()),
                "node_ip",
            ),
            (Box::new(|c| c.node_ip = Ipv4Addr::LOCALHOST), "node_ip"),
            (Box::new(|c| c.bridge = String::new()), "bridge"),
            (
                Box::new(|c| c.bridge = "a-name-that-is-too-long".into()),
                "bridge",
            ),
            (Box::new(|c| c.bridge = "br\"0".into()), "bridge"),
            (
                Box::new(|c| c.backend = Backend::Vxlan { vni: 0, port: 8472 }),
                "backend",
            ),
            (
                Box::new(|c| c.backend = Backend::Vxlan { vni: 1, port: 0 }),
                "backend",
            ),
            (
                Box::new(|c| {
                    c.backend = Backend::Vxlan {
                        vni: 16_777_216,
                        port: 8472,
                    }
                }),
                "backend",
            ),
            (Box::new(|c| c.mtu = Some(100)), "mtu"),
            (Box::new(|c| c.state_dir = PathBuf::new()), "state_dir"),
        ];
        for (mutate, field) in cases {
            let mut c = config();
            mutate(&mut c);
            let err = c
                .validate()
                .map(|()| format!("accepted {c:?}"))
                .unwrap_or_else(|e| e.to_string());
            assert!(
                err.starts_with(&format!("network configuration: {field}:")),
                "{err}"
            );
        }
    }

    #[test]
    fn pod_requests_are_checked() {
        let ok = PodNetRequest {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "web".into(),
            netns: "/run/netns/x".into(),
            host_ports: vec![
                HostPort {
                    host_port: 80,
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: None,
                },
                HostPort {
                    host_port: 80,
                    container_port: 80,
                    protocol: Protocol::Udp,
                    host_ip: None,
                },
            ],
        };
        ok.validate().unwrap();
        let mut twice = ok.clone();
        twice.host_ports[1].protocol = Protocol::Tcp;
        twice.host_ports[1].host_ip = Some("192.168.1.11".parse().unwrap());
        let err = twice.validate().unwrap_err().to_string();
        assert!(
            err.contains("default/web (u1): hostPorts[1].hostPort"),
            "{err}"
        );
        // Different specific host IPs do not clash.
        let mut split = twice.clone();
        split.host_ports[0].host_ip = Some("192.168.1.12".parse().unwrap());
        split.validate().unwrap();
        let mut control = ok.clone();
        control.uid = "a\nb".into();
        assert!(control.validate().unwrap_err().to_string().contains("uid"));
        let mut multicast = ok;
        multicast.host_ports[0].host_ip = Some("224.0.0.1".parse().unwrap());
        let err = multicast.validate().unwrap_err().to_string();
        assert!(err.contains("hostPorts[0].hostIP"), "{err}");
    }
}
