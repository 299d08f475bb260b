//! The agent's credentials on disk (`DIR/agent/tls/node.crt`, `node.key`, `ca.crt`, and
//! `DIR/agent/node-password`) and the join exchange that obtains them.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_pki::{CertKeyPair, JoinToken, NodeCsr};

use super::transport::{transport_config, ServerUrl};
use super::LinkError;
use crate::proto::{CloseCode, JoinRequest, ALPN};
use crate::session::{AgentEvent, AgentSession, CloseReason, SessionConfig};

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// A node's certificate, key and the cluster CA.
#[derive(Clone)]
pub struct NodeCredentials {
    /// Node name the certificate is for.
    pub node_name: String,
    /// Certificate and key (PEM).
    pub pair: CertKeyPair,
    /// Cluster CA (PEM).
    pub ca_pem: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> LinkError + 'a {
    move |source| LinkError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically (temporary file + rename) with `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), LinkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("create", &tmp))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error("set permissions of", &tmp))?;
    file.write_all(contents).map_err(io_error("write", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error("rename", &tmp))
}

fn read_optional(path: &Path) -> Result<Option<String>, LinkError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

impl NodeCredentials {
    /// Loads the credentials from `data_dir` (the agent's directory), if present.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, LinkError> {
        let dir = tls_dir(data_dir);
        let (Some(cert_pem), Some(key_pem), Some(ca_pem)) = (
            read_optional(&dir.join("node.crt"))?,
            read_optional(&dir.join("node.key"))?,
            read_optional(&dir.join("ca.crt"))?,
        ) else {
            return Ok(None);
        };
        let pair = CertKeyPair { cert_pem, key_pem };
        let identity = skiff_pki::Identity::from_cert_der(&pair.cert_der()?)?;
        let Some(node_name) = skiff_pki::node_name_of(&identity).map(str::to_string) else {
            return Err(LinkError::Protocol(format!(
                "{} is not a node certificate (it is for {:?})",
                dir.join("node.crt").display(),
                identity.user
            )));
        };
        Ok(Some(Self {
            node_name,
            pair,
            ca_pem,
        }))
    }

    /// Saves the credentials under `data_dir/tls/` (key mode 0600).
    pub fn save(&self, data_dir: &Path) -> Result<(), LinkError> {
        let dir = tls_dir(data_dir);
        write_file(&dir.join("ca.crt"), self.ca_pem.as_bytes(), PUBLIC_MODE)?;
        write_file(
            &dir.join("node.key"),
            self.pair.key_pem.as_bytes(),
            SECRET_MODE,
        )?;
        write_file(
            &dir.join("node.crt"),
            self.pair.cert_pem.as_bytes(),
            PUBLIC_MODE,
        )
    }

    /// sha256 of the CA certificate, as in join tokens.
    pub fn ca_hash(&self) -> Result<String, LinkError> {
        Ok(skiff_pki::ca_hash(&self.ca_pem)?)
    }

    /// Unix time after which the certificate is invalid.
    pub fn not_after(&self) -> Result<i64, LinkError> {
        Ok(self.pair.info()?.not_after)
    }

    /// QUIC client settings authenticating with this certificate and trusting the CA.
    pub(crate) fn quic_config(&self) -> Result<quinn::ClientConfig, LinkError> {
        let tls = skiff_pki::client_config(&self.ca_pem, Some(&self.pair), &[ALPN])?;
        quic_client(tls)
    }
}

pub(crate) fn quic_client(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, LinkError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // The server may open streams to the agent (logs, exec).
    config.transport_config(Arc::new(transport_config(64)));
    Ok(config)
}

/// The node password kept in `data_dir/node-password`, created on first use.
pub(super) fn node_password(data_dir: &Path) -> Result<String, LinkError> {
    let path = data_dir.join("node-password");
    if let Some(text) = read_optional(&path)? {
        let text = text.trim().to_string();
        if !text.is_empty() {
            return Ok(text);
        }
    }
    let password = skiff_pki::generate_node_password();
    write_file(&path, password.as_bytes(), SECRET_MODE)?;
    Ok(password)
}

/// Joins node `node_name` to the server at `server` with `token`: checks the server against
/// the token's CA hash, proves the token secret, sends a CSR, and returns the credentials
/// (saved under `data_dir`). Refusals carry the server's message.
pub async fn join(
    endpoint: &quinn::Endpoint,
    server: &ServerUrl,
    token: &JoinToken,
    node_name: &str,
    data_dir: &Path,
    timeout: Duration,
) -> Result<NodeCredentials, LinkError> {
    let password = node_password(data_dir)?;
    let csr = NodeCsr::generate(node_name)?;
    let (tls, pin_check) = skiff_pki::pinned_client_config(&token.ca_hash, &[ALPN])?;
    let addr = server.resolve().await?;
    let connect_error = |reason: String| LinkError::Connect {
        addr: server.to_string(),
        reason,
    };
    let connecting = endpoint
        .connect_with(quic_client(tls)?, addr, &server.host)
        .map_err(|e| connect_error(e.to_string()))?;
    let connection = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            return Err(match pin_check.failure() {
                Some(reason) => LinkError::PinMismatch {
                    server: server.to_string(),
                    reason,
                },
                None => connect_error(error.to_string()),
            })
        }
        Err(_) => {
            return Err(connect_error(format!(
                "no answer within {} s",
                timeout.as_secs()
            )))
        }
    };
    let request = JoinRequest {
        token_id: token.id.clone(),
        token_secret: token.secret.clone(),
        node_name: node_name.to_string(),
        node_password: password,
        csr_pem: csr.csr_pem,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let config = SessionConfig {
        handshake_timeout: timeout,
        ..SessionConfig::default()
    };
    let outcome = exchange(
        &connection,
        AgentSession::join(request, config, std::time::Instant::now()),
    )
    .await;
    connection.close(
        quinn::VarInt::from_u32(CloseCode::Normal as u32),
        b"join finished",
    );
    let (certificate_pem, ca_pem) = match outcome {
        Ok(answer) => answer,
        Err(CloseReason::Refused { code, message }) => {
            return Err(LinkError::JoinRefused {
                node: node_name.to_string(),
                code,
                message,
            })
        }
        Err(other) => return Err(LinkError::Protocol(format!("join failed: {other}"))),
    };
    let received_hash = skiff_pki::ca_hash(&ca_pem)?;
    if received_hash != token.ca_hash {
        return Err(LinkError::PinMismatch {
            server: server.to_string(),
            reason: format!(
                "the server returned CA sha256 {received_hash}, the token pins {}",
                token.ca_hash
            ),
        });
    }
    let credentials = NodeCredentials {
        node_name: node_name.to_string(),
        pair: CertKeyPair {
            cert_pem: certificate_pem,
            key_pem: csr.key_pem,
        },
        ca_pem,
    };
    let identity = skiff_pki::Identity::from_cert_der(&credentials.pair.cert_der()?)?;
    if skiff_pki::node_name_of(&identity) != Some(node_name) {
        return Err(LinkError::Protocol(format!(
            "the server issued a certificate for {:?}, not for node {node_name}",
            identity.user
        )));
    }
    credentials.save(data_dir)?;
    Ok(credentials)
}

/// Runs a one-shot join exchange on a new control stream.
async fn exchange(
    connection: &quinn::Connection,
    mut session: AgentSession,
) -> Result<(String, String), CloseReason> {
    let lost =
        |e: &dyn std::fmt::Display| CloseReason::PeerGoodbye(format!("connection lost: {e}"));
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| lost(&e))?;
    let mut answer = None;
    loop {
        while let Some(bytes) = session.poll_transmit() {
            send.write_all(&bytes).await.map_err(|e| lost(&e))?;
        }
        while let Some(event) = session.poll_event() {
            match event {
                AgentEvent::Joined {
                    certificate_pem,
                    ca_pem,
                } => answer = Some((certificate_pem, ca_pem)),
                AgentEvent::Closed(CloseReason::Completed) => {
                    return answer.ok_or(CloseReason::ProtocolViolation("no certificate".into()))
                }
                AgentEvent::Closed(reason) => return Err(reason),
                _ => {}
            }
        }
        let deadline = session
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
        tokio::select! {
            chunk = recv.read_chunk(64 * 1024, true) => match chunk {
                Ok(Some(chunk)) => session.handle_bytes(&chunk.bytes, std::time::Instant::now()),
                Ok(None) => session.handle_stream_end(),
                Err(error) => {
                    // The server closes with the refusal as the reason if the stream was cut.
                    return Err(match connection.close_reason() {
                        Some(quinn::ConnectionError::ApplicationClosed(close)) => CloseReason::PeerGoodbye(
                            String::from_utf8_lossy(&close.reason).into_owned(),
                        ),
                        _ => lost(&error),
                    });
                }
            },
            _ = tokio::time::sleep_until(deadline) => session.handle_timeout(std::time::Instant::now()),
        }
    }
}
