//! Kubernetes' remote-command protocol over SPDY (`v4.channel.k8s.io`, `v3…`, `v2…`,
//! `channel.k8s.io`), what kubectl 1.27–1.29 speak for `exec` (and `attach`): the client
//! opens one stream per channel, named by its `streamType` header (`error`, `stdin`,
//! `stdout`, `stderr`, `resize`); we relay them to the node's channel frames
//! ([`NodeProxy::pod_exec`](crate::NodeProxy::pod_exec)'s format) and back.
//!
//! The end of the command is written on the `error` stream: v4 sends the `metav1.Status`
//! JSON (success included), v1–v3 send only a failure's message, as the kubelet does. The
//! client's FIN on `stdin` reaches the node as a CLOSE frame for channel 0. `resize` carries
//! a stream of `{"Width":…,"Height":…}` objects, each forwarded as one frame.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::status;
use super::session::{Incoming, Session, StreamReader, StreamWriter};
use crate::node_proxy::{NodeReader, NodeWriter};

/// Stream protocols spoken over SPDY, best first.
pub(crate) const PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// How long the client gets to open its streams (the kubelet's `streamCreationTimeout`).
pub(crate) const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest node frame relayed.
const MAX_NODE_FRAME: usize = 1 << 20;
/// Largest unparsed resize message held.
const MAX_RESIZE: usize = 4096;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Which streams the request asked for (its `stdin`, `stdout`, `stderr`, `tty` options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

fn version(protocol: Option<&str>) -> u8 {
    match protocol {
        Some("v4.channel.k8s.io") => 4,
        Some("v3.channel.k8s.io") => 3,
        Some("v2.channel.k8s.io") => 2,
        _ => 1,
    }
}

#[derive(Debug, Default)]
struct Streams {
    error: Option<Incoming>,
    stdin: Option<Incoming>,
    stdout: Option<Incoming>,
    stderr: Option<Incoming>,
    resize: Option<Incoming>,
}

impl Streams {
    fn complete(&self, wanted: Wanted, version: u8) -> bool {
        self.error.is_some()
            && (!wanted.stdin || self.stdin.is_some())
            && (!wanted.stdout || self.stdout.is_some())
            && (!wanted.stderr || wanted.tty || self.stderr.is_some())
            && (!wanted.tty || version < 3 || self.resize.is_some())
    }

    fn writers(&self) -> Vec<StreamWriter> {
        [
            &self.error,
            &self.stdin,
            &self.stdout,
            &self.stderr,
            &self.resize,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.writer.clone())
        .collect()
    }
}

/// Waits for the client's streams; `None` if it left or was too slow (then the error
/// stream, if it came, says so).
async fn collect(session: &mut Session, wanted: Wanted, version: u8) -> Option<Streams> {
    let mut streams = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while !streams.complete(wanted, version) {
        let next = tokio::time::timeout_at(deadline, session.accept()).await;
        let stream = match next {
            Ok(Some(stream)) => stream,
            Ok(None) => return None,
            Err(_) => {
                if let Some(error) = &streams.error {
                    let _ = error
                        .writer
                        .write(b"timed out waiting for client to create streams")
                        .await;
                }
                return None;
            }
        };
        let slot = match stream.headers.get("streamtype") {
            Some("error") => &mut streams.error,
            Some("stdin") => &mut streams.stdin,
            Some("stdout") => &mut streams.stdout,
            Some("stderr") => &mut streams.stderr,
            Some("resize") => &mut streams.resize,
            _ => {
                stream.writer.reset(status::PROTOCOL_ERROR).await;
                continue;
            }
        };
        if slot.is_some() {
            // A second stream of one type: refuse it, keep the first.
            stream.writer.reset(status::PROTOCOL_ERROR).await;
            continue;
        }
        *slot = Some(stream);
    }
    Some(streams)
}

async fn next(reader: &mut Option<StreamReader>) -> Option<Bytes> {
    match reader {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn node_frame(writer: &mut NodeWriter, channel: u8, data: &[u8]) -> bool {
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(channel);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    writer.write_all(&frame).await.is_ok() && writer.flush().await.is_ok()
}

/// Client → node: stdin (then CLOSE on its FIN) and resize messages.
async fn to_node(
    mut stdin: Option<StreamReader>,
    mut resize: Option<StreamReader>,
    mut writer: NodeWriter,
) {
    let mut pending = Vec::new();
    while stdin.is_some() || resize.is_some() {
        tokio::select! {
            chunk = next(&mut stdin), if stdin.is_some() => match chunk {
                Some(data) => {
                    if !node_frame(&mut writer, STDIN, &data).await {
                        return;
                    }
                }
                None => {
                    stdin = None;
                    if !node_frame(&mut writer, CLOSE, &[STDIN]).await {
                        return;
                    }
                }
            },
            chunk = next(&mut resize), if resize.is_some() => match chunk {
                Some(data) => {
                    pending.extend_from_slice(&data);
                    let mut objects = serde_json::Deserializer::from_slice(&pending)
                        .into_iter::<Value>();
                    let mut sizes = Vec::new();
                    let mut used = 0;
                    loop {
                        match objects.next() {
                            Some(Ok(v)) => {
                                sizes.push(v);
                                used = objects.byte_offset();
                            }
                            Some(Err(e)) if e.is_eof() => break,
                            // Not a terminal size: drop what is held.
                            Some(Err(_)) => {
                                used = pending.len();
                                break;
                            }
                            None => break,
                        }
                    }
                    pending.drain(..used);
                    if pending.len() > MAX_RESIZE {
                        pending.clear();
                    }
                    for size in sizes {
                        let json = serde_json::to_vec(&size).unwrap_or_default();
                        if !node_frame(&mut writer, RESIZE, &json).await {
                            return;
                        }
                    }
                }
                None => resize = None,
            },
        }
    }
    // Keep the node's side open: it ends the exec stream itself.
    std::future::pending::<()>().await;
}

async fn read_node_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    reader.read_exact(&mut header).await.ok()?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_NODE_FRAME {
        return None;
    }
    let mut data = vec![0u8; len];
    reader.read_exact(&mut data).await.ok()?;
    Some((header[0], data))
}

/// Node → client: stdout and stderr until the node's final status (returned), or `None` if
/// the node's stream ended without one or the client stopped taking output.
async fn from_node(
    mut reader: NodeReader,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
) -> Option<Vec<u8>> {
    while let Some((channel, data)) = read_node_frame(&mut reader).await {
        let target = match channel {
            STDOUT => stdout.as_ref(),
            // With a terminal there is no stderr stream: the output is merged upstream too.
            STDERR => stderr.as_ref().or(stdout.as_ref()),
            STATUS => return Some(data),
            _ => None,
        };
        if let Some(target) = target {
            if target.write(&data).await.is_err() {
                return None;
            }
        }
    }
    None
}

/// What the error stream carries for `status` in protocol `version`.
fn error_payload(status_json: &[u8], version: u8) -> Vec<u8> {
    if version >= 4 {
        return status_json.to_vec();
    }
    let status: Value = serde_json::from_slice(status_json).unwrap_or(Value::Null);
    if status["status"] == "Success" {
        return Vec::new();
    }
    status["message"]
        .as_str()
        .unwrap_or("error executing command")
        .as_bytes()
        .to_vec()
}

/// Serves one exec (or attach) over the SPDY connection `io`, relaying to the node's
/// channel frames on `reader`/`writer`.
pub(crate) async fn serve<IO>(
    io: IO,
    protocol: Option<&'static str>,
    wanted: Wanted,
    reader: NodeReader,
    writer: NodeWriter,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let version = version(protocol);
    let mut session = Session::start(io);
    let Some(mut streams) = collect(&mut session, wanted, version).await else {
        session.close().await;
        return;
    };
    let writers = streams.writers();
    let stdin = (streams.stdin.as_mut()).map(|s| std::mem::take(&mut s.reader));
    let resize = (streams.resize.as_mut()).map(|s| std::mem::take(&mut s.reader));
    let stdout = streams.stdout.as_ref().map(|s| s.writer.clone());
    let stderr = streams.stderr.as_ref().map(|s| s.writer.clone());
    let mut inbound = std::pin::pin!(to_node(stdin, resize, writer));
    let mut outbound = std::pin::pin!(from_node(reader, stdout, stderr));
    let mut inbound_done = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut outbound => break outcome,
            () = &mut inbound, if !inbound_done => inbound_done = true,
            extra = session.accept() => match extra {
                // Streams beyond the protocol's are refused; the others go on.
                Some(extra) => extra.writer.reset(status::PROTOCOL_ERROR).await,
                // The client is gone: stop relaying (the node's stream is dropped).
                None => {
                    return;
                }
            },
        }
    };
    let status_json = outcome.unwrap_or_else(|| {
        serde_json::to_vec(&serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": "the node ended the command's stream without its status",
            "reason": "InternalError",
            "code": 500,
        }))
        .unwrap_or_default()
    });
    if let Some(error) = &streams.error {
        let payload = error_payload(&status_json, version);
        if !payload.is_empty() {
            let _ = error.writer.write(&payload).await;
        }
    }
    for writer in writers {
        writer.finish().await;
    }
    session.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stream_payload_by_version() {
        let ok = br#"{"metadata":{},"status":"Success"}"#;
        let bad = br#"{"metadata":{},"status":"Failure","message":"exit code 3"}"#;
        assert_eq!(error_payload(ok, 4), ok.to_vec());
        assert_eq!(error_payload(bad, 4), bad.to_vec());
        assert!(error_payload(ok, 3).is_empty());
        assert_eq!(error_payload(bad, 2), b"exit code 3".to_vec());
    }
}
