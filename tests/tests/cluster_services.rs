//! Issue 13 acceptance on the multi-node harness (each node in its own network namespace on a
//! test bridge), with real containers and real kubectl: a pod on another node reaches a
//! Service by ClusterIP, short name and FQDN, and one made by `kubectl expose`; NodePort
//! answers from outside the cluster on every node; a LoadBalancer Service gets the nodes'
//! addresses and answers on them; headless names resolve to the pods; `kubernetes.default.svc`
//! accepts a TCP connection; a pod failing its readiness probe leaves the Service; an agent
//! restarted while cut off from the server keeps Services and DNS answering for its pods.
//!
//! One cluster serves every case (they do not interfere), to keep CI time down. Needs root.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use skiff_tests::harness::{pod_running, Cluster, ClusterSpec};

/// busybox httpd on 8080 answering its pod's name; ready while /tmp/ready exists.
const WEB: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          exec: {command: ["test", "-f", "/tmp/ready"]}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8088, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-b
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#;

/// A plain HTTP GET from the test process (outside the cluster, on the test bridge).
fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    Ok(answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// What the client pod gets from `url` (the answering pod's name), or why not.
fn fetch_from_client(cluster: &Cluster, url: &str) -> Result<String, String> {
    // busybox's static wget crashes with -T: the timeout applet bounds it instead.
    let run = cluster.kubectl(&["exec", "client", "--", "timeout", "5", "wget", "-qO-", url]);
    if run.ok {
        Ok(run.stdout.trim().to_string())
    } else {
        Err(run.stderr)
    }
}

fn web_pods(cluster: &Cluster) -> Vec<(String, String, String)> {
    cluster
        .pods("app=web")
        .iter()
        .map(|p| {
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&p["metadata"]["name"]),
                text(&p["spec"]["nodeName"]),
                text(&p["status"]["podIP"]),
            )
        })
        .collect()
}

fn ready_endpoints(cluster: &Cluster, service: &str) -> BTreeSet<String> {
    let slices = cluster.get_json(&[
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={service}"),
    ]);
    slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect()
}

/// Asks `url` from the client until every name of `expected` answered (load balancing).
fn reaches_all(cluster: &Cluster, url: &str, expected: &BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !expected.is_subset(&seen) {
        match fetch_from_client(cluster, url) {
            Ok(name) => {
                seen.insert(name);
            }
            Err(error) => last = error,
        }
        assert!(
            Instant::now() < deadline,
            "{url} from the client: reached {seen:?} of {expected:?}; last error: {last}\n{}",
            cluster.logs()
        );
    }
    assert!(
        seen.is_subset(expected),
        "{url} answered by pods that are not its endpoints: {seen:?}"
    );
}

#[test]
fn services_route_and_resolve_across_nodes_and_survive_an_offline_restart() {
    let Some(mut cluster) =
        Cluster::start(ClusterSpec::new("services").agents(&["node-a", "node-b"]))
    else {
        return;
    };
    cluster.apply(WEB);
    cluster.wait_for(
        "a ready web pod on every node and the client Running",
        Duration::from_secs(120),
        || {
            let pods = cluster.pods("app=web");
            pods.len() == 2
                && pods.iter().all(pod_running)
                && pods.iter().all(|p| p["status"]["podIP"].as_str().is_some())
                && pod_running(&cluster.get_json(&["pod", "client"]))
                && ready_endpoints(&cluster, "web").len() == 2
        },
    );
    let pods = web_pods(&cluster);
    let names: BTreeSet<String> = pods.iter().map(|(n, _, _)| n.clone()).collect();
    let ips: BTreeSet<String> = pods.iter().map(|(_, _, ip)| ip.clone()).collect();
    assert_eq!(
        ready_endpoints(&cluster, "web"),
        ips,
        "slices list the pods"
    );
    let endpoints = cluster.kubectl_ok(&["get", "endpoints", "web"]);
    assert!(
        ips.iter().all(|ip| endpoints.contains(ip)),
        "the legacy Endpoints mirror the pods:\n{endpoints}"
    );

    // ClusterIP, short name and FQDN from a pod on node-b, spread over both pods.
    let cluster_ip = cluster.get_json(&["service", "web"])["spec"]["clusterIP"]
        .as_str()
        .expect("web has a cluster IP")
        .to_string();
    reaches_all(&cluster, &format!("http://{cluster_ip}/"), &names);
    reaches_all(&cluster, "http://web/", &names);
    reaches_all(&cluster, "http://web.default.svc.cluster.local/", &names);

    // `kubectl expose` (selector = the pod's labels, which both DaemonSet pods share).
    let exposed = pods
        .iter()
        .find(|(_, node, _)| node == "node-a")
        .map(|(name, _, _)| name.clone())
        .expect("a web pod on node-a");
    cluster.kubectl_ok(&[
        "expose",
        "pod",
        &exposed,
        "--name",
        "web-exposed",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    reaches_all(&cluster, "http://web-exposed/", &names);

    // Headless: the name resolves to the pods themselves.
    let lookup = cluster.kubectl_ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "web-headless.default.svc.cluster.local",
    ]);
    for ip in &ips {
        assert!(lookup.contains(ip.as_str()), "{ip} in:\n{lookup}");
    }

    // NodePort from outside the cluster, on every node.
    for node in ["node-a", "node-b"] {
        let addr = SocketAddr::new(cluster.node(node).ns.ip.into(), 30080);
        cluster.wait_for(
            &format!("NodePort on {node}"),
            Duration::from_secs(30),
            || http_get(addr).is_ok_and(|name| names.contains(&name)),
        );
    }

    // LoadBalancer: the nodes' addresses in its status, and they answer on the port.
    cluster.wait_for(
        "web-lb's status lists node addresses",
        Duration::from_secs(30),
        || {
            cluster.get_json(&["service", "web-lb"])["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|i| !i.is_empty())
        },
    );
    let ingress =
        cluster.get_json(&["service", "web-lb"])["status"]["loadBalancer"]["ingress"].clone();
    let node_ips: BTreeSet<String> = ["node-a", "node-b"]
        .iter()
        .map(|n| cluster.node(n).ns.ip.to_string())
        .collect();
    let lb_ips: BTreeSet<String> = ingress
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect();
    assert!(node_ips.is_subset(&lb_ips), "{lb_ips:?} ⊇ {node_ips:?}");
    let lb = SocketAddr::new(cluster.node("node-a").ns.ip.into(), 8088);
    cluster.wait_for("the load balancer answers", Duration::from_secs(30), || {
        http_get(lb).is_ok_and(|name| names.contains(&name))
    });

    // The API through the `kubernetes` Service (a TCP connection).
    let connect = cluster.kubectl(&[
        "exec",
        "client",
        "--",
        "nc",
        "-w",
        "3",
        "kubernetes.default.svc.cluster.local",
        "443",
        "-e",
        "true",
    ]);
    assert!(
        connect.ok,
        "kubernetes.default.svc: {}\n{}",
        connect.stderr,
        cluster.logs()
    );

    // Readiness: a pod failing its probe leaves the Service.
    let (unready, _, unready_ip) = pods
        .iter()
        .find(|(_, node, _)| node == "node-a")
        .cloned()
        .expect("a web pod on node-a");
    cluster.kubectl_ok(&["exec", &unready, "--", "rm", "/tmp/ready"]);
    cluster.wait_for(
        "the unready pod out of the slices",
        Duration::from_secs(15),
        || !ready_endpoints(&cluster, "web").contains(&unready_ip),
    );
    let remaining: BTreeSet<String> = names.iter().filter(|n| **n != unready).cloned().collect();
    let mut answered = BTreeSet::new();
    for _ in 0..12 {
        if let Ok(name) = fetch_from_client(&cluster, &format!("http://{cluster_ip}/")) {
            answered.insert(name);
        }
    }
    assert!(
        !answered.is_empty() && answered.is_subset(&remaining),
        "only ready pods answer: {answered:?}"
    );
    cluster.kubectl_ok(&["exec", &unready, "--", "touch", "/tmp/ready"]);
    cluster.wait_for(
        "the pod back in the slices",
        Duration::from_secs(15),
        || ready_endpoints(&cluster, "web").contains(&unready_ip),
    );

    // node-b loses the server and its agent restarts meanwhile: the rules and the resolver
    // come back from its local state. kubectl exec needs the server, so the client's
    // requests run in its network namespace directly.
    let client_uid = cluster.get_json(&["pod", "client"])["metadata"]["uid"]
        .as_str()
        .expect("client uid")
        .to_string();
    let client_net = cluster
        .node("node-b")
        .data_dir
        .join(format!("agent/runtime/pods/{client_uid}/ns/net"));
    let in_client = |args: &[&str]| -> Result<String, String> {
        let net = format!("--net={}", client_net.display());
        let mut full = vec!["nsenter", net.as_str(), "busybox"];
        full.extend_from_slice(args);
        let out = std::process::Command::new(full[0])
            .args(&full[1..])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    };
    let dns = cluster.get_json(&["service", "kube-dns", "-n", "kube-system"])["spec"]["clusterIP"]
        .as_str()
        .expect("kube-dns has a cluster IP")
        .to_string();
    let (server_ip, port) = (cluster.server_ip(), cluster.port);
    cluster
        .agent("node-b")
        .cut_link(server_ip, port)
        .expect("cut node-b's link");
    let b = cluster.agent("node-b");
    b.kill9();
    b.start().expect("restart node-b's agent");
    cluster.wait_for(
        "node-b's agent up again without the server",
        Duration::from_secs(30),
        || {
            cluster
                .node("node-b")
                .log_text()
                .contains("re-adopted running pods")
        },
    );
    let mut seen = BTreeSet::new();
    cluster.wait_for(
        "the Service and its name answer in the cut-off node's pod",
        Duration::from_secs(60),
        || {
            if let Ok(name) = in_client(&[
                "timeout",
                "5",
                "wget",
                "-qO-",
                &format!("http://{cluster_ip}/"),
            ]) {
                seen.insert(name);
            }
            let resolved = in_client(&["nslookup", "web.default.svc.cluster.local", &dns])
                .is_ok_and(|answer| answer.contains(&cluster_ip));
            names.is_subset(&seen) && resolved
        },
    );
    cluster
        .agent("node-b")
        .restore_link()
        .expect("restore node-b's link");
}
