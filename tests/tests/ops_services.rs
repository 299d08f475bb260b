//! Service ClusterIP allocation (issue 8) through the real binary and real kubectl: the
//! `kubernetes` Service at the first address of the service CIDR, allocation on create, no
//! double allocation, user-chosen addresses validated, headless and ExternalName Services left
//! without one, addresses freed on delete and kept across a restart, `--service-cidr`.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use skiff_tests::kubectl::{self, Kubectl};
use skiff_tests::process::SkiffProcess;

fn kubectl_for(server: &SkiffProcess) -> Option<Kubectl> {
    match kubectl::find("1.32") {
        Some(bin) => Some(Kubectl::new(&bin, &server.kubeconfig())),
        None => {
            skiff_tests::skip("kubectl 1.32 (/usr/bin/kubectl) is not installed");
            None
        }
    }
}

fn cluster_ip_in(k: &Kubectl, namespace: &str, name: &str) -> String {
    k.ok(&[
        "get",
        "service",
        "-n",
        namespace,
        name,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
}

fn cluster_ip(k: &Kubectl, name: &str) -> String {
    k.ok(&["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"])
}

fn in_range(ip: &str, network: [u8; 2]) -> bool {
    let ip: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("{ip:?} is not an address"));
    ip.octets()[..2] == network
}

fn service(name: &str, cluster_ip: Option<&str>) -> String {
    let ip = cluster_ip
        .map(|ip| format!("  clusterIP: {ip}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{ip}  selector: {{app: {name}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
    )
}

#[test]
fn services_get_cluster_ips_like_upstream() {
    skiff_tests::install_crypto();
    let dir = skiff_tests::temp_dir("ops-services");
    let mut server = SkiffProcess::start(dir.path());
    let Some(k) = kubectl_for(&server) else {
        return;
    };

    // The kubernetes Service, as `kubectl get svc` shows it upstream.
    let table = k.ok(&["get", "svc"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["kubernetes", "ClusterIP", "10.43.0.1", "<none>", "443/TCP"],
        "{table}"
    );
    let labels = k.ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(labels.contains("\"provider\":\"kubernetes\""), "{labels}");
    // kube-dns holds the tenth address from the start.
    let dns = k.ok(&[
        "get", "svc", "-n", "kube-system", "kube-dns", "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[*].name} {.spec.ports[*].protocol} {.metadata.labels.k8s-app}",
    ]);
    assert_eq!(dns, "10.43.0.10 dns dns-tcp UDP TCP kube-dns");
    // Bound to loopback: no address pods can reach, so no endpoints for `kubernetes`.
    assert!(k
        .run(&["get", "endpoints", "kubernetes"])
        .stderr
        .contains("NotFound"));

    // Allocation on create: in range, both fields, distinct.
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let web = cluster_ip(&k, "web");
    assert!(in_range(&web, [10, 43]) && web != "10.43.0.1", "{web}");
    assert_eq!(
        k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIPs[0]}"]),
        web
    );
    let many: String = (0..30)
        .map(|i| service(&format!("s{i}"), None) + "---\n")
        .collect();
    k.ok_with_input(&["apply", "-f", "-"], &many);
    let mut seen = HashSet::from(["10.43.0.1".to_string(), web.clone()]);
    for i in 0..30 {
        let ip = cluster_ip(&k, &format!("s{i}"));
        assert!(in_range(&ip, [10, 43]), "{ip}");
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
    }

    // Headless and ExternalName Services get none.
    k.ok(&[
        "create",
        "service",
        "clusterip",
        "headless",
        "--clusterip=None",
        "--tcp=80:80",
    ]);
    assert_eq!(cluster_ip(&k, "headless"), "None");
    k.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name=db.example.com",
    ]);
    assert_eq!(cluster_ip(&k, "ext"), "");

    // A chosen address: accepted once, refused when taken or out of range.
    k.ok_with_input(
        &["apply", "-f", "-"],
        &service("pinned", Some("10.43.0.12")),
    );
    assert_eq!(cluster_ip(&k, "pinned"), "10.43.0.12");
    let taken = k.run_with_input(
        &["apply", "-f", "-"],
        &service("pinned2", Some("10.43.0.12")),
    );
    assert!(!taken.ok);
    assert!(
        taken.stderr.contains(
            "Service \"pinned2\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.0.12\"}: failed to allocate IP 10.43.0.12: provided IP is already allocated"
        ),
        "{}",
        taken.stderr
    );
    let outside = k.run_with_input(&["apply", "-f", "-"], &service("far", Some("10.99.0.1")));
    assert!(!outside.ok);
    assert!(
        outside
            .stderr
            .contains("The range of valid IPs is 10.43.0.0/16"),
        "{}",
        outside.stderr
    );
    assert!(k
        .run(&["get", "svc", "pinned2"])
        .stderr
        .contains("NotFound"));

    // The address is immutable, and a dry run shows an address without taking it.
    let changed = k.run(&[
        "patch",
        "svc",
        "web",
        "-p",
        "{\"spec\":{\"clusterIP\":\"10.43.7.7\"}}",
    ]);
    assert!(!changed.ok, "clusterIP changed: {}", changed.stdout);
    let preview = k.ok_with_input(
        &[
            "apply",
            "--dry-run=server",
            "-o",
            "jsonpath={.spec.clusterIP}",
            "-f",
            "-",
        ],
        &service("preview", Some("10.43.0.11")),
    );
    assert_eq!(preview, "10.43.0.11");
    k.ok_with_input(
        &["apply", "-f", "-"],
        &service("after-preview", Some("10.43.0.11")),
    );

    // Deleting frees the address.
    k.ok(&["delete", "svc", "pinned"]);
    k.ok_with_input(
        &["apply", "-f", "-"],
        &service("pinned2", Some("10.43.0.12")),
    );
    assert_eq!(cluster_ip(&k, "pinned2"), "10.43.0.12");

    // Node ports: allocated from the range, a requested one checked, freed on type change.
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let np: u16 = k
        .ok(&[
            "get",
            "svc",
            "np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .expect("a node port");
    assert!((30000..=32767).contains(&np), "{np}");
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "np2",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    let clash = k.run(&[
        "create",
        "service",
        "nodeport",
        "np3",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    assert!(
        clash.stderr.contains(
            "Service \"np3\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{}",
        clash.stderr
    );
    let far = k.run(&[
        "create",
        "service",
        "nodeport",
        "np4",
        "--tcp=80:8080",
        "--node-port=40000",
    ]);
    assert!(
        far.stderr.contains(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{}",
        far.stderr
    );
    k.ok(&[
        "patch",
        "svc",
        "np2",
        "-p",
        "{\"spec\":{\"type\":\"ClusterIP\"}}",
    ]);
    assert_eq!(
        k.ok(&[
            "get",
            "svc",
            "np2",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}"
        ]),
        ""
    );
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "np3",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);

    // A restart keeps every address and allocates around them.
    server.stop();
    let port = server.port;
    let server = SkiffProcess::start_on(dir.path(), port).expect("restart");
    let k = Kubectl::new(&kubectl::find("1.32").unwrap(), &server.kubeconfig());
    assert_eq!(cluster_ip(&k, "web"), web);
    assert_eq!(cluster_ip(&k, "kubernetes"), "10.43.0.1");
    k.ok(&["create", "service", "clusterip", "later", "--tcp=80:8080"]);
    let later = cluster_ip(&k, "later");
    assert!(!seen.contains(&later) && later != "10.43.0.12", "{later}");
}

#[test]
fn the_service_cidr_flag_moves_every_address() {
    skiff_tests::install_crypto();
    let dir = skiff_tests::temp_dir("ops-service-cidr");
    let server = SkiffProcess::start_with_args(
        dir.path(),
        &[
            "--service-cidr",
            "10.96.0.0/12",
            "--advertise-address",
            "192.0.2.10",
        ],
    );
    let Some(k) = kubectl_for(&server) else {
        return;
    };
    assert_eq!(cluster_ip(&k, "kubernetes"), "10.96.0.1");
    assert_eq!(cluster_ip_in(&k, "kube-system", "kube-dns"), "10.96.0.10");

    // The kubernetes Service's endpoints: the advertised address and the API port, `https`.
    let port = server.port;
    let endpoints = k.ok(&["get", "endpoints", "kubernetes"]);
    assert!(
        endpoints.contains(&format!("kubernetes   192.0.2.10:{port}")),
        "{endpoints}"
    );
    let slice = k.ok(&[
        "get", "endpointslice", "kubernetes", "-o",
        "jsonpath={.addressType} {.endpoints[0].addresses[0]} {.ports[0].name} {.ports[0].port} {.metadata.labels.kubernetes\\.io/service-name}",
    ]);
    assert_eq!(slice, format!("IPv4 192.0.2.10 https {port} kubernetes"));
    // Deleted, they come back (the server's reconciler looks every 10 s).
    k.ok(&["delete", "endpoints", "kubernetes"]);
    k.ok(&["delete", "svc", "-n", "kube-system", "kube-dns"]);
    skiff_testkit::wait::poll_until(
        std::time::Duration::from_secs(30),
        "the kubernetes endpoints and kube-dns to come back",
        || {
            k.run(&["get", "endpoints", "kubernetes"]).ok
                && k.run(&["get", "svc", "-n", "kube-system", "kube-dns"]).ok
        },
    );
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip: Ipv4Addr = cluster_ip(&k, "web").parse().unwrap();
    assert_eq!(ip.octets()[0], 10);
    assert!((96..112).contains(&ip.octets()[1]), "{ip}");
}
