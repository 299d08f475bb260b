//! NetworkPolicy as one node enforces it (protocol version [`POLICY_PROTOCOL_VERSION`] and
//! later only).
//!
//! The server compiles the cluster's NetworkPolicies for each node: for every pod on that node
//! that some policy selects, the union of the rules that apply to it, with pod and namespace
//! selectors already resolved to pod addresses and named ports resolved to numbers. The agent
//! asks with `AgentMessage::WatchPolicies` and gets the node's complete set
//! (`ServerMessage::Policies`) at once and after every change, so its side holds no API
//! objects, no selectors and no other node's pods.
//!
//! Semantics follow upstream's `networking.k8s.io/v1`:
//! - A pod that no policy selects for a direction is not isolated in that direction
//!   (`ingress`/`egress` is `None`): everything is allowed.
//! - An isolated pod (`Some(rules)`) admits exactly what one of `rules` allows; `Some(vec![])`
//!   denies everything (default deny).
//! - Replies to allowed connections are always allowed (connection tracking).
//! - Traffic between a pod and its own node is always allowed, so probes keep working.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// First protocol version that carries NetworkPolicy (`WatchPolicies` / `Policies`).
pub const POLICY_PROTOCOL_VERSION: u32 = 4;

/// What the NetworkPolicies allow for one pod of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPolicy {
    /// Namespace of the pod (for logs and rule comments).
    pub namespace: String,
    /// Name of the pod (for logs and rule comments).
    pub name: String,
    /// The pod's address (`status.podIPs`).
    pub ip: Ipv4Addr,
    /// Connections the pod may accept; `None`: not isolated for ingress.
    #[serde(default)]
    pub ingress: Option<Vec<PolicyRule>>,
    /// Connections the pod may open; `None`: not isolated for egress.
    #[serde(default)]
    pub egress: Option<Vec<PolicyRule>>,
}

/// One allowing rule: traffic from (ingress) or to (egress) one of `peers`, on one of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// The other side; `None`: any address. `Some(vec![])` matches nothing (selectors that
    /// select no pod).
    #[serde(default)]
    pub peers: Option<Vec<PolicyPeer>>,
    /// Destination ports; empty: every port and protocol.
    #[serde(default)]
    pub ports: Vec<PolicyPort>,
}

/// A range of addresses (a pod as a /32, or an `ipBlock`) minus its exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPeer {
    /// The addresses.
    pub cidr: Ipv4Net,
    /// `ipBlock.except`: addresses inside `cidr` that do not match.
    #[serde(default)]
    pub except: Vec<Ipv4Net>,
}

/// Transport protocols a policy port names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum PolicyProtocol {
    /// TCP (upstream's default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// A destination port, or range of ports, of one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPort {
    /// The protocol.
    #[serde(default)]
    pub protocol: PolicyProtocol,
    /// The first (or only) port; `None`: every port of the protocol.
    #[serde(default)]
    pub port: Option<u16>,
    /// `endPort`: the last port of a range (with `port`).
    #[serde(default)]
    pub end_port: Option<u16>,
}
