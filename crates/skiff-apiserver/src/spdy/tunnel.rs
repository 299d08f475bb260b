//! kubectl ≥ 1.31 tunnels its SPDY session in a WebSocket (`SPDY/3.1+portforward.k8s.io`):
//! each binary message carries the next bytes of the SPDY byte stream, in either direction
//! (client-go's `TunnelingConnection`). This bridges such a WebSocket to a byte stream the
//! [`Session`](super::session::Session) runs on; a bounded pipe keeps back-pressure intact.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Bytes buffered between the WebSocket and the session, each way.
const PIPE: usize = 64 * 1024;

/// The bridge's tasks; dropping it ends them.
#[derive(Debug)]
pub(crate) struct Bridge {
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Bridges `socket` to the returned byte stream.
pub(crate) fn bridge<S>(socket: WebSocketStream<S>) -> (DuplexStream, Bridge)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (mut pipe_read, mut pipe_write) = tokio::io::split(theirs);
    let (mut sink, mut stream) = socket.split();
    let inbound = tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Binary(data)) => {
                    if pipe_write.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                // Text is not part of the tunnel; pings are answered by tungstenite.
                Ok(_) => continue,
            }
        }
        let _ = pipe_write.shutdown().await;
    });
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pipe_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });
    (
        ours,
        Bridge {
            tasks: [inbound, outbound],
        },
    )
}
