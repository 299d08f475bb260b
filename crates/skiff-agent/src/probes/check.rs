//! One probe attempt: exec, httpGet or tcpSocket, as the kubelet's prober runs them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::{ExecOptions, Runtime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of output (exec) or body (HTTP) kept for messages, as upstream.
const MAX_OUTPUT: usize = 10 * 1024;

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe failed; the message says how (shown in events).
    Failure(String),
}

/// Where and how to probe one container.
#[derive(Debug)]
pub struct Target<'a> {
    /// The runtime (exec probes).
    pub runtime: Option<&'a Runtime>,
    /// Pod uid.
    pub uid: &'a str,
    /// The container.
    pub container: &'a Container,
    /// The pod's IP (host for HTTP and TCP probes without `host`).
    pub pod_ip: Option<IpAddr>,
}

/// Runs `probe` once against `target`, within the probe's timeout.
pub async fn run(probe: &Probe, target: &Target<'_>) -> Outcome {
    let timeout = skiff_runtime::durations::spec_seconds(i64::from(
        probe.timeout_seconds.unwrap_or(1).max(1),
    ));
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return exec_probe(target, command, timeout).await;
    }
    if let Some(http) = &probe.http_get {
        let result = tokio::time::timeout(timeout, http_probe(http, target)).await;
        return match result {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failure(format!(
                "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                http_url(http, target).unwrap_or_default()
            )),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let addr = match address(tcp.host.as_deref(), &tcp.port, target) {
            Ok(addr) => addr,
            Err(message) => return Outcome::Failure(message),
        };
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: connect: {}", lower(&e))),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if probe.grpc.is_some() {
        return Outcome::Failure("gRPC probes are not supported by skiff".into());
    }
    Outcome::Failure("the probe has no handler (exec, httpGet or tcpSocket)".into())
}

fn lower(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => e.to_string(),
    }
}

/// The port a probe names: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port number: {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

fn address(
    host: Option<&str>,
    port: &IntOrString,
    target: &Target<'_>,
) -> Result<SocketAddr, String> {
    let port = resolve_port(port, target.container)?;
    let ip = match host.filter(|h| !h.is_empty()) {
        Some(h) => h
            .parse::<IpAddr>()
            .map_err(|_| format!("probe host {h:?} is not an IP address"))?,
        None => target
            .pod_ip
            .ok_or_else(|| "the pod has no IP address yet".to_string())?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn http_url(http: &HTTPGetAction, target: &Target<'_>) -> Result<String, String> {
    let addr = address(http.host.as_deref(), &http.port, target)?;
    let scheme = http
        .scheme
        .as_deref()
        .unwrap_or("HTTP")
        .to_ascii_lowercase();
    let path = http.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok(format!("{scheme}://{addr}{path}"))
}

async fn exec_probe(target: &Target<'_>, command: Vec<String>, timeout: Duration) -> Outcome {
    if command.is_empty() {
        return Outcome::Failure("exec probe has no command".into());
    }
    let Some(runtime) = target.runtime else {
        return Outcome::Failure("exec probes need the container runtime".into());
    };
    let process = match runtime
        .exec(
            target.uid,
            &target.container.name,
            ExecOptions {
                command: command.clone(),
                tty: false,
                stdin: false,
            },
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(format!("failed to exec in container: {e}")),
    };
    let pid = process.pid;
    let mut outputs = Vec::new();
    let mut process = process;
    for file in [process.stdout.take(), process.stderr.take()]
        .into_iter()
        .flatten()
    {
        outputs.push(tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            let mut file = file;
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = MAX_OUTPUT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
            kept
        }));
    }
    let status = match tokio::time::timeout(timeout, process.wait()).await {
        Ok(status) => status,
        Err(_) => {
            // SAFETY: kill(2) of the exec'd process we started (a pidfd-watched pid).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            return Outcome::Failure(format!(
                "command {command:?} timed out after {}s",
                timeout.as_secs()
            ));
        }
    };
    let mut output = Vec::new();
    for o in outputs {
        if let Ok(bytes) = o.await {
            output.extend(bytes);
        }
    }
    let code = status.code();
    if code == 0 {
        Outcome::Success
    } else {
        let text = String::from_utf8_lossy(&output).trim_end().to_string();
        if text.is_empty() {
            Outcome::Failure(format!("command {command:?} exited with {code}"))
        } else {
            Outcome::Failure(text)
        }
    }
}

async fn http_probe(http: &HTTPGetAction, target: &Target<'_>) -> Outcome {
    let url = match http_url(http, target) {
        Ok(url) => url,
        Err(message) => return Outcome::Failure(message),
    };
    let addr = match address(http.host.as_deref(), &http.port, target) {
        Ok(addr) => addr,
        Err(message) => return Outcome::Failure(message),
    };
    let https = http
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failure(format!(
                "Get {url:?}: dial tcp {addr}: connect: {}",
                lower(&e)
            ))
        }
    };
    let path = url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| "/".into());
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let mut has_host = false;
    let mut has_agent = false;
    let mut has_accept = false;
    for h in http.http_headers.iter().flatten() {
        if h.name.contains(['\r', '\n', ':']) || h.value.contains(['\r', '\n']) {
            continue;
        }
        has_host |= h.name.eq_ignore_ascii_case("host");
        has_agent |= h.name.eq_ignore_ascii_case("user-agent");
        has_accept |= h.name.eq_ignore_ascii_case("accept");
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    if !has_host {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has_agent {
        let version = skiff_types::KUBERNETES_VERSION.trim_start_matches('v');
        let minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
        request.push_str(&format!("User-Agent: kube-probe/{minor}\r\n"));
    }
    if !has_accept {
        request.push_str("Accept: */*\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let result = if https {
        match tls_connect(stream, addr.ip()).await {
            Ok(tls) => exchange(tls, &request).await,
            Err(e) => Err(e),
        }
    } else {
        exchange(stream, &request).await
    };
    match result {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Outcome::Failure(format!("Get {url:?}: {e}")),
    }
}

/// Sends the request and reads the status code of the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
) -> Result<u16, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_OUTPUT {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(format!("malformed HTTP response {line:?}"));
    };
    if !version.starts_with("HTTP/") {
        return Err(format!("malformed HTTP response {line:?}"));
    }
    code.parse::<u16>()
        .map_err(|_| format!("malformed HTTP status code {code:?}"))
}

/// HTTPS probes do not verify the certificate (as upstream).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn tls_connect(
    stream: TcpStream,
    ip: IpAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), stream)
        .await
        .map_err(|e| format!("tls: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("grpc".into()), &c)
            .unwrap_err()
            .contains("couldn't find port: grpc"));
        assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
    }

    async fn serve_once(answer: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    fn http(port: u16) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(port as i32),
                path: Some("/healthz".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tcp(port: u16) -> Probe {
        Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: IntOrString::Int(port as i32),
                host: None,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn http_and_tcp_probes_judge_real_servers() {
        let container = Container::default();
        let target = Target {
            runtime: None,
            uid: "u",
            container: &container,
            pod_ip: Some("127.0.0.1".parse().unwrap()),
        };
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(run(&http(ok), &target).await, Outcome::Success);
        let redirect = serve_once("HTTP/1.1 302 Found\r\nlocation: /x\r\n\r\n").await;
        assert_eq!(run(&http(redirect), &target).await, Outcome::Success);
        let broken = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(
            run(&http(broken), &target).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        assert_eq!(run(&tcp(ok), &target).await, Outcome::Success);
        // A port nobody listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let Outcome::Failure(message) = run(&tcp(closed), &target).await else {
            panic!("closed port passed")
        };
        assert!(message.contains("connection refused"), "{message}");
        let Outcome::Failure(message) = run(&http(closed), &target).await else {
            panic!("closed port passed")
        };
        assert!(
            message.contains("/healthz") && message.contains("connection refused"),
            "{message}"
        );
    }
}
