//! Shared test fixtures: a CA, a token, and a node service that checks joins like the real
//! server does (token, node password) and hands sessions to the test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_link::proto::{JoinRequest, RefusalCode, ALPN};
use skiff_link::quic::{
    JoinGrant, LinkError, LinkServer, LinkServerConfig, NodeService, NodeSession, Refusal,
};
use skiff_link::session::SessionConfig;
use skiff_pki::{BootstrapToken, ClusterCa, JoinToken, ServingNames};
use tokio::sync::mpsc;

pub(crate) struct TestService {
    ca: ClusterCa,
    tokens: Vec<BootstrapToken>,
    passwords: Mutex<HashMap<String, String>>,
    sessions: mpsc::UnboundedSender<NodeSession>,
}

impl NodeService for TestService {
    async fn join(&self, request: JoinRequest, _remote: SocketAddr) -> Result<JoinGrant, Refusal> {
        let token = self
            .tokens
            .iter()
            .find(|t| t.id == request.token_id)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::InvalidToken,
                    format!("join token {} is unknown or was revoked", request.token_id),
                )
            })?;
        token
            .check(&request.token_secret, jiff::Timestamp::now())
            .map_err(|e| {
                let code = match e {
                    skiff_pki::TokenError::Expired { .. } => RefusalCode::ExpiredToken,
                    _ => RefusalCode::InvalidToken,
                };
                Refusal::new(code, e.to_string())
            })?;
        {
            let mut passwords = self.passwords.lock().unwrap();
            match passwords.get(&request.node_name) {
                Some(stored)
                    if !skiff_pki::verify_node_password(&request.node_password, stored) =>
                {
                    return Err(Refusal::new(
                        RefusalCode::NameTaken,
                        format!(
                            "node name {} is already taken by another node",
                            request.node_name
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    passwords.insert(
                        request.node_name.clone(),
                        skiff_pki::hash_node_password(&request.node_password),
                    );
                }
            }
        }
        let certificate_pem = self
            .ca
            .sign_csr(
                &request.csr_pem,
                &skiff_pki::node_identity(&request.node_name),
            )
            .map_err(|e| Refusal::new(RefusalCode::BadRequest, e.to_string()))?;
        Ok(JoinGrant {
            certificate_pem,
            ca_pem: self.ca.cert_pem().to_string(),
        })
    }

    async fn serve(&self, session: NodeSession) {
        let _ = self.sessions.send(session);
    }
}

pub(crate) struct Cluster {
    pub ca_pem: String,
    pub ca_key: String,
    pub token: JoinToken,
    pub secret: [u8; 32],
}

impl Cluster {
    pub(crate) fn new() -> Self {
        let ca = ClusterCa::generate().unwrap();
        let hash = skiff_pki::ca_hash(ca.cert_pem()).unwrap();
        Self {
            ca_pem: ca.cert_pem().to_string(),
            ca_key: ca.pair().key_pem.clone(),
            token: JoinToken::generate(&hash),
            secret: rand::random(),
        }
    }

    pub(crate) fn ca(&self) -> ClusterCa {
        ClusterCa::from_pair(skiff_pki::CertKeyPair {
            cert_pem: self.ca_pem.clone(),
            key_pem: self.ca_key.clone(),
        })
        .unwrap()
    }

    /// Starts a server on `port` (0 = any); returns it and the stream of node sessions.
    pub(crate) async fn start(
        &self,
        port: u16,
        config: SessionConfig,
    ) -> (LinkServer, mpsc::UnboundedReceiver<NodeSession>, SocketAddr) {
        self.start_with_tunnel(port, config, None).await
    }

    /// [`Cluster::start`] with an API tunnel offered to nodes.
    pub(crate) async fn start_with_tunnel(
        &self,
        port: u16,
        config: SessionConfig,
        api_tunnel: Option<skiff_link::quic::ApiTunnelSettings>,
    ) -> (LinkServer, mpsc::UnboundedReceiver<NodeSession>, SocketAddr) {
        let ca = self.ca();
        let serving = ca
            .issue_serving(&ServingNames::new(
                "localhost",
                ["127.0.0.1".parse().unwrap()],
            ))
            .unwrap();
        let tls = skiff_pki::link_server_config(ca.cert_pem(), &serving, &[ALPN]).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let service = Arc::new(TestService {
            ca,
            tokens: vec![
                BootstrapToken {
                    id: self.token.id.clone(),
                    secret: self.token.secret.clone(),
                    expiration: None,
                    description: String::new(),
                },
                BootstrapToken {
                    id: "xpired".into(),
                    secret: "0123456789abcdef".into(),
                    expiration: Some("2020-01-01T00:00:00Z".parse().unwrap()),
                    description: String::new(),
                },
            ],
            passwords: Mutex::new(HashMap::new()),
            sessions: tx,
        });
        // A restarted server may have to wait for its predecessor's closing connections to
        // drain before the port is free (a real restart is a new process; this is in-process).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let server = loop {
            match LinkServer::bind(
                LinkServerConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], port)),
                    tls: tls.clone(),
                    session: config.clone(),
                    restart_secret: self.secret,
                    api_tunnel: api_tunnel.clone(),
                },
                service.clone(),
            ) {
                Ok(server) => break server,
                Err(LinkError::Bind { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(other) => panic!("{other}"),
            }
        };
        let addr = server.local_addr().unwrap();
        (server, rx, addr)
    }
}
