//! SPDY/3.1 with real kubectl binaries against an in-process API server: kubectl 1.27's
//! `exec` (which speaks only SPDY) and `port-forward` over a raw `Upgrade: SPDY/3.1`, and
//! kubectl 1.33's `port-forward` through the WebSocket tunnel (`SPDY/3.1+portforward.k8s.io`).
//!
//! The node side is a [`NodeProxy`] on this host: exec runs the command as a local process
//! (its real stdin, stdout, stderr and exit status, in the node's channel frames), and
//! port-forward dials the port on 127.0.0.1, where the test's "pod" listens. The cluster
//! versions (real containers) are in `cluster_spdy.rs`.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use skiff_apiserver::{NodeProxy, NodeProxyError, NodeReader, NodeWriter, PodExecOptions};
use skiff_tests::inproc::TestApi;
use skiff_tests::kubectl::{self, Kubectl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node that is this host.
struct HostNode;

fn status_json(code: i32) -> Vec<u8> {
    let status = if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    serde_json::to_vec(&status).unwrap()
}

fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![channel];
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Runs `options.command` here, speaking the node's exec frames on the pipes.
async fn host_exec(
    options: PodExecOptions,
    mut from_api: tokio::io::DuplexStream,
    to_api: tokio::io::DuplexStream,
) {
    let mut child = tokio::process::Command::new(&options.command[0])
        .args(&options.command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn command");
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let to_api = Arc::new(tokio::sync::Mutex::new(to_api));
    let input = async move {
        loop {
            let mut header = [0u8; 5];
            if from_api.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut data = vec![0u8; len];
            if from_api.read_exact(&mut data).await.is_err() {
                return;
            }
            match header[0] {
                0 => {
                    if let Some(s) = stdin.as_mut() {
                        let _ = s.write_all(&data).await;
                    }
                }
                255 => stdin = None,
                _ => {}
            }
        }
    };
    let pump = |mut from: Box<dyn tokio::io::AsyncRead + Send + Unpin>, channel: u8| {
        let to_api = to_api.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let _ = to_api
                    .lock()
                    .await
                    .write_all(&frame(channel, &buf[..n]))
                    .await;
            }
        }
    };
    let input = tokio::spawn(input);
    tokio::join!(pump(Box::new(stdout), 1), pump(Box::new(stderr), 2));
    let code = child
        .wait()
        .await
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1);
    let _ = to_api
        .lock()
        .await
        .write_all(&frame(3, &status_json(code)))
        .await;
    input.abort();
}

impl NodeProxy for HostNode {
    fn pod_logs<'a>(
        &'a self,
        _node: &'a str,
        _namespace: &'a str,
        _pod: &'a str,
        _options: skiff_apiserver::PodLogOptions,
    ) -> skiff_apiserver::ProxyFuture<'a, Result<NodeReader, NodeProxyError>> {
        Box::pin(async { Err(NodeProxyError::Failed("no logs here".into())) })
    }

    fn pod_exec<'a>(
        &'a self,
        _node: &'a str,
        _namespace: &'a str,
        _pod: &'a str,
        options: PodExecOptions,
    ) -> skiff_apiserver::ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        Box::pin(async move {
            let (api_in, node_in) = tokio::io::duplex(64 * 1024);
            let (node_out, api_out) = tokio::io::duplex(64 * 1024);
            tokio::spawn(host_exec(options, node_in, node_out));
            Ok((
                Box::pin(api_out) as NodeReader,
                Box::pin(api_in) as NodeWriter,
            ))
        })
    }

    fn pod_port_forward<'a>(
        &'a self,
        _node: &'a str,
        _namespace: &'a str,
        _pod: &'a str,
        port: u16,
    ) -> skiff_apiserver::ProxyFuture<'a, Result<(NodeReader, NodeWriter), NodeProxyError>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| NodeProxyError::Failed(format!("dial tcp4 127.0.0.1:{port}: {e}")))?;
            let (r, w) = stream.into_split();
            Ok((Box::pin(r) as NodeReader, Box::pin(w) as NodeWriter))
        })
    }
}

async fn server_with_pod() -> TestApi {
    let api = TestApi::start().await;
    api.api.set_node_proxy(Arc::new(HostNode));
    let pods: Api<Pod> = Api::namespaced(api.kube().await, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "c", "image": "busybox:1.36"}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    // kubectl port-forward insists on a Running pod.
    let status = serde_json::json!({"status": {"phase": "Running"}});
    pods.patch_status(
        "p",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .expect("pod status");
    api
}

fn kubectl_for(version: &str, api: &TestApi) -> Option<Kubectl> {
    match kubectl::find(version) {
        Some(bin) => Some(Kubectl::new(&bin, &api.kubeconfig)),
        None => {
            skiff_tests::skip(&format!("kubectl {version} is not installed"));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_exec_over_spdy() {
    let api = server_with_pod().await;
    let Some(k) = kubectl_for("1.27", &api) else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        // Piped stdin (its end is the stdin stream's FIN), stdout, stderr, exit code.
        let mut child = k
            .command(&[
                "exec",
                "-i",
                "p",
                "--",
                "sh",
                "-c",
                "tr a-z A-Z; echo oops >&2; exit 3",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let big = "abcdefgh\n".repeat(20_000);
        let mut input = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || input.write_all(big.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "stdout {stdout:.200} stderr {stderr}"
        );
        assert_eq!(
            stdout,
            "ABCDEFGH\n".repeat(20_000),
            "180 KB through stdin and back"
        );
        assert!(stderr.contains("oops"), "{stderr}");
        assert!(
            stderr.contains("command terminated with exit code 3"),
            "{stderr}"
        );
        // A plain command, no stdin.
        let out = k.ok(&["exec", "p", "--", "echo", "hello"]);
        assert_eq!(out, "hello\n");
        // An unknown container is refused before the upgrade, with upstream's message.
        let run = k.run(&["exec", "p", "-c", "nope", "--", "true"]);
        assert!(!run.ok);
        assert!(
            run.stderr.contains("container nope is not valid for pod p"),
            "{}",
            run.stderr
        );
    })
    .await
    .unwrap();
}

/// A local "pod" port answering each chunk with `echo:` + the chunk.
async fn echo_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut answer = b"echo:".to_vec();
                    answer.extend_from_slice(&buf[..n]);
                    if conn.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One connection through the forward: `message` out, `echo:message` back, then EOF after
/// our half-close.
fn round_trip(local: u16, message: &[u8]) -> Result<Vec<u8>, String> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(message).map_err(|e| e.to_string())?;
    let mut answer = vec![0u8; 5 + message.len()];
    let mut got = 0;
    while got < answer.len() {
        match conn.read(&mut answer[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    answer.truncate(got);
    Ok(answer)
}

fn forward_scenario(k: &Kubectl, pod_port: u16) {
    let closed = closed_port();
    let forward = k.port_forward("pod/p", &[pod_port, closed]);
    // Several connections, one after another and side by side, through one session.
    for i in 0..3 {
        let msg = format!("hello {i}");
        assert_eq!(
            round_trip(forward.local[0], msg.as_bytes()).unwrap(),
            format!("echo:{msg}").into_bytes()
        );
    }
    let parallel: Vec<_> = (0..4)
        .map(|i| {
            let local = forward.local[0];
            std::thread::spawn(move || round_trip(local, format!("side {i}").as_bytes()))
        })
        .collect();
    for (i, t) in parallel.into_iter().enumerate() {
        assert_eq!(
            t.join().unwrap().unwrap(),
            format!("echo:side {i}").into_bytes()
        );
    }
    // 1 MiB in one go (many frames).
    let big = vec![b'x'; 1 << 20];
    let answer = round_trip(forward.local[0], &big).unwrap();
    assert_eq!(answer.len(), 5 + big.len());
    // A port nobody listens on: the error stream says so, as the kubelet words it.
    let _ = round_trip(forward.local[1], b"anyone?");
    skiff_testkit::wait::poll_until(Duration::from_secs(20), "the forwarding error", || {
        forward
            .stderr
            .lock()
            .unwrap()
            .contains(&format!("error forwarding port {closed} to pod p, uid "))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_port_forward_over_spdy() {
    let api = server_with_pod().await;
    let Some(k) = kubectl_for("1.27", &api) else {
        return;
    };
    let pod_port = echo_port().await;
    tokio::task::spawn_blocking(move || {
        forward_scenario(&k, pod_port);
        // The session survived the failed connection: the good port still works.
        let forward = k.port_forward("pod/p", &[pod_port]);
        assert_eq!(
            round_trip(forward.local[0], b"again").unwrap(),
            b"echo:again"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_port_forward_over_websocket_tunnel() {
    let api = server_with_pod().await;
    let Some(k) = kubectl_for("1.33", &api) else {
        return;
    };
    let pod_port = echo_port().await;
    tokio::task::spawn_blocking(move || forward_scenario(&k, pod_port))
        .await
        .unwrap();
}
