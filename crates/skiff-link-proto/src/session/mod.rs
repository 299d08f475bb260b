//! IO-free session state machines, one per side of the control stream.
//!
//! Both follow the shape of `quinn-proto`: feed received bytes with `handle_bytes(data, now)` and
//! expired deadlines with `handle_timeout(now)`; collect bytes to send with `poll_transmit()`,
//! happenings with `poll_event()`, and the next deadline with `poll_timeout()`. Time is passed
//! in, never read, so tests drive a simulated clock.

mod agent;
mod server;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::proto::{encode, CloseCode, FrameError, RefusalCode, DEFAULT_MAX_FRAME_LEN};

pub use agent::{
    refusal_is_permanent, AgentEvent, AgentSession, DesiredPods, NodesUpdate, ServicesUpdate,
};
pub use server::{NodeEvent, PeerIdentity, ServerEvent, ServerSession};

/// Timing and size limits of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// How often the agent sends heartbeats (the server announces it in `Welcome`).
    pub heartbeat_interval: Duration,
    /// The peer is declared dead after this many heartbeat intervals without hearing from it.
    pub missed_heartbeats: u32,
    /// Time allowed from connection to an established session (or a join answer).
    pub handshake_timeout: Duration,
    /// Largest frame accepted or produced.
    pub max_frame_len: usize,
    /// Server side: the service network announced in `Welcome`.
    pub services: Option<crate::proto::service::ServiceNetwork>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            missed_heartbeats: 4,
            handshake_timeout: Duration::from_secs(10),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            services: None,
        }
    }
}

impl SessionConfig {
    /// Silence longer than this means the peer is dead.
    pub fn dead_after(&self) -> Duration {
        self.heartbeat_interval * self.missed_heartbeats.max(1)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The server refused the session or the join.
    Refused {
        /// Machine-readable reason.
        code: RefusalCode,
        /// Human-readable reason.
        message: String,
    },
    /// The peer broke the protocol.
    ProtocolViolation(String),
    /// The peer was silent for too long.
    PeerDead {
        /// How long it was silent.
        silent_for: Duration,
    },
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The peer said goodbye.
    PeerGoodbye(String),
    /// This side said goodbye.
    LocalGoodbye(String),
    /// A one-shot exchange (join) finished.
    Completed,
}

impl CloseReason {
    /// The QUIC application close code and reason text for this ending.
    pub fn close_code(&self) -> (CloseCode, String) {
        match self {
            Self::Refused { code, message } => (CloseCode::Refused, format!("{code:?}: {message}")),
            Self::ProtocolViolation(m) => (CloseCode::ProtocolViolation, m.clone()),
            Self::PeerDead { silent_for } => (
                CloseCode::PeerDead,
                format!("no message for {} s", silent_for.as_secs()),
            ),
            Self::HandshakeTimeout => (
                CloseCode::HandshakeTimeout,
                "handshake did not complete in time".into(),
            ),
            Self::PeerGoodbye(m) | Self::LocalGoodbye(m) => (CloseCode::Normal, m.clone()),
            Self::Completed => (CloseCode::Normal, "done".into()),
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused { message, .. } => write!(f, "refused by the server: {message}"),
            Self::ProtocolViolation(m) => write!(f, "protocol violation: {m}"),
            Self::PeerDead { silent_for } => {
                write!(
                    f,
                    "peer silent for {} s, presumed dead",
                    silent_for.as_secs()
                )
            }
            Self::HandshakeTimeout => write!(f, "handshake timed out"),
            Self::PeerGoodbye(m) => write!(f, "peer closed the session: {m}"),
            Self::LocalGoodbye(m) => write!(f, "closed the session: {m}"),
            Self::Completed => write!(f, "exchange completed"),
        }
    }
}

/// Frames waiting to be written, in order.
#[derive(Debug, Default)]
struct Outbox {
    frames: VecDeque<Bytes>,
}

impl Outbox {
    fn push<T: Serialize>(&mut self, message: &T, max_len: usize) -> Result<(), FrameError> {
        self.frames.push_back(encode(message, max_len)?);
        Ok(())
    }

    fn pop(&mut self) -> Option<Bytes> {
        self.frames.pop_front()
    }
}

/// Earliest of optional deadlines.
fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}

#[cfg(test)]
mod tests;
