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
        if internal.is_empty() {
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
    let elements = d.maps.entry(map).or_default();
    // A key claimed in one map must not be claimed in its no-endpoint twin either.
    let twin = match map {
        SERVICE_IPS => NO_ENDPOINT_SERVICES,
        NO_ENDPOINT_SERVICES => SERVICE_IPS,
        SERVICE_NODEPORTS => NO_ENDPOINT_NODEPORTS,
        _ => SERVICE_NODEPORTS,
    };
    let taken =
        elements.contains_key(&key) || d.maps.get(twin).is_some_and(|m| m.contains_key(&key));
    if taken {
        d.skipped += 1;
        tracing::warn!(
            service = %p.svc.key,
            destination = %key,
            "skipping a destination another Service already uses"
        );
        return;
    }
    d.maps
        .entry(map)
        .or_default()
        .insert(key, verdict.to_string());
}
