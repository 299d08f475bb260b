//! The WebSocket upgrade shared by the streaming subresources (`pods/exec`,
//! `pods/portforward`): sub-protocol negotiation as Kubernetes' `wsstream` does it, the
//! `101 Switching Protocols` answer, and the socket on the upgraded connection with bounded
//! message and frame sizes (a hostile client cannot make the server buffer more).

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::ApiError;

/// Largest message (and frame) a client may send: clients send far less (client-go 32 KiB,
/// the Python client's port-forward 1 MiB + 1); upstream's `wsstream` allows 32 MiB.
pub(crate) const MAX_MESSAGE: usize = 4 << 20;

/// A server-side WebSocket on an upgraded HTTP connection.
pub(crate) type ServerSocket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether the request asks for a WebSocket (`Upgrade: websocket`, possibly among others).
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// `101 Switching Protocols` to a WebSocket for the client's `Sec-WebSocket-Key`, naming
/// `protocol` (`""`: none).
pub(crate) fn switching_protocols(key: &[u8], protocol: &str) -> Response<Body> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", v);
    }
    if let (false, Ok(v)) = (protocol.is_empty(), HeaderValue::from_str(protocol)) {
        headers.insert("sec-websocket-protocol", v);
    }
    response
}

/// The sub-protocols the client offered (`Sec-WebSocket-Protocol`, comma-separated, possibly
/// in several headers), in its order.
pub(crate) fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A WebSocket upgrade the handler accepted: answer with [`Accepted::response`], then take
/// the socket with [`Accepted::socket`] (in a task: it resolves once hyper hands the
/// connection over, after the response was written).
pub(crate) struct Accepted {
    upgrade: OnUpgrade,
    key: HeaderValue,
    /// The negotiated sub-protocol (`""`: none offered, and the endpoint has a default).
    pub protocol: &'static str,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Accepts a WebSocket upgrade speaking the first of `supported` (best first) the client
/// offered; `""` in `supported` accepts a client that offered none. `not_websocket` is the
/// 400 message for a request that is not a WebSocket upgrade.
pub(crate) fn accept(
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
    supported: &[&'static str],
    not_websocket: &str,
) -> Result<Accepted, ApiError> {
    let key = headers.get("sec-websocket-key").cloned();
    let (Some(upgrade), true, Some(key)) = (upgrade, is_websocket(headers), key) else {
        return Err(ApiError::bad_request(not_websocket));
    };
    let offered = offered_protocols(headers);
    let protocol = if offered.is_empty() && supported.contains(&"") {
        ""
    } else {
        supported
            .iter()
            .find(|p| !p.is_empty() && offered.iter().any(|o| o == *p))
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to upgrade: unable to negotiate protocol: client supports [{}], server supports [{}]",
                    offered.join(" "),
                    supported
                        .iter()
                        .filter(|p| !p.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            })?
    };
    Ok(Accepted {
        upgrade,
        key,
        protocol,
    })
}

impl Accepted {
    /// The `101 Switching Protocols` answer.
    pub(crate) fn response(&self) -> Response<Body> {
        switching_protocols(self.key.as_bytes(), self.protocol)
    }

    /// The socket, once the connection was handed over; messages and frames larger than
    /// `max_message` end the connection with an error.
    pub(crate) async fn socket(self, max_message: usize) -> Result<ServerSocket, hyper::Error> {
        let upgraded = self.upgrade.await?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        Ok(
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_split_and_trimmed() {
        let mut headers = HeaderMap::new();
        headers.append(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io, v4.base64.channel.k8s.io"),
        );
        headers.append("sec-websocket-protocol", HeaderValue::from_static("x"));
        assert_eq!(
            offered_protocols(&headers),
            ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "x"]
        );
    }

    #[test]
    fn recognises_a_websocket_upgrade_among_others() {
        let mut headers = HeaderMap::new();
        assert!(!is_websocket(&headers));
        headers.insert(
            header::UPGRADE,
            HeaderValue::from_static("SPDY/3.1, WebSocket"),
        );
        assert!(is_websocket(&headers));
        let answer = switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==", "");
        assert_eq!(
            answer.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(answer.headers().get("sec-websocket-protocol").is_none());
    }
}
