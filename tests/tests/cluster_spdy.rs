//! SPDY/3.1 against a real cluster (`skiff server` with its own node, real containers):
//! kubectl 1.27, which speaks only SPDY for `exec`, runs commands in a busybox pod with piped
//! stdin, stdout, stderr and exit codes; and `port-forward` (kubectl 1.27 over a raw SPDY
//! upgrade, kubectl 1.33 through the WebSocket tunnel) reaches busybox `httpd` in the pod.
//!
//! `port_forward_over_spdy_to_a_real_pod` needs the node link's port-forward stream
//! (`NodeProxy::pod_port_forward` for real nodes), which lands with the portforward branch:
//! on the spdy branch alone it fails with "this node proxy cannot forward ports".

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};
use skiff_tests::kubectl::{self, Kubectl};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;

fn start(label: &str) -> Option<Cluster> {
    let cluster = Cluster::start(ClusterSpec::new(label).server_agent(true))?;
    cluster.apply(POD);
    cluster.wait_for("the pod Running", Duration::from_secs(60), || {
        cluster.pods("").iter().any(pod_running)
    });
    Some(cluster)
}

fn kubectl_version(cluster: &Cluster, version: &str) -> Option<Kubectl> {
    let Some(bin) = kubectl::find(version) else {
        assert!(
            !skiff_tests::e2e_required(),
            "kubectl {version} is not installed"
        );
        skiff_tests::skip(&format!("kubectl {version} is not installed"));
        return None;
    };
    Some(Kubectl::new(&bin, &cluster.kubeconfig))
}

#[test]
fn kubectl_1_27_exec_over_spdy_in_a_real_pod() {
    let Some(cluster) = start("spdy-exec") else {
        return;
    };
    let Some(k) = kubectl_version(&cluster, "1.27") else {
        return;
    };
    let run = k.run(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "cat /www/index.html; echo oops >&2; exit 7",
    ]);
    assert!(!run.ok);
    assert_eq!(run.stdout, "hello from the pod\n", "{}", run.stderr);
    assert!(run.stderr.contains("oops"), "{}", run.stderr);
    assert!(
        run.stderr.contains("command terminated with exit code 7"),
        "{}",
        run.stderr
    );
    // Piped stdin of 90 KB: its end reaches the command (tr exits), the output comes back.
    let input = "shout\n".repeat(15_000);
    let mut child = k
        .command(&["exec", "-i", "web", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SHOUT\n".repeat(15_000)
    );
    let missing = k.run(&["exec", "web", "-c", "nope", "--", "true"]);
    assert!(
        missing.stderr.contains("container nope is not valid"),
        "{}",
        missing.stderr
    );
}

/// `GET /` through a forwarded local port.
fn http_get(local: u16) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

/// Run after merging the portforward branch (see the module comment).
#[test]
fn port_forward_over_spdy_to_a_real_pod() {
    let Some(cluster) = start("spdy-pf") else {
        return;
    };
    for version in ["1.27", "1.33"] {
        let Some(k) = kubectl_version(&cluster, version) else {
            continue;
        };
        let forward = k.port_forward("pod/web", &[8080, 9999]);
        for _ in 0..3 {
            let answer = http_get(forward.local[0]);
            assert!(
                answer.ends_with("hello from the pod\n"),
                "kubectl {version}: {answer}"
            );
        }
        // Nobody listens on 9999 in the pod: the kubelet-worded error comes back.
        let _ = std::net::TcpStream::connect(("127.0.0.1", forward.local[1]))
            .map(|mut c| c.write_all(b"x").map(|_| c.read(&mut [0u8; 1])));
        skiff_testkit::wait::poll_until(Duration::from_secs(20), "the forwarding error", || {
            forward
                .stderr
                .lock()
                .unwrap()
                .contains("error forwarding port 9999 to pod web, uid ")
        });
    }
}
