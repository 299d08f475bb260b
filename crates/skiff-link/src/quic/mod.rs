//! The thin quinn driver around the IO-free sessions: the server's endpoint
//! ([`server::LinkServer`]), the agent's link client ([`agent::AgentLink`]), the join exchange,
//! server-initiated streams (logs, exec, image hand-over), agent-initiated ones (the API tunnel,
//! [`tunnel`]), transport settings and reconnect back-off.

pub mod agent;
mod backoff;
mod credentials;
mod images;
mod node_http;
pub mod server;
mod streams;
mod transport;
mod tunnel;

use std::net::SocketAddr;
use std::path::PathBuf;

/// The session's events, handed on as they are: what a node did ([`NodeEvent`], for the
/// [`NodeService`]) and the cluster's nodes as the server sent them ([`NodesUpdate`]).
pub use crate::session::{NodeEvent, NodesUpdate, ServicesUpdate};
pub use agent::{AgentLink, AgentLinkConfig, AgentLinkEvent, LinkState};
pub use backoff::Backoff;
pub use credentials::{join, NodeCredentials};
pub use images::{BlobReceiver, ImageDownload, ImageFuture, ImageSent, ImageSource};
pub use node_http::{NodeHttpConnection, NodeHttpHandler};
pub use server::{
    JoinGrant, LinkServer, LinkServerConfig, NodeCommandError, NodeSender, NodeService,
    NodeSession, Refusal,
};
pub use streams::{
    ExecIo, ExecSink, ExecStream, ExecWriter, LogError, LogProvider, LogReader, LogStream, NoLogs,
    PortForwardStream, PORT_FORWARD_IDLE,
};
pub use transport::{parse_server_url, ServerUrl};
pub use tunnel::{splice, ApiTunnelSettings, ApiTunnelStream, SpliceEnd, SpliceStats, TunnelError};

/// Errors of the link driver.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The `--server` URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServerUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server's host name did not resolve.
    #[error("cannot resolve the server {host}: {source}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver error.
        source: std::io::Error,
    },
    /// The join token is malformed.
    #[error(transparent)]
    Token(#[from] skiff_pki::TokenError),
    /// Certificates or keys could not be created or read.
    #[error(transparent)]
    Pki(#[from] skiff_pki::PkiError),
    /// A local file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The UDP socket could not be bound.
    #[error("cannot bind the UDP socket {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// The TLS settings could not be turned into a QUIC configuration.
    #[error("invalid TLS configuration for QUIC: {0}")]
    Tls(String),
    /// The server did not pass the CA pin check.
    #[error("refusing to join {server}: {reason}")]
    PinMismatch {
        /// Server address.
        server: String,
        /// The pin check's explanation.
        reason: String,
    },
    /// The server could not be reached or the connection failed.
    #[error("cannot connect to the server at {addr}: {reason}")]
    Connect {
        /// Server address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server refused the join.
    #[error("the server refused to join node {node}: {message}")]
    JoinRefused {
        /// Node name.
        node: String,
        /// Machine-readable reason.
        code: crate::proto::RefusalCode,
        /// The server's explanation.
        message: String,
    },
    /// The peer broke the protocol or the connection ended unexpectedly.
    #[error("link protocol error: {0}")]
    Protocol(String),
    /// The link is shut down.
    #[error("the link is shut down")]
    Shutdown,
    /// The request needs a session and there is none right now.
    #[error("not connected to the server")]
    NotConnected,
}
