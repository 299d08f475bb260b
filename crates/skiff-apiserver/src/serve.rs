//! The HTTPS accept loop: TLS with rustls, the verified client certificate turned into an
//! [`Authenticated`] identity on every request of the connection, HTTP/1.1 and HTTP/2.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::Service;

use crate::{ApiServer, Identity};

/// The authenticated user of a request (request extension).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Arc<Identity>);

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket failed.
    #[error("cannot accept connections on {addr}: {source}")]
    Accept {
        /// The listening address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ApiServer {
    /// Serves HTTPS on `listener` until `shutdown` resolves, then closes every connection.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let router = self.router();
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let mut consecutive_errors = 0u32;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(pair) => { consecutive_errors = 0; pair }
                        Err(source) => {
                            // Out of file descriptors and similar: back off, keep serving.
                            consecutive_errors += 1;
                            tracing::warn!(%source, "accept failed");
                            if consecutive_errors > 1000 {
                                return Err(ServeError::Accept { addr, source });
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let certificates = self.config().node_certificates.clone();
                    connections.spawn(connection(acceptor.clone(), router.clone(), certificates, tcp, peer));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    certificates: Option<skiff_pki::NodeCertificates>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| match Identity::from_cert_der(cert) {
            Ok(identity) => Some(Authenticated(Arc::new(identity))),
            Err(error) => {
                tracing::debug!(%peer, %error, "client certificate without a usable identity");
                None
            }
        });
    // A node certificate is checked on every request: it can be revoked while the
    // connection stays open.
    let node_certificate = certificates.and_then(|certificates| {
        let leaf = tls.get_ref().1.peer_certificates()?.first()?;
        let (node, serial) = skiff_pki::node_certificate(leaf)?;
        Some((certificates, node, serial))
    });
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let mut request = request.map(Body::new);
        let revoked = node_certificate
            .as_ref()
            .is_some_and(|(certificates, node, serial)| !certificates.accepts(node, serial));
        if let (Some(identity), false) = (&identity, revoked) {
            request.extensions_mut().insert(identity.clone());
        }
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(1000)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    // With upgrades: exec/attach/port-forward switch the connection to WebSocket or SPDY.
    if let Err(error) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
