//! From the node's [`PodPolicy`] list to the enforcer's wanted nftables objects ([`Desired`]):
//! one chain per isolated pod and direction (`in-…` judges connections towards the pod,
//! `out-…` connections it opens), and the verdict-map elements that send a pod's traffic to
//! its chain. Pure (no IO), so the rendering is unit-tested without nftables.
//!
//! A chain `return`s what one of the pod's rules allows (the packet goes on to the other
//! side's check) and ends with `drop`. A rule becomes one nft rule per protocol it names:
//! its peers as one anonymous interval set (the union of every peer's CIDR minus its
//! exceptions, computed here, so `except` needs no negation and overlapping peers need no
//! care from nft), its ports as another.
//!
//! Every value is checked here; a bad one is dropped with a warning naming the pod, and the
//! drop never widens what a pod admits: a rule whose every port is bad, or whose peer list
//! is too large to load, is removed (allows nothing) rather than left to match every port or
//! address; two entries for one address that disagree about a direction deny that direction.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use skiff_link_proto::proto::policy::{
    PodPolicy, PolicyPeer, PolicyPort, PolicyProtocol, PolicyRule,
};

/// Map of local pod address → jump to its ingress chain.
pub(crate) const INGRESS_MAP: &str = "ingress";
/// Map of local pod address → jump to its egress chain.
pub(crate) const EGRESS_MAP: &str = "egress";

/// Most address ranges one rule may hold once its peers are merged: beyond that the rule is
/// dropped (a peer list that large is a compiler bug or an attack, and would make every sync
/// of the node slow).
pub(crate) const MAX_RANGES_PER_RULE: usize = 4096;
/// Most peers plus exceptions one rule may list before any work is done on them.
pub(crate) const MAX_PEER_ENTRIES_PER_RULE: usize = 65536;

/// What the plan is made for (fixed for a node).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanInput {
    /// The node's pod CIDR: a policy for an address outside it cannot be a local pod's.
    pub pod_cidr: Ipv4Net,
}

/// The per-pod nftables objects the enforcer wants (the base tables are fixed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    /// Chain name → its rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Named sets (none so far: peers are anonymous sets inside the rules).
    pub sets: BTreeMap<String, String>,
    /// Map name → element key → verdict.
    pub maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    /// Pods isolated in at least one direction.
    pub pods: usize,
    /// Values dropped as invalid or conflicting (each logged with its pod).
    pub skipped: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn chain_prefix(self) -> &'static str {
        match self {
            Direction::Ingress => "in",
            Direction::Egress => "out",
        }
    }

    /// The address field naming the other side.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "ip saddr",
            Direction::Egress => "ip daddr",
        }
    }

    fn map(self) -> &'static str {
        match self {
            Direction::Ingress => INGRESS_MAP,
            Direction::Egress => EGRESS_MAP,
        }
    }
}

/// One local pod's policy after duplicates are folded.
struct Entry {
    who: String,
    ingress: Option<Vec<PolicyRule>>,
    egress: Option<Vec<PolicyRule>>,
}

/// Builds the objects for `pods`.
pub(crate) fn build(pods: &[PodPolicy], input: &PlanInput) -> Desired {
    let mut desired = Desired::default();
    let mut entries: BTreeMap<Ipv4Addr, Entry> = BTreeMap::new();
    for pod in pods {
        let who = format!("{}/{}", pod.namespace, pod.name);
        if !input.pod_cidr.contains(&pod.ip) {
            tracing::warn!(pod = %who, ip = %pod.ip, pod_cidr = %input.pod_cidr,
                "NetworkPolicy for an address outside this node's pod CIDR ignored");
            desired.skipped += 1;
            continue;
        }
        match entries.get_mut(&pod.ip) {
            None => {
                entries.insert(
                    pod.ip,
                    Entry {
                        who,
                        ingress: pod.ingress.clone(),
                        egress: pod.egress.clone(),
                    },
                );
            }
            Some(first) => {
                // Two pods cannot hold one address; the list is wrong about one of them.
                // Whatever the entries agree on stands; where they differ, deny.
                tracing::warn!(pod = %who, other = %first.who, ip = %pod.ip,
                    "two NetworkPolicy entries for one address; denying where they differ");
                desired.skipped += 1;
                if first.ingress != pod.ingress {
                    first.ingress = Some(Vec::new());
                }
                if first.egress != pod.egress {
                    first.egress = Some(Vec::new());
                }
            }
        }
    }
    for (ip, entry) in &entries {
        let mut isolated = false;
        for (dir, rules) in [
            (Direction::Ingress, &entry.ingress),
            (Direction::Egress, &entry.egress),
        ] {
            let Some(rules) = rules else { continue };
            isolated = true;
            let chain = chain_name(dir, *ip);
            let body = pod_chain(dir, *ip, &entry.who, rules, &mut desired.skipped);
            desired
                .maps
                .entry(dir.map())
                .or_default()
                .insert(ip.to_string(), format!("jump {chain}"));
            desired.chains.insert(chain, body);
        }
        if isolated {
            desired.pods += 1;
        }
    }
    desired
}

/// `in-10-42-1-5`: the address keeps names unique and stable, and needs no sanitizing.
fn chain_name(dir: Direction, ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}-{}-{}-{}-{}", dir.chain_prefix(), o[0], o[1], o[2], o[3])
}

/// Only characters that cannot end or escape an nft string.
fn comment(who: &str, dir: Direction) -> String {
    let safe: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        .take(100)
        .collect();
    format!("comment \"{safe} {}\"", dir.name())
}

/// The rules of one pod's chain for one direction.
fn pod_chain(
    dir: Direction,
    ip: Ipv4Addr,
    who: &str,
    rules: &[PolicyRule],
    skipped: &mut usize,
) -> Vec<String> {
    // A pod reaching itself through a Service (hairpin) is not policed, as loopback is not.
    let mut out = vec![format!("{} {ip} return", dir.peer_field())];
    for (index, rule) in rules.iter().enumerate() {
        out.extend(compile_rule(dir, who, index, rule, skipped));
    }
    out.push(format!("drop {}", comment(who, dir)));
    out
}

/// The nft rules (`… return`) of one policy rule; none if it matches nothing.
fn compile_rule(
    dir: Direction,
    who: &str,
    index: usize,
    rule: &PolicyRule,
    skipped: &mut usize,
) -> Vec<String> {
    let peers = match &rule.peers {
        None => String::new(),
        Some(peers) => {
            let entries: usize = peers.iter().map(|p| 1 + p.except.len()).sum();
            if entries > MAX_PEER_ENTRIES_PER_RULE {
                tracing::warn!(pod = %who, direction = dir.name(), rule = index, entries,
                    limit = MAX_PEER_ENTRIES_PER_RULE,
                    "NetworkPolicy rule with too many peers dropped (it allows nothing)");
                *skipped += 1;
                return Vec::new();
            }
            let ranges = peer_ranges(peers);
            if ranges.is_empty() {
                // Selectors that select nothing: the rule allows nothing.
                return Vec::new();
            }
            if ranges.len() > MAX_RANGES_PER_RULE {
                tracing::warn!(pod = %who, direction = dir.name(), rule = index,
                    ranges = ranges.len(), limit = MAX_RANGES_PER_RULE,
                    "NetworkPolicy rule with too many address ranges dropped (it allows nothing)");
                *skipped += 1;
                return Vec::new();
            }
            let items: Vec<String> = ranges.iter().map(|r| render_range(*r)).collect();
            format!("{} {{ {} }} ", dir.peer_field(), items.join(", "))
        }
    };
    let ports = if rule.ports.is_empty() {
        vec![String::new()]
    } else {
        let clauses = port_clauses(dir, who, index, &rule.ports, skipped);
        if clauses.is_empty() {
            tracing::warn!(pod = %who, direction = dir.name(), rule = index,
                "NetworkPolicy rule without a valid port dropped (it allows nothing)");
            *skipped += 1;
            return Vec::new();
        }
        clauses
    };
    ports
        .into_iter()
        .map(|p| format!("{peers}{p}return"))
        .collect()
}

/// One match per protocol: `meta l4proto udp ` (every port) or `tcp dport { 80, 8000-8080 } `.
fn port_clauses(
    dir: Direction,
    who: &str,
    index: usize,
    ports: &[PolicyPort],
    skipped: &mut usize,
) -> Vec<String> {
    // Protocol → port ranges; `None`: every port.
    let mut by_proto: BTreeMap<PolicyProtocol, Option<Vec<(u32, u32)>>> = BTreeMap::new();
    for port in ports {
        let range = match (port.port, port.end_port) {
            (None, None) => None,
            (Some(p), None) if p > 0 => Some((u32::from(p), u32::from(p))),
            (Some(p), Some(e)) if p > 0 && e >= p => Some((u32::from(p), u32::from(e))),
            _ => {
                tracing::warn!(pod = %who, direction = dir.name(), rule = index,
                    port = ?port.port, end_port = ?port.end_port,
                    "invalid NetworkPolicy port dropped");
                *skipped += 1;
                continue;
            }
        };
        let slot = by_proto
            .entry(port.protocol)
            .or_insert_with(|| Some(Vec::new()));
        match (slot.as_mut(), range) {
            (Some(list), Some(r)) => list.push(r),
            (_, None) => *slot = None,
            (None, Some(_)) => {}
        }
    }
    by_proto
        .into_iter()
        .map(|(proto, ranges)| {
            let name = match proto {
                PolicyProtocol::Tcp => "tcp",
                PolicyProtocol::Udp => "udp",
                PolicyProtocol::Sctp => "sctp",
            };
            match ranges {
                None => format!("meta l4proto {name} "),
                Some(ranges) => {
                    let items: Vec<String> = merge(ranges)
                        .into_iter()
                        .map(|(a, b)| {
                            if a == b {
                                a.to_string()
                            } else {
                                format!("{a}-{b}")
                            }
                        })
                        .collect();
                    format!("{name} dport {{ {} }} ", items.join(", "))
                }
            }
        })
        .collect()
}

/// Sorted, disjoint, non-adjacent ranges covering the same values as `ranges`.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn net_range(net: &Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

/// The addresses `peers` match: every peer's CIDR minus its exceptions, as merged ranges.
fn peer_ranges(peers: &[PolicyPeer]) -> Vec<(u32, u32)> {
    let mut all = Vec::new();
    for peer in peers {
        let (start, end) = net_range(&peer.cidr);
        let holes = merge(peer.except.iter().map(net_range).collect());
        let mut next = start;
        let mut covered = false;
        for (a, b) in holes {
            if b < next || a > end {
                continue;
            }
            if a > next {
                all.push((next, a - 1));
            }
            if b >= end {
                covered = true;
                break;
            }
            next = b + 1;
        }
        if !covered {
            all.push((next, end));
        }
    }
    merge(all)
}

/// `10.0.0.1`, `10.0.0.0/8` when the range is a CIDR block, else `10.0.0.3-10.0.0.9`.
fn render_range((a, b): (u32, u32)) -> String {
    if a == b {
        return Ipv4Addr::from(a).to_string();
    }
    let size = u64::from(b) - u64::from(a) + 1;
    if size.is_power_of_two() && u64::from(a) % size == 0 {
        let prefix = 32 - size.trailing_zeros();
        return format!("{}/{prefix}", Ipv4Addr::from(a));
    }
    format!("{}-{}", Ipv4Addr::from(a), Ipv4Addr::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PlanInput {
        PlanInput {
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
        }
    }

    fn peer(cidr: &str, except: &[&str]) -> PolicyPeer {
        PolicyPeer {
            cidr: cidr.parse().unwrap(),
            except: except.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    fn pod(
        ip: &str,
        ingress: Option<Vec<PolicyRule>>,
        egress: Option<Vec<PolicyRule>>,
    ) -> PodPolicy {
        PodPolicy {
            namespace: "default".into(),
            name: format!("pod-{ip}"),
            ip: ip.parse().unwrap(),
            ingress,
            egress,
        }
    }

    fn tcp(port: u16, end: Option<u16>) -> PolicyPort {
        PolicyPort {
            protocol: PolicyProtocol::Tcp,
            port: Some(port),
            end_port: end,
        }
    }

    #[test]
    fn except_is_carved_out_and_peers_are_merged() {
        let ranges = peer_ranges(&[
            peer("10.0.0.0/8", &["10.1.0.0/16", "10.200.0.0/16"]),
            peer("10.1.2.0/24", &[]),
            peer("192.168.1.7/32", &[]),
            peer("192.168.1.8/32", &[]),
            peer("172.16.0.0/16", &["172.16.0.0/12"]),
        ]);
        let text: Vec<String> = ranges.into_iter().map(render_range).collect();
        assert_eq!(
            text,
            [
                "10.0.0.0/16",
                "10.1.2.0/24",
                "10.2.0.0-10.199.255.255",
                "10.201.0.0-10.255.255.255",
                "192.168.1.7-192.168.1.8"
            ]
        );
        assert_eq!(render_range((0, u32::MAX)), "0.0.0.0/0");
        assert_eq!(
            render_range(net_range(&"10.0.0.16/28".parse().unwrap())),
            "10.0.0.16/28"
        );
    }

    #[test]
    fn default_deny_and_not_isolated() {
        let d = build(
            &[
                pod("10.42.1.5", Some(vec![]), None),
                pod("10.42.1.6", None, None),
            ],
            &input(),
        );
        assert_eq!(d.pods, 1);
        assert_eq!(
            d.chains["in-10-42-1-5"],
            [
                "ip saddr 10.42.1.5 return",
                "drop comment \"default/pod-10.42.1.5 ingress\""
            ]
        );
        assert_eq!(d.maps[INGRESS_MAP]["10.42.1.5"], "jump in-10-42-1-5");
        assert!(!d.maps.contains_key(EGRESS_MAP));
        assert_eq!(d.chains.len(), 1);
    }

    #[test]
    fn rules_become_one_nft_rule_per_protocol() {
        let rule = PolicyRule {
            peers: Some(vec![peer("10.42.2.7/32", &[])]),
            ports: vec![
                tcp(80, None),
                tcp(8000, Some(8080)),
                tcp(8070, Some(9000)),
                PolicyPort {
                    protocol: PolicyProtocol::Udp,
                    port: None,
                    end_port: None,
                },
            ],
        };
        let any = PolicyRule::default();
        let nothing = PolicyRule {
            peers: Some(vec![]),
            ports: vec![],
        };
        let d = build(
            &[pod("10.42.1.5", None, Some(vec![rule, any, nothing]))],
            &input(),
        );
        assert_eq!(
            d.chains["out-10-42-1-5"],
            [
                "ip daddr 10.42.1.5 return",
                "ip daddr { 10.42.2.7 } tcp dport { 80, 8000-9000 } return",
                "ip daddr { 10.42.2.7 } meta l4proto udp return",
                "return",
                "drop comment \"default/pod-10.42.1.5 egress\"",
            ]
        );
        assert_eq!(d.skipped, 0);
    }

    #[test]
    fn bad_values_never_widen_a_rule() {
        let bad_ports = PolicyRule {
            peers: None,
            ports: vec![
                tcp(90, Some(80)),
                tcp(0, None),
                PolicyPort {
                    protocol: PolicyProtocol::Tcp,
                    port: None,
                    end_port: Some(5),
                },
            ],
        };
        let some_bad = PolicyRule {
            peers: None,
            ports: vec![tcp(90, Some(80)), tcp(443, None)],
        };
        let huge = PolicyRule {
            // Every other address: nothing merges.
            peers: Some(
                (0..10_000u32)
                    .map(|i| PolicyPeer {
                        cidr: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + 2 * i), 32).unwrap(),
                        except: vec![],
                    })
                    .collect(),
            ),
            ports: vec![],
        };
        let d = build(
            &[
                pod("10.42.1.5", Some(vec![bad_ports, some_bad, huge]), None),
                pod("10.42.9.5", Some(vec![]), None),
            ],
            &input(),
        );
        assert_eq!(
            d.chains["in-10-42-1-5"],
            [
                "ip saddr 10.42.1.5 return",
                "tcp dport { 443 } return",
                "drop comment \"default/pod-10.42.1.5 ingress\""
            ]
        );
        // 3 bad ports + the rule left without one, 1 bad port, the huge rule, the foreign pod.
        assert_eq!(d.skipped, 7);
        assert_eq!(d.pods, 1);
    }

    #[test]
    fn duplicate_addresses_deny_where_they_differ() {
        let allow = vec![PolicyRule::default()];
        let d = build(
            &[
                pod("10.42.1.5", Some(allow.clone()), Some(allow.clone())),
                pod("10.42.1.5", None, Some(allow.clone())),
            ],
            &input(),
        );
        assert_eq!(d.skipped, 1);
        assert_eq!(
            d.chains["in-10-42-1-5"].len(),
            2,
            "deny all: {:?}",
            d.chains
        );
        assert_eq!(d.chains["out-10-42-1-5"][1], "return");
    }
}
