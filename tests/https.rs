//! A raw HTTPS client for tests that need exact control over methods, headers and bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_pki::CertKeyPair;

/// A client WebSocket over TLS.
pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// An HTTP/1.1-over-TLS client trusting the cluster CA, with an optional client certificate.
#[derive(Clone, Debug)]
pub struct HttpsClient {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl HttpsClient {
    /// A client for the server at `addr` trusting `ca_pem`, authenticating with `client`.
    pub fn new(addr: SocketAddr, ca_pem: &str, client: Option<&CertKeyPair>) -> HttpsClient {
        crate::install_crypto();
        let tls = skiff_pki::client_config(ca_pem, client, &[b"http/1.1"])
            .expect("client TLS configuration");
        HttpsClient {
            addr,
            tls: Arc::new(tls),
        }
    }

    /// Sends one request on a fresh connection and reads the whole response.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the API server");
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(Full::new(body.into())).expect("valid request");
        let response = sender.send_request(request).await.expect("send request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("read response body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A TLS connection to the server.
    pub async fn connect(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the API server");
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        connector.connect(name, tcp).await.expect("TLS handshake")
    }

    /// Opens a WebSocket on `path` offering `protocols`; the negotiated protocol comes back
    /// with the socket, or the refusal's status and body.
    pub async fn websocket(
        &self,
        path: &str,
        protocols: &[&str],
        max_message: usize,
    ) -> Result<(WebSocket, Option<String>), String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("wss://127.0.0.1{path}")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                protocols.join(", ").parse().map_err(|e| format!("{e}"))?,
            );
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let tls = self.connect().await;
        let (socket, response) =
            tokio_tungstenite::client_async_with_config(request, tls, Some(config))
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(response) => format!(
                        "{}: {}",
                        response.status(),
                        String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    ),
                    other => other.to_string(),
                })?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((socket, protocol))
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], Bytes::new()).await
    }

    /// POST of a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// PUT of a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "PUT",
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }
}
