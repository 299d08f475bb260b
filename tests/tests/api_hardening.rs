//! Attacks on the API server that once exhausted or killed it, each replayed over real HTTPS:
//! the JSON-patch copy bomb, slow-loris connections, more requests in flight than allowed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_tests::inproc::TestApi;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn json_patch_copy_bomb_is_refused_quickly_and_changes_nothing() {
    let server = TestApi::start().await;
    let admin = server.admin();
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                     "data": {"a": "x".repeat(100 * 1024)}});
    let created = admin.post_json(CONFIGMAPS, &big).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let before = admin.get(&format!("{CONFIGMAPS}/big")).await.json();

    // The reported attack: ~60 copies of the data map, each doubling it.
    let mut ops = vec![json!({"op": "copy", "from": "/data", "path": "/data/b"})];
    for i in 0..60 {
        ops.push(json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}));
    }
    let started = Instant::now();
    let reply = admin
        .request(
            "PATCH",
            &format!("{CONFIGMAPS}/big"),
            &[("content-type", "application/json-patch+json")],
            Value::Array(ops).to_string(),
        )
        .await;
    let took = started.elapsed();
    let status = reply.json();
    assert_eq!(reply.status, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the accumulated size increase of copy is"),
        "{status}"
    );
    assert!(took < Duration::from_secs(5), "refused in {took:?}");

    // More operations than upstream allows: 413 before anything runs.
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/kind", "value": "ConfigMap"}))
        .collect();
    let reply = admin
        .request(
            "PATCH",
            &format!("{CONFIGMAPS}/big"),
            &[("content-type", "application/json-patch+json")],
            Value::Array(many).to_string(),
        )
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply
        .text()
        .contains("The allowed maximum operations in a JSON patch is 10000, got 10001"));

    // A merge patch growing the object past the body limit: 413, nothing stored.
    let grow = json!({"data": {"b": "y".repeat(3 * 1024 * 1024 - 50 * 1024)}});
    let reply = admin
        .request(
            "PATCH",
            &format!("{CONFIGMAPS}/big"),
            &[("content-type", "application/merge-patch+json")],
            grow.to_string(),
        )
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(
        reply.text().contains("the patched object is"),
        "{}",
        reply.text()
    );

    let after = admin.get(&format!("{CONFIGMAPS}/big")).await.json();
    assert_eq!(after, before, "the ConfigMap is unchanged");
    server.stop().await;
}

/// A TLS connection authenticated as the admin, on which the test writes raw bytes.
async fn raw_tls(
    server: &TestApi,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config =
        skiff_pki::client_config(server.pki.ca.cert_pem(), Some(&server.pki.admin), &[alpn])
            .expect("client TLS");
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the server closes the connection; how long that took (`None`: still open at
/// `limit`). Bytes the server sent first (a response) are skipped.
async fn closed_within(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    limit: Duration,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slow_loris_connections_are_closed_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let limits = skiff_apiserver::ServeLimits {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let server = TestApi::start_configured(
        skiff_store::StoreOptions::default(),
        skiff_apiserver::ApiConfig {
            limits,
            ..Default::default()
        },
    )
    .await;
    let admin = server.admin();

    // Partial headers, then nothing; a connection that sends nothing at all; and one that
    // stays idle after a complete request (keep-alive).
    let mut partial = raw_tls(&server, b"http/1.1").await;
    partial
        .write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let silent = raw_tls(&server, b"http/1.1").await;
    let mut idle = raw_tls(&server, b"http/1.1").await;
    idle.write_all(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();

    let mut streams = [
        ("partial headers", partial),
        ("silent", silent),
        ("idle keep-alive", idle),
    ];
    for (what, stream) in &mut streams {
        let early = closed_within(stream, Duration::from_millis(300)).await;
        assert!(early.is_none(), "{what} connection closed at once");
    }
    // Meanwhile a normal client keeps working.
    for _ in 0..3 {
        assert_eq!(admin.get("/api/v1/namespaces").await.status, 200);
    }
    for (what, stream) in &mut streams {
        let closed = closed_within(stream, Duration::from_secs(8)).await;
        assert!(
            closed.is_some(),
            "{what} connection still open after 8 s (header read and idle timeouts 2 s)"
        );
    }
    assert_eq!(admin.get("/api/v1/namespaces").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn mutating_requests_over_the_inflight_limit_get_429() {
    use tokio::io::AsyncWriteExt;
    let limits = skiff_apiserver::ServeLimits {
        max_mutating_requests_inflight: 1,
        ..Default::default()
    };
    let server = TestApi::start_configured(
        skiff_store::StoreOptions::default(),
        skiff_apiserver::ApiConfig {
            authorizer: std::sync::Arc::new(skiff_apiserver::AlwaysAllow),
            limits,
            ..Default::default()
        },
    )
    .await;
    // Not an admin: system:masters is exempt, as upstream.
    let user = skiff_apiserver::Identity::new("alice", ["devs"]);
    let alice = server.as_identity(&user);
    let cert = server.pki.ca.issue_client(&user).expect("client cert");
    let config = skiff_pki::client_config(server.pki.ca.cert_pem(), Some(&cert), &[b"http/1.1"])
        .expect("client TLS");
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut slow = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    // A create whose body never finishes holds the one mutating slot.
    slow.write_all(
        format!("POST {CONFIGMAPS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"apiVersion\":")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let reply = alice.post_json(CONFIGMAPS, &cm).await;
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.json()["reason"], "TooManyRequests");
    // Reads have their own pool; admins and watches are not limited.
    assert_eq!(alice.get(CONFIGMAPS).await.status, 200);
    assert_eq!(server.admin().post_json(CONFIGMAPS, &cm).await.status, 201);

    drop(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut y = cm.clone();
    y["metadata"]["name"] = json!("y");
    assert_eq!(alice.post_json(CONFIGMAPS, &y).await.status, 201);
    server.stop().await;
}
