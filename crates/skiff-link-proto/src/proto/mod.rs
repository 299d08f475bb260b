//! The wire protocol: typed messages, framing with size limits, and the version handshake's
//! constants. No IO.
//!
//! One QUIC connection per node carries everything. The agent opens one bidirectional *control
//! stream* and speaks [`AgentMessage`]s on it; the server answers with [`ServerMessage`]s. The
//! server opens further bidirectional streams for logs, exec and image hand-over ([`image`]):
//! each starts with one [`StreamRequest`] frame from the server; logs and exec are answered with
//! one [`StreamReply`] frame from the agent, followed by raw bytes. From version 4 the agent
//! opens streams too: one per pod connection to the `kubernetes` Service on a node without a
//! direct path to the API ([`tunnel`]: [`tunnel::AgentStreamRequest`] answered by
//! [`tunnel::AgentStreamReply`], then raw bytes spliced to the API listener).
//!
//! A connection without a client certificate may carry only one exchange: [`AgentMessage::Join`]
//! answered by [`ServerMessage::Joined`] or [`ServerMessage::Refused`].

pub mod exec;
pub mod frame;
pub mod image;
pub mod policy;
pub mod service;
pub mod tunnel;
pub mod usage;

use k8s_openapi::api::core::v1::{Event, Node, Pod, PodStatus};
use serde::{Deserialize, Serialize};

pub use frame::{decode, encode, FrameDecoder, FrameError, DEFAULT_MAX_FRAME_LEN};

/// Newest protocol version this build speaks (2 added image hand-over: `FetchImage` and
/// `StreamRequest::Image`; 3 added Services: `WatchServices` and `Services`; 4 added
/// NetworkPolicy: `WatchPolicies` and `Policies`, and agent-opened API tunnel streams,
/// [`tunnel`]; 5 adds port-forward and node HTTP streams and resource-usage reports for the
/// metrics API).
pub const PROTOCOL_VERSION: u32 = 5;
/// Oldest protocol version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// TLS ALPN identifier of the node link.
pub const ALPN: &[u8] = b"skiff-link/1";

/// Application error codes carried by a QUIC `CONNECTION_CLOSE` (the reason text says more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Orderly shutdown by either side.
    Normal = 0,
    /// The peer broke the protocol (malformed or oversized frame, unexpected message).
    ProtocolViolation = 1,
    /// The request was refused (see the `Refused` message that preceded the close).
    Refused = 2,
    /// The peer stopped answering heartbeats.
    PeerDead = 3,
    /// The server is shutting down; reconnect later.
    ServerShutdown = 4,
    /// The handshake did not finish in time.
    HandshakeTimeout = 5,
}

impl CloseCode {
    /// The code for a numeric value read off the wire.
    pub fn from_u64(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Normal,
            1 => Self::ProtocolViolation,
            2 => Self::Refused,
            3 => Self::PeerDead,
            4 => Self::ServerShutdown,
            5 => Self::HandshakeTimeout,
            _ => return None,
        })
    }
}

/// A pod named by namespace, name and uid (the uid guards against acting on a same-named
/// successor).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// `metadata.uid` of the pod.
    pub uid: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The agent's opening message on an authenticated connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// Oldest protocol version the agent speaks.
    pub min_version: u32,
    /// Newest protocol version the agent speaks.
    pub max_version: u32,
    /// Node name; must match the client certificate's identity.
    pub node_name: String,
    /// Revision of the last desired-state update the agent applied, to resume from.
    pub resume_revision: Option<u64>,
    /// skiff version of the agent (informational).
    pub agent_version: String,
}

/// Credentials and certificate request of a joining node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// Bootstrap token id (the part before the dot).
    pub token_id: String,
    /// Bootstrap token secret (the part after the dot).
    pub token_secret: String,
    /// Node name the agent wants.
    pub node_name: String,
    /// The node's password: proves ownership of the name on later joins.
    pub node_password: String,
    /// PKCS#10 certificate signing request (PEM) for `system:node:<name>`.
    pub csr_pem: String,
    /// skiff version of the agent (informational).
    pub agent_version: String,
}

/// One pod's status as observed by the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatusUpdate {
    /// The pod.
    pub pod: PodRef,
    /// Its full status.
    pub status: PodStatus,
}

/// A change to the set of pods bound to the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum PodChange {
    /// The pod was bound to the node or changed.
    Upsert {
        /// The whole pod.
        pod: Box<Pod>,
    },
    /// The pod is gone from the store (or no longer bound to the node).
    Removed {
        /// Which pod.
        pod: PodRef,
    },
}

/// Why the server refused a join or a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalCode {
    /// No protocol version in common.
    UnsupportedVersion,
    /// The join token is unknown or its secret is wrong.
    InvalidToken,
    /// The join token has expired.
    ExpiredToken,
    /// Another node already holds this name (different node password).
    NameTaken,
    /// The request does not match the connection's identity, or is not allowed on it.
    Forbidden,
    /// The request is malformed (bad CSR, invalid node name, ...).
    BadRequest,
    /// The server failed while handling the request.
    Internal,
    /// A code this build does not know.
    #[serde(other)]
    Unknown,
}

/// Messages from the agent to the server on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentMessage {
    /// Opens a session (authenticated connections).
    Hello(Hello),
    /// Asks for a node certificate (unauthenticated connections).
    Join(JoinRequest),
    /// Creates or updates the Node object.
    Register {
        /// The node as the agent sees it (labels, taints, capacity, addresses, nodeInfo).
        node: Box<Node>,
    },
    /// Liveness; renews the node's Lease.
    Heartbeat {
        /// Sequence number echoed by the acknowledgement.
        seq: u64,
    },
    /// Pod statuses to write; acknowledged with `StatusAck { batch }`.
    PodStatuses {
        /// Batch number chosen by the agent.
        batch: u64,
        /// Latest status per pod.
        updates: Vec<PodStatusUpdate>,
    },
    /// Pods that were marked for deletion and are now stopped on the node.
    PodsTerminated {
        /// The stopped pods.
        pods: Vec<PodRef>,
    },
    /// Events to record.
    Events {
        /// core/v1 Events.
        events: Vec<Event>,
    },
    /// Asks for a fresh certificate before the current one expires.
    RenewCertificate {
        /// PKCS#10 certificate signing request (PEM) for the same identity.
        csr_pem: String,
    },
    /// The agent is going away on purpose.
    Goodbye {
        /// Why.
        reason: String,
    },
    /// Asks for the cluster's nodes (pod CIDRs and addresses, for pod networking) and their
    /// changes for the rest of the session; answered with `Nodes` messages.
    WatchNodes,
    /// Reads config maps and secrets the node's pods use; answered with `Objects`.
    GetObjects {
        /// Request number chosen by the agent, echoed by the answer.
        request: u64,
        /// What to read.
        refs: Vec<ObjectRef>,
    },
    /// Asks for an image the server holds (protocol version 2 and later); the server answers by
    /// opening a stream with [`StreamRequest::Image`] ([`image`]).
    FetchImage {
        /// Request number chosen by the agent, echoed by the offer.
        request: u64,
        /// The image reference, as the pod names it.
        reference: String,
    },
    /// Asks for the cluster's Services with their endpoints and their changes for the rest of
    /// the session (protocol version 3 and later); answered with `Services` messages.
    WatchServices,
    /// Asks for the NetworkPolicy rules of this node's pods, now and after every change, for
    /// the rest of the session (protocol version 4 and later); answered with `Policies`.
    WatchPolicies,
    /// The node's and its containers' resource usage (protocol version 5 and later; sent
    /// every [`usage::REPORT_INTERVAL`], never answered).
    ResourceUsage(usage::UsageReport),
}

/// A node as the other nodes need to know it (pod networking).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    /// Node name.
    pub name: String,
    /// Its `InternalIP` address, if it has one.
    #[serde(default)]
    pub internal_ip: Option<String>,
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
}

/// The cluster's pod network settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// The cluster's pod range (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// How nodes reach each other's pods (`host-gw`, `vxlan`).
    pub backend: String,
}

/// Kinds of objects a node may read for its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ObjectKind {
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Secret.
    Secret,
}

/// A config map or secret, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// What kind.
    pub kind: ObjectKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// One answer of `Objects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    /// What was asked for.
    pub reference: ObjectRef,
    /// The object; `None` with no `error` means it does not exist.
    #[serde(default)]
    pub object: Option<serde_json::Value>,
    /// Why it could not be read (forbidden, server error).
    #[serde(default)]
    pub error: Option<String>,
}

/// Messages from the server to the agent on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// Accepts a `Hello`.
    Welcome {
        /// Protocol version chosen for the session.
        version: u32,
        /// How often the agent must send heartbeats, in milliseconds.
        heartbeat_interval_ms: u64,
        /// skiff version of the server (informational).
        server_version: String,
        /// The cluster's service addresses and DNS settings, before any pod arrives (so the
        /// first pods already get the cluster resolver); absent from older servers.
        #[serde(default)]
        services: Option<service::ServiceNetwork>,
    },
    /// Refuses a `Hello` or `Join`; the server closes the connection afterwards.
    Refused {
        /// Machine-readable reason.
        code: RefusalCode,
        /// Human-readable reason, shown to the user.
        message: String,
    },
    /// Answers a `Join` with the node's certificate.
    Joined {
        /// Node certificate (PEM).
        certificate_pem: String,
        /// Cluster CA certificate (PEM); its hash equals the token's pin.
        ca_pem: String,
    },
    /// The Node object was created or updated.
    Registered {
        /// `metadata.uid` of the Node.
        uid: String,
    },
    /// Acknowledges a heartbeat.
    HeartbeatAck {
        /// The heartbeat's sequence number.
        seq: u64,
    },
    /// Part of the full set of pods bound to the node; the set is complete when `last` is true.
    PodSnapshot {
        /// Revision the set is consistent at.
        revision: u64,
        /// Pods in this part.
        pods: Vec<Pod>,
        /// Whether this is the final part.
        last: bool,
    },
    /// Changes since the previous snapshot or changes.
    PodChanges {
        /// Revision after these changes.
        revision: u64,
        /// The changes, in order.
        changes: Vec<PodChange>,
        /// Whether this is the final part of the batch (only then is `revision` reached).
        last: bool,
    },
    /// Nothing changed for the node up to this revision.
    Bookmark {
        /// The revision.
        revision: u64,
    },
    /// A status batch was written.
    StatusAck {
        /// The batch number.
        batch: u64,
        /// Per-pod failures (the rest were written).
        failures: Vec<StatusFailure>,
    },
    /// A renewed certificate.
    CertificateRenewed {
        /// New node certificate (PEM).
        certificate_pem: String,
    },
    /// The server is going away (shutdown); reconnect later.
    Goodbye {
        /// Why.
        reason: String,
    },
    /// The cluster's nodes (after `WatchNodes`): the full list when `full`, else changes.
    Nodes {
        /// The cluster's pod network settings, if the server has them.
        #[serde(default)]
        network: Option<ClusterNetwork>,
        /// Whether `nodes` is the complete list (replacing what the agent had).
        full: bool,
        /// Nodes added or changed (all nodes when `full`).
        nodes: Vec<NodeSummary>,
        /// Names of nodes that are gone.
        #[serde(default)]
        removed: Vec<String>,
    },
    /// The cluster's Services (after `WatchServices`): the full list when `full`, else changes.
    Services {
        /// Whether `services` is the complete list (replacing what the agent had).
        full: bool,
        /// Services added or changed (all Services when `full`).
        services: Vec<service::ServiceSummary>,
        /// Services that are gone.
        #[serde(default)]
        removed: Vec<service::ServiceKey>,
        /// Whether this is the final part of the update (a long list spans several frames;
        /// the agent applies it only when complete).
        last: bool,
    },
    /// The NetworkPolicy rules of the node's pods (after `WatchPolicies`): always the
    /// complete set, replacing the previous one ([`policy`]).
    Policies {
        /// Every pod of the node that a policy isolates in some direction.
        pods: Vec<policy::PodPolicy>,
        /// Whether this is the final part of the set (a long set spans several frames; the
        /// agent applies it only when complete).
        last: bool,
    },
    /// Answers `GetObjects`.
    Objects {
        /// The request number.
        request: u64,
        /// One result per reference, in order.
        results: Vec<ObjectResult>,
    },
}

/// A status update the server could not write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFailure {
    /// The pod.
    pub pod: PodRef,
    /// Why it failed.
    pub message: String,
}

/// First frame of a server-initiated stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StreamRequest {
    /// Stream a container's log.
    Logs(LogRequest),
    /// Run a command in a container; channel frames ([`exec`]) follow both ways.
    Exec(ExecRequest),
    /// Hands an image over (the answer to `FetchImage`; [`image`] describes the exchange).
    Image(image::ImageOffer),
    /// Serve the node's own HTTP endpoints (protocol version 5 and later; `nodes/proxy`):
    /// after an `Accepted` reply the stream is one HTTP/1.1 connection, the server the client.
    NodeHttp,
    /// Opens one TCP connection to a port on the pod's loopback, inside its network namespace
    /// (protocol version [`PORT_FORWARD_PROTOCOL_VERSION`] and later): after `Accepted`, the
    /// connection's raw bytes both ways; finishing a direction half-closes it.
    PortForward(PortForwardRequest),
}

/// The first protocol version whose agents serve [`StreamRequest::PortForward`].
pub const PORT_FORWARD_PROTOCOL_VERSION: u32 = 5;

/// What `kubectl port-forward` (and `pods/proxy`, `services/proxy`) asks of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForwardRequest {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// The TCP port inside the pod.
    pub port: u16,
}

/// What `kubectl exec` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecRequest {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// argv.
    pub command: Vec<String>,
    /// The caller sends standard input.
    pub stdin: bool,
    /// The caller wants standard output.
    pub stdout: bool,
    /// The caller wants standard error (ignored with a terminal).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// What `kubectl logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRequest {
    /// Namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Keep streaming new lines.
    pub follow: bool,
    /// The previous instance's log.
    pub previous: bool,
    /// Prefix every line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
}

/// The agent's answer to a [`StreamRequest`]; raw bytes follow an `Accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StreamReply {
    /// Data follows.
    Accepted,
    /// The request failed.
    Failed {
        /// Whether the target (pod, container) does not exist.
        not_found: bool,
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let frame = encode(&AgentMessage::Heartbeat { seq: 3 }, 1024).unwrap();
        assert_eq!(&frame[4..], br#"{"type":"heartbeat","seq":3}"#);
        let back: AgentMessage = decode(&frame[4..]).unwrap();
        assert_eq!(back, AgentMessage::Heartbeat { seq: 3 });
    }

    #[test]
    fn unknown_message_type_is_a_clear_error() {
        let err = decode::<AgentMessage>(br#"{"type":"launchMissiles"}"#).unwrap_err();
        let FrameError::Malformed(text) = err else {
            panic!("expected Malformed")
        };
        assert!(text.contains("unknown variant `launchMissiles`"), "{text}");
    }

    #[test]
    fn port_forward_request_is_tagged_json() {
        let request = StreamRequest::PortForward(PortForwardRequest {
            namespace: "default".into(),
            pod: "web".into(),
            port: 8080,
        });
        let frame = encode(&request, 1024).unwrap();
        assert_eq!(
            &frame[4..],
            br#"{"type":"portForward","namespace":"default","pod":"web","port":8080}"#
        );
        assert_eq!(decode::<StreamRequest>(&frame[4..]).unwrap(), request);
    }

    #[test]
    fn unknown_refusal_code_still_decodes() {
        let msg: ServerMessage =
            decode(br#"{"type":"refused","code":"cosmicRays","message":"m"}"#).unwrap();
        assert_eq!(
            msg,
            ServerMessage::Refused {
                code: RefusalCode::Unknown,
                message: "m".into()
            }
        );
    }
}
