//! The agent's side of the control stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Event, Node, Pod};

use super::{earliest, CloseReason, Outbox, SessionConfig};
use crate::proto::policy::PodPolicy;
use crate::proto::service::{ServiceKey, ServiceSummary};
use crate::proto::{
    decode, AgentMessage, ClusterNetwork, FrameDecoder, FrameError, Hello, JoinRequest,
    NodeSummary, ObjectRef, ObjectResult, PodChange, PodRef, PodStatusUpdate, RefusalCode,
    ServerMessage, StatusFailure, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// Desired state received from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum DesiredPods {
    /// The complete set of pods bound to the node, replacing whatever the agent had.
    Snapshot {
        /// Revision the set is consistent at.
        revision: u64,
        /// Every pod bound to the node.
        pods: Vec<Pod>,
    },
    /// Changes on top of the previous state.
    Changes {
        /// Revision after the changes.
        revision: u64,
        /// The changes, in order.
        changes: Vec<PodChange>,
    },
}

/// The cluster's nodes as the server sent them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodesUpdate {
    /// The cluster's pod network settings, if the server has them.
    pub network: Option<ClusterNetwork>,
    /// Whether `nodes` is the complete list (replacing the previous one).
    pub full: bool,
    /// Added or changed nodes (all of them when `full`).
    pub nodes: Vec<NodeSummary>,
    /// Nodes that are gone.
    pub removed: Vec<String>,
}

/// The cluster's Services as the server sent them (all parts of one update).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServicesUpdate {
    /// Whether `services` is the complete list (replacing the previous one).
    pub full: bool,
    /// Added or changed Services (all of them when `full`).
    pub services: Vec<ServiceSummary>,
    /// Services that are gone.
    pub removed: Vec<ServiceKey>,
}

/// What the agent side reports to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The server accepted the session.
    Established {
        /// Negotiated protocol version.
        version: u32,
        /// Heartbeat interval the server asked for.
        heartbeat_interval: Duration,
        /// The cluster's service network, if the server announced it.
        services: Option<crate::proto::service::ServiceNetwork>,
    },
    /// The join succeeded (join sessions only).
    Joined {
        /// Node certificate (PEM).
        certificate_pem: String,
        /// Cluster CA (PEM).
        ca_pem: String,
    },
    /// The Node object was created or updated.
    Registered {
        /// Its uid.
        uid: String,
    },
    /// New desired state.
    Pods(DesiredPods),
    /// A status batch was written (apart from the listed failures).
    StatusAck {
        /// Batch number from [`AgentSession::send_statuses`].
        batch: u64,
        /// Pods whose status could not be written.
        failures: Vec<StatusFailure>,
    },
    /// A renewed certificate arrived.
    CertificateRenewed {
        /// New certificate (PEM).
        certificate_pem: String,
    },
    /// The cluster's nodes changed (after [`AgentSession::watch_nodes`]).
    Nodes(NodesUpdate),
    /// The cluster's Services changed (after [`AgentSession::watch_services`]).
    Services(ServicesUpdate),
    /// The node's complete NetworkPolicy set, replacing the previous one (after
    /// [`AgentSession::watch_policies`]).
    Policies(Vec<PodPolicy>),
    /// The answer to [`AgentSession::get_objects`].
    Objects {
        /// The request number.
        request: u64,
        /// One result per reference.
        results: Vec<ObjectResult>,
    },
    /// The session is over; the driver closes the connection with `reason.close_code()`.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitWelcome,
    AwaitJoinAnswer,
    Established,
    Closed,
}

/// State machine of the agent's control stream (or of a one-shot join exchange).
#[derive(Debug)]
pub struct AgentSession {
    config: SessionConfig,
    state: State,
    decoder: FrameDecoder,
    outbox: Outbox,
    events: VecDeque<AgentEvent>,
    registration: Option<Box<Node>>,
    handshake_deadline: Instant,
    heartbeat_interval: Duration,
    next_heartbeat: Option<Instant>,
    last_heard: Instant,
    heartbeat_seq: u64,
    next_batch: u64,
    revision: Option<u64>,
    snapshot: Option<Vec<Pod>>,
    /// The parts of a Services update received so far.
    services_part: Option<ServicesUpdate>,
    /// The parts of a Policies set received so far.
    policies_part: Option<Vec<PodPolicy>>,
    close_reason: Option<CloseReason>,
}

impl AgentSession {
    /// Opens a session for `node_name`: queues `Hello` (resuming from `resume_revision`) and,
    /// once welcomed, `Register` with `registration`.
    pub fn new(
        node_name: &str,
        resume_revision: Option<u64>,
        registration: Option<Node>,
        config: SessionConfig,
        now: Instant,
    ) -> Self {
        let mut session = Self::blank(config, now, State::AwaitWelcome);
        session.registration = registration.map(Box::new);
        session.revision = resume_revision;
        let hello = AgentMessage::Hello(Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            node_name: node_name.to_string(),
            resume_revision,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        });
        session.queue(&hello);
        session
    }

    /// Opens a one-shot join exchange on an unauthenticated connection.
    pub fn join(request: JoinRequest, config: SessionConfig, now: Instant) -> Self {
        let mut session = Self::blank(config, now, State::AwaitJoinAnswer);
        session.queue(&AgentMessage::Join(request));
        session
    }

    fn blank(config: SessionConfig, now: Instant, state: State) -> Self {
        Self {
            decoder: FrameDecoder::new(config.max_frame_len),
            handshake_deadline: now + config.handshake_timeout,
            heartbeat_interval: config.heartbeat_interval,
            config,
            state,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            registration: None,
            next_heartbeat: None,
            last_heard: now,
            heartbeat_seq: 0,
            next_batch: 1,
            revision: None,
            snapshot: None,
            services_part: None,
            policies_part: None,
            close_reason: None,
        }
    }

    /// Whether the server has accepted the session and it is not closed.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// Revision of the last desired state applied (resume point for the next session).
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// Feeds bytes received on the control stream.
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.decoder.push(data);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.last_heard = now;
                    match decode::<ServerMessage>(&frame) {
                        Ok(message) => self.handle_message(message, now),
                        Err(error) => self.violation(error),
                    }
                    if self.state == State::Closed {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => return self.violation(error),
            }
        }
    }

    /// The server finished its side of the stream (or the connection ended).
    pub fn handle_stream_end(&mut self) {
        if self.state != State::Closed {
            self.close(CloseReason::PeerGoodbye(
                "the server ended the control stream".into(),
            ));
        }
    }

    fn handle_message(&mut self, message: ServerMessage, now: Instant) {
        match (self.state, message) {
            (
                State::AwaitWelcome,
                ServerMessage::Welcome {
                    version,
                    heartbeat_interval_ms,
                    services,
                    ..
                },
            ) => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                    return self.violation(format!(
                        "server chose protocol version {version}, this agent speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"
                    ));
                }
                if heartbeat_interval_ms > 0 {
                    self.heartbeat_interval = Duration::from_millis(heartbeat_interval_ms);
                }
                self.state = State::Established;
                self.next_heartbeat = Some(now + self.heartbeat_interval);
                self.events.push_back(AgentEvent::Established {
                    version,
                    heartbeat_interval: self.heartbeat_interval,
                    services,
                });
                if let Some(node) = self.registration.take() {
                    self.queue(&AgentMessage::Register { node });
                }
            }
            (
                State::AwaitWelcome | State::AwaitJoinAnswer | State::Established,
                ServerMessage::Refused { code, message },
            ) => {
                self.close(CloseReason::Refused { code, message });
            }
            (
                State::AwaitJoinAnswer,
                ServerMessage::Joined {
                    certificate_pem,
                    ca_pem,
                },
            ) => {
                self.events.push_back(AgentEvent::Joined {
                    certificate_pem,
                    ca_pem,
                });
                self.close(CloseReason::Completed);
            }
            (State::Established, ServerMessage::Registered { uid }) => {
                self.events.push_back(AgentEvent::Registered { uid });
            }
            (State::Established, ServerMessage::HeartbeatAck { .. }) => {}
            (
                State::Established,
                ServerMessage::PodSnapshot {
                    revision,
                    pods,
                    last,
                },
            ) => {
                let parts = self.snapshot.get_or_insert_with(Vec::new);
                parts.extend(pods);
                if last {
                    let pods = self.snapshot.take().unwrap_or_default();
                    self.revision = Some(revision);
                    self.events
                        .push_back(AgentEvent::Pods(DesiredPods::Snapshot { revision, pods }));
                }
            }
            (
                State::Established,
                ServerMessage::PodChanges {
                    revision,
                    changes,
                    last,
                },
            ) => {
                if self.snapshot.is_some() {
                    return self
                        .violation("pod changes arrived in the middle of a snapshot".to_string());
                }
                if last {
                    self.revision = Some(revision);
                }
                self.events
                    .push_back(AgentEvent::Pods(DesiredPods::Changes { revision, changes }));
            }
            (State::Established, ServerMessage::Bookmark { revision }) => {
                if self.snapshot.is_none() {
                    self.revision = Some(revision);
                }
            }
            (State::Established, ServerMessage::StatusAck { batch, failures }) => {
                self.events
                    .push_back(AgentEvent::StatusAck { batch, failures });
            }
            (State::Established, ServerMessage::CertificateRenewed { certificate_pem }) => {
                self.events
                    .push_back(AgentEvent::CertificateRenewed { certificate_pem });
            }
            (
                State::Established,
                ServerMessage::Nodes {
                    network,
                    full,
                    nodes,
                    removed,
                },
            ) => {
                self.events.push_back(AgentEvent::Nodes(NodesUpdate {
                    network,
                    full,
                    nodes,
                    removed,
                }));
            }
            (
                State::Established,
                ServerMessage::Services {
                    full,
                    services,
                    removed,
                    last,
                },
            ) => {
                let update = self.services_part.get_or_insert_with(|| ServicesUpdate {
                    full,
                    ..ServicesUpdate::default()
                });
                update.services.extend(services);
                update.removed.extend(removed);
                if last {
                    let update = self.services_part.take().unwrap_or_default();
                    self.events.push_back(AgentEvent::Services(update));
                }
            }
            (State::Established, ServerMessage::Policies { pods, last }) => {
                self.policies_part.get_or_insert_with(Vec::new).extend(pods);
                if last {
                    let set = self.policies_part.take().unwrap_or_default();
                    self.events.push_back(AgentEvent::Policies(set));
                }
            }
            (State::Established, ServerMessage::Objects { request, results }) => {
                self.events
                    .push_back(AgentEvent::Objects { request, results });
            }
            (_, ServerMessage::Goodbye { reason }) => {
                self.close(CloseReason::PeerGoodbye(reason));
            }
            (state, other) => {
                self.violation(format!(
                    "unexpected {} message while {state:?}",
                    server_message_name(&other)
                ));
            }
        }
    }

    /// Handles expired deadlines: handshake timeout, heartbeat due, server silent too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            State::AwaitWelcome | State::AwaitJoinAnswer => {
                if now >= self.handshake_deadline {
                    self.close(CloseReason::HandshakeTimeout);
                }
            }
            State::Established => {
                let silent_for = now.saturating_duration_since(self.last_heard);
                if silent_for >= self.dead_after() {
                    return self.close(CloseReason::PeerDead { silent_for });
                }
                if let Some(due) = self.next_heartbeat {
                    if now >= due {
                        self.heartbeat_seq += 1;
                        let seq = self.heartbeat_seq;
                        self.queue(&AgentMessage::Heartbeat { seq });
                        self.next_heartbeat = Some(now + self.heartbeat_interval);
                    }
                }
            }
        }
    }

    fn dead_after(&self) -> Duration {
        self.heartbeat_interval * self.config.missed_heartbeats.max(1)
    }

    /// The next deadline `handle_timeout` must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::AwaitWelcome | State::AwaitJoinAnswer => Some(self.handshake_deadline),
            State::Established => earliest([
                self.next_heartbeat,
                Some(self.last_heard + self.dead_after()),
            ]),
        }
    }

    /// The next chunk of bytes to write on the control stream.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.pop()
    }

    /// Whether bytes are waiting to be written.
    pub fn poll_transmit_pending(&self) -> bool {
        !self.outbox.frames.is_empty()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// Sends (re-)registration of the node, e.g. after labels or capacity changed.
    pub fn register(&mut self, node: Node) -> Result<(), FrameError> {
        self.send(&AgentMessage::Register {
            node: Box::new(node),
        })
    }

    /// Sends a batch of pod statuses and returns its batch number (acknowledged by
    /// [`AgentEvent::StatusAck`]).
    pub fn send_statuses(&mut self, updates: Vec<PodStatusUpdate>) -> Result<u64, FrameError> {
        let batch = self.next_batch;
        self.next_batch += 1;
        self.send(&AgentMessage::PodStatuses { batch, updates })?;
        Ok(batch)
    }

    /// Confirms that pods marked for deletion are stopped.
    pub fn send_terminated(&mut self, pods: Vec<PodRef>) -> Result<(), FrameError> {
        self.send(&AgentMessage::PodsTerminated { pods })
    }

    /// Sends events to record.
    pub fn send_events(&mut self, events: Vec<Event>) -> Result<(), FrameError> {
        self.send(&AgentMessage::Events { events })
    }

    /// Asks for the cluster's nodes and their changes ([`AgentEvent::Nodes`]).
    pub fn watch_nodes(&mut self) -> Result<(), FrameError> {
        self.send(&AgentMessage::WatchNodes)
    }

    /// Asks for the cluster's Services and their changes (protocol version
    /// [`crate::proto::service::SERVICE_PROTOCOL_VERSION`] or later; the caller checks).
    pub fn watch_services(&mut self) -> Result<(), FrameError> {
        self.send(&AgentMessage::WatchServices)
    }

    /// Asks for the NetworkPolicy rules of this node's pods, now and after every change
    /// ([`AgentEvent::Policies`]; protocol version
    /// [`crate::proto::policy::POLICY_PROTOCOL_VERSION`] or later; the caller checks).
    pub fn watch_policies(&mut self) -> Result<(), FrameError> {
        self.send(&AgentMessage::WatchPolicies)
    }

    /// Reports the node's resource usage (protocol version
    /// [`crate::proto::usage::USAGE_PROTOCOL_VERSION`] or later; the caller checks).
    pub fn send_usage(
        &mut self,
        report: crate::proto::usage::UsageReport,
    ) -> Result<(), FrameError> {
        self.send(&AgentMessage::ResourceUsage(report))
    }

    /// Asks the server for an image (only with protocol version
    /// [`crate::proto::image::IMAGE_PROTOCOL_VERSION`] or later); the server answers by opening
    /// an image stream that echoes `request`.
    pub fn fetch_image(&mut self, request: u64, reference: &str) -> Result<(), FrameError> {
        self.send(&AgentMessage::FetchImage {
            request,
            reference: reference.to_string(),
        })
    }

    /// Asks for config maps and secrets ([`AgentEvent::Objects`] answers with `request`).
    pub fn get_objects(&mut self, request: u64, refs: Vec<ObjectRef>) -> Result<(), FrameError> {
        self.send(&AgentMessage::GetObjects { request, refs })
    }

    /// Asks for a renewed certificate.
    pub fn renew_certificate(&mut self, csr_pem: String) -> Result<(), FrameError> {
        self.send(&AgentMessage::RenewCertificate { csr_pem })
    }

    /// Ends the session on purpose.
    pub fn goodbye(&mut self, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.queue(&AgentMessage::Goodbye {
            reason: reason.to_string(),
        });
        self.close(CloseReason::LocalGoodbye(reason.to_string()));
    }

    fn send(&mut self, message: &AgentMessage) -> Result<(), FrameError> {
        if self.state != State::Established {
            return Err(FrameError::Encode(
                "the session is not established".to_string(),
            ));
        }
        self.outbox.push(message, self.config.max_frame_len)
    }

    /// Queues a message this module builds itself (always small enough to encode).
    fn queue(&mut self, message: &AgentMessage) {
        if let Err(error) = self.outbox.push(message, self.config.max_frame_len) {
            tracing::error!(%error, "cannot encode a control message");
        }
    }

    fn violation(&mut self, error: impl std::fmt::Display) {
        self.close(CloseReason::ProtocolViolation(error.to_string()));
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.next_heartbeat = None;
        self.close_reason = Some(reason.clone());
        self.events.push_back(AgentEvent::Closed(reason));
    }
}

/// Whether a refusal is final (retrying with the same credentials cannot succeed).
pub fn refusal_is_permanent(code: RefusalCode) -> bool {
    !matches!(code, RefusalCode::Internal | RefusalCode::Unknown)
}

fn server_message_name(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Welcome { .. } => "welcome",
        ServerMessage::Refused { .. } => "refused",
        ServerMessage::Joined { .. } => "joined",
        ServerMessage::Registered { .. } => "registered",
        ServerMessage::HeartbeatAck { .. } => "heartbeatAck",
        ServerMessage::PodSnapshot { .. } => "podSnapshot",
        ServerMessage::PodChanges { .. } => "podChanges",
        ServerMessage::Bookmark { .. } => "bookmark",
        ServerMessage::StatusAck { .. } => "statusAck",
        ServerMessage::CertificateRenewed { .. } => "certificateRenewed",
        ServerMessage::Goodbye { .. } => "goodbye",
        ServerMessage::Nodes { .. } => "nodes",
        ServerMessage::Objects { .. } => "objects",
        ServerMessage::Services { .. } => "services",
        ServerMessage::Policies { .. } => "policies",
    }
}
