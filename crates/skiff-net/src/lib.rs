//! Pod networking for a skiff node: bridge, veth pairs, IPAM, routes and NAT through netlink
//! (`rtnetlink`) and nftables (the `nft` command), with no CNI plugin binaries.
//!
//! The agent drives one [`PodNetwork`] per node:
//! - [`PodNetwork::setup`] once at start: the `skiff0` bridge holding the pods' gateway (the
//!   pod CIDR's first address), IP forwarding, the `inet skiff` nftables table (egress
//!   masquerade, hostPort DNAT), the VXLAN device for that backend. Adopts what a previous run
//!   left, so pods keep their addresses and connectivity across agent restarts.
//! - [`PodNetwork::attach`] when a pod sandbox exists (its network namespace file is given):
//!   a veth pair (`eth0` inside the pod), an address from the pod CIDR persisted in
//!   `<state_dir>/network.json`, `lo` up, default route, host ports. Same pod, same address.
//! - [`PodNetwork::detach`] when the pod is gone: the veth pair, address and rules go.
//! - [`PodNetwork::sync_peers`] whenever the set of nodes changes: routes to every other
//!   node's pod CIDR (host-gw), or VXLAN routes, ARP and FDB entries.
//! - [`ServiceProxy::new`] once, then [`ServiceProxy::sync`] with the cluster's Services
//!   whenever they change: ClusterIP, NodePort, external and load-balancer IPs as nftables
//!   DNAT rules (table `inet skiff-proxy`), modelled on upstream's nftables kube-proxy.
//! - [`PolicyEnforcer::new`] once, then [`PolicyEnforcer::sync`] with the node's
//!   NetworkPolicies (one [`PodPolicy`](skiff_link_proto::proto::policy::PodPolicy) per
//!   isolated local pod) whenever they change: per-pod nftables chains in the forward hook
//!   (table `inet skiff-policy`).
//! - [`PodNetwork::cleanup_all`] for `skiff agent --cleanup`: removes everything.
//!
//! `hostNetwork: true` pods need nothing from this crate: the agent does not call `attach` and
//! reports the node IP as the pod IP.
//!
//! Everything needs root (CAP_NET_ADMIN). Work inside network namespaces is done on
//! short-lived threads that enter the namespace, never on the caller's (tokio) threads.

mod config;
mod devices;
mod error;
mod ipam;
mod manager;
mod netlink;
mod netns;
mod nft;
mod nft_objects;
mod peers;
mod pod;
mod policy;
mod proxy;
mod state;
mod sysctl;

pub use config::{
    Backend, HostPort, NetworkConfig, Peer, PodNetRequest, PodNetStatus, Protocol, DEFAULT_BRIDGE,
    DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI, POD_INTERFACE, VXLAN_OVERHEAD,
};
pub use error::NetError;
pub use manager::{AttachedPod, CleanupConfig, CleanupReport, PodNetwork};
pub use netlink::{route_socket_usable, SKIFF_ROUTE_PROTOCOL};
pub use netns::NetNs;
pub use nft::TABLE as NFT_TABLE;
pub use pod::VETH_PREFIX;
pub use policy::{PolicyEnforcer, PolicySyncStats, POLICY_TABLE};
pub use proxy::{ProxySettings, ProxySyncStats, ServiceProxy, PROXY_TABLE, SERVICE_ADDRESS_LABEL};
pub use state::STATE_FILE;
