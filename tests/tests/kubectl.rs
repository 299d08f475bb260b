//! Acceptance 1 of issue 2: the real `skiff server --disable-agent` binary driven by real
//! kubectl 1.27, 1.28, 1.32 and 1.33: api-resources, get ns, create ns, apply a Deployment and apply it again with a
//! changed image and replica count (strategic merge patch), get -o yaml/json, get pods -w,
//! scale, label, annotate, get events, explain, delete (including a namespace, which the
//! namespace controller empties and removes).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::kubectl::{self, Kubectl};
use skiff_tests::process::SkiffProcess;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox:1.36
        command: [sleep, \"3600\"]
";

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: watched
  namespace: demo
spec:
  containers:
  - name: c
    image: busybox:1.36
";

const EVENT: &str = "apiVersion: v1
kind: Event
metadata:
  name: web.17a2b3c4d5e6f708
  namespace: demo
involvedObject:
  apiVersion: apps/v1
  kind: Deployment
  name: web
  namespace: demo
reason: ScalingReplicaSet
message: Scaled up replica set web-5d4c8 to 3
type: Normal
source:
  component: deployment-controller
count: 1
firstTimestamp: \"2026-01-01T00:00:00Z\"
lastTimestamp: \"2026-01-01T00:00:00Z\"
";

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = k.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} -o json: {e}: {out}"))
}

fn acceptance(version: &str) {
    let Some(bin) = kubectl::find(version) else {
        skiff_tests::skip(&format!("kubectl {version} is not installed"));
        return;
    };
    let dir = skiff_tests::temp_dir(&format!("kubectl-{version}"));
    let server = SkiffProcess::start(&dir.path().join("data"));
    eprintln!("server ready after {:?}", server.startup);
    let k = Kubectl::new(&bin, &server.kubeconfig());
    let manifests = dir.path();
    let write = |name: &str, text: &str| {
        let path = manifests.join(name);
        std::fs::write(&path, text).expect("write manifest");
        path.to_string_lossy().into_owned()
    };

    // api-resources: every served resource with its group version and short names.
    let out = k.ok(&["api-resources"]);
    for line in [
        ("pods", "po", "v1"),
        ("namespaces", "ns", "v1"),
        ("deployments", "deploy", "apps/v1"),
        ("replicasets", "rs", "apps/v1"),
        ("events", "ev", "v1"),
    ] {
        assert!(
            out.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&line.0) && cols.contains(&line.1) && cols.contains(&line.2)
            }),
            "api-resources lacks {line:?}:\n{out}"
        );
    }
    assert!(
        out.contains("leases") && out.contains("coordination.k8s.io/v1"),
        "{out}"
    );
    assert!(out.contains("jobs") && out.contains("batch/v1"), "{out}");

    // get ns: the system namespaces exist and are Active.
    let out = k.ok(&["get", "ns"]);
    assert!(out.starts_with("NAME"), "{out}");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(ns) && l.contains("Active")),
            "{ns} missing:\n{out}"
        );
    }

    // create ns (a typed-client write: protobuf from kubectl 1.32 on).
    assert_eq!(
        k.ok(&["create", "ns", "demo"]).trim(),
        "namespace/demo created"
    );
    // The service account controller adds `default` shortly after (as upstream, not within
    // the namespace's create request).
    let deadline = Instant::now() + Duration::from_secs(10);
    let sa = loop {
        let run = k.run(&[
            "-n",
            "demo",
            "get",
            "serviceaccount",
            "default",
            "-o",
            "json",
        ]);
        if run.ok {
            break serde_json::from_str::<Value>(&run.stdout).expect("kubectl printed JSON");
        }
        assert!(
            Instant::now() < deadline,
            "no default ServiceAccount in demo after 10 s: {}",
            run.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sa["metadata"]["name"], "default",
        "default ServiceAccount created"
    );

    // get pods -w, started before anything exists in the namespace.
    let watch_log = manifests.join("watch.out");
    let mut watch = k
        .command(&["-n", "demo", "get", "pods", "-w"])
        .stdout(std::fs::File::create(&watch_log).expect("watch log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl get pods -w");

    // apply, then apply again with a new image and replica count (strategic merge patch).
    let first = write("deploy.yaml", DEPLOYMENT);
    assert_eq!(
        k.ok(&["apply", "-f", &first]).trim(),
        "deployment.apps/web created"
    );
    let changed = DEPLOYMENT
        .replace("nginx:1.25", "nginx:1.26")
        .replace("replicas: 2", "replicas: 3");
    let second = write("deploy2.yaml", &changed);
    assert_eq!(
        k.ok(&["apply", "-f", &second]).trim(),
        "deployment.apps/web configured"
    );
    let d = json(&k, &["-n", "demo", "get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 2, "sidecar kept: {containers:?}");
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(containers[1]["name"], "sidecar");
    assert_eq!(d["metadata"]["generation"], 2);
    let yaml = k.ok(&["-n", "demo", "get", "deploy", "-o", "yaml"]);
    assert!(
        yaml.contains("image: nginx:1.26") && yaml.contains("replicas: 3"),
        "{yaml}"
    );
    let table = k.ok(&["-n", "demo", "get", "deploy"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap_or("").starts_with("web "),
        "{table}"
    );

    // A pod appears in the running watch.
    let pod = write("pod.yaml", POD);
    assert_eq!(k.ok(&["apply", "-f", &pod]).trim(), "pod/watched created");
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let text = std::fs::read_to_string(&watch_log).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.starts_with("watched ") && l.contains("Pending"))
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "pod never showed in get pods -w:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(seen.starts_with("NAME"), "{seen}");
    let _ = watch.kill();
    let _ = watch.wait();

    // scale, label, annotate.
    assert_eq!(
        k.ok(&["-n", "demo", "scale", "deploy", "web", "--replicas=5"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        k.ok(&[
            "-n",
            "demo",
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "5"
    );
    assert_eq!(
        k.ok(&["-n", "demo", "label", "deploy", "web", "tier=frontend"])
            .trim(),
        "deployment.apps/web labeled"
    );
    // kubectl 1.27 itself prints "annotate" here (its own message, fixed in 1.28); the
    // stored annotation is checked below for every version.
    let annotated = k.ok(&["-n", "demo", "annotate", "deploy", "web", "owner=edge-team"]);
    let expected = if version == "1.27" {
        "deployment.apps/web annotate"
    } else {
        "deployment.apps/web annotated"
    };
    assert_eq!(annotated.trim(), expected);
    let d = json(&k, &["-n", "demo", "get", "deploy", "web"]);
    assert_eq!(d["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(d["metadata"]["annotations"]["owner"], "edge-team");
    let selected = k.ok(&[
        "-n",
        "demo",
        "get",
        "deploy",
        "-l",
        "tier=frontend",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "deployment.apps/web");

    // get events.
    let event = write("event.yaml", EVENT);
    k.ok(&["apply", "-f", &event]);
    let out = k.ok(&["-n", "demo", "get", "events"]);
    assert!(out.starts_with("LAST SEEN"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("ScalingReplicaSet") && l.contains("deployment/web")),
        "{out}"
    );

    // explain, from the OpenAPI v3 documents.
    let out = k.ok(&["explain", "pod"]);
    assert!(
        out.contains("KIND:") && out.contains("Pod") && out.contains("FIELDS:"),
        "{out}"
    );
    let out = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        out.contains("replicas") && out.contains("<integer>"),
        "{out}"
    );

    // delete: the deployment goes; the namespace starts terminating (the namespace
    // controller that empties it comes with the controllers).
    assert_eq!(
        k.ok(&["-n", "demo", "delete", "deploy", "web"]).trim(),
        "deployment.apps \"web\" deleted"
    );
    let gone = k.run(&["-n", "demo", "get", "deploy", "web"]);
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");
    // The namespace goes Terminating; the namespace controller empties it and it is gone.
    k.ok(&["delete", "ns", "demo", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phase = k.run(&["get", "ns", "demo", "-o", "jsonpath={.status.phase}"]);
        if !phase.ok {
            assert!(phase.stderr.contains("NotFound"), "{phase:?}");
            break;
        }
        assert_eq!(phase.stdout, "Terminating");
        assert!(Instant::now() < deadline, "namespace demo never went away");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
}

#[test]
fn kubectl_1_27_drives_the_api() {
    acceptance("1.27");
}

#[test]
fn kubectl_1_28_drives_the_api() {
    acceptance("1.28");
}

#[test]
fn kubectl_1_32_drives_the_api() {
    acceptance("1.32");
}

#[test]
fn kubectl_1_33_drives_the_api() {
    acceptance("1.33");
}

const NETWORK_POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-client
  namespace: default
spec:
  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: client
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16]
    ports:
    - port: 80
    - port: 8000
      endPort: 8080
";

/// Issue 13: NetworkPolicies through real kubectl: create -f, get (upstream's columns), the
/// defaults (`policyTypes`, TCP), describe, a bad manifest refused with upstream's message,
/// delete.
#[test]
fn kubectl_serves_network_policies() {
    let Some(bin) = kubectl::find("1.32") else {
        skiff_tests::skip("kubectl 1.32 is not installed");
        return;
    };
    let dir = skiff_tests::temp_dir("kubectl-netpol");
    let server = SkiffProcess::start(&dir.path().join("data"));
    let k = Kubectl::new(&bin, &server.kubeconfig());
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path.to_string_lossy().into_owned()
    };

    let out = k.ok(&["api-resources", "--api-group=networking.k8s.io"]);
    assert!(
        out.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&"networkpolicies")
                && cols.contains(&"netpol")
                && cols.contains(&"networking.k8s.io/v1")
                && cols.contains(&"NetworkPolicy")
        }),
        "{out}"
    );

    let manifest = write("netpol.yaml", NETWORK_POLICY);
    assert_eq!(
        k.ok(&["create", "-f", &manifest]).trim(),
        "networkpolicy.networking.k8s.io/allow-client created"
    );
    let out = k.ok(&["get", "netpol"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "POD-SELECTOR", "AGE"], "{out}");
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row[..2], ["allow-client", "app=web"], "{out}");

    let np = json(&k, &["get", "networkpolicy", "allow-client"]);
    assert_eq!(np["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(np["spec"]["ingress"][0]["ports"][1]["endPort"], 8080);

    let out = k.ok(&["describe", "networkpolicy", "allow-client"]);
    for want in [
        "Name:         allow-client",
        "PodSelector:     app=web",
        "Allowing ingress traffic:",
        "To Port: 80/TCP",
        "From:",
        "PodSelector: role=client",
        "IPBlock:",
        "CIDR: 10.0.0.0/8",
        "Except: 10.1.0.0/16",
        "Policy Types: Ingress",
    ] {
        assert!(out.contains(want), "describe lacks {want:?}:\n{out}");
    }

    let bad = write(
        "bad.yaml",
        &NETWORK_POLICY
            .replace("name: allow-client", "name: bad")
            .replace("endPort: 8080", "endPort: 7000"),
    );
    let refused = k.run(&["create", "-f", &bad]);
    assert!(!refused.ok, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "The NetworkPolicy \"bad\" is invalid: spec.ingress[0].ports[1].endPort: \
             Invalid value: 7000: must be greater than or equal to `port`"
        ),
        "{refused:?}"
    );

    assert_eq!(
        k.ok(&["delete", "netpol", "allow-client"]).trim(),
        "networkpolicy.networking.k8s.io \"allow-client\" deleted"
    );
    let gone = k.run(&["get", "netpol", "allow-client"]);
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{gone:?}");
    drop(server);
}
