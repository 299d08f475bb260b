//! From the cluster's Services to the proxy's wanted nftables objects ([`Desired`]): which
//! chains with which rules, which affinity sets, which map elements. Pure (no IO), so the
//! rendering is unit-tested without nftables.
//!
//! The layout follows upstream's nftables kube-proxy (pkg/proxy/nftables/proxier.go), IPv4
//! only, per Service port:
//! - `svc-…` (internal entry): masquerade mark for cluster-IP traffic from outside the cluster
//!   CIDR, then random balancing (numgen) over the internal endpoints (ready ones, or serving
//!   and terminating ones when none is ready; only this node's with `internalTrafficPolicy:
//!   Local`), sticky per client address with `sessionAffinity: ClientIP`.
//! - `clu-…`: balancing over all endpoints, only when `svc-…` is local-only and external
//!   traffic needs the cluster-wide set.
//! - `ext-…` (node ports, external and load-balancer IPs): `externalTrafficPolicy: Cluster`
//!   masquerades and balances cluster-wide; `Local` balances over this node's endpoints and
//!   keeps the client address (pods and the node itself still go cluster-wide, as upstream).
//! - `ep-…` per endpoint: hairpin masquerade mark, affinity set update, DNAT.
//!
//! Every value of a summary is parsed here (addresses, ports, protocols); a bad one is skipped
//! with a warning naming the Service, and never reaches the nft script, so one Service can
//! neither inject rules nor make the transaction of the others fail.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use skiff_link_proto::proto::service::{
    EndpointSummary, ServicePortSummary, ServiceSummary, ServiceType,
};

/// The mark bit of packets to masquerade (upstream's 0x4000).
pub(crate) const MASQ_MARK: u32 = 0x4000;

/// Map of (cluster, external or load-balancer IP, protocol, port) to the Service's chain.
pub(crate) const SERVICE_IPS: &str = "service-ips";
/// Map of (protocol, node port) to the Service's external chain.
pub(crate) const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Map of (IP, protocol, port) of Services without endpoints to reject or drop.
pub(crate) const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Map of (protocol, node port) of Services without endpoints to reject or drop.
pub(crate) const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// The maps, in the order the base table declares them.
pub(crate) const MAPS: [&str; 4] = [
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    NO_ENDPOINT_SERVICES,
    NO_ENDPOINT_NODEPORTS,
];

/// What the plan is made for (fixed for a node).
#[derive(Debug, Clone)]
pub(crate) struct PlanInput<'a> {
    pub node_name: &'a str,
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// Service addresses this node answers itself: never DNATed.
    pub local_ips: &'a BTreeSet<Ipv4Addr>,
}

/// The per-Service nftables objects the proxy wants (the base table is fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    /// Chain name → its rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name → timeout in seconds.
    pub sets: BTreeMap<String, u32>,
    /// Map name → element key → verdict.
    pub maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Services with at least one proxied port.
    pub services: usize,
    /// Values skipped as invalid or conflicting (each logged).
    pub skipped: usize,
}

/// An nftables L4 protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" | "" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One usable endpoint of one Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ep {
    ip: Ipv4Addr,
    port: u16,
    local: bool,
}

/// FNV-1a, 32 bits: a short stable tag that keeps names of different Services apart after
/// their readable part is sanitized and truncated.
fn tag(text: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Only characters nft accepts in an unquoted identifier, and nothing that could end one.
fn safe(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(max)
        .collect()
}

/// Builds the wanted objects for `services`.
pub(crate) fn build(services: &[ServiceSummary], input: &PlanInput<'_>) -> Desired {
    let mut d = Desired::default();
    for map in MAPS {
        d.maps.insert(map, BTreeMap::new());
    }
    for svc in services {
        let before = d.chains.len() + d.maps.values().map(BTreeMap::len).sum::<usize>();
        add_service(&mut d, svc, input);
        let after = d.chains.len() + d.maps.values().map(BTreeMap::len).sum::<usize>();
        if after > before {
            d.services += 1;
        }
    }
    d
}

/// Parses an address list, keeping IPv4 ones; warns about unparsable entries.
fn ipv4s(d: &mut Desired, svc: &ServiceSummary, field: &str, values: &[String]) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for v in values {
        match v.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !ip.is_unspecified() && !ip.is_loopback() => out.push(ip),
            Ok(IpAddr::V6(_)) => {
                tracing::debug!(service = %svc.key, field, value = %v, "IPv6 is not proxied")
            }
            _ => {
                d.skipped += 1;
                tracing::warn!(service = %svc.key, field, value = %v, "skipping an invalid address");
            }
        }
    }
    out
}

fn add_service(d: &mut Desired, svc: &ServiceSummary, input: &PlanInput<'_>) {
    if svc.headless || svc.service_type == ServiceType::ExternalName {
        return;
    }
    let mut cluster_ips = ipv4s(d, svc, "clusterIPs", &svc.cluster_ips);
    cluster_ips.retain(|ip| {
        if input.local_ips.contains(ip) {
            return false; // answered by this node itself (the cluster DNS address)
        }
        let inside = input.service_cidr.contains(ip);
        if !inside {
            d.skipped += 1;
            tracing::warn!(
                service = %svc.key,
                cluster_ip = %ip,
                service_cidr = %input.service_cidr,
                "skipping a cluster IP outside the service CIDR"
            );
        }
        inside
    });
    let cluster_ip = cluster_ips.first().copied();
    let mut external_ips = ipv4s(d, svc, "externalIPs", &svc.external_ips);
    if svc.service_type == ServiceType::LoadBalancer {
        external_ips.extend(ipv4s(d, svc, "status.loadBalancer", &svc.load_balancer_ips));
    }
    external_ips.retain(|ip| !input.local_ips.contains(ip));
    external_ips.sort();
    external_ips.dedup();
    let node_ports = matches!(
        svc.service_type,
        ServiceType::NodePort | ServiceType::LoadBalancer
    );
    let affinity = svc.session_affinity_seconds.map(|s| s.clamp(1, 86_400));

    let mut seen_ports = BTreeSet::new();
    for port in &svc.ports {
        let Some(proto) = Proto::parse(&port.protocol) else {
            d.skipped += 1;
            tracing::warn!(service = %svc.key, protocol = %port.protocol, "skipping a port with an unknown protocol");
            continue;
        };
        if port.port == 0 || !seen_ports.insert((port.port, proto.nft())) {
            d.skipped += 1;
            tracing::warn!(service = %svc.key, port = port.port, "skipping an invalid or repeated port");
            continue;
        }
        let node_port = match port.node_port.filter(|_| node_ports) {
            Some(0) => {
                d.skipped += 1;
                tracing::warn!(service = %svc.key, port = port.port, "skipping node port 0");
                None
            }
            other => other,
        };
        let ports = PortInput {
            svc,
            port,
            proto,
            cluster_ip,
            external_ips: &external_ips,
            node_port,
            affinity,
        };
        add_port(d, &ports, input);
    }
}

struct PortInput<'a> {
    svc: &'a ServiceSummary,
    port: &'a ServicePortSummary,
    proto: Proto,
    cluster_ip: Option<Ipv4Addr>,
    external_ips: &'a [Ipv4Addr],
    node_port: Option<u16>,
    affinity: Option<u32>,
}

/// The endpoints of one port: (all usable, this node's), upstream's ready-else-terminating
/// choice applied to each.
fn endpoints(d: &mut Desired, p: &PortInput<'_>, node_name: &str) -> (Vec<Ep>, Vec<Ep>) {
    let mut usable: Vec<(Ep, &EndpointSummary)> = Vec::new();
    for e in &p.svc.endpoints {
        let Some(target) = ServiceSummary::target_port(e, p.port) else {
            continue;
        };
        let Some(addr) = e.addresses.first() else {
            continue;
        };
        let ip = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !ip.is_unspecified() && !ip.is_loopback() && target != 0 => ip,
            Ok(IpAddr::V6(_)) => continue,
            _ => {
                d.skipped += 1;
                tracing::warn!(service = %p.svc.key, address = %addr, port = target, "skipping an invalid endpoint");
                continue;
            }
        };
        let local = e.node_name.as_deref() == Some(node_name);
        usable.push((
            Ep {
                ip,
                port: target,
                local,
            },
            e,
        ));
    }
    let pick = |only_local: bool| -> Vec<Ep> {
        let candidates = usable.iter().filter(|(ep, _)| !only_local || ep.local);
        let ready: BTreeSet<Ep> = candidates
            .clone()
            .filter(|(_, e)| e.ready)
            .map(|(ep, _)| ep.clone())
            .collect();
        let chosen = if ready.is_empty() {
            candidates
                .filter(|(_, e)| e.serving && e.terminating)
                .map(|(ep, _)| ep.clone())
                .collect()
        } else {
            ready
        };
        chosen.into_iter().collect()
    };
    (pick(false), pick(true))
}

fn add_port(d: &mut Desired, p: &PortInput<'_>, input: &PlanInput<'_>) {
    let proto = p.proto.nft();
    let port_label = if p.port.name.is_empty() {
        p.port.port.to_string()
    } else {
        safe(&p.port.name, 15)
    };
    let identity = format!(
        "{}/{}/{}/{}",
        p.svc.key.namespace, p.svc.key.name, proto, p.port.port
    );
    let base = format!(
        "{}-{}/{}/{}/{}",
        tag(&identity),
        safe(&p.svc.key.namespace, 63),
        safe(&p.svc.key.name, 63),
        proto,
        port_label
    );
    let svc_chain = format!("svc-{base}");
    let (all, local) = endpoints(d, p, input.node_name);
    let internal = if p.svc.internal_traffic_local {
        &local
    } else {
        &all
    };
    let external_wanted = p.node_port.is_some() || !p.external_ips.is_empty();
    let ep_chain = |ep: &Ep| format!("ep-{base}__{}/{}", ep.ip, ep.port);
    // The timeout is part of the name: a changed timeout is a new set, never an in-place
    // change nft cannot make.
    let aff_set = |ep: &Ep| {
        format!(
            "aff-{base}__{}/{}/{}",
            ep.ip,
            ep.port,
            p.affinity.unwrap_or_default()
        )
    };

    let mut used: BTreeSet<Ep> = BTreeSet::new();
    let balance = |eps: &[Ep]| -> Vec<String> {
        let mut rules = Vec::new();
        if p.affinity.is_some() {
            for ep in eps {
                rules.push(format!("ip saddr @{} goto {}", aff_set(ep), ep_chain(ep)));
            }
        }
        match eps {
            [] => {}
            [one] => rules.push(format!("goto {}", ep_chain(one))),
            many => {
                let arms: Vec<String> = many
                    .iter()
                    .enumerate()
                    .map(|(i, ep)| format!("{i} : goto {}", ep_chain(ep)))
                    .collect();
                rules.push(format!(
                    "numgen random mod {} vmap {{ {} }}",
                    many.len(),
                    arms.join(", ")
                ));
            }
        }
        rules
    };

    // Internal traffic: the cluster IP.
    let no_endpoints = if all.is_empty() {
        "goto reject-chain"
    } else {
        "drop"
    };
    if let Some(cip) = p.cluster_ip {
        let key = format!("{cip} . {proto} . {}", p.port.port);
        if !key_free(d, SERVICE_IPS, &key, p) {
            // Another Service's address and port: none of this one's rules for it.
        } else if internal.is_empty() {
            insert_element(d, NO_ENDPOINT_SERVICES, key, no_endpoints, p);
        } else {
            let mut rules = vec![format!(
                "ip daddr {cip} {proto} dport {} ip saddr != {} jump mark-for-masquerade",
                p.port.port, input.cluster_cidr
            )];
            rules.extend(balance(internal));
            used.extend(internal.iter().cloned());
            d.chains.insert(svc_chain.clone(), rules);
            insert_element(d, SERVICE_IPS, key, &format!("goto {svc_chain}"), p);
        }
    }

    // External traffic: node ports, external and load-balancer IPs.
    if external_wanted {
        let external = if p.svc.external_traffic_local {
            &local
        } else {
            &all
        };
        let verdict = if external.is_empty() {
            None
        } else {
            // The chain balancing over every endpoint.
            let cluster_chain =
                if !p.svc.internal_traffic_local && d.chains.contains_key(&svc_chain) {
                    svc_chain.clone()
                } else {
                    let chain = format!("clu-{base}");
                    d.chains.insert(chain.clone(), balance(&all));
                    used.extend(all.iter().cloned());
                    chain
                };
            let ext_chain = format!("ext-{base}");
            let mut rules = Vec::new();
            if p.svc.external_traffic_local {
                // Pods and the node itself reach external destinations cluster-wide.
                rules.push(format!(
                    "ip saddr {} goto {cluster_chain}",
                    input.cluster_cidr
                ));
                rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                rules.push(format!("fib saddr type local goto {cluster_chain}"));
                rules.extend(balance(&local));
                used.extend(local.iter().cloned());
            } else {
                rules.push("jump mark-for-masquerade".to_string());
                rules.push(format!("goto {cluster_chain}"));
            }
            d.chains.insert(ext_chain.clone(), rules);
            Some(format!("goto {ext_chain}"))
        };
        for ip in p.external_ips {
            let key = format!("{ip} . {proto} . {}", p.port.port);
            match &verdict {
                Some(v) => insert_element(d, SERVICE_IPS, key, v, p),
                None => insert_element(d, NO_ENDPOINT_SERVICES, key, no_endpoints, p),
            }
        }
        if let Some(np) = p.node_port {
            let key = format!("{proto} . {np}");
            match &verdict {
                Some(v) => insert_element(d, SERVICE_NODEPORTS, key, v, p),
                None => insert_element(d, NO_ENDPOINT_NODEPORTS, key, no_endpoints, p),
            }
        }
    }

    for ep in used {
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
        if let Some(seconds) = p.affinity {
            let set = aff_set(&ep);
            rules.push(format!("update @{set} {{ ip saddr }}"));
            d.sets.insert(set, seconds);
        }
        rules.push(format!(
            "meta l4proto {proto} dnat ip to {}:{}",
            ep.ip, ep.port
        ));
        d.chains.insert(ep_chain(&ep), rules);
    }
}

/// Adds a map element unless another Service already holds the key (first one wins; a
/// duplicate key would make the whole nft transaction fail).
fn insert_element(
    d: &mut Desired,
    map: &'static str,
    key: String,
    verdict: &str,
    p: &PortInput<'_>,
) {
    if key_free(d, map, &key, p) {
        d.maps
            .entry(map)
            .or_default()
            .insert(key, verdict.to_string());
    }
}

/// Whether no Service holds `key` in `map` or its no-endpoint twin yet; counts and logs the
/// conflict otherwise.
fn key_free(d: &mut Desired, map: &'static str, key: &str, p: &PortInput<'_>) -> bool {
    let twin = match map {
        SERVICE_IPS => NO_ENDPOINT_SERVICES,
        NO_ENDPOINT_SERVICES => SERVICE_IPS,
        SERVICE_NODEPORTS => NO_ENDPOINT_NODEPORTS,
        _ => SERVICE_NODEPORTS,
    };
    let taken = [map, twin]
        .iter()
        .any(|m| d.maps.get(m).is_some_and(|m| m.contains_key(key)));
    if taken {
        d.skipped += 1;
        tracing::warn!(
            service = %p.svc.key,
            destination = %key,
            "skipping a destination another Service already uses"
        );
    }
    !taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_link_proto::proto::service::{EndpointPortSummary, ServiceKey};

    fn ep(ip: &str, node: &str, ready: bool, terminating: bool) -> EndpointSummary {
        EndpointSummary {
            addresses: vec![ip.into()],
            node_name: Some(node.into()),
            ready,
            serving: ready || terminating,
            terminating,
            ports: vec![EndpointPortSummary {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 8080,
            }],
            ..Default::default()
        }
    }

    fn svc(name: &str, ip: &str, endpoints: Vec<EndpointSummary>) -> ServiceSummary {
        ServiceSummary {
            key: ServiceKey {
                namespace: "default".into(),
                name: name.into(),
            },
            cluster_ips: vec![ip.into()],
            ports: vec![ServicePortSummary {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80,
                node_port: Some(30080),
            }],
            endpoints,
            ..Default::default()
        }
    }

    fn plan(services: &[ServiceSummary]) -> Desired {
        let local_ips = [Ipv4Addr::new(10, 43, 0, 10)].into_iter().collect();
        build(
            services,
            &PlanInput {
                node_name: "node-a",
                cluster_cidr: "10.42.0.0/16".parse().unwrap(),
                service_cidr: "10.43.0.0/16".parse().unwrap(),
                local_ips: &local_ips,
            },
        )
    }

    fn chain<'a>(d: &'a Desired, prefix: &str) -> &'a Vec<String> {
        d.chains
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no chain {prefix}* in {:#?}", d.chains))
    }

    #[test]
    fn cluster_ip_balances_over_ready_endpoints_and_masquerades_outsiders() {
        let d = plan(&[svc(
            "web",
            "10.43.0.20",
            vec![
                ep("10.42.1.5", "node-a", true, false),
                ep("10.42.2.5", "node-b", true, false),
                ep("10.42.2.6", "node-b", false, true),
            ],
        )]);
        let rules = chain(&d, "svc-");
        assert_eq!(
            rules[0],
            "ip daddr 10.43.0.20 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade"
        );
        assert!(
            rules[1].starts_with("numgen random mod 2 vmap { 0 : goto ep-"),
            "{rules:?}"
        );
        assert!(
            !rules[1].contains("10.42.2.6"),
            "terminating while others are ready"
        );
        let ep_rules = d
            .chains
            .iter()
            .find(|(n, _)| n.ends_with("__10.42.1.5/8080"))
            .unwrap()
            .1;
        assert_eq!(
            ep_rules,
            &vec![
                "ip saddr 10.42.1.5 jump mark-for-masquerade".to_string(),
                "meta l4proto tcp dnat ip to 10.42.1.5:8080".to_string()
            ]
        );
        let key = "10.43.0.20 . tcp . 80";
        assert!(d.maps[SERVICE_IPS][key].starts_with("goto svc-"));
        // A ClusterIP Service has no node port even if the summary names one.
        assert!(d.maps[SERVICE_NODEPORTS].is_empty());
    }

    #[test]
    fn terminating_serving_endpoints_are_used_when_none_is_ready() {
        let d = plan(&[svc(
            "web",
            "10.43.0.20",
            vec![
                ep("10.42.2.6", "node-b", false, true),
                ep("10.42.2.7", "node-b", false, false),
            ],
        )]);
        assert_eq!(
            chain(&d, "svc-")[1],
            format!(
                "goto {}",
                d.chains.keys().find(|n| n.contains("10.42.2.6")).unwrap()
            )
        );
        assert!(!d.chains.keys().any(|n| n.contains("10.42.2.7")));
    }

    #[test]
    fn no_endpoints_reject_and_local_policies_drop() {
        let mut empty = svc("empty", "10.43.0.21", vec![]);
        empty.service_type = ServiceType::NodePort;
        let mut itp = svc(
            "itp",
            "10.43.0.22",
            vec![ep("10.42.2.5", "node-b", true, false)],
        );
        itp.internal_traffic_local = true;
        let mut etp = svc(
            "etp",
            "10.43.0.23",
            vec![ep("10.42.2.5", "node-b", true, false)],
        );
        etp.service_type = ServiceType::LoadBalancer;
        etp.ports[0].node_port = Some(30081);
        etp.load_balancer_ips = vec!["192.0.2.7".into()];
        etp.external_traffic_local = true;
        let d = plan(&[empty, itp, etp]);
        let none = &d.maps[NO_ENDPOINT_SERVICES];
        assert_eq!(none["10.43.0.21 . tcp . 80"], "goto reject-chain");
        assert_eq!(
            d.maps[NO_ENDPOINT_NODEPORTS]["tcp . 30080"],
            "goto reject-chain"
        );
        assert_eq!(
            none["10.43.0.22 . tcp . 80"], "drop",
            "ITP Local, none here"
        );
        assert_eq!(none["192.0.2.7 . tcp . 80"], "drop", "ETP Local, none here");
        assert_eq!(d.maps[NO_ENDPOINT_NODEPORTS]["tcp . 30081"], "drop");
        // Internal traffic of the ETP Local Service still goes cluster-wide.
        assert!(d.maps[SERVICE_IPS].contains_key("10.43.0.23 . tcp . 80"));
    }

    #[test]
    fn external_traffic_local_keeps_the_client_and_node_port_cluster_masquerades() {
        let mut s = svc(
            "etp",
            "10.43.0.23",
            vec![
                ep("10.42.1.5", "node-a", true, false),
                ep("10.42.2.5", "node-b", true, false),
            ],
        );
        s.service_type = ServiceType::NodePort;
        s.external_traffic_local = true;
        let d = plan(&[s.clone()]);
        let ext = chain(&d, "ext-");
        assert!(
            ext[0].starts_with("ip saddr 10.42.0.0/16 goto svc-"),
            "{ext:?}"
        );
        assert_eq!(ext[1], "fib saddr type local jump mark-for-masquerade");
        assert!(
            ext[3].starts_with("goto ep-") && ext[3].contains("10.42.1.5"),
            "{ext:?}"
        );
        assert!(!ext.iter().any(|r| r == "jump mark-for-masquerade"));
        s.external_traffic_local = false;
        let d = plan(&[s]);
        let ext = chain(&d, "ext-");
        assert_eq!(ext[0], "jump mark-for-masquerade");
        assert!(ext[1].starts_with("goto svc-"));
    }

    #[test]
    fn client_ip_affinity_uses_a_timed_set_per_endpoint() {
        let mut s = svc(
            "sticky",
            "10.43.0.24",
            vec![
                ep("10.42.1.5", "node-a", true, false),
                ep("10.42.2.5", "node-b", true, false),
            ],
        );
        s.session_affinity_seconds = Some(600);
        let d = plan(&[s]);
        assert_eq!(d.sets.len(), 2);
        assert!(d.sets.values().all(|t| *t == 600));
        let rules = chain(&d, "svc-");
        assert!(rules[1].starts_with("ip saddr @aff-") && rules[1].contains(" goto ep-"));
        assert!(rules[3].starts_with("numgen random mod 2"));
        let (name, _) = d.sets.iter().next().unwrap();
        let ep_chain = name.replacen("aff-", "ep-", 1);
        let ep_chain = ep_chain.rsplit_once('/').unwrap().0;
        assert!(d.chains[ep_chain].contains(&format!("update @{name} {{ ip saddr }}")));
    }

    #[test]
    fn bad_values_are_skipped_and_never_reach_the_rules() {
        let mut s = svc(
            "web",
            "10.43.0.20",
            vec![
                ep("10.42.1.5\"; flush ruleset", "node-a", true, false),
                ep("10.42.1.6", "node-a", true, false),
            ],
        );
        s.external_ips = vec!["1.2.3.4 } drop".into(), "::1".into()];
        s.ports.push(ServicePortSummary {
            name: "x".into(),
            protocol: "ICMP".into(),
            port: 1,
            node_port: None,
        });
        s.ports.push(ServicePortSummary {
            name: "y".into(),
            protocol: "UDP".into(),
            port: 0,
            node_port: None,
        });
        let weird = ServiceSummary {
            key: ServiceKey {
                namespace: "a\" }; flush ruleset; #".into(),
                name: "b c".into(),
            },
            ..svc(
                "",
                "10.43.0.30",
                vec![ep("10.42.1.6", "node-a", true, false)],
            )
        };
        let outside = svc(
            "outside",
            "192.168.1.1",
            vec![ep("10.42.1.6", "node-a", true, false)],
        );
        let thief = svc(
            "thief",
            "10.43.0.20",
            vec![ep("10.42.1.6", "node-a", true, false)],
        );
        let d = plan(&[s, weird, outside, thief]);
        assert_eq!(
            d.skipped, 6,
            "endpoint, external IP, protocol, port 0, outside CIDR, duplicate"
        );
        assert_eq!(d.services, 2);
        let texts = d
            .chains
            .iter()
            .flat_map(|(n, rules)| std::iter::once(n).chain(rules))
            .chain(d.maps.values().flat_map(|m| m.keys().chain(m.values())));
        for text in texts {
            assert!(
                !text.contains(['"', ';', '#']) && !text.contains("flush ruleset"),
                "{text}"
            );
            assert!(!text.contains("1.2.3.4"), "{text}");
        }
        assert!(d.chains.keys().all(|n| n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-./_".contains(c))));
    }

    #[test]
    fn local_headless_and_external_name_services_get_nothing() {
        let dns = svc(
            "kube-dns",
            "10.43.0.10",
            vec![ep("10.42.1.5", "node-a", true, false)],
        );
        let mut headless = svc("h", "None", vec![ep("10.42.1.5", "node-a", true, false)]);
        headless.headless = true;
        headless.cluster_ips.clear();
        let mut alias = svc("alias", "", vec![]);
        alias.service_type = ServiceType::ExternalName;
        alias.cluster_ips.clear();
        let d = plan(&[dns, headless, alias]);
        assert!(
            d.chains.is_empty() && d.maps.values().all(BTreeMap::is_empty),
            "{d:#?}"
        );
        assert_eq!((d.services, d.skipped), (0, 0));
    }
}
