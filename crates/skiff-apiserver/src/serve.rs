//! The HTTPS accept loop: TLS with rustls, the verified client certificate turned into an
//! [`Authenticated`] identity on every request of the connection, HTTP/1.1 and HTTP/2.
//!
//! Connection hygiene ([`crate::ServeLimits`]): at most `max_connections` open connections
//! (further clients wait in the listen backlog), a TLS handshake timeout, an HTTP/1 header
//! read timeout that also closes idle keep-alive connections (slow-loris clients), HTTP/2
//! stream limits and keep-alive pings. Accept errors (out of file descriptors) back off and
//! retry: serving only ends at shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::Service;

use crate::{ApiServer, Identity, ServeLimits};

/// The authenticated user of a request (request extension).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Arc<Identity>);

/// Why serving stopped. (Accept errors no longer stop it: they are retried.)
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

/// First and longest pause after a failed accept (doubling in between).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

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
        let limits = Arc::new(self.config().limits.clone());
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let mut backoff = ACCEPT_BACKOFF.0;
        loop {
            // A free connection slot first: at the cap, clients wait in the kernel's backlog.
            let slot = tokio::select! {
                _ = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(pair) => { backoff = ACCEPT_BACKOFF.0; pair }
                        Err(source) => {
                            // Out of file descriptors and similar: the pending client stays in
                            // the backlog; back off (up to a second) and try again, forever.
                            tracing::warn!(%addr, %source, retry_in = ?backoff, "accept failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let certificates = self.config().node_certificates.clone();
                    let (acceptor, router, limits) = (acceptor.clone(), router.clone(), limits.clone());
                    connections.spawn(async move {
                        connection(acceptor, router, limits, certificates, tcp, peer).await;
                        drop(slot);
                    });
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
    limits: Arc<ServeLimits>,
    certificates: Option<skiff_pki::NodeCertificates>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
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
    let activity = crate::idle::Activity::new();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let mut request = request.map(Body::new);
        let revoked = node_certificate
            .as_ref()
            .is_some_and(|(certificates, node, serial)| !certificates.accepts(node, serial));
        if let (Some(identity), false) = (&identity, revoked) {
            request.extensions_mut().insert(identity.clone());
        }
        let mut router = router.clone();
        // In progress until its response body is finished or dropped.
        let guard = requests.request();
        async move {
            let response = router.call(request).await?;
            Ok::<_, std::convert::Infallible>(response.map(move |body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &guard;
                    frame
                }))
            }))
        }
    });
    // ALPN decides the protocol: sniffing the first bytes instead would wait, without any
    // timeout, on a client that sends nothing.
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    // With upgrades: exec/attach/port-forward switch the connection to WebSocket or SPDY.
    let io = TokioIo::new(crate::idle::Watched::new(tls, activity.clone()));
    let served = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(served);
    let mut shutting_down = false;
    let result = loop {
        let deadline = activity.idle_deadline(limits.idle_timeout);
        let idle = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => tokio::time::sleep(IDLE_CHECK).await,
            }
        };
        tokio::select! {
            result = served.as_mut() => break result,
            _ = idle, if !shutting_down => {
                let expired = activity
                    .idle_deadline(limits.idle_timeout)
                    .is_some_and(|at| at <= tokio::time::Instant::now());
                if expired {
                    tracing::debug!(%peer, "closing an idle connection");
                    served.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// How often a connection with a request in progress looks at its idle state again.
const IDLE_CHECK: Duration = Duration::from_secs(1);
