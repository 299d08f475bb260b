//! The SPDY/3.1 forms of `pods/exec` and `pods/portforward` (the protocol itself is in
//! `crate::spdy`): checks and negotiation happen here, before the `101`, so a refusal is
//! an ordinary API error the client prints.

use axum::body::Body;
use http::Response;

use super::node::{proxy, proxy_error};
use super::{websocket, Call};
use crate::node_proxy::PodExecOptions;
use crate::spdy::{portforward, remotecommand, tunnel, upgrade};
use crate::ApiError;

/// The upgraded connection as a tokio stream.
async fn upgraded(
    on_upgrade: hyper::upgrade::OnUpgrade,
    what: &str,
) -> Option<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
    match on_upgrade.await {
        Ok(u) => Some(hyper_util::rt::TokioIo::new(u)),
        Err(error) => {
            tracing::debug!(%error, "{what} upgrade failed");
            None
        }
    }
}

fn no_upgrade() -> ApiError {
    ApiError::bad_request("this connection cannot be upgraded (HTTP/1.1 is needed for SPDY)")
}

/// `pods/exec` over SPDY/3.1 (the request asked for `Upgrade: SPDY/3.1`).
pub(super) async fn exec(
    call: &Call,
    node: &str,
    options: PodExecOptions,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ApiError> {
    let on_upgrade = on_upgrade.ok_or_else(no_upgrade)?;
    let protocol = upgrade::negotiate(&call.headers, &remotecommand::PROTOCOLS)
        .map_err(ApiError::bad_request)?;
    let wanted = remotecommand::Wanted {
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
        tty: options.tty,
    };
    let proxy = proxy(call)?;
    let namespace = call.namespace().unwrap_or_default().to_string();
    let (reader, writer) = proxy
        .pod_exec(node, &namespace, call.name(), options)
        .await
        .map_err(proxy_error)?;
    tokio::spawn(async move {
        if let Some(io) = upgraded(on_upgrade, "SPDY exec").await {
            remotecommand::serve(io, protocol, wanted, reader, writer).await;
        }
    });
    Ok(upgrade::spdy_response(protocol))
}

/// GET or POST `pods/{name}/portforward`: `portforward.k8s.io` over a raw SPDY/3.1 upgrade
/// (kubectl ≤ 1.30) or tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl
/// ≥ 1.31). Other WebSocket forms are not served here.
pub(super) async fn port_forward(
    call: &Call,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ApiError> {
    let target = super::portforward::PortForwardTarget::resolve(call)?;
    let tunnel = websocket::is_websocket(&call.headers);
    if tunnel
        && !websocket::offered_protocols(&call.headers)
            .iter()
            .any(|p| p == portforward::TUNNEL_PROTOCOL)
    {
        return Err(ApiError::bad_request(format!(
            "port-forward over a WebSocket needs the {} subprotocol",
            portforward::TUNNEL_PROTOCOL
        )));
    }
    if !tunnel && !upgrade::wants_spdy(&call.headers) {
        return Err(ApiError::bad_request(
            "port-forward needs an upgraded connection: SPDY/3.1, or a WebSocket tunnelling it",
        ));
    }
    let key = call.headers.get("sec-websocket-key").cloned();
    if tunnel && key.is_none() {
        return Err(ApiError::bad_request(
            "a WebSocket upgrade needs Sec-WebSocket-Key",
        ));
    }
    let protocol = if tunnel {
        None
    } else {
        upgrade::negotiate(&call.headers, &[portforward::PROTOCOL])
            .map_err(ApiError::bad_request)?
    };
    let on_upgrade = on_upgrade.ok_or_else(no_upgrade)?;
    tokio::spawn(async move {
        let Some(io) = upgraded(on_upgrade, "port-forward").await else {
            return;
        };
        if tunnel {
            let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                io,
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            let (stream, _bridge) = tunnel::bridge(socket);
            portforward::serve(stream, target).await;
        } else {
            portforward::serve(io, target).await;
        }
    });
    Ok(match key {
        Some(key) if tunnel => {
            websocket::switching_protocols(key.as_bytes(), portforward::TUNNEL_PROTOCOL)
        }
        _ => upgrade::spdy_response(protocol),
    })
}
