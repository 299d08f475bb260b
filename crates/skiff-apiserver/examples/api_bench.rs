//! HTTP load generator for the API server benchmarks (docs/benchmarks.md, scripts/bench/api.sh).
//! Talks HTTPS with the admin certificate from a kubeconfig, one keep-alive HTTP/1.1
//! connection per client, like many independent clients would.
//!
//! ```text
//! api_bench create   KUBECONFIG CLIENTS TOTAL NAMESPACE   # durable creates/s, latency
//! api_bench list     KUBECONFIG NAMESPACE REPEAT [LIMIT]  # list latency
//! api_bench watch    KUBECONFIG WATCHERS WRITES NAMESPACE # fan-out latency
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use skiff_pki::CertKeyPair;
use skiff_testkit::measure::quantile;

struct Target {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

fn load(kubeconfig: &str) -> Target {
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    let doc: Value = serde_saphyr::from_str(&text).expect("kubeconfig is YAML");
    let b64 = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("base64 field"))
                .expect("base64"),
        )
        .expect("utf-8")
    };
    let cluster = &doc["clusters"][0]["cluster"];
    let user = &doc["users"][0]["user"];
    let server = cluster["server"].as_str().expect("server URL");
    let authority = server.trim_start_matches("https://");
    let (host, port) = authority.rsplit_once(':').expect("host:port");
    let pair = CertKeyPair {
        cert_pem: b64(&user["client-certificate-data"]),
        key_pem: b64(&user["client-key-data"]),
    };
    let tls = skiff_pki::client_config(
        &b64(&cluster["certificate-authority-data"]),
        Some(&pair),
        &[b"http/1.1"],
    )
    .expect("TLS config");
    Target {
        host: host.trim_matches(['[', ']']).to_string(),
        port: port.parse().expect("port"),
        tls: Arc::new(tls),
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Sender {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).ok();
    let name = rustls_pki_types::ServerName::try_from(target.host.clone()).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(target.tls.clone())
        .connect(name, tcp)
        .await
        .expect("TLS");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    sender
}

async fn send(sender: &mut Sender, method: &str, path: &str, body: Option<String>) -> (u16, Bytes) {
    sender.ready().await.expect("connection ready");
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let response = sender.send_request(request).await.expect("send");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

fn pod(name: &str, node: Option<&str>) -> String {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    });
    if let Some(node) = node {
        p["spec"]["nodeName"] = json!(node);
    }
    p.to_string()
}

async fn ensure_namespace(target: &Target, namespace: &str) {
    let mut s = connect(target).await;
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    let (status, _) = send(&mut s, "POST", "/api/v1/namespaces", Some(body.to_string())).await;
    assert!(status == 201 || status == 409, "create namespace: {status}");
}

async fn create(target: Arc<Target>, clients: usize, total: usize, namespace: String) {
    ensure_namespace(&target, &namespace).await;
    let next = Arc::new(AtomicUsize::new(0));
    let run = format!(
        "{:x}",
        Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (target, next, namespace, run) =
            (target.clone(), next.clone(), namespace.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&target).await;
            let mut latencies = Vec::new();
            let path = format!("/api/v1/namespaces/{namespace}/pods");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let t = Instant::now();
                let (status, body) = send(
                    &mut sender,
                    "POST",
                    &path,
                    Some(pod(&format!("b{run}-{c}-{i}"), None)),
                )
                .await;
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    println!(
        "create clients={clients} total={total} elapsed={:.2}s rate={:.0}/s p50={:.2}ms p99={:.2}ms",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        quantile(&all, 0.5).as_secs_f64() * 1e3,
        quantile(&all, 0.99).as_secs_f64() * 1e3,
    );
}

async fn list(target: Arc<Target>, namespace: String, repeat: usize, limit: Option<usize>) {
    let mut sender = connect(&target).await;
    let path = match limit {
        Some(l) => format!("/api/v1/namespaces/{namespace}/pods?limit={l}"),
        None => format!("/api/v1/namespaces/{namespace}/pods"),
    };
    let mut times = Vec::new();
    let mut items = 0;
    let mut bytes = 0;
    for _ in 0..repeat {
        let t = Instant::now();
        let (status, body) = send(&mut sender, "GET", &path, None).await;
        assert_eq!(status, 200);
        times.push(t.elapsed());
        bytes = body.len();
        items = serde_json::from_slice::<Value>(&body)
            .map(|v| v["items"].as_array().map_or(0, Vec::len))
            .unwrap_or(0);
    }
    times.sort();
    println!(
        "list namespace={namespace} limit={limit:?} items={items} bytes={bytes} p50={:.1}ms min={:.1}ms max={:.1}ms",
        quantile(&times, 0.5).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

/// WATCHERS watches on pods with `spec.nodeName=node-<i>` (as node agents do), then WRITES
/// creates of pods bound to random nodes; reports the time from each write's 201 until its
/// watcher saw the event.
async fn watch(target: Arc<Target>, watchers: usize, writes: usize, namespace: String) {
    ensure_namespace(&target, &namespace).await;
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
        Default::default();
    let ready = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for w in 0..watchers {
        let (target, seen, ready, namespace) = (
            target.clone(),
            seen.clone(),
            ready.clone(),
            namespace.clone(),
        );
        tokio::spawn(async move {
            let mut sender = connect(&target).await;
            sender.ready().await.expect("ready");
            let path = format!(
                "/api/v1/namespaces/{namespace}/pods?watch=1&fieldSelector=spec.nodeName%3Dnode-{w}&resourceVersion=0"
            );
            let request = http::Request::builder()
                .uri(path)
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = sender.send_request(request).await.expect("watch");
            ready.fetch_add(1, Ordering::Relaxed);
            let mut body = response.into_body();
            let mut buffer = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { return };
                if let Some(data) = frame.data_ref() {
                    buffer.extend_from_slice(data);
                    while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=pos).collect();
                        if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                            if let Some(name) = v["object"]["metadata"]["name"].as_str() {
                                seen.lock()
                                    .unwrap()
                                    .insert(name.to_string(), Instant::now());
                            }
                        }
                    }
                }
            }
        });
    }
    while ready.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "watch: {watchers} watchers established in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut sender = connect(&target).await;
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    let mut acked = Vec::new();
    let run = std::process::id();
    for i in 0..writes {
        let name = format!("w{run}-{i}");
        let node = format!("node-{}", (i * 7919) % watchers);
        let (status, body) = send(&mut sender, "POST", &path, Some(pod(&name, Some(&node)))).await;
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        acked.push((name, Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap();
    let mut delays: Vec<Duration> = acked
        .iter()
        .filter_map(|(n, t)| seen.get(n).map(|s| s.saturating_duration_since(*t)))
        .collect();
    delays.sort();
    println!(
        "watch fan-out watchers={watchers} writes={writes} delivered={} p50={:.2}ms p99={:.2}ms max={:.2}ms (after the writer's 201)",
        delays.len(),
        quantile(&delays, 0.5).as_secs_f64() * 1e3,
        quantile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: api_bench create KUBECONFIG CLIENTS TOTAL NAMESPACE | list KUBECONFIG NAMESPACE REPEAT [LIMIT] | watch KUBECONFIG WATCHERS WRITES NAMESPACE";
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| panic!("{usage}"));
    let num = |i: usize| {
        arg(i)
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("{usage}"))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = Arc::new(load(&arg(2)));
    runtime.block_on(async {
        match arg(1).as_str() {
            "create" => create(target, num(3), num(4), arg(5)).await,
            "list" => {
                list(
                    target,
                    arg(3),
                    num(4),
                    args.get(5).and_then(|l| l.parse().ok()),
                )
                .await
            }
            "watch" => watch(target, num(3), num(4), arg(5)).await,
            _ => panic!("{usage}"),
        }
    });
}
