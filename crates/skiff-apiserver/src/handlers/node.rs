//! `pods/log` and `pods/exec`: served by the pod's node through the [`NodeProxy`]; the API
//! server resolves the node and the container, streams logs back as `text/plain`, and relays
//! exec over a WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`: what kubectl 1.30+ uses).

use std::sync::Arc;

use axum::body::Body;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Response};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{meta, websocket, Call};
use crate::node_proxy::{NodeProxy, NodeProxyError, PodExecOptions, PodLogOptions};
use crate::objects::meta_str;
use crate::ApiError;

/// Exec sub-protocols spoken, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// The close channel of v5.
const CLOSE: u8 = 255;
/// Largest frame payload relayed.
const MAX_FRAME: usize = 1 << 20;

pub(super) fn proxy_error(error: NodeProxyError) -> ApiError {
    match error {
        NodeProxyError::NodeNotConnected(m) => ApiError::unavailable(m),
        NodeProxyError::NotFound(m) => ApiError::bad_request(m),
        NodeProxyError::Failed(m) => ApiError::internal(m),
    }
}

/// The pod's node and the container a request means (upstream's rules and messages).
pub(super) fn target(
    call: &Call,
    pod: &Value,
    requested: Option<&str>,
) -> Result<(String, String), ApiError> {
    let name = call.name();
    let spec = &pod["spec"];
    let names = |key: &str| -> Vec<String> {
        spec[key]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let inits = names("initContainers");
    let container = match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers.iter().chain(inits.iter()).any(|n| n == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.to_string()
        }
        None => {
            let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
                .as_str()
                .filter(|d| containers.iter().any(|n| n == d));
            match (containers.as_slice(), default) {
                (_, Some(d)) => d.to_string(),
                ([only], None) => only.clone(),
                _ => {
                    let mut message = format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        containers.join(" ")
                    );
                    if !inits.is_empty() {
                        message.push_str(&format!(
                            " or one of the init containers: [{}]",
                            inits.join(" ")
                        ));
                    }
                    return Err(ApiError::bad_request(message));
                }
            }
        }
    };
    let node = spec["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok((node.to_string(), container))
}

pub(super) fn proxy(call: &Call) -> Result<Arc<dyn NodeProxy>, ApiError> {
    call.api.node_proxy().ok_or_else(|| {
        ApiError::unavailable(format!(
            "the nodes of pod \"{}\" cannot be reached: this server has no node link",
            call.name()
        ))
    })
}

/// GET `pods/{name}/log`.
pub(super) async fn log(call: &Call) -> Result<Response<Body>, ApiError> {
    let (pod, _) = meta::load(call, &call.key())?;
    let (node, container) = target(call, &pod, call.query.get("container"))?;
    let mut since_seconds = call.query.seconds("sinceSeconds")?;
    if let Some(since) = call.query.non_empty("sinceTime") {
        let at: jiff::Timestamp = since.parse().map_err(|_| {
            ApiError::bad_request(format!("sinceTime {since:?} is not an RFC 3339 time"))
        })?;
        let seconds = jiff::Timestamp::now().duration_since(at).as_secs().max(1);
        since_seconds = Some(seconds);
    }
    let options = PodLogOptions {
        container,
        follow: call.query.flag("follow")?,
        previous: call.query.flag("previous")?,
        timestamps: call.query.flag("timestamps")?,
        tail_lines: call.query.integer("tailLines")?,
        since_seconds,
        limit_bytes: call.query.integer("limitBytes")?,
    };
    for (field, value) in [
        ("tailLines", options.tail_lines),
        ("limitBytes", options.limit_bytes),
        ("sinceSeconds", options.since_seconds),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::bad_request(format!(
                "{field} must be a non-negative integer"
            )));
        }
    }
    let proxy = proxy(call)?;
    let namespace = call.namespace().unwrap_or_default().to_string();
    let reader = proxy
        .pod_logs(&node, &namespace, call.name(), options)
        .await
        .map_err(proxy_error)?;
    let stream = tokio_util::io::ReaderStream::new(reader);
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// GET or POST `pods/{name}/exec`, upgraded to a WebSocket.
pub(super) async fn exec(
    call: &Call,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ApiError> {
    let (pod, _) = meta::load(call, &call.key())?;
    let (node, container) = target(call, &pod, call.query.get("container"))?;
    let command: Vec<String> = call.query.all("command").map(str::to_string).collect();
    if command.is_empty() || command[0].is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let options = PodExecOptions {
        container,
        command,
        stdin: call.query.flag("stdin")?,
        stdout: call.query.flag("stdout")?,
        stderr: call.query.flag("stderr")?,
        tty: call.query.flag("tty")?,
    };
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    // WebSocket is preferred; SPDY/3.1 only when the client asks for it (kubectl ≤ 1.29,
    // and 1.30+ after its WebSocket attempt failed).
    if !websocket::is_websocket(&call.headers) && crate::spdy::upgrade::wants_spdy(&call.headers) {
        return super::spdy::exec(call, &node, options, upgrade).await;
    }
    let accepted = websocket::accept(
        &call.headers,
        upgrade,
        &PROTOCOLS,
        "exec needs an upgraded connection: a WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1 (v4.channel.k8s.io down to channel.k8s.io)",
    )?;
    let proxy = proxy(call)?;
    let namespace = call.namespace().unwrap_or_default().to_string();
    let (reader, writer) = proxy
        .pod_exec(&node, &namespace, call.name(), options)
        .await
        .map_err(proxy_error)?;
    let pod_name = meta_str(&pod, "name").unwrap_or_default().to_string();
    let response = accepted.response();
    let v5 = accepted.protocol == PROTOCOLS[0];
    tokio::spawn(async move {
        let socket = match accepted.socket(websocket::MAX_MESSAGE).await {
            Ok(socket) => socket,
            Err(error) => {
                tracing::debug!(pod = %pod_name, %error, "exec upgrade failed");
                return;
            }
        };
        relay(socket, reader, writer, v5).await;
    });
    Ok(response)
}

/// How long the node's output waits after the upgrade before it is relayed (see `relay`).
const FIRST_OUTPUT_DELAY: std::time::Duration = std::time::Duration::from_millis(30);

/// Relays WebSocket messages (`[channel, data...]`) and the node's channel frames.
async fn relay<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    mut reader: crate::node_proxy::NodeReader,
    mut writer: crate::node_proxy::NodeWriter,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut to_client, mut from_client) = socket.split();
    // Client → node.
    let inbound = tokio::spawn(async move {
        while let Some(message) = from_client.next().await {
            let Ok(message) = message else { break };
            let (channel, payload) = match super::portforward::decode(message, false) {
                super::portforward::Incoming::Data(channel, payload) => (channel, payload),
                super::portforward::Incoming::Close => break,
                super::portforward::Incoming::Skip => continue,
            };
            if channel == CLOSE && !v5 {
                continue;
            }
            let mut frame = Vec::with_capacity(5 + payload.len());
            frame.push(channel);
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(&payload);
            if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    // client-go creates its stream readers only after the upgrade, concurrently with the
    // loop that reads frames, and drops frames of streams it has not created yet ("Unknown
    // stream id 1, discarding message": a fast command's whole output lost). The kubelet's
    // runtime round trips hide this upstream; hold the node's first output a moment instead.
    tokio::time::sleep(FIRST_OUTPUT_DELAY).await;
    // Node → client.
    loop {
        let mut header = [0u8; 5];
        if reader.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_FRAME {
            break;
        }
        let mut message = vec![0u8; 1 + len];
        message[0] = header[0];
        if reader.read_exact(&mut message[1..]).await.is_err() {
            break;
        }
        if to_client
            .send(Message::Binary(message.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = to_client
        .send(Message::Close(Some(CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = to_client.close().await;
    inbound.abort();
}
