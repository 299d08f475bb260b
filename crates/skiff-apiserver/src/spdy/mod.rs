//! SPDY/3.1, as Kubernetes clients speak it: kubectl 1.27–1.29 run `exec` over it, and every
//! kubectl's `port-forward` speaks `portforward.k8s.io` over it — on a raw HTTP/1.1
//! `Upgrade: SPDY/3.1` (kubectl ≤ 1.30) or tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31).
//!
//! * [`frame`], [`headers`]: the wire format (frames, zlib-compressed header blocks).
//! * [`session`]: a server session — streams, replies, pings, GOAWAY, back-pressure.
//! * [`remotecommand`]: `pods/exec` (and later `pods/attach`) over a session.
//! * [`portforward`]: `pods/portforward` over a session.
//! * [`tunnel`]: a WebSocket carrying the session's bytes in binary messages.
//! * [`upgrade`]: the HTTP handshakes (protocol negotiation, 101 responses).

pub(crate) mod frame;
pub(crate) mod headers;
pub(crate) mod portforward;
pub(crate) mod remotecommand;
pub(crate) mod session;
pub(crate) mod tunnel;
pub(crate) mod upgrade;

/// Why a session or stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpdyError {
    /// The peer broke the protocol (the session ends with GOAWAY).
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// The connection failed.
    #[error("SPDY connection: {0}")]
    Io(String),
    /// The stream was reset or finished, or the session ended.
    #[error("SPDY stream {0} is closed")]
    StreamClosed(u32),
}
