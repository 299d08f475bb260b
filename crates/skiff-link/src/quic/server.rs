//! The server's endpoint: accepts node connections, runs a [`ServerSession`] per connection,
//! answers joins through the [`NodeService`], and hands established sessions to it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use quinn::VarInt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::images::{self, ImageSent, ImageSource};
use super::streams::{self, ExecStream, LogError, LogStream, PortForwardStream};
use super::transport::{endpoint_config, transport_config};
use super::tunnel::{self, ApiTunnelSettings};
use super::LinkError;
use crate::proto::image::ImageTransferError;
use crate::proto::policy::PodPolicy;
use crate::proto::service::{ServiceKey, ServiceSummary};
use crate::proto::{
    CloseCode, ClusterNetwork, ExecRequest, JoinRequest, LogRequest, NodeSummary, ObjectRef,
    ObjectResult, PodChange, PortForwardRequest, RefusalCode, StatusFailure,
    PORT_FORWARD_PROTOCOL_VERSION,
};
use crate::session::{
    CloseReason, NodeEvent, PeerIdentity, ServerEvent, ServerSession, SessionConfig,
};

/// Largest chunk read from a control stream at once.
const READ_CHUNK: usize = 64 * 1024;
/// How long a finished exchange waits for the agent to close before closing itself.
const LINGER: Duration = Duration::from_secs(3);
/// Events buffered per session before the driver stops reading from the node.
const EVENT_BUFFER: usize = 64;

/// Settings of the server's endpoint.
#[derive(Debug, Clone)]
pub struct LinkServerConfig {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// TLS settings (`skiff_pki::link_server_config`): TLS 1.3, node certificates requested.
    pub tls: rustls::ServerConfig,
    /// Session timing and limits.
    pub session: SessionConfig,
    /// Persistent secret from which stateless-reset keys derive (keep it across restarts).
    pub restart_secret: [u8; 32],
    /// The API tunnel nodes may open ([`tunnel`]); `None`: every tunnel is refused.
    pub api_tunnel: Option<ApiTunnelSettings>,
}

/// A refusal sent to the agent with a clear message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable reason.
    pub code: RefusalCode,
    /// Human-readable reason.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A successful join.
#[derive(Debug, Clone)]
pub struct JoinGrant {
    /// The node's certificate (PEM).
    pub certificate_pem: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
}

/// What the server does with nodes: implemented by the control plane (`skiff-server`).
pub trait NodeService: Send + Sync + 'static {
    /// Checks a join request and signs the node's certificate, or refuses.
    fn join(
        &self,
        request: JoinRequest,
        remote: SocketAddr,
    ) -> impl Future<Output = Result<JoinGrant, Refusal>> + Send;

    /// Serves an established node session until its events end.
    fn serve(&self, session: NodeSession) -> impl Future<Output = ()> + Send;
}

/// An established session, handed to [`NodeService::serve`].
#[derive(Debug)]
pub struct NodeSession {
    /// The node's name (from its certificate).
    pub node_name: String,
    /// The node's current address.
    pub remote: SocketAddr,
    /// Revision to resume the desired-state stream from, if the agent has one.
    pub resume_revision: Option<u64>,
    /// The agent's skiff version.
    pub agent_version: String,
    events: mpsc::Receiver<NodeEvent>,
    sender: NodeSender,
}

impl NodeSession {
    /// The next event; `None` after the session ended.
    pub async fn next_event(&mut self) -> Option<NodeEvent> {
        self.events.recv().await
    }

    /// A handle to send to the node (cheap to clone).
    pub fn sender(&self) -> NodeSender {
        self.sender.clone()
    }
}

enum Command {
    Registered(String),
    Snapshot(u64, Vec<Pod>),
    Changes(u64, Vec<PodChange>),
    Bookmark(u64),
    StatusAck(u64, Vec<StatusFailure>),
    Renewed(String),
    Refuse(RefusalCode, String),
    Nodes {
        network: Option<ClusterNetwork>,
        full: bool,
        nodes: Vec<NodeSummary>,
        removed: Vec<String>,
    },
    Services {
        full: bool,
        services: Vec<ServiceSummary>,
        removed: Vec<ServiceKey>,
    },
    Policies(Vec<PodPolicy>),
    Objects(u64, Vec<ObjectResult>),
}

/// The session is gone.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("the session of node {node} has ended")]
pub struct NodeCommandError {
    /// The node.
    pub node: String,
}

/// Sends to one node's session; cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeSender {
    node_name: Arc<str>,
    commands: mpsc::UnboundedSender<Command>,
    connection: quinn::Connection,
    /// The protocol version negotiated with the node's agent.
    version: u32,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl NodeSender {
    fn command(&self, command: Command) -> Result<(), NodeCommandError> {
        self.commands.send(command).map_err(|_| NodeCommandError {
            node: self.node_name.to_string(),
        })
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The node's current address (changes when it migrates).
    pub fn remote_address(&self) -> SocketAddr {
        self.connection.remote_address()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    /// Resolves when the session has ended.
    pub async fn closed(&self) {
        self.commands.closed().await
    }

    /// Confirms a registration.
    pub fn registered(&self, uid: String) -> Result<(), NodeCommandError> {
        self.command(Command::Registered(uid))
    }

    /// Sends the full set of pods bound to the node.
    pub fn send_snapshot(&self, revision: u64, pods: Vec<Pod>) -> Result<(), NodeCommandError> {
        self.command(Command::Snapshot(revision, pods))
    }

    /// Sends changes to the set.
    pub fn send_changes(
        &self,
        revision: u64,
        changes: Vec<PodChange>,
    ) -> Result<(), NodeCommandError> {
        self.command(Command::Changes(revision, changes))
    }

    /// Tells the node nothing changed for it up to `revision`.
    pub fn send_bookmark(&self, revision: u64) -> Result<(), NodeCommandError> {
        self.command(Command::Bookmark(revision))
    }

    /// Acknowledges a status batch.
    pub fn ack_statuses(
        &self,
        batch: u64,
        failures: Vec<StatusFailure>,
    ) -> Result<(), NodeCommandError> {
        self.command(Command::StatusAck(batch, failures))
    }

    /// Sends a renewed certificate.
    pub fn certificate_renewed(&self, certificate_pem: String) -> Result<(), NodeCommandError> {
        self.command(Command::Renewed(certificate_pem))
    }

    /// Refuses and ends the session.
    pub fn refuse(&self, code: RefusalCode, message: &str) -> Result<(), NodeCommandError> {
        self.command(Command::Refuse(code, message.to_string()))
    }

    /// Opens a container log on the node (server-initiated stream on the node's connection).
    pub async fn open_log(&self, request: LogRequest) -> Result<LogStream, LogError> {
        streams::open_log(&self.connection, request).await
    }

    /// Starts a command in a container on the node; channel frames
    /// ([`crate::proto::exec`]) flow both ways on the returned stream.
    pub async fn open_exec(&self, request: ExecRequest) -> Result<ExecStream, LogError> {
        streams::open_exec(&self.connection, request).await
    }

    /// Opens an HTTP/1.1 connection to the node's own endpoints (`nodes/proxy`; an agent
    /// older than protocol 5 refuses the stream with a reason).
    pub async fn open_node_http(&self) -> Result<super::NodeHttpConnection, LogError> {
        super::node_http::open_node_http(&self.connection).await
    }

    /// The protocol version negotiated with the node's agent.
    pub fn protocol_version(&self) -> u32 {
        self.version
    }

    /// Opens one TCP connection to `request.port` on the pod's loopback, inside its network
    /// namespace on the node; the returned stream carries the connection's bytes both ways.
    /// An agent older than [`crate::proto::PORT_FORWARD_PROTOCOL_VERSION`] is refused here with
    /// a message saying so.
    pub async fn open_port_forward(
        &self,
        request: PortForwardRequest,
    ) -> Result<PortForwardStream, LogError> {
        if self.version < PORT_FORWARD_PROTOCOL_VERSION {
            return Err(LogError::Failed(format!(
                "unable to do port forwarding to port {} of pod {}/{}: node {} runs an agent that speaks link protocol {} (port-forward needs {}): upgrade the agent",
                request.port,
                request.namespace,
                request.pod,
                self.node_name,
                self.version,
                PORT_FORWARD_PROTOCOL_VERSION
            )));
        }
        streams::open_port_forward(&self.connection, request).await
    }

    /// Answers a `FetchImage` request: opens an image stream and sends the node the blobs it
    /// lacks from `source`, or tells it the image is not available (`source` is `None`, or does
    /// not hold the image). Returns when the node has everything or the transfer failed.
    pub async fn send_image(
        &self,
        request: u64,
        reference: String,
        source: Option<&dyn ImageSource>,
    ) -> Result<ImageSent, ImageTransferError> {
        images::send_image(
            &self.connection,
            &self.node_name,
            request,
            reference,
            source,
        )
        .await
    }

    /// Sends the cluster's nodes: everything when `full`, else the changes.
    pub fn send_nodes(
        &self,
        network: Option<ClusterNetwork>,
        full: bool,
        nodes: Vec<NodeSummary>,
        removed: Vec<String>,
    ) -> Result<(), NodeCommandError> {
        self.command(Command::Nodes {
            network,
            full,
            nodes,
            removed,
        })
    }

    /// Sends the cluster's Services: everything when `full`, else the changes.
    pub fn send_services(
        &self,
        full: bool,
        services: Vec<ServiceSummary>,
        removed: Vec<ServiceKey>,
    ) -> Result<(), NodeCommandError> {
        self.command(Command::Services {
            full,
            services,
            removed,
        })
    }

    /// Sends the node's complete NetworkPolicy set (after `WatchPolicies`).
    pub fn send_policies(&self, pods: Vec<PodPolicy>) -> Result<(), NodeCommandError> {
        self.command(Command::Policies(pods))
    }

    /// Answers a `GetObjects` request.
    pub fn send_objects(
        &self,
        request: u64,
        results: Vec<ObjectResult>,
    ) -> Result<(), NodeCommandError> {
        self.command(Command::Objects(request, results))
    }
}

/// Live sessions by node name, so a newer session supersedes an older one.
#[derive(Default)]
struct Registry {
    sessions: Mutex<HashMap<String, (usize, quinn::Connection, NodeSender)>>,
}

/// The node link's server endpoint.
pub struct LinkServer {
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    registry: Arc<Registry>,
    drivers: Arc<tokio::sync::Semaphore>,
}

/// Upper bound on concurrently driven connections (each holds a permit).
const MAX_CONNECTIONS: u32 = 100_000;

impl std::fmt::Debug for LinkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkServer")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl LinkServer {
    /// Binds the endpoint and starts accepting nodes, served by `service`.
    pub fn bind<S: NodeService>(
        config: LinkServerConfig,
        service: Arc<S>,
    ) -> Result<Self, LinkError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config.tls)
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport_config(1)));
        server_config.migration(true);
        let socket =
            std::net::UdpSocket::bind(config.listen).map_err(|source| LinkError::Bind {
                addr: config.listen,
                source,
            })?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config(&config.restart_secret),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| LinkError::Bind {
            addr: config.listen,
            source,
        })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let registry = Arc::new(Registry::default());
        let drivers = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS as usize));
        let session_config = Arc::new(config.session);
        let api_tunnel = config.api_tunnel.map(Arc::new);
        tokio::spawn(accept_loop(
            endpoint.clone(),
            service,
            session_config,
            api_tunnel,
            registry.clone(),
            shutdown_rx,
            drivers.clone(),
        ));
        Ok(Self {
            endpoint,
            shutdown,
            registry,
            drivers,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.endpoint
            .local_addr()
            .map_err(|source| LinkError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })
    }

    /// Number of established node sessions.
    pub fn session_count(&self) -> usize {
        self.registry.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The sender of node `name`'s session, if it is connected.
    pub fn node(&self, name: &str) -> Option<NodeSender> {
        let sessions = self.registry.sessions.lock().ok()?;
        sessions.get(name).map(|(_, _, sender)| sender.clone())
    }

    /// Says goodbye to every node, waits briefly for the goodbyes to leave, and closes.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let all = MAX_CONNECTIONS;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.drivers.acquire_many(all)).await;
        self.endpoint.close(
            VarInt::from_u32(CloseCode::ServerShutdown as u32),
            b"server shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

async fn accept_loop<S: NodeService>(
    endpoint: quinn::Endpoint,
    service: Arc<S>,
    config: Arc<SessionConfig>,
    api_tunnel: Option<Arc<ApiTunnelSettings>>,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
    drivers: Arc<tokio::sync::Semaphore>,
) {
    let mut next_id = 0usize;
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.changed() => None,
        };
        let Some(incoming) = incoming else { return };
        let Ok(permit) = drivers.clone().acquire_owned().await else {
            return;
        };
        next_id += 1;
        let driver = Driver {
            id: next_id,
            service: service.clone(),
            config: config.clone(),
            api_tunnel: api_tunnel.clone(),
            registry: registry.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            driver.run(incoming).await;
            drop(permit);
        });
    }
}

struct Driver<S> {
    id: usize,
    service: Arc<S>,
    config: Arc<SessionConfig>,
    api_tunnel: Option<Arc<ApiTunnelSettings>>,
    registry: Arc<Registry>,
    shutdown: watch::Receiver<bool>,
}

/// Why the driver loop stopped.
enum Ending {
    /// The session decided (refusal, violation, completed, goodbye, dead).
    Session(CloseReason),
    /// The connection was lost underneath.
    ConnectionLost(String),
}

impl<S: NodeService> Driver<S> {
    async fn run(mut self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let connection = match incoming.await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(%remote, %error, "node connection failed during the handshake");
                return;
            }
        };
        let identity = match peer_identity(&connection) {
            Ok(identity) => identity,
            Err(message) => {
                tracing::warn!(%remote, %message, "refusing a connection");
                connection.close(
                    VarInt::from_u32(CloseCode::Refused as u32),
                    message.as_bytes(),
                );
                return;
            }
        };
        let accepted =
            tokio::time::timeout(self.config.handshake_timeout, connection.accept_bi()).await;
        let (mut send, mut recv) = match accepted {
            Ok(Ok(streams)) => streams,
            Ok(Err(error)) => {
                tracing::debug!(%remote, %error, "connection closed before its control stream");
                return;
            }
            Err(_) => {
                close_with(&connection, &CloseReason::HandshakeTimeout);
                return;
            }
        };
        let mut session =
            ServerSession::new(identity, (*self.config).clone(), std::time::Instant::now());
        let (commands_tx, mut commands) = mpsc::unbounded_channel();
        let mut events: Option<mpsc::Sender<NodeEvent>> = None;
        let mut node_name: Option<String> = None;
        // The node's own streams (API tunnels), accepted once its session is open.
        let mut agent_streams: Option<tokio::task::JoinHandle<()>> = None;
        let ending = loop {
            // Write what the session queued.
            let mut write_failed = None;
            while let Some(bytes) = session.poll_transmit() {
                if let Err(error) = send.write_all(&bytes).await {
                    write_failed = Some(error.to_string());
                    break;
                }
            }
            if let Some(error) = write_failed {
                break Ending::ConnectionLost(error);
            }
            // Act on what it reported.
            let mut ended = None;
            while let Some(event) = session.poll_event() {
                match event {
                    ServerEvent::JoinRequested(request) => {
                        let name = request.node_name.clone();
                        match self.service.join(request, remote).await {
                            Ok(grant) => {
                                tracing::info!(node = %name, %remote, "node joined");
                                session.grant_join(grant.certificate_pem, grant.ca_pem);
                            }
                            Err(refusal) => {
                                tracing::warn!(node = %name, %remote, reason = %refusal.message, "join refused");
                                session.refuse(refusal.code, &refusal.message);
                            }
                        }
                    }
                    ServerEvent::Opened {
                        node_name: name,
                        resume_revision,
                        agent_version,
                        version,
                    } => {
                        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
                        let sender = NodeSender {
                            node_name: Arc::from(name.as_str()),
                            commands: commands_tx.clone(),
                            connection: connection.clone(),
                            version,
                        };
                        self.supersede(&name, &connection, &sender);
                        let name_for_streams = name.clone();
                        events = Some(tx);
                        node_name = Some(name.clone());
                        let node_session = NodeSession {
                            node_name: name,
                            remote,
                            resume_revision,
                            agent_version,
                            events: rx,
                            sender,
                        };
                        let service = self.service.clone();
                        tokio::spawn(async move { service.serve(node_session).await });
                        if agent_streams.is_none() {
                            agent_streams = Some(tokio::spawn(tunnel::serve_agent_streams(
                                connection.clone(),
                                Arc::from(name_for_streams.as_str()),
                                self.api_tunnel.clone(),
                            )));
                        }
                    }
                    ServerEvent::Closed(reason) => ended = Some(reason),
                    ServerEvent::Node(event) => {
                        if let Some(tx) = &events {
                            // Waiting here stops reading from the node: back-pressure.
                            let _ = tx.send(event).await;
                        }
                    }
                }
            }
            if let Some(reason) = ended {
                // Flush what the closing queued (a refusal, a join answer, a goodbye).
                while let Some(bytes) = session.poll_transmit() {
                    if send.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                break Ending::Session(reason);
            }
            if session.poll_transmit_pending() {
                continue;
            }
            let deadline = session
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                chunk = recv.read_chunk(READ_CHUNK, true) => match chunk {
                    Ok(Some(chunk)) => session.handle_bytes(&chunk.bytes, std::time::Instant::now()),
                    Ok(None) => session.handle_stream_end(),
                    Err(error) => break Ending::ConnectionLost(error.to_string()),
                },
                Some(command) = commands.recv() => apply(&mut session, command),
                _ = tokio::time::sleep_until(deadline) => session.handle_timeout(std::time::Instant::now()),
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        session.goodbye("server shutting down");
                    }
                }
            }
        };
        let reason = match ending {
            Ending::Session(reason) => {
                match &reason {
                    CloseReason::Completed | CloseReason::Refused { .. } => {
                        // Let the agent read the answer, then close.
                        let _ = send.finish();
                        let _ = tokio::time::timeout(LINGER, connection.closed()).await;
                        close_with(&connection, &reason);
                    }
                    CloseReason::LocalGoodbye(_) => {
                        let _ = send.finish();
                        connection.close(
                            VarInt::from_u32(CloseCode::ServerShutdown as u32),
                            b"server shutting down",
                        );
                    }
                    other => close_with(&connection, other),
                }
                reason
            }
            Ending::ConnectionLost(message) => {
                CloseReason::PeerGoodbye(format!("connection lost: {message}"))
            }
        };
        if let Some(task) = agent_streams {
            task.abort();
        }
        if let Some(name) = &node_name {
            tracing::info!(node = %name, %remote, %reason, "node session ended");
            self.forget(name);
        }
        if let Some(tx) = events {
            let _ = tx.send(NodeEvent::Closed(reason)).await;
        }
    }

    /// Registers the new session, closing an older one of the same node.
    fn supersede(&mut self, name: &str, connection: &quinn::Connection, sender: &NodeSender) {
        let Ok(mut sessions) = self.registry.sessions.lock() else {
            return;
        };
        if let Some((_, old, _)) = sessions.insert(
            name.to_string(),
            (self.id, connection.clone(), sender.clone()),
        ) {
            if old.stable_id() != connection.stable_id() {
                old.close(
                    VarInt::from_u32(CloseCode::Normal as u32),
                    b"superseded by a newer session of the same node",
                );
            }
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut sessions) = self.registry.sessions.lock() {
            if sessions.get(name).is_some_and(|(id, _, _)| *id == self.id) {
                sessions.remove(name);
            }
        }
    }
}

fn apply(session: &mut ServerSession, command: Command) {
    let result = match command {
        Command::Registered(uid) => session.registered(uid),
        Command::Snapshot(revision, pods) => session.send_snapshot(revision, pods),
        Command::Changes(revision, changes) => session.send_changes(revision, changes),
        Command::Bookmark(revision) => session.send_bookmark(revision),
        Command::StatusAck(batch, failures) => session.ack_statuses(batch, failures),
        Command::Renewed(pem) => session.certificate_renewed(pem),
        Command::Refuse(code, message) => {
            session.refuse(code, &message);
            Ok(())
        }
        Command::Nodes {
            network,
            full,
            nodes,
            removed,
        } => session.send_nodes(network, full, nodes, removed),
        Command::Services {
            full,
            services,
            removed,
        } => session.send_services(full, services, removed),
        Command::Policies(pods) => session.send_policies(pods),
        Command::Objects(request, results) => {
            let refs: Vec<ObjectRef> = results.iter().map(|r| r.reference.clone()).collect();
            session.send_objects(request, results).or_else(|error| {
                // Too large for one frame: tell the node instead of leaving it waiting.
                let failed = refs
                    .into_iter()
                    .map(|reference| ObjectResult {
                        reference,
                        object: None,
                        error: Some(format!("cannot send the objects: {error}")),
                    })
                    .collect();
                session.send_objects(request, failed)
            })
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, "cannot send to the node");
    }
}

fn close_with(connection: &quinn::Connection, reason: &CloseReason) {
    let (code, text) = reason.close_code();
    let mut text = text.into_bytes();
    text.truncate(1000);
    connection.close(VarInt::from_u32(code as u32), &text);
}

/// The node identity of the connection's client certificate, if any.
fn peer_identity(connection: &quinn::Connection) -> Result<PeerIdentity, String> {
    let Some(any) = connection.peer_identity() else {
        return Ok(PeerIdentity::Anonymous);
    };
    let Ok(chain) = any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>() else {
        return Ok(PeerIdentity::Anonymous);
    };
    let Some(leaf) = chain.first() else {
        return Ok(PeerIdentity::Anonymous);
    };
    let identity = skiff_pki::Identity::from_cert_der(leaf).map_err(|e| e.to_string())?;
    match skiff_pki::node_name_of(&identity) {
        Some(name) => Ok(PeerIdentity::Node(name.to_string())),
        None => Err(format!(
            "the client certificate of {:?} is not a node identity (system:node:<name> in system:nodes)",
            identity.user
        )),
    }
}
