//! `portforward.k8s.io` over SPDY (every kubectl's `port-forward`): for each local
//! connection the client opens an `error` stream and a `data` stream with the same `port` and
//! `requestID` headers; each complete pair becomes one
//! [`NodeProxy::pod_port_forward`](crate::NodeProxy::pod_port_forward) connection relayed
//! both ways. A failure is written on the pair's error stream as the kubelet words it
//! (`error forwarding port P to pod …, uid …: …`) and the session goes on serving others.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::frame::status;
use super::session::{Incoming, Session};
use crate::handlers::portforward::PortForwardTarget as Target;

/// The stream protocol (the only one upstream defines).
pub(crate) const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of kubectl ≥ 1.31's tunnel.
pub(crate) const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

#[derive(Debug, Default)]
struct Pair {
    error: Option<Incoming>,
    data: Option<Incoming>,
}

/// The pair a stream belongs to: its `requestID`, or (clients without one) derived from the
/// stream id as the kubelet does — the data stream follows its error stream.
fn request_id(stream: &Incoming, kind: &str) -> String {
    match stream.headers.get("requestid") {
        Some(id) => id.to_string(),
        None if kind == "data" => stream.id.saturating_sub(2).to_string(),
        None => stream.id.to_string(),
    }
}

/// Serves port-forwarding to `target` over the SPDY connection `io` until the client leaves.
pub(crate) async fn serve<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let target = Arc::new(target);
    let mut session = Session::start(io);
    let mut pending: HashMap<(String, u16), Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    while let Some(stream) = session.accept().await {
        while forwards.try_join_next().is_some() {}
        let kind = stream
            .headers
            .get("streamtype")
            .unwrap_or_default()
            .to_string();
        let port = stream
            .headers
            .get("port")
            .and_then(|p| p.parse::<u16>().ok());
        let (Some(port), "error" | "data") = (port.filter(|p| *p > 0), kind.as_str()) else {
            // No usable port or an unknown stream type: this stream is refused.
            stream.writer.reset(status::PROTOCOL_ERROR).await;
            continue;
        };
        let key = (request_id(&stream, &kind), port);
        let pair = pending.entry(key.clone()).or_default();
        let slot = if kind == "error" {
            &mut pair.error
        } else {
            &mut pair.data
        };
        if slot.is_some() {
            stream.writer.reset(status::PROTOCOL_ERROR).await;
            continue;
        }
        *slot = Some(stream);
        let complete = pending
            .get(&key)
            .is_some_and(|p| p.error.is_some() && p.data.is_some());
        if let Some(Pair {
            error: Some(error),
            data: Some(data),
        }) = complete.then(|| pending.remove(&key)).flatten()
        {
            forwards.spawn(forward(target.clone(), port, error, data));
        }
    }
    // The client is gone: dropping the set ends every forward (and its node connection).
}

async fn forward(target: Arc<Target>, port: u16, error: Incoming, data: Incoming) {
    let connection = target.relay_connection(port).await;
    let (mut from_pod, mut to_pod) = match connection {
        Ok(c) => c,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                target.pod, target.uid
            );
            let _ = error.writer.write(message.as_bytes()).await;
            error.writer.finish().await;
            data.writer.finish().await;
            return;
        }
    };
    let Incoming {
        reader: mut from_client,
        writer: to_client,
        ..
    } = data;
    let up = async {
        while let Some(chunk) = from_client.recv().await {
            if to_pod.write_all(&chunk).await.is_err() || to_pod.flush().await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.write(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let mut down = std::pin::pin!(down);
    tokio::select! {
        () = &mut down => {}
        () = up => {
            // The client finished sending: the pod's answer still comes back, unless the
            // client reset the stream.
            if to_client.is_open() {
                down.await;
            }
        }
    }
    to_client.finish().await;
    error.writer.finish().await;
}
