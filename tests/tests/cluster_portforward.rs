//! Issue 11, port-forward and proxies, on one cluster (a server with its own node and an agent
//! `node-b`, real containers): the official Python client's `portforward` (several ports, a
//! closed port's error on its error channel while the others keep working), `kubectl get
//! --raw` through `pods/NAME:PORT/proxy/` and `services/NAME:PORT/proxy/`, and hostile
//! WebSocket clients (unknown channels, oversized frames, a client that never reads, a closed
//! port) after which the server and the agent hold no more descriptors than before.
//!
//! The pods run busybox `httpd` on 8080 (index = the pod's name, `/big` = 64 MiB of zeros) and
//! an echo server (`nc -ll -e cat`) on 9000; nothing listens on 9999. Needs root.
//!
//! The Python part uses the official client from PyPI (`skiff_tests::python_client`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};
use skiff_tests::https::{HttpsClient, WebSocket};
use tokio_tungstenite::tungstenite::Message;

/// One forwarding target pod on `node`: busybox `httpd` on 8080 and an echo server on 9000.
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME, labels: {app: pf}}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && dd if=/dev/zero of=/www/big bs=1048576 count=64 2>/dev/null && (nc -ll -p 9000 -e cat &) && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
"#;

/// The Service in front of both pods.
const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: pf-web}
spec:
  selector: {app: pf}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

/// Size of `/big` in the pods.
const BIG: usize = 64 << 20;

/// The Python client's port-forward, as its e2e test `test_portforward_raw` uses it: echo on
/// 9000, HTTP on 8080, 9999 closed; the error on 9999 must not disturb the others.
const PYTHON_PORTFORWARD: &str = r#"
import select, sys, time
from kubernetes import config
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.stream import portforward

kubeconfig, pod = sys.argv[1], sys.argv[2]
c = Configuration()
config.load_kube_config(config_file=kubeconfig, client_configuration=c)
api = CoreV1Api(ApiClient(c))

def read_until(sock, want, deadline=30):
    got = b''
    end = time.time() + deadline
    while not got.endswith(want):
        assert time.time() < end, 'timed out, got %r' % got
        r, _, _ = select.select([sock], [], [], 1)
        if r:
            data = sock.recv(65536)
            assert data, 'unexpected close after %r' % got
            got += data
    return got

for round in range(3):
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, 'default', ports='9000,8080,9999')
    assert pf.connected
    echo, web = pf.socket(9000), pf.socket(8080)
    echo.setblocking(True)
    web.setblocking(True)
    sent = b'round %d through port 9000\n' % round
    echo.sendall(sent)
    assert read_until(echo, sent) == sent
    closed = pf.socket(9999)
    closed.setblocking(True)
    assert closed.recv(1024) == b''
    error = pf.error(9999)
    assert error is not None and 'connection refused' in error and 'error forwarding port 9999' in error, error
    # The other ports keep working after the error.
    # A port's end is not signalled on its own (upstream's WebSocket port-forward closes the
    # socket only when every port is done): read the page up to its known last line.
    web.sendall(b'GET / HTTP/1.0\r\n\r\n')
    page = read_until(web, pod.encode() + b'\n')
    assert page.startswith(b'HTTP/1.') and b' 200 ' in page.split(b'\r\n')[0], page
    echo.sendall(b'again\n')
    assert read_until(echo, b'again\n') == b'again\n'
    assert pf.error(9000) is None and pf.error(8080) is None
    for sock in (echo, web, closed):
        sock.close()
    end = time.time() + 10
    while pf.connected:
        assert time.time() < end, 'websocket still open'
        time.sleep(0.1)
print('ok')
"#;

/// Open descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn client(cluster: &Cluster) -> HttpsClient {
    let tls = cluster.server.data_dir.join("server/tls");
    let ca = skiff_pki::CertKeyPair::load(&tls, "ca")
        .expect("read the CA")
        .expect("the CA exists");
    let admin = skiff_pki::CertKeyPair::load(&tls, "admin")
        .expect("read the admin certificate")
        .expect("the admin certificate exists");
    let addr = std::net::SocketAddr::from((cluster.server_ip(), cluster.port));
    HttpsClient::new(addr, &ca.cert_pem, Some(&admin))
}

fn forward_path(pod: &str, ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "/api/v1/namespaces/default/pods/{pod}/portforward?ports={}",
        ports.join(",")
    )
}

/// Reads the next message, failing after `timeout`.
async fn next(socket: &mut WebSocket, timeout: Duration) -> Option<Message> {
    match tokio::time::timeout(timeout, socket.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(Some(Err(_))) | Ok(None) => None,
        Err(_) => panic!("no message within {timeout:?}"),
    }
}

/// Reads the port header of every channel (2 per port), checking each.
async fn headers(socket: &mut WebSocket, ports: &[u16]) {
    let mut seen = BTreeSet::new();
    while seen.len() < ports.len() * 2 {
        let Some(Message::Binary(data)) = next(socket, Duration::from_secs(10)).await else {
            panic!("expected a port header");
        };
        assert_eq!(data.len(), 3, "{data:?}");
        let port = ports[usize::from(data[0] / 2)];
        assert_eq!(u16::from_le_bytes([data[1], data[2]]), port);
        assert!(seen.insert(data[0]), "channel {} twice", data[0]);
    }
}

/// Data from channel `channel` until `want` bytes arrived (other channels must stay quiet).
async fn read_channel(socket: &mut WebSocket, channel: u8, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        match next(socket, Duration::from_secs(30)).await {
            Some(Message::Binary(data)) => {
                assert_eq!(data[0], channel, "unexpected channel: {data:?}");
                got.extend_from_slice(&data[1..]);
            }
            Some(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("stream ended after {} bytes: {other:?}", got.len()),
        }
    }
    got
}

fn binary(channel: u8, data: &[u8]) -> Message {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// A closed port: the error channel says why (the kubelet's wording), then the socket closes.
async fn closed_port(api: &HttpsClient, pod: &str) {
    let (mut socket, protocol) = api
        .websocket(&forward_path(pod, &[9999]), &["v4.channel.k8s.io"], 1 << 20)
        .await
        .expect("port-forward socket");
    assert_eq!(protocol.as_deref(), Some("v4.channel.k8s.io"));
    headers(&mut socket, &[9999]).await;
    let Some(Message::Binary(error)) = next(&mut socket, Duration::from_secs(20)).await else {
        panic!("expected the error message");
    };
    assert_eq!(error[0], 1);
    let text = String::from_utf8_lossy(&error[1..]);
    assert!(
        text.starts_with("error forwarding port 9999 to pod ")
            && text.contains("failed to execute portforward in network namespace")
            && text.contains("IPv4: dial tcp4 127.0.0.1:9999: connect: connection refused"),
        "{text}"
    );
    match next(&mut socket, Duration::from_secs(10)).await {
        Some(Message::Close(_)) | None => {}
        Some(other) => panic!("after the error: {other:?}"),
    }
}

/// Unknown channels and messages are skipped; echo through 9000 works in both encodings.
async fn echo_with_noise(api: &HttpsClient, pod: &str) {
    let (mut socket, _) = api
        .websocket(&forward_path(pod, &[9000]), &["v4.channel.k8s.io"], 1 << 20)
        .await
        .expect("port-forward socket");
    headers(&mut socket, &[9000]).await;
    socket.send(binary(77, b"nobody")).await.unwrap();
    socket
        .send(binary(1, b"error channel is not writable"))
        .await
        .unwrap();
    socket
        .send(Message::Binary(Vec::new().into()))
        .await
        .unwrap();
    socket.send(Message::Text("0text".into())).await.unwrap();
    socket.send(binary(0, b"hello\n")).await.unwrap();
    assert_eq!(read_channel(&mut socket, 0, 6).await, b"hello\n");
    drop(socket);

    let (mut socket, protocol) = api
        .websocket(
            &forward_path(pod, &[9000]),
            &["v4.base64.channel.k8s.io"],
            1 << 20,
        )
        .await
        .expect("base64 port-forward socket");
    assert_eq!(protocol.as_deref(), Some("v4.base64.channel.k8s.io"));
    for _ in 0..2 {
        let Some(Message::Text(text)) = next(&mut socket, Duration::from_secs(10)).await else {
            panic!("expected a text port header");
        };
        assert!(matches!(text.as_str(), "0KCM=" | "1KCM="), "{text}");
    }
    // "hi\n" in base64 on channel 0.
    socket.send(Message::Text("0aGkK".into())).await.unwrap();
    let Some(Message::Text(text)) = next(&mut socket, Duration::from_secs(10)).await else {
        panic!("expected echoed text");
    };
    assert_eq!(text.as_str(), "0aGkK");
}

/// A frame over the server's limit ends that socket only.
async fn oversized_frame(api: &HttpsClient, pod: &str) {
    let (mut socket, _) = api
        .websocket(&forward_path(pod, &[9000]), &["v4.channel.k8s.io"], 1 << 20)
        .await
        .expect("port-forward socket");
    headers(&mut socket, &[9000]).await;
    let _ = socket.send(binary(0, &vec![b'x'; 5 << 20])).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => continue,
            Ok(Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the server kept a socket that sent a 5 MiB frame"),
        }
    }
}

/// Asks for `/big` through 8080 and returns the socket without reading it.
async fn start_download(api: &HttpsClient, pod: &str) -> WebSocket {
    let (mut socket, _) = api
        .websocket(&forward_path(pod, &[8080]), &["v4.channel.k8s.io"], 1 << 20)
        .await
        .expect("port-forward socket");
    headers(&mut socket, &[8080]).await;
    socket
        .send(binary(0, b"GET /big HTTP/1.0\r\n\r\n"))
        .await
        .unwrap();
    socket
}

/// Reads a whole HTTP/1.0 response from channel 0 until the socket closes; returns the body.
async fn finish_download(socket: &mut WebSocket) -> usize {
    let mut got = Vec::new();
    loop {
        match next(socket, Duration::from_secs(60)).await {
            Some(Message::Binary(data)) => {
                assert_eq!(data[0], 0, "only data is expected");
                got.extend_from_slice(&data[1..]);
            }
            Some(Message::Close(_)) | None => break,
            Some(_) => {}
        }
    }
    let head = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    // busybox httpd answers an HTTP/1.0 request as HTTP/1.1 (with `Connection: close`).
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK") || got.starts_with(b"HTTP/1.0 200 OK"),
        "{}",
        String::from_utf8_lossy(&got[..head])
    );
    let body = &got[head + 4..];
    assert!(
        body.iter().all(|b| *b == 0),
        "the file's bytes arrive intact"
    );
    body.len()
}

#[test]
fn port_forward_and_proxies_on_the_server_node_and_over_the_link() {
    let started = Instant::now();
    let Some(cluster) = cluster_with_pods("portforward") else {
        return;
    };
    let pods = ["pf-server", "pf-b"];

    // pods/proxy and services/proxy through kubectl.
    for pod in pods {
        for id in [
            format!("{pod}:8080"),
            format!("{pod}:http"),
            pod.to_string(),
            format!("http:{pod}:8080"),
        ] {
            let page = cluster.kubectl_ok(&[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{id}/proxy/"),
            ]);
            assert_eq!(page.trim(), pod, "pods/{id}/proxy/");
        }
        let file = cluster.kubectl_ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}:8080/proxy/index.html?x=1"),
        ]);
        assert_eq!(file.trim(), pod);
        let refused = cluster.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}:9999/proxy/"),
        ]);
        assert!(!refused.ok);
        assert!(
            refused.stderr.contains("ServiceUnavailable")
                || refused.stderr.contains("connection refused"),
            "{}",
            refused.stderr
        );
    }
    let mut answered = BTreeSet::new();
    cluster.wait_for(
        "services/pf-web:80/proxy/ answered by both pods",
        Duration::from_secs(60),
        || {
            for id in ["pf-web:80", "pf-web:http"] {
                let run = cluster.kubectl(&[
                    "get",
                    "--raw",
                    &format!("/api/v1/namespaces/default/services/{id}/proxy/"),
                ]);
                if run.ok {
                    answered.insert(run.stdout.trim().to_string());
                }
            }
            answered.len() == 2
        },
    );
    assert!(
        answered.iter().all(|a| pods.contains(&a.as_str())),
        "{answered:?}"
    );
    let missing = cluster.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/pf-web:81/proxy/",
    ]);
    assert!(
        missing
            .stderr
            .contains("no service port 81 found for service"),
        "{}",
        missing.stderr
    );

    // The official Python client.
    let python = skiff_tests::python_client::python();
    let script = cluster.dir().join("portforward.py");
    std::fs::write(&script, PYTHON_PORTFORWARD).expect("write the script");
    for pod in pods {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg(&cluster.kubeconfig)
            .arg(pod)
            .output()
            .expect("run python");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
            "Python port-forward to {pod}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }

    // Hostile clients, with the descriptors of the server and node-b's agent counted around.
    let server_pid = cluster.server.pid().expect("server pid");
    let agent_pid = cluster.node("node-b").pid().expect("agent pid");
    let api = client(&cluster);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        // Warm up (first connections create lasting state: link streams, pools).
        for pod in pods {
            echo_with_noise(&api, pod).await;
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let fds_before = (fd_count(server_pid), fd_count(agent_pid));
    runtime.block_on(async {
        for pod in pods {
            closed_port(&api, pod).await;
            echo_with_noise(&api, pod).await;
            oversized_frame(&api, pod).await;
        }
        // A client that never reads a 64 MiB download: the server's memory stays bounded
        // (QUIC flow control and bounded buffers hold the pod back) and others are served.
        let rss_before = rss(server_pid);
        let mut stalled = Vec::new();
        for pod in pods {
            stalled.push(start_download(&api, pod).await);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        for pod in pods {
            echo_with_noise(&api, pod).await;
            let page = api
                .get(&format!(
                    "/api/v1/namespaces/default/pods/{pod}:8080/proxy/"
                ))
                .await;
            assert_eq!(page.status, 200);
            assert_eq!(page.text().trim(), pod);
        }
        let grown = rss(server_pid).saturating_sub(rss_before);
        assert!(
            grown < 24 << 20,
            "the server grew by {grown} bytes for clients that do not read"
        );
        for socket in &mut stalled {
            assert_eq!(finish_download(socket).await, BIG);
        }
    });
    drop(runtime);
    let settled = |(server, agent): (usize, usize)| {
        fd_count(server_pid) <= server + 2 && fd_count(agent_pid) <= agent + 2
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !settled(fds_before) {
        assert!(
            Instant::now() < deadline,
            "descriptors leaked: server {} → {}, agent {} → {}",
            fds_before.0,
            fd_count(server_pid),
            fds_before.1,
            fd_count(agent_pid)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("cluster_portforward took {:?}", started.elapsed());
}

/// A server with its own node and the agent `node-b`, each running a ready [`POD`]
/// (`pf-server`, `pf-b`), and [`SERVICE`].
fn cluster_with_pods(name: &str) -> Option<Cluster> {
    let cluster = Cluster::start(
        ClusterSpec::new(name)
            .server_agent(true)
            .agents(&["node-b"]),
    )?;
    for (name, node) in [("pf-server", "server"), ("pf-b", "node-b")] {
        cluster.apply(&POD.replace("NAME", name).replace("NODE", node));
    }
    cluster.apply(SERVICE);
    cluster.wait_for("both pods ready", Duration::from_secs(90), || {
        let pods = cluster.pods("app=pf");
        pods.len() == 2
            && pods.iter().all(|p| {
                pod_running(p)
                    && p["status"]["containerStatuses"][0]["ready"].as_bool() == Some(true)
            })
    });
    Some(cluster)
}

/// MB/s of reading `BIG` bytes.
fn rate(elapsed: Duration) -> f64 {
    BIG as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

/// Downloads `/big` straight from the pod's IP (from inside the server's network namespace).
fn direct_download(cluster: &Cluster, ip: &str) -> Duration {
    let addr: std::net::SocketAddr = format!("{ip}:8080").parse().expect("pod address");
    cluster.server.ns.run(move || {
        use std::io::{Read, Write};
        let started = Instant::now();
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the pod");
        tcp.write_all(b"GET /big HTTP/1.0\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            let n = tcp.read(&mut buf).expect("read from the pod");
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total > BIG);
        started.elapsed()
    })
}

/// Port-forward throughput against a direct connection to the pod IP, in the same run, for
/// the server's node and for an agent over the link (`docs/benchmarks.md`). Run with
/// `cargo nextest run --workspace -E 'test(port_forward_throughput)' --run-ignored only
/// --no-capture`.
#[test]
#[ignore = "benchmark"]
fn port_forward_throughput_against_direct() {
    let Some(cluster) = cluster_with_pods("pf-bench") else {
        return;
    };
    let api = client(&cluster);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    for (pod, ip) in cluster.pod_ips("app=pf") {
        let mut direct = Vec::new();
        let mut forwarded = Vec::new();
        for _ in 0..3 {
            direct.push(direct_download(&cluster, &ip));
            forwarded.push(runtime.block_on(async {
                let started = Instant::now();
                let mut socket = start_download(&api, &pod).await;
                assert_eq!(finish_download(&mut socket).await, BIG);
                started.elapsed()
            }));
        }
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
        let (d, f) = (rate(best(&direct)), rate(best(&forwarded)));
        eprintln!(
            "BENCH port-forward {pod}: direct {d:.0} MiB/s, WebSocket port-forward {f:.0} MiB/s ({:.0}% of direct)",
            f / d * 100.0
        );
    }
}
