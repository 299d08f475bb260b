//! The error type of every skiff-net operation.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

/// What went wrong while setting up or changing a node's pod network. Each variant names the
/// object (field, pod, peer, file, device) it is about.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A field of [`NetworkConfig`](crate::NetworkConfig) is unusable.
    #[error("network configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field, e.g. `pod_cidr`.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A backend name other than `host-gw` or `vxlan`.
    #[error("unknown network backend {0:?}: expected \"host-gw\" or \"vxlan\"")]
    UnknownBackend(String),
    /// A protocol name other than TCP or UDP.
    #[error("unsupported hostPort protocol {0:?}: expected \"TCP\" or \"UDP\"")]
    UnknownProtocol(String),
    /// A field of a [`PodNetRequest`](crate::PodNetRequest) is unusable.
    #[error("pod {pod}: {field}: {reason}")]
    InvalidPod {
        /// `namespace/name (uid)` of the pod.
        pod: String,
        /// The field, e.g. `hostPorts[0].hostPort`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// Another pod already holds the same host port.
    #[error(
        "pod {pod}: hostPort {host_port}/{protocol} is already used by pod {owner} on this node"
    )]
    HostPortConflict {
        /// The pod asking.
        pod: String,
        /// The contested port.
        host_port: u16,
        /// `TCP` or `UDP`.
        protocol: String,
        /// The pod holding it.
        owner: String,
    },
    /// A peer given to `sync_peers` is unusable.
    #[error("peer node {node:?}: {reason}")]
    InvalidPeer {
        /// The peer's node name.
        node: String,
        /// Why it is refused.
        reason: String,
    },
    /// Every address of the node's pod CIDR is taken.
    #[error("pod {pod}: no free address left in pod CIDR {pod_cidr} ({in_use} in use)")]
    IpamExhausted {
        /// The pod asking.
        pod: String,
        /// The node's pod CIDR.
        pod_cidr: Ipv4Net,
        /// Addresses held by pods.
        in_use: usize,
    },
    /// The pod CIDR of the persisted state differs from the configured one.
    #[error(
        "state {path}: pods were given addresses from pod CIDR {persisted}, but the node's \
         pod CIDR is now {configured}; run `skiff agent --cleanup` to reset the node's network"
    )]
    PodCidrChanged {
        /// The state file.
        path: PathBuf,
        /// The pod CIDR recorded in it.
        persisted: Ipv4Net,
        /// The pod CIDR configured now.
        configured: Ipv4Net,
    },
    /// Reading or writing the persisted state failed.
    #[error("state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// The persisted state file cannot be understood.
    #[error("state {path} is corrupt: {reason}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What could not be parsed.
        reason: String,
    },
    /// A network namespace could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// A netlink request failed.
    #[error("netlink: {op}: {source}")]
    Netlink {
        /// What was being done, e.g. `add veth skf1234 for pod default/web`.
        op: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// The node IP is not an address of any interface in the node's namespace.
    #[error("node IP {0} is not assigned to any interface of this node")]
    NodeIpNotFound(Ipv4Addr),
    /// A link exists but is not what skiff expects (e.g. `skiff0` is not a bridge).
    #[error("link {name}: {reason}")]
    UnexpectedLink {
        /// Interface name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `nft` command could not be run.
    #[error("cannot run `nft` (Debian package nftables): {0}")]
    NftSpawn(io::Error),
    /// The `nft` command refused a request.
    #[error("nft {op}: {stderr}")]
    Nftables {
        /// What was being done.
        op: String,
        /// What nft printed.
        stderr: String,
    },
    /// The kernel cannot hand bridged traffic to the IP hooks (`br_netfilter`), so traffic
    /// between two pods of the node could not be filtered.
    #[error(
        "NetworkPolicy needs br_netfilter (net/bridge/bridge-nf-call-iptables) to filter \
         traffic between pods of one node: {0}"
    )]
    BridgeNetfilter(String),
    /// A kernel setting under `/proc/sys` could not be read or written.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// The key, e.g. `net/ipv4/ip_forward`.
        key: String,
        /// The IO error.
        source: io::Error,
    },
}

impl NetError {
    pub(crate) fn netlink(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
        let op = op.into();
        move |source| NetError::Netlink { op, source }
    }

    pub(crate) fn state(path: &std::path::Path) -> impl FnOnce(io::Error) -> NetError + '_ {
        move |source| NetError::State {
            path: path.to_path_buf(),
            source,
        }
    }
}
