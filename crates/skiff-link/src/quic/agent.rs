//! The agent's link client: joins if needed, keeps one session to the server alive with
//! reconnects (exponential back-off with jitter), resumes the desired-state stream from the last
//! revision, reports statuses reliably (re-sent after a reconnect until acknowledged), serves
//! server-initiated streams, renews its certificate, and survives address changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node};
use quinn::VarInt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::credentials::{self, NodeCredentials};
use super::images::{ImageDownload, SharedImageWaiters};
use super::streams::{serve_stream, LogProvider};
use super::transport::{any_local_for, parse_server_url, ServerUrl};
use super::tunnel::{self, ApiTunnelStream, TunnelError};
use super::LinkError;
use crate::proto::image::IMAGE_PROTOCOL_VERSION;
use crate::proto::policy::{PodPolicy, POLICY_PROTOCOL_VERSION};
use crate::proto::service::{ServiceNetwork, SERVICE_PROTOCOL_VERSION};
use crate::proto::tunnel::API_TUNNEL_PROTOCOL_VERSION;
use crate::proto::usage::{UsageReport, USAGE_PROTOCOL_VERSION};
use crate::proto::{CloseCode, ObjectRef, ObjectResult, PodRef, PodStatusUpdate, StatusFailure};
use crate::session::{
    AgentEvent, AgentSession, CloseReason, DesiredPods, NodesUpdate, ServicesUpdate, SessionConfig,
};

/// Most status updates per batch.
const MAX_BATCH: usize = 200;
/// Events buffered for the agent.
const EVENT_BUFFER: usize = 256;
/// Events kept while disconnected (older ones are dropped).
const MAX_QUEUED_EVENTS: usize = 1000;

/// Settings of the link client.
#[derive(Debug, Clone)]
pub struct AgentLinkConfig {
    /// `https://HOST:PORT` of the server.
    pub server: String,
    /// Join token; needed only when the agent has no certificate yet.
    pub token: Option<String>,
    /// The agent's directory (`DIR/agent`): credentials live in `tls/`, the node password in
    /// `node-password`.
    pub data_dir: PathBuf,
    /// The node's name.
    pub node_name: String,
    /// The Node to register (labels, taints, capacity, allocatable, addresses, nodeInfo).
    pub registration: Node,
    /// Revision of the desired state the agent already has (from its local state), if any.
    pub resume_revision: Option<u64>,
    /// Session timing and limits.
    pub session: SessionConfig,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Time allowed for a connection attempt.
    pub connect_timeout: Duration,
    /// Renew the certificate when less than this is left of its validity; it is renewed
    /// anyway at two thirds of its life (checked at session start and at every timer).
    pub renew_before: Duration,
    /// Ask for the cluster's nodes on every session ([`AgentLinkEvent::Nodes`]).
    pub watch_nodes: bool,
    /// Ask for the cluster's Services on every session ([`AgentLinkEvent::Services`]) when the
    /// server speaks protocol version 3 or later.
    pub watch_services: bool,
    /// Ask for the node's NetworkPolicy set on every session ([`AgentLinkEvent::Policies`])
    /// when the server speaks protocol version 4 or later.
    pub watch_policies: bool,
}

impl AgentLinkConfig {
    /// Settings with the defaults for everything but the essentials.
    pub fn new(server: &str, token: Option<String>, data_dir: PathBuf, registration: Node) -> Self {
        Self {
            server: server.to_string(),
            token,
            data_dir,
            node_name: registration.metadata.name.clone().unwrap_or_default(),
            registration,
            resume_revision: None,
            session: SessionConfig::default(),
            backoff: Backoff::default(),
            // Short: an attempt at a server that is down (restarting) gets no answer at all, and
            // waiting longer only delays the next try; a live server answers in milliseconds.
            connect_timeout: Duration::from_secs(3),
            renew_before: Duration::ZERO,
            watch_nodes: false,
            watch_services: false,
            watch_policies: false,
        }
    }
}

/// Connection state of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Trying to (re)connect.
    Connecting,
    /// Session established.
    Connected,
    /// Shut down.
    Stopped,
}

/// What the link reports to the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentLinkEvent {
    /// A session was established.
    Connected {
        /// Server address.
        server: SocketAddr,
        /// The cluster's service network, if the server announced it (before any pod).
        services: Option<ServiceNetwork>,
    },
    /// The Node object was created or updated.
    Registered {
        /// Its uid.
        uid: String,
    },
    /// New desired state.
    Pods(DesiredPods),
    /// Status updates the server could not write (they are not retried).
    StatusFailures(Vec<StatusFailure>),
    /// The certificate was renewed and saved.
    CertificateRenewed,
    /// The session ended; the link reconnects on its own.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The cluster's nodes (with [`AgentLinkConfig::watch_nodes`]).
    Nodes(NodesUpdate),
    /// The cluster's Services (with [`AgentLinkConfig::watch_services`]).
    Services(ServicesUpdate),
    /// The node's complete NetworkPolicy set, replacing the previous one (with
    /// [`AgentLinkConfig::watch_policies`]).
    Policies(Vec<PodPolicy>),
}

type ObjectsReply = oneshot::Sender<Result<Vec<ObjectResult>, LinkError>>;
type ImageReply = oneshot::Sender<Result<ImageDownload, LinkError>>;

enum LinkCommand {
    Statuses(Vec<PodStatusUpdate>),
    Terminated(Vec<PodRef>),
    Events(Vec<Event>),
    Register(Box<Node>),
    GetObjects(Vec<ObjectRef>, ObjectsReply),
    FetchImage(String, ImageReply),
    Usage(Box<UsageReport>),
    Shutdown,
}

/// The established session's connection and negotiated protocol version.
type CurrentConnection = Option<(quinn::Connection, u32)>;

/// Handle to a running link client.
pub struct AgentLink {
    commands: mpsc::UnboundedSender<LinkCommand>,
    endpoint: quinn::Endpoint,
    state: watch::Receiver<LinkState>,
    current: watch::Receiver<CurrentConnection>,
    task: tokio::task::JoinHandle<()>,
    node_name: String,
}

impl std::fmt::Debug for AgentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLink")
            .field("node_name", &self.node_name)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl AgentLink {
    /// Makes sure the node has credentials (joining with the token if it has none, or if they
    /// are for another node name or another cluster CA), then starts the link on `endpoint`
    /// (a fresh client endpoint if `None`). Join failures are returned, with the server's
    /// message; connection problems after that are retried forever.
    pub async fn start(
        config: AgentLinkConfig,
        endpoint: Option<quinn::Endpoint>,
        logs: Arc<dyn LogProvider>,
    ) -> Result<(Self, mpsc::Receiver<AgentLinkEvent>), LinkError> {
        let server = parse_server_url(&config.server)?;
        if config.node_name.is_empty() {
            return Err(LinkError::Protocol("the node name is empty".into()));
        }
        let endpoint = match endpoint {
            Some(endpoint) => endpoint,
            None => {
                let addr = server.resolve().await?;
                let local = any_local_for(&addr);
                quinn::Endpoint::client(local).map_err(|source| LinkError::Bind {
                    addr: local,
                    source,
                })?
            }
        };
        let credentials = ensure_credentials(&config, &server, &endpoint).await?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let (current_tx, current) = watch::channel(None);
        let node_name = config.node_name.clone();
        let runner = Runner {
            server,
            endpoint: endpoint.clone(),
            credentials,
            backoff: config.backoff.clone(),
            revision: config.resume_revision,
            config,
            logs,
            events: events_tx,
            commands: commands_rx,
            state: state_tx,
            current: current_tx,
            pending_statuses: BTreeMap::new(),
            pending_terminated: HashSet::new(),
            pending_events: Vec::new(),
            pending_objects: HashMap::new(),
            images: SharedImageWaiters::default(),
            next_request: 0,
            shutting_down: false,
        };
        let task = tokio::spawn(runner.run());
        Ok((
            Self {
                commands,
                endpoint,
                state,
                current,
                task,
                node_name,
            },
            events_rx,
        ))
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Current connection state.
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Waits until the session is established, up to `timeout`; returns whether it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut state = self.state.clone();
        tokio::time::timeout(timeout, state.wait_for(|s| *s == LinkState::Connected))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Reports pod statuses; the latest per pod is delivered once connected, re-sent after a
    /// reconnect until the server acknowledges it.
    pub fn report_statuses(&self, updates: Vec<PodStatusUpdate>) {
        let _ = self.commands.send(LinkCommand::Statuses(updates));
    }

    /// Confirms that pods marked for deletion have stopped.
    pub fn report_terminated(&self, pods: Vec<PodRef>) {
        let _ = self.commands.send(LinkCommand::Terminated(pods));
    }

    /// Records events (kept while disconnected, up to a limit).
    pub fn report_events(&self, events: Vec<Event>) {
        let _ = self.commands.send(LinkCommand::Events(events));
    }

    /// Reports the node's resource usage: sent at once when a session of protocol version
    /// [`USAGE_PROTOCOL_VERSION`] or later is open, dropped otherwise (never queued: the next
    /// report supersedes it).
    pub fn report_usage(&self, report: UsageReport) {
        let _ = self.commands.send(LinkCommand::Usage(Box::new(report)));
    }

    /// Re-registers the node with new labels, capacity, addresses, etc.
    pub fn update_registration(&self, node: Node) {
        let _ = self.commands.send(LinkCommand::Register(Box::new(node)));
    }

    /// Reads config maps and secrets from the server (as this node: only what its pods use).
    /// Fails at once with [`LinkError::NotConnected`] while there is no session.
    pub async fn get_objects(
        &self,
        refs: Vec<ObjectRef>,
        timeout: Duration,
    ) -> Result<Vec<ObjectResult>, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(LinkCommand::GetObjects(refs, tx))
            .map_err(|_| LinkError::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LinkError::Shutdown),
            Err(_) => Err(LinkError::Protocol(
                "the server did not answer the object request in time".into(),
            )),
        }
    }

    /// Asks the server for an image it holds (image hand-over): resolves to the server's
    /// stream once it answers, within `timeout`. Fails at once with [`LinkError::NotConnected`]
    /// while there is no session, and with [`LinkError::Protocol`] when the server is too old
    /// to hand images over.
    pub async fn fetch_image(
        &self,
        reference: &str,
        timeout: Duration,
    ) -> Result<ImageDownload, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(LinkCommand::FetchImage(reference.to_string(), tx))
            .map_err(|_| LinkError::Shutdown)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LinkError::Shutdown),
            Err(_) => Err(LinkError::Protocol(format!(
                "the server did not answer the request for image {reference:?} in time"
            ))),
        }
    }

    /// Opens an API tunnel ([`crate::proto::tunnel`]): a stream the server splices to its API
    /// listener. Fails at once with [`TunnelError::Unavailable`] while there is no session or
    /// the server's protocol version has no tunnels; the server's answer must come within
    /// `timeout`.
    pub async fn open_api_tunnel(&self, timeout: Duration) -> Result<ApiTunnelStream, TunnelError> {
        let current = self.current.borrow().clone();
        let Some((connection, version)) = current else {
            return Err(TunnelError::Unavailable(
                "not connected to the server".into(),
            ));
        };
        if version < API_TUNNEL_PROTOCOL_VERSION {
            return Err(TunnelError::Unavailable(format!(
                "the server speaks link protocol version {version}, which has no API tunnel"
            )));
        }
        tunnel::open_api_tunnel(&connection, timeout).await
    }

    /// Local UDP address.
    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.endpoint
            .local_addr()
            .map_err(|source| LinkError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })
    }

    /// Moves the link to another UDP socket (e.g. after the host's address changed); the QUIC
    /// connection migrates and the session continues.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), LinkError> {
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.endpoint
            .rebind(socket)
            .map_err(|source| LinkError::Bind { addr, source })
    }

    /// Says goodbye to the server and stops, waiting up to `timeout` (for holders of a shared
    /// reference; [`AgentLink::shutdown`] also waits for the task).
    pub async fn close(&self, timeout: Duration) {
        let _ = self.commands.send(LinkCommand::Shutdown);
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(timeout, state.wait_for(|s| *s == LinkState::Stopped)).await;
    }

    /// Says goodbye to the server and stops.
    pub async fn shutdown(self) {
        let _ = self.commands.send(LinkCommand::Shutdown);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

/// Loads the credentials, joining when there are none usable.
async fn ensure_credentials(
    config: &AgentLinkConfig,
    server: &ServerUrl,
    endpoint: &quinn::Endpoint,
) -> Result<NodeCredentials, LinkError> {
    let token = config
        .token
        .as_deref()
        .map(skiff_pki::JoinToken::parse)
        .transpose()?;
    if let Some(existing) = NodeCredentials::load(&config.data_dir)? {
        let same_node = existing.node_name == config.node_name;
        let same_ca = match &token {
            Some(token) => existing.ca_hash()? == token.ca_hash,
            None => true,
        };
        if same_node && same_ca {
            return Ok(existing);
        }
        tracing::info!(
            stored_node = %existing.node_name,
            node = %config.node_name,
            same_ca,
            "stored node certificate does not fit; joining again"
        );
    }
    let Some(token) = token else {
        return Err(LinkError::Protocol(format!(
            "no node certificate in {} and no join token: pass --token",
            config.data_dir.join("tls").display()
        )));
    };
    tracing::info!(server = %server, node = %config.node_name, "joining the cluster");
    // A server that cannot be reached (not started yet, restarting, overloaded) is retried with
    // back-off; a refusal, a CA pin mismatch or a bad token is final.
    let mut backoff = config.backoff.clone();
    loop {
        let result = credentials::join(
            endpoint,
            server,
            &token,
            &config.node_name,
            &config.data_dir,
            config.connect_timeout.max(Duration::from_secs(10)),
        )
        .await;
        match result {
            Err(error @ (LinkError::Connect { .. } | LinkError::Resolve { .. })) => {
                let delay = backoff.next_delay();
                tracing::warn!(server = %server, node = %config.node_name, %error, retry_in_ms = delay.as_millis() as u64, "cannot reach the server to join; retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

struct Runner {
    server: ServerUrl,
    endpoint: quinn::Endpoint,
    credentials: NodeCredentials,
    config: AgentLinkConfig,
    backoff: Backoff,
    revision: Option<u64>,
    logs: Arc<dyn LogProvider>,
    events: mpsc::Sender<AgentLinkEvent>,
    commands: mpsc::UnboundedReceiver<LinkCommand>,
    state: watch::Sender<LinkState>,
    /// The established session's connection, for agent-opened streams.
    current: watch::Sender<CurrentConnection>,
    /// Latest unacknowledged status per pod uid.
    pending_statuses: BTreeMap<String, PodStatusUpdate>,
    pending_terminated: HashSet<PodRef>,
    pending_events: Vec<Event>,
    /// Object requests waiting for their answer, by request number.
    pending_objects: HashMap<u64, ObjectsReply>,
    /// Image requests waiting for the server's stream (shared with the stream acceptor).
    images: SharedImageWaiters,
    next_request: u64,
    shutting_down: bool,
}

/// How one connection ended.
struct Outcome {
    reason: String,
    established: bool,
}

impl Runner {
    async fn run(mut self) {
        loop {
            let _ = self.state.send(LinkState::Connecting);
            let outcome = match self.connect_once().await {
                Ok(outcome) => outcome,
                Err(error) => Outcome {
                    reason: error.to_string(),
                    established: false,
                },
            };
            if self.shutting_down {
                break;
            }
            let _ = self.state.send(LinkState::Connecting);
            if outcome.established {
                self.backoff.reset();
                let _ = self
                    .events
                    .send(AgentLinkEvent::Disconnected {
                        reason: outcome.reason.clone(),
                    })
                    .await;
            }
            let delay = self.backoff.next_delay();
            tracing::info!(node = %self.config.node_name, reason = %outcome.reason, retry_in_ms = delay.as_millis() as u64, "link down, reconnecting");
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    command = self.commands.recv() => match command {
                        Some(command) => self.queue(command),
                        None => self.shutting_down = true,
                    },
                }
                if self.shutting_down {
                    break;
                }
            }
            if self.shutting_down {
                break;
            }
        }
        let _ = self.state.send(LinkState::Stopped);
    }

    /// Remembers a command's payload for the next session (or acts on shutdown).
    fn queue(&mut self, command: LinkCommand) {
        match command {
            LinkCommand::Statuses(updates) => {
                for update in updates {
                    self.pending_statuses.insert(update.pod.uid.clone(), update);
                }
            }
            LinkCommand::Terminated(pods) => self.pending_terminated.extend(pods),
            LinkCommand::Events(events) => {
                self.pending_events.extend(events);
                let excess = self.pending_events.len().saturating_sub(MAX_QUEUED_EVENTS);
                self.pending_events.drain(..excess);
            }
            LinkCommand::Register(node) => self.config.registration = *node,
            LinkCommand::GetObjects(_, reply) => {
                let _ = reply.send(Err(LinkError::NotConnected));
            }
            LinkCommand::FetchImage(_, reply) => {
                let _ = reply.send(Err(LinkError::NotConnected));
            }
            LinkCommand::Usage(_) => {}
            LinkCommand::Shutdown => self.shutting_down = true,
        }
    }

    async fn connect_once(&mut self) -> Result<Outcome, LinkError> {
        let addr = self.server.resolve().await?;
        let connect_error = |reason: String| LinkError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let connecting = self
            .endpoint
            .connect_with(self.credentials.quic_config()?, addr, &self.server.host)
            .map_err(|e| connect_error(e.to_string()))?;
        let connection = match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(connect_error(error.to_string())),
            Err(_) => return Err(connect_error("timed out".into())),
        };
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        // Serve streams the server opens (logs).
        let acceptor = {
            let connection = connection.clone();
            let logs = self.logs.clone();
            let images = self.images.clone();
            tokio::spawn(async move {
                while let Ok((send, recv)) = connection.accept_bi().await {
                    let logs = logs.clone();
                    let images = images.clone();
                    tokio::spawn(async move {
                        serve_stream(send, recv, logs.as_ref(), images.as_ref()).await
                    });
                }
            })
        };
        let mut session = AgentSession::new(
            &self.config.node_name,
            self.revision,
            Some(self.config.registration.clone()),
            self.config.session.clone(),
            std::time::Instant::now(),
        );
        let mut in_flight: Option<(u64, Vec<PodStatusUpdate>)> = None;
        let mut renewal_key: Option<String> = None;
        let mut established = false;
        let mut version = 0u32;
        let reason = loop {
            while let Some(bytes) = session.poll_transmit() {
                if let Err(error) = send.write_all(&bytes).await {
                    session.handle_stream_end();
                    tracing::debug!(%error, "control stream write failed");
                    break;
                }
            }
            let mut ended = None;
            while let Some(event) = session.poll_event() {
                match event {
                    AgentEvent::Established {
                        version: negotiated,
                        services,
                        ..
                    } => {
                        established = true;
                        version = negotiated;
                        self.current
                            .send_replace(Some((connection.clone(), negotiated)));
                        let _ = self.state.send(LinkState::Connected);
                        tracing::info!(node = %self.config.node_name, server = %addr, "link established");
                        self.emit(AgentLinkEvent::Connected {
                            server: addr,
                            services,
                        })
                        .await;
                        renewal_key = self.maybe_renew(&mut session);
                        if self.config.watch_nodes {
                            if let Err(error) = session.watch_nodes() {
                                tracing::warn!(%error, "cannot ask for the cluster's nodes");
                            }
                        }
                        if self.config.watch_services && version >= SERVICE_PROTOCOL_VERSION {
                            if let Err(error) = session.watch_services() {
                                tracing::warn!(%error, "cannot ask for the cluster's services");
                            }
                        }
                        if self.config.watch_policies && version >= POLICY_PROTOCOL_VERSION {
                            if let Err(error) = session.watch_policies() {
                                tracing::warn!(%error, "cannot ask for the node's network policies");
                            }
                        }
                        self.flush_terminated(&mut session);
                        self.flush_events(&mut session);
                    }
                    AgentEvent::Nodes(update) => {
                        self.emit(AgentLinkEvent::Nodes(update)).await;
                    }
                    AgentEvent::Services(update) => {
                        self.emit(AgentLinkEvent::Services(update)).await;
                    }
                    AgentEvent::Policies(set) => {
                        self.emit(AgentLinkEvent::Policies(set)).await;
                    }
                    AgentEvent::Objects { request, results } => {
                        if let Some(reply) = self.pending_objects.remove(&request) {
                            let _ = reply.send(Ok(results));
                        }
                    }
                    AgentEvent::Registered { uid } => {
                        self.emit(AgentLinkEvent::Registered { uid }).await;
                    }
                    AgentEvent::Pods(pods) => {
                        self.revision = session.revision();
                        self.emit(AgentLinkEvent::Pods(pods)).await;
                    }
                    AgentEvent::StatusAck { batch, failures } => {
                        if let Some((sent_batch, sent)) = in_flight.take() {
                            if sent_batch == batch {
                                for update in sent {
                                    if self.pending_statuses.get(&update.pod.uid) == Some(&update) {
                                        self.pending_statuses.remove(&update.pod.uid);
                                    }
                                }
                            } else {
                                in_flight = Some((sent_batch, sent));
                            }
                        }
                        if !failures.is_empty() {
                            for failure in &failures {
                                self.pending_statuses.remove(&failure.pod.uid);
                            }
                            self.emit(AgentLinkEvent::StatusFailures(failures)).await;
                        }
                    }
                    AgentEvent::CertificateRenewed { certificate_pem } => {
                        if let Some(key_pem) = renewal_key.take() {
                            self.save_renewed(certificate_pem, key_pem).await;
                        }
                    }
                    AgentEvent::Joined { .. } => {}
                    AgentEvent::Closed(reason) => ended = Some(reason),
                }
            }
            if let Some(reason) = ended {
                while let Some(bytes) = session.poll_transmit() {
                    if send.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                break reason;
            }
            if established && in_flight.is_none() && !self.pending_statuses.is_empty() {
                let batch: Vec<PodStatusUpdate> = self
                    .pending_statuses
                    .values()
                    .take(MAX_BATCH)
                    .cloned()
                    .collect();
                match session.send_statuses(batch.clone()) {
                    Ok(number) => in_flight = Some((number, batch)),
                    Err(error) => {
                        tracing::warn!(%error, "cannot send pod statuses; dropping them");
                        for update in batch {
                            self.pending_statuses.remove(&update.pod.uid);
                        }
                    }
                }
            }
            if session.poll_transmit_pending() {
                continue;
            }
            let deadline = session
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                chunk = recv.read_chunk(64 * 1024, true) => match chunk {
                    Ok(Some(chunk)) => session.handle_bytes(&chunk.bytes, std::time::Instant::now()),
                    Ok(None) => session.handle_stream_end(),
                    Err(error) => break CloseReason::PeerGoodbye(describe_loss(&connection, &error.to_string())),
                },
                command = self.commands.recv() => match command {
                    Some(LinkCommand::Shutdown) | None => {
                        self.shutting_down = true;
                        session.goodbye("agent shutting down");
                    }
                    Some(LinkCommand::GetObjects(refs, reply)) => {
                        if established {
                            self.next_request += 1;
                            let request = self.next_request;
                            match session.get_objects(request, refs) {
                                Ok(()) => {
                                    self.pending_objects.insert(request, reply);
                                }
                                Err(error) => {
                                    let _ = reply.send(Err(LinkError::Protocol(error.to_string())));
                                }
                            }
                        } else {
                            let _ = reply.send(Err(LinkError::NotConnected));
                        }
                    }
                    Some(LinkCommand::FetchImage(reference, reply)) => {
                        if !established {
                            let _ = reply.send(Err(LinkError::NotConnected));
                        } else if version < IMAGE_PROTOCOL_VERSION {
                            let _ = reply.send(Err(LinkError::Protocol(format!(
                                "the server speaks link protocol version {version}, which cannot hand images over"
                            ))));
                        } else {
                            self.next_request += 1;
                            let request = self.next_request;
                            match session.fetch_image(request, &reference) {
                                Ok(()) => self.images.insert(request, reply),
                                Err(error) => {
                                    let _ = reply.send(Err(LinkError::Protocol(error.to_string())));
                                }
                            }
                        }
                    }
                    Some(LinkCommand::Usage(report)) => {
                        if established && version >= USAGE_PROTOCOL_VERSION {
                            if let Err(error) = session.send_usage(*report) {
                                tracing::debug!(%error, "cannot send the resource usage");
                            }
                        }
                    }
                    Some(LinkCommand::Register(node)) => {
                        self.config.registration = (*node).clone();
                        if established {
                            if let Err(error) = session.register(*node) {
                                tracing::warn!(%error, "cannot send the node registration");
                            }
                        }
                    }
                    Some(command) => {
                        self.queue(command);
                        if established {
                            self.flush_terminated(&mut session);
                            self.flush_events(&mut session);
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    session.handle_timeout(std::time::Instant::now());
                    // Sessions outlive short-lived certificates: check at every timer.
                    if established && renewal_key.is_none() {
                        renewal_key = self.maybe_renew(&mut session);
                    }
                }
            }
        };
        self.current.send_replace(None);
        if session.revision().is_some() {
            self.revision = session.revision();
        }
        for (_, reply) in self.pending_objects.drain() {
            let _ = reply.send(Err(LinkError::NotConnected));
        }
        self.images.fail_all();
        let _ = send.finish();
        let (code, text) = reason.close_code();
        connection.close(VarInt::from_u32(code as u32), text.as_bytes());
        acceptor.abort();
        if let CloseReason::Refused { message, .. } = &reason {
            tracing::error!(node = %self.config.node_name, %message, "the server refused the session");
        }
        Ok(Outcome {
            reason: reason.to_string(),
            established,
        })
    }

    async fn emit(&self, event: AgentLinkEvent) {
        let _ = self.events.send(event).await;
    }

    fn flush_terminated(&mut self, session: &mut AgentSession) {
        if self.pending_terminated.is_empty() {
            return;
        }
        let pods: Vec<PodRef> = self.pending_terminated.drain().collect();
        if let Err(error) = session.send_terminated(pods.clone()) {
            tracing::warn!(%error, "cannot send pod terminations");
            self.pending_terminated.extend(pods);
        }
    }

    fn flush_events(&mut self, session: &mut AgentSession) {
        while !self.pending_events.is_empty() {
            let take = self.pending_events.len().min(100);
            let events: Vec<Event> = self.pending_events.drain(..take).collect();
            if let Err(error) = session.send_events(events) {
                tracing::warn!(%error, "cannot send events; dropping them");
            }
        }
    }

    /// Starts a certificate renewal if the certificate is close to expiry; returns the new key.
    fn maybe_renew(&self, session: &mut AgentSession) -> Option<String> {
        let info = self.credentials.pair.info().ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let left = info.not_after.saturating_sub(now);
        // At two thirds of the certificate's life since it was issued (its `notBefore` is
        // backdated against clock steps), or `renew_before` ahead if that is earlier.
        let backdate = skiff_pki::NODE_CERT_BACKDATE.as_secs() as i64;
        let lifetime = info
            .not_after
            .saturating_sub(info.not_before)
            .saturating_sub(backdate)
            .max(0);
        let threshold = (self.config.renew_before.as_secs() as i64).max(lifetime / 3);
        if left > threshold {
            return None;
        }
        let csr = match skiff_pki::NodeCsr::generate(&self.config.node_name) {
            Ok(csr) => csr,
            Err(error) => {
                tracing::warn!(%error, "cannot create a renewal request");
                return None;
            }
        };
        tracing::info!(node = %self.config.node_name, seconds_left = left, "renewing the node certificate");
        session.renew_certificate(csr.csr_pem).ok()?;
        Some(csr.key_pem)
    }

    async fn save_renewed(&mut self, certificate_pem: String, key_pem: String) {
        let mut renewed = self.credentials.clone();
        renewed.pair = skiff_pki::CertKeyPair {
            cert_pem: certificate_pem,
            key_pem,
        };
        let valid = skiff_pki::cert_signed_by(&renewed.ca_pem, &renewed.pair.cert_pem);
        if !valid {
            tracing::warn!(
                "the renewed certificate is not signed by the cluster CA; keeping the old one"
            );
            return;
        }
        match renewed.save(&self.config.data_dir) {
            Ok(()) => {
                self.credentials = renewed;
                tracing::info!(node = %self.config.node_name, "node certificate renewed");
                self.emit(AgentLinkEvent::CertificateRenewed).await;
            }
            Err(error) => tracing::warn!(%error, "cannot save the renewed certificate"),
        }
    }
}

fn describe_loss(connection: &quinn::Connection, fallback: &str) -> String {
    match connection.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            let code = CloseCode::from_u64(close.error_code.into_inner());
            format!(
                "server closed the connection ({code:?}): {}",
                String::from_utf8_lossy(&close.reason)
            )
        }
        Some(other) => other.to_string(),
        None => fallback.to_string(),
    }
}
