//! `nft -f` scripts of the NetworkPolicy enforcer: the fixed base table, the full (re)build,
//! and the incremental change from one [`Desired`] to the next (through
//! [`crate::nft_objects`], as the service proxy's). Pure text, unit-tested.
//!
//! Where the filter sits, and why:
//! - hook `forward`: every packet between a local pod and anything but its own node passes
//!   it — routed traffic (other nodes' pods over host-gw routes or the VXLAN device, the
//!   outside world, Service traffic towards a pod of this node), and bridged traffic between
//!   two pods of the node once `br_netfilter` hands it to the IPv4 hooks (the enforcer makes
//!   sure of that, see the module doc). Traffic between a pod and its own node goes through
//!   `input`/`output` instead and is never judged, so probes and the node-local cluster DNS
//!   keep working without a rule.
//! - after service DNAT (`prerouting`, priority dstnat) and before the proxy's and the pod
//!   network's masquerade (`postrouting`, srcnat): the addresses judged are the pod's own
//!   and the client's real one. Any priority of the forward hook is between the two; `filter`
//!   (0) runs after the proxy's no-endpoint check (-110).
//! - conntrack: `established,related` passes first, so replies to allowed connections (and
//!   their ICMP errors) are never judged; only a connection's first packet walks the maps.

use std::fmt::Write as _;

use crate::nft_objects::{self, Objects};

use super::plan::{Desired, EGRESS_MAP, INGRESS_MAP};

/// Family and name of the enforcer's own table (separate from `inet skiff` and
/// `inet skiff-proxy`, which are replaced on their own schedules).
pub const TABLE: &str = "inet skiff-policy";

/// The fixed part of the table for a node whose pods sit on `bridge`.
pub(crate) fn base(bridge: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "table {TABLE} {{");
    for map in [INGRESS_MAP, EGRESS_MAP] {
        let _ = writeln!(s, "\tmap {map} {{\n\t\ttype ipv4_addr : verdict\n\t}}");
    }
    let _ = writeln!(s, "\tchain forward {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook forward priority filter; policy accept;"
    );
    // Pods have IPv4 only; IPv6 link-local between two pods of the bridge would carry
    // connections no IPv4 policy sees.
    let _ = writeln!(
        s,
        "\t\tiifname \"{bridge}\" oifname \"{bridge}\" meta nfproto ipv6 drop comment \"pods have no IPv6\""
    );
    let _ = writeln!(s, "\t\tct state established,related accept");
    let _ = writeln!(s, "\t\tip daddr vmap @{INGRESS_MAP}");
    let _ = writeln!(s, "\t\tip saddr vmap @{EGRESS_MAP}");
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

fn objects(desired: &Desired) -> Objects<'_> {
    Objects {
        chains: &desired.chains,
        sets: &desired.sets,
        maps: &desired.maps,
    }
}

/// The script that atomically replaces the table with `base` plus `desired` (first sync of
/// a process, or recovery after an incremental change failed): the old rules protect the
/// pods until the transaction commits.
pub(crate) fn full(base_table: &str, desired: &Desired) -> String {
    let mut s = nft_objects::delete_table(TABLE);
    s.push_str(base_table);
    s.push_str(&nft_objects::add_all(TABLE, &objects(desired)));
    s
}

/// The script that changes the table from `old` to `new` (empty when nothing differs).
pub(crate) fn diff(old: &Desired, new: &Desired) -> String {
    nft_objects::diff(TABLE, &objects(old), &objects(new))
}

/// Deletes the table if it exists.
pub(crate) fn delete_table() -> String {
    nft_objects::delete_table(TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(chains: &[(&str, &[&str])], ingress: &[(&str, &str)]) -> Desired {
        let mut d = Desired::default();
        for (name, rules) in chains {
            d.chains.insert(
                name.to_string(),
                rules.iter().map(|r| r.to_string()).collect(),
            );
        }
        for (k, v) in ingress {
            d.maps
                .entry(INGRESS_MAP)
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        d
    }

    #[test]
    fn the_base_filters_forwarded_traffic_after_conntrack() {
        let b = base("skiff0");
        let pos = |n: &str| b.find(n).unwrap_or_else(|| panic!("{n} missing in {b}"));
        assert!(pos("type filter hook forward priority filter; policy accept;") < pos("ct state"));
        assert!(pos("ct state established,related accept") < pos("ip daddr vmap @ingress"));
        assert!(pos("ip daddr vmap @ingress") < pos("ip saddr vmap @egress"));
        assert!(b.contains("iifname \"skiff0\" oifname \"skiff0\" meta nfproto ipv6 drop"));
        assert!(!b.contains("hook input") && !b.contains("hook output"));
    }

    #[test]
    fn full_replaces_and_diff_touches_only_changed_pods() {
        let old = desired(
            &[("in-10-42-1-5", &["drop"]), ("in-10-42-1-6", &["drop"])],
            &[
                ("10.42.1.5", "jump in-10-42-1-5"),
                ("10.42.1.6", "jump in-10-42-1-6"),
            ],
        );
        let s = full(&base("skiff0"), &old);
        assert!(s.starts_with(
            "table inet skiff-policy\ndelete table inet skiff-policy\ntable inet skiff-policy {"
        ));
        assert!(s.contains("add element inet skiff-policy ingress { 10.42.1.5 : jump in-10-42-1-5, 10.42.1.6 : jump in-10-42-1-6 }"));
        let new = desired(
            &[("in-10-42-1-5", &["drop"]), ("in-10-42-1-7", &["drop"])],
            &[
                ("10.42.1.5", "jump in-10-42-1-5"),
                ("10.42.1.7", "jump in-10-42-1-7"),
            ],
        );
        let d = diff(&old, &new);
        assert_eq!(
            d,
            "delete element inet skiff-policy ingress { 10.42.1.6 }\n\
             add chain inet skiff-policy in-10-42-1-7\n\
             add rule inet skiff-policy in-10-42-1-7 drop\n\
             flush chain inet skiff-policy in-10-42-1-6\n\
             add element inet skiff-policy ingress { 10.42.1.7 : jump in-10-42-1-7 }\n\
             delete chain inet skiff-policy in-10-42-1-6\n"
        );
        assert_eq!(diff(&new, &new), "");
    }
}
