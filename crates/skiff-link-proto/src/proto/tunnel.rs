//! Agent-opened streams (protocol version [`API_TUNNEL_PROTOCOL_VERSION`] and later): the API
//! tunnel.
//!
//! A node whose pods cannot reach the API server's address directly (behind NAT, or a firewall
//! that lets only the link's UDP through) carries its pods' connections to the `kubernetes`
//! Service over the link instead. For each TCP connection the agent opens one bidirectional
//! QUIC stream and sends one [`AgentStreamRequest`] frame; the server answers with one
//! [`AgentStreamReply`] frame and, when it accepted, splices the rest of the stream to its own
//! API listener (a TCP connection to the local API port). TLS stays end to end between the
//! pod's client and the API server: the link carries bytes only.
//!
//! Only an authenticated node's session may open these streams; the server allows a bounded
//! number at once per node and refuses the rest with a reason.

use serde::{Deserialize, Serialize};

/// First protocol version in which the agent may open API tunnel streams.
pub const API_TUNNEL_PROTOCOL_VERSION: u32 = 4;

/// Largest header frame of an agent-opened stream, either way.
pub const MAX_AGENT_STREAM_HEADER: usize = 4096;

/// First frame of an agent-initiated stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentStreamRequest {
    /// Splice this stream to the API server's listener (raw bytes follow the answer).
    ApiTunnel,
}

/// Why the server refused an agent-initiated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TunnelRefusal {
    /// The node already has the most tunnel streams the server allows at once.
    TooManyStreams,
    /// The server offers no API tunnel (not configured).
    Unavailable,
    /// The server could not connect to its own API listener.
    ApiUnreachable,
    /// The request was not understood.
    BadRequest,
    /// A reason this build does not know.
    #[serde(other)]
    Unknown,
}

/// The server's answer to an [`AgentStreamRequest`]; raw bytes follow an `Accepted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AgentStreamReply {
    /// The stream is spliced to the API listener.
    Accepted,
    /// Refused; the server finishes the stream after this frame.
    Refused {
        /// Machine-readable reason.
        code: TunnelRefusal,
        /// Human-readable reason.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{decode, encode};

    #[test]
    fn request_and_replies_are_tagged_json() {
        let frame = encode(&AgentStreamRequest::ApiTunnel, MAX_AGENT_STREAM_HEADER).unwrap();
        assert_eq!(&frame[4..], br#"{"type":"apiTunnel"}"#);
        let refused = AgentStreamReply::Refused {
            code: TunnelRefusal::TooManyStreams,
            message: "m".into(),
        };
        let frame = encode(&refused, MAX_AGENT_STREAM_HEADER).unwrap();
        assert_eq!(
            &frame[4..],
            br#"{"type":"refused","code":"tooManyStreams","message":"m"}"#
        );
        assert_eq!(decode::<AgentStreamReply>(&frame[4..]).unwrap(), refused);
    }

    #[test]
    fn unknown_refusal_code_still_decodes() {
        let reply: AgentStreamReply =
            decode(br#"{"type":"refused","code":"solarFlare","message":"m"}"#).unwrap();
        assert_eq!(
            reply,
            AgentStreamReply::Refused {
                code: TunnelRefusal::Unknown,
                message: "m".into()
            }
        );
    }
}
