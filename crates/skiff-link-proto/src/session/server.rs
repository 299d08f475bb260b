//! The server's side of a node's control stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::core::v1::{Event, Node, Pod};

use super::{CloseReason, Outbox, SessionConfig};
use crate::proto::policy::PodPolicy;
use crate::proto::service::{ServiceKey, ServiceSummary};
use crate::proto::{
    decode, AgentMessage, ClusterNetwork, FrameDecoder, FrameError, JoinRequest, NodeSummary,
    ObjectRef, ObjectResult, PodChange, PodRef, PodStatusUpdate, RefusalCode, ServerMessage,
    StatusFailure, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// Who the TLS layer says the peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// No client certificate: only a join is allowed.
    Anonymous,
    /// A verified node certificate for this node name.
    Node(String),
}

/// What the server side reports to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// An anonymous peer asks to join; answer with [`ServerSession::grant_join`] or
    /// [`ServerSession::refuse`].
    JoinRequested(JoinRequest),
    /// A node opened its session (after `Hello`, `Welcome` is already queued).
    Opened {
        /// The node.
        node_name: String,
        /// Negotiated version.
        version: u32,
        /// Revision the agent wants to resume the desired-state stream from.
        resume_revision: Option<u64>,
        /// Agent's skiff version.
        agent_version: String,
    },
    /// Something the node did in its established session; the driver hands it to the node
    /// service as it is.
    Node(NodeEvent),
    /// The session is over; the driver closes the connection with `reason.close_code()` once
    /// the queued bytes are written.
    Closed(CloseReason),
}

/// What a node did in its established session. The answers named below are methods of
/// [`ServerSession`], which the quinn driver's `NodeSender` forwards.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The node (re-)registered: create or update its Node, then answer with
    /// [`ServerSession::registered`].
    Register(Box<Node>),
    /// A heartbeat arrived (the acknowledgement is already queued): renew the node's Lease.
    Heartbeat,
    /// Pod statuses to write; answer with [`ServerSession::ack_statuses`].
    PodStatuses {
        /// Batch number to acknowledge.
        batch: u64,
        /// The updates.
        updates: Vec<PodStatusUpdate>,
    },
    /// Pods stopped on the node after being marked for deletion: finish their deletion.
    PodsTerminated(Vec<PodRef>),
    /// Events to record.
    Events(Vec<Event>),
    /// The node asks for a renewed certificate; answer with
    /// [`ServerSession::certificate_renewed`] or [`ServerSession::refuse`].
    RenewCertificate {
        /// The CSR (PEM).
        csr_pem: String,
    },
    /// The node wants the cluster's nodes; answer with [`ServerSession::send_nodes`] (full)
    /// now and with their changes whenever they change.
    WatchNodes,
    /// The node wants the cluster's Services; answer with [`ServerSession::send_services`]
    /// (full) now and with their changes whenever they change.
    WatchServices,
    /// The node wants its pods' NetworkPolicy rules (protocol version
    /// [`crate::proto::policy::POLICY_PROTOCOL_VERSION`] and later); answer with
    /// [`ServerSession::send_policies`] now and whenever its set changes.
    WatchPolicies,
    /// The node reads config maps and secrets; answer with [`ServerSession::send_objects`].
    GetObjects {
        /// Request number to echo.
        request: u64,
        /// What to read.
        refs: Vec<ObjectRef>,
    },
    /// The node asks for an image; answer by opening an image stream (`NodeSender::send_image`
    /// in the quinn driver; always: the node waits for the answer).
    FetchImage {
        /// Request number to echo.
        request: u64,
        /// The image reference.
        reference: String,
    },
    /// The node's resource usage (protocol version
    /// [`crate::proto::usage::USAGE_PROTOCOL_VERSION`] and later; never answered).
    ResourceUsage(crate::proto::usage::UsageReport),
    /// The session ended; no events follow. The session reports its end as
    /// [`ServerEvent::Closed`] (join exchanges end too); the driver passes it on as this.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitFirst,
    JoinPending,
    Established,
    Closed,
}

/// State machine of the server's side of a node's control stream.
#[derive(Debug)]
pub struct ServerSession {
    identity: PeerIdentity,
    config: SessionConfig,
    state: State,
    decoder: FrameDecoder,
    outbox: Outbox,
    events: VecDeque<ServerEvent>,
    handshake_deadline: Instant,
    last_heard: Instant,
    close_reason: Option<CloseReason>,
    /// The negotiated protocol version, once established.
    version: u32,
}

impl ServerSession {
    /// A session for a fresh connection from `identity`.
    pub fn new(identity: PeerIdentity, config: SessionConfig, now: Instant) -> Self {
        Self {
            identity,
            decoder: FrameDecoder::new(config.max_frame_len),
            handshake_deadline: now + config.handshake_timeout,
            config,
            state: State::AwaitFirst,
            outbox: Outbox::default(),
            events: VecDeque::new(),
            last_heard: now,
            close_reason: None,
            version: 0,
        }
    }

    /// The peer's identity.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// Whether the node's session is open.
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
                    match decode::<AgentMessage>(&frame) {
                        Ok(message) => self.handle_message(message),
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

    /// The agent finished its side of the stream.
    pub fn handle_stream_end(&mut self) {
        if self.state != State::Closed {
            self.close(CloseReason::PeerGoodbye(
                "the agent ended the control stream".into(),
            ));
        }
    }

    fn handle_message(&mut self, message: AgentMessage) {
        match (self.state, message) {
            (State::AwaitFirst, AgentMessage::Join(request)) => {
                if self.identity != PeerIdentity::Anonymous {
                    return self.refuse(
                        RefusalCode::Forbidden,
                        "this connection already presents a node certificate; join without one",
                    );
                }
                self.state = State::JoinPending;
                self.events.push_back(ServerEvent::JoinRequested(request));
            }
            (State::AwaitFirst, AgentMessage::Hello(hello)) => {
                let PeerIdentity::Node(name) = &self.identity else {
                    return self.refuse(
                        RefusalCode::Forbidden,
                        "no node certificate presented: join with a token first",
                    );
                };
                if hello.node_name != *name {
                    let message = format!(
                        "the certificate is for node {name:?} but the session names node {:?}",
                        hello.node_name
                    );
                    return self.refuse(RefusalCode::Forbidden, &message);
                }
                let lowest = hello.min_version.max(MIN_PROTOCOL_VERSION);
                let highest = hello.max_version.min(PROTOCOL_VERSION);
                if lowest > highest {
                    let message = format!(
                        "no common protocol version: agent speaks {}..={}, server speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                        hello.min_version, hello.max_version
                    );
                    return self.refuse(RefusalCode::UnsupportedVersion, &message);
                }
                self.state = State::Established;
                self.version = highest;
                self.queue(&ServerMessage::Welcome {
                    version: highest,
                    heartbeat_interval_ms: duration_ms(self.config.heartbeat_interval),
                    server_version: env!("CARGO_PKG_VERSION").to_string(),
                    services: self.config.services.clone(),
                });
                self.events.push_back(ServerEvent::Opened {
                    node_name: hello.node_name,
                    version: highest,
                    resume_revision: hello.resume_revision,
                    agent_version: hello.agent_version,
                });
            }
            (State::Established, AgentMessage::Register { node }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::Register(node)));
            }
            (State::Established, AgentMessage::Heartbeat { seq }) => {
                self.queue(&ServerMessage::HeartbeatAck { seq });
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::Heartbeat));
            }
            (State::Established, AgentMessage::PodStatuses { batch, updates }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::PodStatuses { batch, updates }));
            }
            (State::Established, AgentMessage::PodsTerminated { pods }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::PodsTerminated(pods)));
            }
            (State::Established, AgentMessage::Events { events }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::Events(events)));
            }
            (State::Established, AgentMessage::RenewCertificate { csr_pem }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::RenewCertificate { csr_pem }));
            }
            (State::Established, AgentMessage::WatchNodes) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::WatchNodes));
            }
            (State::Established, AgentMessage::WatchServices) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::WatchServices));
            }
            (State::Established, AgentMessage::WatchPolicies)
                if self.version >= crate::proto::policy::POLICY_PROTOCOL_VERSION =>
            {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::WatchPolicies));
            }
            (State::Established, AgentMessage::ResourceUsage(report))
                if self.version >= crate::proto::usage::USAGE_PROTOCOL_VERSION =>
            {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::ResourceUsage(report)));
            }
            (State::Established, AgentMessage::GetObjects { request, refs }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::GetObjects { request, refs }));
            }
            (State::Established, AgentMessage::FetchImage { request, reference }) => {
                self.events
                    .push_back(ServerEvent::Node(NodeEvent::FetchImage {
                        request,
                        reference,
                    }));
            }
            (_, AgentMessage::Goodbye { reason }) => {
                self.close(CloseReason::PeerGoodbye(reason));
            }
            (state, other) => {
                self.violation(format!(
                    "unexpected {} message while {state:?}",
                    agent_message_name(&other)
                ));
            }
        }
    }

    /// Handles expired deadlines: handshake timeout, node silent too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => {}
            State::AwaitFirst | State::JoinPending => {
                if now >= self.handshake_deadline {
                    self.close(CloseReason::HandshakeTimeout);
                }
            }
            State::Established => {
                let silent_for = now.saturating_duration_since(self.last_heard);
                if silent_for >= self.config.dead_after() {
                    self.close(CloseReason::PeerDead { silent_for });
                }
            }
        }
    }

    /// The next deadline `handle_timeout` must be called at.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::AwaitFirst | State::JoinPending => Some(self.handshake_deadline),
            State::Established => Some(self.last_heard + self.config.dead_after()),
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
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Answers a join with the signed certificate; the exchange is then complete.
    pub fn grant_join(&mut self, certificate_pem: String, ca_pem: String) {
        if self.state != State::JoinPending {
            return;
        }
        self.queue(&ServerMessage::Joined {
            certificate_pem,
            ca_pem,
        });
        self.close(CloseReason::Completed);
    }

    /// Refuses the join, the session or a renewal, and ends the session.
    pub fn refuse(&mut self, code: RefusalCode, message: &str) {
        if self.state == State::Closed {
            return;
        }
        self.queue(&ServerMessage::Refused {
            code,
            message: message.to_string(),
        });
        self.close(CloseReason::Refused {
            code,
            message: message.to_string(),
        });
    }

    /// Confirms a registration.
    pub fn registered(&mut self, uid: String) -> Result<(), FrameError> {
        self.send(&ServerMessage::Registered { uid })
    }

    /// Sends the full set of pods bound to the node, split into frames under the size limit.
    pub fn send_snapshot(&mut self, revision: u64, pods: Vec<Pod>) -> Result<(), FrameError> {
        self.ensure_established()?;
        let mut parts = Vec::new();
        self.split(pods, &mut parts, |pods, last| ServerMessage::PodSnapshot {
            revision,
            pods,
            last,
        })?;
        self.outbox.frames.extend(parts);
        Ok(())
    }

    /// Sends changes since the last snapshot or changes, split into frames under the size limit.
    pub fn send_changes(
        &mut self,
        revision: u64,
        changes: Vec<PodChange>,
    ) -> Result<(), FrameError> {
        self.ensure_established()?;
        let mut parts = Vec::new();
        self.split(changes, &mut parts, |changes, last| {
            ServerMessage::PodChanges {
                revision,
                changes,
                last,
            }
        })?;
        self.outbox.frames.extend(parts);
        Ok(())
    }

    /// Sends the cluster's nodes (or their changes).
    pub fn send_nodes(
        &mut self,
        network: Option<ClusterNetwork>,
        full: bool,
        nodes: Vec<NodeSummary>,
        removed: Vec<String>,
    ) -> Result<(), FrameError> {
        self.send(&ServerMessage::Nodes {
            network,
            full,
            nodes,
            removed,
        })
    }

    /// Sends the cluster's Services (or their changes), in as many frames as they need.
    pub fn send_services(
        &mut self,
        full: bool,
        services: Vec<ServiceSummary>,
        removed: Vec<ServiceKey>,
    ) -> Result<(), FrameError> {
        self.ensure_established()?;
        let mut parts = Vec::new();
        let removed = &removed;
        self.split(services, &mut parts, move |services, last| {
            ServerMessage::Services {
                full,
                services,
                removed: if last { removed.clone() } else { Vec::new() },
                last,
            }
        })?;
        self.outbox.frames.extend(parts);
        Ok(())
    }

    /// Sends the node's complete NetworkPolicy set (replacing the previous one), in as many
    /// frames as it needs; an empty set is one frame.
    pub fn send_policies(&mut self, pods: Vec<PodPolicy>) -> Result<(), FrameError> {
        self.ensure_established()?;
        let mut parts = Vec::new();
        self.split(pods, &mut parts, |pods, last| ServerMessage::Policies {
            pods,
            last,
        })?;
        self.outbox.frames.extend(parts);
        Ok(())
    }

    /// Answers a `GetObjects` request.
    pub fn send_objects(
        &mut self,
        request: u64,
        results: Vec<ObjectResult>,
    ) -> Result<(), FrameError> {
        self.send(&ServerMessage::Objects { request, results })
    }

    /// Tells the node that nothing changed for it up to `revision`.
    pub fn send_bookmark(&mut self, revision: u64) -> Result<(), FrameError> {
        self.send(&ServerMessage::Bookmark { revision })
    }

    /// Acknowledges a status batch.
    pub fn ack_statuses(
        &mut self,
        batch: u64,
        failures: Vec<StatusFailure>,
    ) -> Result<(), FrameError> {
        self.send(&ServerMessage::StatusAck { batch, failures })
    }

    /// Answers a renewal request.
    pub fn certificate_renewed(&mut self, certificate_pem: String) -> Result<(), FrameError> {
        self.send(&ServerMessage::CertificateRenewed { certificate_pem })
    }

    /// Ends the session because the server is going away.
    pub fn goodbye(&mut self, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.queue(&ServerMessage::Goodbye {
            reason: reason.to_string(),
        });
        self.close(CloseReason::LocalGoodbye(reason.to_string()));
    }

    /// Encodes `items` as one or more frames, halving the chunk until each fits. The closure
    /// builds a message from a chunk and whether it is the last one.
    fn split<T: Clone>(
        &self,
        items: Vec<T>,
        out: &mut Vec<Bytes>,
        build: impl Fn(Vec<T>, bool) -> ServerMessage + Copy,
    ) -> Result<(), FrameError> {
        let max = self.config.max_frame_len;
        let mut pending: VecDeque<Vec<T>> = VecDeque::from([items]);
        while let Some(chunk) = pending.pop_front() {
            let last = pending.is_empty();
            match crate::proto::encode(&build(chunk.clone(), last), max) {
                Ok(frame) => out.push(frame),
                Err(FrameError::TooLarge { .. }) if chunk.len() > 1 => {
                    let mut first = chunk;
                    let second = first.split_off(first.len() / 2);
                    pending.push_front(second);
                    pending.push_front(first);
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn ensure_established(&self) -> Result<(), FrameError> {
        if self.state == State::Established {
            Ok(())
        } else {
            Err(FrameError::Encode(
                "the session is not established".to_string(),
            ))
        }
    }

    fn send(&mut self, message: &ServerMessage) -> Result<(), FrameError> {
        self.ensure_established()?;
        self.outbox.push(message, self.config.max_frame_len)
    }

    fn queue(&mut self, message: &ServerMessage) {
        if let Err(error) = self.outbox.push(message, self.config.max_frame_len) {
            tracing::error!(%error, "cannot encode a control message");
        }
    }

    fn violation(&mut self, error: impl std::fmt::Display) {
        self.close(CloseReason::ProtocolViolation(error.to_string()));
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.close_reason = Some(reason.clone());
        self.events.push_back(ServerEvent::Closed(reason));
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn agent_message_name(message: &AgentMessage) -> &'static str {
    match message {
        AgentMessage::Hello(_) => "hello",
        AgentMessage::Join(_) => "join",
        AgentMessage::Register { .. } => "register",
        AgentMessage::Heartbeat { .. } => "heartbeat",
        AgentMessage::PodStatuses { .. } => "podStatuses",
        AgentMessage::PodsTerminated { .. } => "podsTerminated",
        AgentMessage::Events { .. } => "events",
        AgentMessage::RenewCertificate { .. } => "renewCertificate",
        AgentMessage::Goodbye { .. } => "goodbye",
        AgentMessage::WatchNodes => "watchNodes",
        AgentMessage::WatchServices => "watchServices",
        AgentMessage::WatchPolicies => "watchPolicies",
        AgentMessage::GetObjects { .. } => "getObjects",
        AgentMessage::ResourceUsage(_) => "resourceUsage",
        AgentMessage::FetchImage { .. } => "fetchImage",
    }
}
