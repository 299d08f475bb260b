//! The HTTP side of SPDY: recognising a request for it, negotiating the stream protocol by
//! `X-Stream-Protocol-Version` (as `k8s.io/apimachinery/pkg/util/httpstream.Handshake`:
//! the client's order wins), and the `101 Switching Protocols` answer for a raw upgrade (the
//! WebSocket tunnel's is `handlers::websocket`'s).

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// The header carrying the stream protocols a client offers and the one chosen.
pub(crate) const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// What a raw upgrade asks for.
pub(crate) const SPDY: &str = "SPDY/3.1";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The request asks to switch to SPDY/3.1 (`Upgrade: SPDY/3.1`).
pub(crate) fn wants_spdy(headers: &HeaderMap) -> bool {
    values(headers, header::UPGRADE.as_str()).any(|v| v.eq_ignore_ascii_case(SPDY))
}

/// The stream protocol to speak: the client's first offer that we support; `Ok(None)` when
/// the client offers none (an old client: the oldest protocol, no reply header); `Err` with
/// upstream's message when nothing offered is supported.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<Option<&'static str>, String> {
    let offered: Vec<&str> = values(headers, PROTOCOL_HEADER).collect();
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| *s == o).copied())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            )
        })
}

/// `101 Switching Protocols` to SPDY/3.1, naming the chosen stream protocol.
pub(crate) fn spdy_response(protocol: Option<&str>) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(SPDY));
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(PROTOCOL_HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn client_order_wins_and_none_offered_is_the_oldest() {
        let supported = ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"];
        let h = with(&[
            (PROTOCOL_HEADER, "v5.channel.k8s.io"),
            (PROTOCOL_HEADER, "v3.channel.k8s.io"),
            (PROTOCOL_HEADER, "v4.channel.k8s.io"),
        ]);
        assert_eq!(negotiate(&h, &supported), Ok(Some("v3.channel.k8s.io")));
        assert_eq!(negotiate(&HeaderMap::new(), &supported), Ok(None));
        let h = with(&[(PROTOCOL_HEADER, "v9.channel.k8s.io")]);
        assert!(negotiate(&h, &supported)
            .unwrap_err()
            .contains("unable to negotiate protocol"));
    }

    #[test]
    fn recognises_upgrades() {
        assert!(wants_spdy(&with(&[("upgrade", "SPDY/3.1")])));
        assert!(!wants_spdy(&with(&[("upgrade", "websocket")])));
    }
}
