//! Table tests of the policy compiler: upstream's NetworkPolicy semantics on small worlds.

use serde_json::{json, Value};

use super::*;

fn pod(namespace: &str, name: &str, node: &str, ip: &str, labels: Value) -> Value {
    json!({
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn with_port(mut pod: Value, name: &str, number: i32, protocol: &str) -> Value {
    pod["spec"]["containers"][0]["ports"] =
        json!([{"name": name, "containerPort": number, "protocol": protocol}]);
    pod
}

struct Case {
    world: World,
}

impl Case {
    fn new() -> Self {
        let mut world = World::default();
        for (name, labels) in [
            ("default", json!({"kubernetes.io/metadata.name": "default"})),
            (
                "other",
                json!({"kubernetes.io/metadata.name": "other", "team": "a"}),
            ),
        ] {
            let ns: Namespace =
                serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                    .expect("namespace");
            let _ = world.apply_namespace(&ns);
        }
        Self { world }
    }

    fn pod(mut self, pod: Value) -> Self {
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        let _ = self.world.apply_pod(&pod);
        self
    }

    fn policy(mut self, namespace: &str, name: &str, spec: Value) -> Self {
        let policy: NetworkPolicy = serde_json::from_value(
            json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec}),
        )
        .expect("policy");
        let _ = self.world.apply_policy(&policy);
        self
    }

    /// The compiled policy of one pod, found on any node.
    fn of(&self, namespace: &str, name: &str) -> Option<PodPolicy> {
        compile(&self.world)
            .into_values()
            .flatten()
            .find(|p| p.namespace == namespace && p.name == name)
    }
}

fn peers(cidrs: &[&str]) -> Option<Vec<PolicyPeer>> {
    Some(
        cidrs
            .iter()
            .map(|c| PolicyPeer {
                cidr: c.parse().expect("cidr"),
                except: Vec::new(),
            })
            .collect(),
    )
}

fn tcp(port: u16) -> PolicyPort {
    PolicyPort {
        protocol: PolicyProtocol::Tcp,
        port: Some(port),
        end_port: None,
    }
}

/// Two web pods (one per node), a client in each namespace, a pod that is not a client.
fn cluster() -> Case {
    Case::new()
        .pod(with_port(
            pod(
                "default",
                "web-1",
                "n1",
                "10.42.0.10",
                json!({"app": "web"}),
            ),
            "http",
            8080,
            "TCP",
        ))
        .pod(pod(
            "default",
            "web-2",
            "n2",
            "10.42.1.10",
            json!({"app": "web"}),
        ))
        .pod(pod(
            "default",
            "client",
            "n2",
            "10.42.1.20",
            json!({"role": "client"}),
        ))
        .pod(pod("default", "stranger", "n1", "10.42.0.30", json!({})))
        .pod(pod(
            "other",
            "client",
            "n1",
            "10.42.0.40",
            json!({"role": "client"}),
        ))
}

#[test]
fn no_policy_isolates_nothing() {
    assert!(compile(&cluster().world).is_empty());
}

#[test]
fn deny_all_ingress_isolates_every_pod_of_its_namespace() {
    let case = cluster().policy(
        "default",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    let compiled = compile(&case.world);
    let names = |node: &str| -> Vec<String> {
        compiled[node]
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect()
    };
    assert_eq!(names("n1"), ["default/stranger", "default/web-1"]);
    assert_eq!(names("n2"), ["default/client", "default/web-2"]);
    let web = case.of("default", "web-1").expect("isolated");
    assert_eq!(web.ip, Ipv4Addr::new(10, 42, 0, 10));
    assert_eq!(web.ingress, Some(vec![]));
    assert_eq!(web.egress, None);
    assert_eq!(case.of("other", "client"), None);
}

#[test]
fn pod_selector_peers_are_in_the_policys_namespace() {
    let case = cluster().policy(
        "default",
        "allow-client",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    );
    let rule = PolicyRule {
        peers: peers(&["10.42.1.20/32"]),
        ports: vec![],
    };
    assert_eq!(
        case.of("default", "web-1").unwrap().ingress,
        Some(vec![rule.clone()])
    );
    assert_eq!(
        case.of("default", "web-2").unwrap().ingress,
        Some(vec![rule])
    );
    assert_eq!(case.of("default", "client"), None, "not selected");
}

#[test]
fn namespace_selectors_alone_and_with_pod_selectors() {
    let case = cluster()
        .policy(
            "default",
            "from-team-a",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}),
        )
        .policy(
            "default",
            "clients-anywhere",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"namespaceSelector": {},
                                          "podSelector": {"matchLabels": {"role": "client"}}}]}]}),
        );
    // Policies in name order: clients-anywhere, then from-team-a.
    assert_eq!(
        case.of("default", "web-2").unwrap().ingress,
        Some(vec![
            PolicyRule {
                peers: peers(&["10.42.0.40/32", "10.42.1.20/32"]),
                ports: vec![]
            },
            PolicyRule {
                peers: peers(&["10.42.0.40/32"]),
                ports: vec![]
            },
        ])
    );
}

#[test]
fn ip_blocks_any_peer_and_ports() {
    let case = cluster().policy(
        "default",
        "mixed",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
                      {"ipBlock": {"cidr": "fd00::/8"}}],
             "ports": [{"port": 80, "protocol": "TCP"},
                       {"port": 5000, "endPort": 5010, "protocol": "UDP"},
                       {"protocol": "SCTP"}]},
            {"ports": [{"port": 443}]},
            {}
        ]}),
    );
    assert_eq!(
        case.of("default", "web-2").unwrap().ingress,
        Some(vec![
            PolicyRule {
                peers: Some(vec![PolicyPeer {
                    cidr: "192.168.0.0/16".parse().unwrap(),
                    except: vec!["192.168.1.0/24".parse().unwrap()],
                }]),
                ports: vec![
                    tcp(80),
                    PolicyPort {
                        protocol: PolicyProtocol::Udp,
                        port: Some(5000),
                        end_port: Some(5010)
                    },
                    PolicyPort {
                        protocol: PolicyProtocol::Sctp,
                        port: None,
                        end_port: None
                    },
                ],
            },
            PolicyRule {
                peers: None,
                ports: vec![tcp(443)]
            },
            PolicyRule {
                peers: None,
                ports: vec![]
            },
        ])
    );
}

#[test]
fn named_ingress_ports_resolve_against_the_target() {
    let case = cluster().policy(
        "default",
        "http",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"ports": [{"port": "http"}]}]}),
    );
    // web-1 declares `http` as 8080; web-2 declares nothing: the rule matches nothing there.
    assert_eq!(
        case.of("default", "web-1").unwrap().ingress,
        Some(vec![PolicyRule {
            peers: None,
            ports: vec![tcp(8080)]
        }])
    );
    assert_eq!(case.of("default", "web-2").unwrap().ingress, Some(vec![]));
}

#[test]
fn named_egress_ports_resolve_against_each_peer() {
    let case = cluster()
        .pod(with_port(
            pod(
                "default",
                "web-3",
                "n2",
                "10.42.1.11",
                json!({"app": "web"}),
            ),
            "http",
            9090,
            "TCP",
        ))
        .policy(
            "default",
            "to-web",
            json!({"podSelector": {"matchLabels": {"role": "client"}},
                   "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                               "ports": [{"port": "http"}, {"port": 53, "protocol": "UDP"}]}]}),
        );
    let client = case.of("default", "client").unwrap();
    assert_eq!(client.ingress, None);
    assert_eq!(
        client.egress,
        Some(vec![
            PolicyRule {
                peers: peers(&["10.42.0.10/32", "10.42.1.10/32", "10.42.1.11/32"]),
                ports: vec![PolicyPort {
                    protocol: PolicyProtocol::Udp,
                    port: Some(53),
                    end_port: None
                }],
            },
            PolicyRule {
                peers: peers(&["10.42.0.10/32"]),
                ports: vec![tcp(8080)]
            },
            PolicyRule {
                peers: peers(&["10.42.1.11/32"]),
                ports: vec![tcp(9090)]
            },
        ])
    );
}

#[test]
fn policy_types_are_inferred_and_policies_add_up() {
    let case = cluster()
        .policy(
            "default",
            "a-egress",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{}]}),
        )
        .policy(
            "default",
            "b-web",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"ports": [{"port": 80}]}]}),
        );
    let web = case.of("default", "web-2").unwrap();
    // a-egress: no policyTypes and egress rules: Ingress (deny) and Egress (allow all).
    assert_eq!(
        web.ingress,
        Some(vec![PolicyRule {
            peers: None,
            ports: vec![tcp(80)]
        }])
    );
    assert_eq!(
        web.egress,
        Some(vec![PolicyRule {
            peers: None,
            ports: vec![]
        }])
    );
}

#[test]
fn pods_without_address_host_network_or_finished_are_left_out() {
    let mut no_ip = pod("default", "pending", "n1", "", json!({"role": "client"}));
    no_ip["status"] = json!({"phase": "Pending"});
    let mut host = pod(
        "default",
        "host",
        "n1",
        "192.168.5.1",
        json!({"role": "client"}),
    );
    host["spec"]["hostNetwork"] = json!(true);
    let mut done = pod(
        "default",
        "done",
        "n1",
        "10.42.0.50",
        json!({"role": "client"}),
    );
    done["status"]["phase"] = json!("Succeeded");
    let case = cluster().pod(no_ip).pod(host).pod(done).policy(
        "default",
        "all",
        json!({"podSelector": {},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}),
    );
    for name in ["pending", "host", "done"] {
        assert_eq!(case.of("default", name), None, "{name} is no target");
    }
    assert_eq!(
        case.of("default", "web-1").unwrap().ingress,
        Some(vec![PolicyRule {
            peers: peers(&["10.42.1.20/32"]),
            ports: vec![]
        }])
    );
}

#[test]
fn a_selector_that_selects_nobody_admits_nobody() {
    let case = cluster().policy(
        "default",
        "nobody",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "ghost"}}}]}]}),
    );
    assert_eq!(
        case.of("default", "web-1").unwrap().ingress,
        Some(vec![PolicyRule {
            peers: Some(vec![]),
            ports: vec![]
        }])
    );
}

#[test]
fn relists_replace_a_kind() {
    let mut world = cluster()
        .policy("default", "deny", json!({"podSelector": {}}))
        .world;
    let mut listing = Listing::default();
    assert_eq!(
        fold(
            &mut world,
            &mut listing,
            Change::Policy(Box::new(watcher::Event::Init))
        ),
        Folded::Nothing
    );
    assert_eq!(
        fold(
            &mut world,
            &mut listing,
            Change::Policy(Box::new(watcher::Event::InitDone))
        ),
        Folded::Listed("networkpolicies")
    );
    assert!(compile(&world).is_empty(), "the relist had no policy");
}

#[test]
fn only_what_the_compiler_reads_counts_as_a_change() {
    let mut world = cluster().world;
    let mut listing = Listing::default();
    let mut web: Pod = serde_json::from_value(pod(
        "default",
        "web-2",
        "n2",
        "10.42.1.10",
        json!({"app": "web"}),
    ))
    .expect("pod");
    let mut fold_pod = |world: &mut World, pod: &Pod| {
        fold(
            world,
            &mut listing,
            Change::Pod(Box::new(watcher::Event::Apply(pod.clone()))),
        )
    };
    // A condition flipping (readiness) changes nothing the compiler reads.
    web.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(
        json!({"type": "Ready", "status": "False"}),
    )
    .unwrap()]);
    assert_eq!(fold_pod(&mut world, &web), Folded::Nothing);
    // A label does.
    web.metadata.labels = Some([("app".to_string(), "api".to_string())].into());
    assert_eq!(fold_pod(&mut world, &web), Folded::Changed);
}
