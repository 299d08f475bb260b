//! `pods/portforward`: one TCP connection per requested port, opened in the pod's network
//! namespace by its node ([`NodeProxy::pod_port_forward`]) and relayed to the client.
//!
//! Two layers. The core, shared by every wire protocol, is [`PortForwardTarget`]: `resolve`
//! finds the pod's node and checks upstream's authorization (`create` on `pods/portforward`,
//! also for a WebSocket `GET`), and [`PortForwardTarget::relay_connection`] opens one
//! connection and returns its two byte halves. On top of it, this module speaks the
//! WebSocket protocols of the kubelet's `portforward/websocket.go` (`v4.channel.k8s.io`,
//! `v4.base64.channel.k8s.io`, or none): for the i-th port, channel 2i carries data and
//! 2i+1 errors; the first message on each channel is the port as 2 bytes little-endian;
//! the socket closes when every port's connection has ended. SPDY (another module) uses the
//! same core.
//!
//! Bounds: inbound data waits in a per-socket byte budget ([`INBOUND_BUDGET`]) until the
//! node's stream takes it (QUIC flow control), so a pod that does not read stops reading from
//! the client; outbound, each port reads [`CHUNK`] bytes at a time and waits for the socket to
//! take them, so a client that does not read stops the pod's side.

use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::node::proxy;
use super::{meta, websocket, Call};
use crate::auth::{forbidden_message, Attributes, Decision};
use crate::node_proxy::{NodeProxy, NodeProxyError, NodeReader, NodeWriter};
use crate::query::Query;
use crate::ApiError;

/// WebSocket sub-protocols, best first; `""`: a client that offers none speaks binary v4.
pub(crate) const PROTOCOLS: [&str; 3] = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""];
/// Two channels per port, channel numbers are one byte.
pub(crate) const MAX_PORTS: usize = 128;
/// Bytes read from a pod connection per message.
const CHUNK: usize = 32 * 1024;
/// Client bytes waiting for the node, per socket (at least one whole message).
const INBOUND_BUDGET: usize = websocket::MAX_MESSAGE;
/// Messages waiting for the socket.
const OUTBOUND_DEPTH: usize = 4;

/// A pod whose ports are forwarded: its node and the proxy that reaches it.
#[derive(Clone)]
pub(crate) struct PortForwardTarget {
    proxy: Arc<dyn NodeProxy>,
    /// The node running the pod.
    pub node: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's `metadata.uid` (upstream's error messages name it).
    pub uid: String,
}

impl std::fmt::Debug for PortForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwardTarget")
            .field("node", &self.node)
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .finish_non_exhaustive()
    }
}

impl PortForwardTarget {
    /// The pod a `pods/{name}/portforward` request names: it must exist and be bound to a
    /// node, and the caller needs `create` on `pods/portforward` (upstream checks it for a
    /// WebSocket `GET` too, besides `get`, which the dispatcher already checked).
    pub(crate) fn resolve(call: &Call) -> Result<PortForwardTarget, ApiError> {
        authorize_create(call)?;
        let (pod, _) = meta::load(call, &call.key())?;
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {} does not have a host assigned",
                call.name()
            )));
        }
        Ok(PortForwardTarget {
            proxy: proxy(call)?,
            node: node.to_string(),
            namespace: call.namespace().unwrap_or_default().to_string(),
            pod: call.name().to_string(),
            uid: pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Opens one TCP connection to `port` on the pod's loopback (in its network namespace, on
    /// its node) and returns the bytes both ways: read the pod's bytes from the reader, write
    /// the client's to the writer, shut the writer down to half-close. The error's text is
    /// what the kubelet writes on the port's error stream (`error forwarding port …`).
    pub(crate) async fn relay_connection(
        &self,
        port: u16,
    ) -> Result<(NodeReader, NodeWriter), NodeProxyError> {
        relay_connection(
            self.proxy.as_ref(),
            &self.node,
            &self.namespace,
            &self.pod,
            port,
        )
        .await
    }
}

/// [`PortForwardTarget::relay_connection`] without a resolved target.
pub(crate) async fn relay_connection(
    proxy: &dyn NodeProxy,
    node: &str,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<(NodeReader, NodeWriter), NodeProxyError> {
    proxy.pod_port_forward(node, namespace, pod, port).await
}

/// `create` on `pods/portforward` (the dispatcher checked the request's own verb).
fn authorize_create(call: &Call) -> Result<(), ApiError> {
    let attributes = Attributes {
        identity: &call.identity.0,
        verb: "create",
        api_group: call.request.info.group,
        resource: call.request.info.plural,
        subresource: call.request.subresource.as_deref(),
        namespace: call.namespace(),
        name: call.request.name.as_deref(),
    };
    match call.api.config().authorizer.authorize(&attributes) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(ApiError::forbidden(forbidden_message(&attributes, &reason))
            .about(call.subject(call.name()))),
    }
}

/// The ports of a request: `ports` repeated and/or comma-separated (upstream converts
/// `PodPortForwardOptions.ports` that way), each 1–65535, at most [`MAX_PORTS`].
pub(crate) fn parse_ports(query: &Query) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for value in query.all("ports") {
        for text in value.split(',') {
            let text = text.trim();
            let port: u16 = text.parse().map_err(|_| {
                ApiError::bad_request(format!("unable to parse {text:?} as a port"))
            })?;
            if port == 0 {
                return Err(ApiError::bad_request(format!("port {text:?} must be > 0")));
            }
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"port\" is required",
        ));
    }
    if ports.len() > MAX_PORTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PORTS} ports can be forwarded at once"
        )));
    }
    Ok(ports)
}

/// GET or POST `pods/{name}/portforward`, upgraded to a WebSocket.
pub(super) async fn portforward(
    call: &Call,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ApiError> {
    let target = PortForwardTarget::resolve(call)?;
    let ports = parse_ports(&call.query)?;
    let accepted = websocket::accept(
        &call.headers,
        upgrade,
        &PROTOCOLS,
        "port-forward needs a WebSocket connection (v4.channel.k8s.io)",
    )?;
    let response = accepted.response();
    let base64 = accepted.protocol == PROTOCOLS[1];
    tokio::spawn(async move {
        match accepted.socket(websocket::MAX_MESSAGE).await {
            Ok(socket) => serve(socket, target, ports, base64).await,
            Err(error) => tracing::debug!(%error, "port-forward upgrade failed"),
        }
    });
    Ok(response)
}

/// One channel message as the negotiated protocol frames it: the channel byte then the data
/// (binary), or the channel as an ASCII digit then the data in base64 (text).
pub(crate) fn encode(channel: u8, data: &[u8], base64: bool) -> Message {
    if base64 {
        let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        text.push(char::from(b'0'.wrapping_add(channel)));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        Message::Text(text.into())
    } else {
        let mut bytes = Vec::with_capacity(1 + data.len());
        bytes.push(channel);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.into())
    }
}

/// What a client message means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Data on a channel.
    Data(u8, Bytes),
    /// The client closes the socket.
    Close,
    /// Nothing to act on (pings, empty or undecodable messages: upstream skips them too).
    Skip,
}

/// Decodes a client message. As upstream's `wsstream`, the frame type does not matter: text
/// and binary frames both carry `[channel, data...]` (the Python client writes `str` stdin as
/// text frames); the base64 protocols carry an ASCII channel digit and base64 data.
pub(crate) fn decode(message: Message, base64: bool) -> Incoming {
    let data = match message {
        Message::Binary(data) => data,
        Message::Text(text) => Bytes::from(text),
        Message::Close(_) => return Incoming::Close,
        _ => return Incoming::Skip,
    };
    let Some((&first, _)) = data.split_first() else {
        return Incoming::Skip;
    };
    if !base64 {
        return Incoming::Data(first, data.slice(1..));
    }
    let Some(channel) = first.checked_sub(b'0') else {
        return Incoming::Skip;
    };
    match base64::engine::general_purpose::STANDARD.decode(&data[1..]) {
        Ok(decoded) => Incoming::Data(channel, decoded.into()),
        Err(_) => Incoming::Skip,
    }
}

/// Relays one WebSocket until every port's connection ended or the client went away.
async fn serve(
    socket: websocket::ServerSocket,
    target: PortForwardTarget,
    ports: Vec<u16>,
    base64: bool,
) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(OUTBOUND_DEPTH);
    // The port headers come first on every channel, before any data.
    let mut headers = Vec::with_capacity(ports.len() * 2);
    for (index, port) in ports.iter().enumerate() {
        let data = (index * 2) as u8;
        headers.push(encode(data, &port.to_le_bytes(), base64));
        headers.push(encode(data + 1, &port.to_le_bytes(), base64));
    }
    let mut inputs = Vec::with_capacity(ports.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (index, port) in ports.iter().copied().enumerate() {
        let (input, input_rx) = mpsc::channel(1);
        inputs.push(Some(input));
        tasks.spawn(forward_port(
            target.clone(),
            index,
            port,
            input_rx,
            out.clone(),
            base64,
        ));
    }
    drop(out);
    let budget = Arc::new(Semaphore::new(INBOUND_BUDGET));
    let reader = async {
        while let Some(message) = stream.next().await {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, "port-forward socket failed");
                    return;
                }
            };
            match decode(message, base64) {
                Incoming::Data(channel, data) if channel % 2 == 0 && !data.is_empty() => {
                    let index = usize::from(channel / 2);
                    let Some(Some(input)) = inputs.get(index) else {
                        continue;
                    };
                    let Ok(permit) = budget
                        .clone()
                        .acquire_many_owned(data.len().min(INBOUND_BUDGET) as u32)
                        .await
                    else {
                        return;
                    };
                    if input.send((data, permit)).await.is_err() {
                        // That port's connection is over; drop what comes for it.
                        inputs[index] = None;
                    }
                }
                Incoming::Close => return,
                _ => {}
            }
        }
    };
    let writer = async {
        for message in headers {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        // Every port's connection ended.
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
    tasks.abort_all();
}

/// One port: connect, then pod → client until the pod's side ends, client → pod meanwhile.
async fn forward_port(
    target: PortForwardTarget,
    index: usize,
    port: u16,
    mut input: mpsc::Receiver<(Bytes, OwnedSemaphorePermit)>,
    out: mpsc::Sender<Message>,
    base64: bool,
) {
    let data_channel = (index * 2) as u8;
    let error_channel = data_channel + 1;
    let (mut reader, mut writer) = match target.relay_connection(port).await {
        Ok(halves) => halves,
        Err(error) => {
            let _ = out
                .send(encode(error_channel, error.to_string().as_bytes(), base64))
                .await;
            return;
        }
    };
    let inbound = async move {
        while let Some((data, _permit)) = input.recv().await {
            if writer.write_all(&data).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        // Dropping `input` tells the reader to discard this port's data.
        drop(input);
        futures::future::pending::<()>().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if out
                        .send(encode(data_channel, &buf[..n], base64))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => {
                    let message = format!(
                        "error forwarding port {port} to pod {}/{}: {error}",
                        target.namespace, target.pod
                    );
                    let _ = out
                        .send(encode(error_channel, message.as_bytes(), base64))
                        .await;
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = outbound => {}
        _ = inbound => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_repeated_or_comma_separated() {
        let query = Query::parse(Some("ports=1234,1235&ports=80"));
        assert_eq!(parse_ports(&query).unwrap(), [1234, 1235, 80]);
        for bad in ["ports=0", "ports=65536", "ports=x", "", "ports=1,,2"] {
            assert!(parse_ports(&Query::parse(Some(bad))).is_err(), "{bad}");
        }
        let many = (1..=129)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_ports(&Query::parse(Some(&format!("ports={many}")))).is_err());
    }

    #[test]
    fn binary_frames_carry_the_channel_first() {
        let Message::Binary(bytes) = encode(3, &[0xd2, 0x04], false) else {
            panic!("binary expected")
        };
        assert_eq!(&bytes[..], [3, 0xd2, 0x04]);
        assert_eq!(
            decode(Message::Binary(Bytes::from_static(&[2, b'h', b'i'])), false),
            Incoming::Data(2, Bytes::from_static(b"hi"))
        );
        assert_eq!(decode(Message::Binary(Bytes::new()), false), Incoming::Skip);
        // A text frame carries the same bytes (upstream reads both alike).
        assert_eq!(
            decode(Message::Text("\u{0}hi".into()), false),
            Incoming::Data(0, Bytes::from_static(b"hi"))
        );
    }

    #[test]
    fn base64_frames_carry_an_ascii_channel() {
        let Message::Text(text) = encode(1, b"hi", true) else {
            panic!("text expected")
        };
        assert_eq!(text.as_str(), "1aGk=");
        assert_eq!(
            decode(Message::Text("2aGk=".into()), true),
            Incoming::Data(2, Bytes::from_static(b"hi"))
        );
        assert_eq!(decode(Message::Text("2!!".into()), true), Incoming::Skip);
        assert_eq!(decode(Message::Text("".into()), true), Incoming::Skip);
        assert_eq!(decode(Message::Close(None), true), Incoming::Close);
    }
}
