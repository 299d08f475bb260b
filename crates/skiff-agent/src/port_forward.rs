//! Port-forward on the node (for `kubectl port-forward`, `pods/proxy` and `services/proxy`):
//! one TCP connection to a port on the pod's loopback, made inside the pod's network
//! namespace, as the kubelet's CRI runtime does it (containerd's `portForward`: `localhost`
//! over IPv4, then IPv6).
//!
//! `setns` changes only the calling thread, so the socket is created and connected on a
//! short-lived thread that enters the namespace (`skiff_net::NetNs::run_async`); the connected
//! socket stays in that namespace and is handed to tokio on the caller's side. No tokio thread
//! ever changes namespace.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use skiff_link::quic::LogError;
use skiff_net::NetNs;

/// How long one connect may take (a full accept backlog makes a local connect wait).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on the loopback of the namespace at `netns` (or of the agent's own
/// namespace for pods without one: `hostNetwork`). `pod_id` names the pod in errors, as the
/// sandbox id does upstream.
pub(crate) async fn connect(
    netns: Option<&Path>,
    pod_id: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, LogError> {
    let prefix = format!("error forwarding port {port} to pod {pod_id}, uid : ");
    let stream = match netns {
        Some(path) => {
            let ns = NetNs::open(path).map_err(|e| {
                LogError::Failed(format!(
                    "{prefix}failed to find network namespace for sandbox {pod_id:?}: {e}"
                ))
            })?;
            let id = pod_id.to_string();
            let connected = ns
                .run_async(move || connect_loopback(port, &id))
                .await
                .map_err(|e| LogError::Failed(format!("{prefix}{e}")))?;
            connected.map_err(|message| {
                LogError::Failed(format!(
                    "{prefix}failed to execute portforward in network namespace {:?}: {message}",
                    path.display().to_string()
                ))
            })?
        }
        None => {
            let id = pod_id.to_string();
            tokio::task::spawn_blocking(move || connect_loopback(port, &id))
                .await
                .map_err(|e| LogError::Failed(format!("{prefix}{e}")))?
                .map_err(|message| {
                    LogError::Failed(format!(
                        "{prefix}failed to execute portforward in network namespace \"host\": {message}"
                    ))
                })?
        }
    };
    stream
        .set_nonblocking(true)
        .map_err(|e| LogError::Failed(format!("{prefix}{e}")))?;
    let _ = stream.set_nodelay(true);
    tokio::net::TcpStream::from_std(stream).map_err(|e| LogError::Failed(format!("{prefix}{e}")))
}

/// `localhost:port` over IPv4, then IPv6; the error is containerd's.
fn connect_loopback(port: u16, pod_id: &str) -> Result<TcpStream, String> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v4_error = match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(stream) => return Ok(stream),
        Err(e) => e,
    };
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let v6_error = match TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT) {
        Ok(stream) => return Ok(stream),
        Err(e) => e,
    };
    Err(format!(
        "failed to connect to localhost:{port} inside namespace {pod_id:?}, IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {} ",
        go_error(&v4_error),
        go_error(&v6_error)
    ))
}

/// An OS error as Go prints it (`connection refused`, not `Connection refused (os error 111)`).
fn go_error(error: &io::Error) -> String {
    let text = match error.raw_os_error() {
        // SAFETY: strerror returns a pointer to a static, NUL-terminated string.
        Some(code) => unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }
            .to_string_lossy()
            .into_owned(),
        None => error.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_go_prints_them() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(go_error(&refused), "connection refused");
    }

    #[tokio::test]
    async fn closed_port_is_refused_with_upstreams_message() {
        // A port nobody listens on: bind one, learn its number, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = connect(None, "abc", port).await.unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "error forwarding port {port} to pod abc, uid : failed to execute portforward in network namespace"
            )),
            "{error}"
        );
        assert!(
            error.contains(&format!(
                "failed to connect to localhost:{port} inside namespace \"abc\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused"
            )),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connects_to_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (client, server) = tokio::join!(connect(None, "abc", port), listener.accept());
        assert!(client.is_ok() && server.is_ok());
    }
}
