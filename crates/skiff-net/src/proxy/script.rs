//! `nft -f` scripts of the service proxy: the fixed base table, the full (re)build, and the
//! incremental change from one [`Desired`] to the next. Pure text, unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::nft_objects::{self, Objects};

use super::plan::{
    Desired, MASQ_MARK, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS, SERVICE_NODEPORTS,
};

/// Family and name of the proxy's own table. Separate from `inet skiff` so that the pod
/// network's table replacement at setup never removes Service rules, and the proxy's first
/// sync can atomically replace its own table without touching host ports.
pub const TABLE: &str = "inet skiff-proxy";

/// The fixed part of the table: maps, hooks, masquerading, the no-endpoint checks.
/// `nodeport_ips` empty = node ports on every local address except 127.0.0.0/8 (upstream's
/// nftables proxy never accepts node ports on localhost).
pub(crate) fn base(nodeport_ips: &[Ipv4Addr]) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "table {TABLE} {{");
    let _ = writeln!(w, "\tset nodeport-ips {{\n\t\ttype ipv4_addr");
    if !nodeport_ips.is_empty() {
        let list: Vec<String> = nodeport_ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(w, "\t\telements = {{ {} }}", list.join(", "));
    }
    let _ = writeln!(w, "\t}}");
    for (map, key) in [
        (SERVICE_IPS, "ipv4_addr . inet_proto . inet_service"),
        (SERVICE_NODEPORTS, "inet_proto . inet_service"),
        (
            NO_ENDPOINT_SERVICES,
            "ipv4_addr . inet_proto . inet_service",
        ),
        (NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service"),
    ] {
        let _ = writeln!(w, "\tmap {map} {{\n\t\ttype {key} : verdict\n\t}}");
    }
    let node_dest = if nodeport_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8"
    } else {
        "ip daddr @nodeport-ips"
    };
    let chain = |w: &mut String, name: &str, rules: &[String]| {
        let _ = writeln!(w, "\tchain {name} {{");
        for r in rules {
            let _ = writeln!(w, "\t\t{r}");
        }
        let _ = writeln!(w, "\t}}");
    };
    chain(
        w,
        "mark-for-masquerade",
        &[format!("meta mark set meta mark | {MASQ_MARK:#x}")],
    );
    chain(
        w,
        "masquerading",
        &[
            format!("meta mark & {MASQ_MARK:#x} == 0 return"),
            format!("meta mark set meta mark ^ {MASQ_MARK:#x}"),
            "masquerade fully-random".to_string(),
        ],
    );
    chain(
        w,
        "services",
        &[
            format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
            format!("{node_dest} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        ],
    );
    chain(w, "reject-chain", &["reject".to_string()]);
    chain(
        w,
        "endpoints-check",
        &[
            format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
            format!("{node_dest} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"),
        ],
    );
    for (name, kind, hook, priority, rule) in [
        (
            "nat-prerouting",
            "nat",
            "prerouting",
            "dstnat",
            "jump services",
        ),
        ("nat-output", "nat", "output", "-100", "jump services"),
        (
            "nat-postrouting",
            "nat",
            "postrouting",
            "srcnat",
            "jump masquerading",
        ),
        // Before DNAT would matter, after conntrack: new connections to a Service without
        // endpoints are refused (or dropped), as upstream's filter chains do.
        (
            "filter-input",
            "filter",
            "input",
            "-110",
            "ct state new jump endpoints-check",
        ),
        (
            "filter-forward",
            "filter",
            "forward",
            "-110",
            "ct state new jump endpoints-check",
        ),
        (
            "filter-output",
            "filter",
            "output",
            "-110",
            "ct state new jump endpoints-check",
        ),
    ] {
        let _ = writeln!(w, "\tchain {name} {{");
        let _ = writeln!(
            w,
            "\t\ttype {kind} hook {hook} priority {priority}; policy accept;"
        );
        let _ = writeln!(w, "\t\t{rule}");
        let _ = writeln!(w, "\t}}");
    }
    let _ = writeln!(w, "}}");
    s
}

/// The proxy's objects in the form the shared scripts take (sets: affinity sets, by timeout).
fn objects<'a>(desired: &'a Desired, sets: &'a BTreeMap<String, String>) -> Objects<'a> {
    Objects {
        chains: &desired.chains,
        sets,
        maps: &desired.maps,
    }
}

fn set_decls(desired: &Desired) -> BTreeMap<String, String> {
    desired
        .sets
        .iter()
        .map(|(name, timeout)| {
            (
                name.clone(),
                format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            )
        })
        .collect()
}

/// The script that atomically replaces the proxy's table with `base` plus `desired`
/// (first sync, or recovery after an incremental change failed).
pub(crate) fn full(base_table: &str, desired: &Desired) -> String {
    let sets = set_decls(desired);
    let mut s = nft_objects::delete_table(TABLE);
    s.push_str(base_table);
    s.push_str(&nft_objects::add_all(TABLE, &objects(desired, &sets)));
    s
}

/// The script that changes the table from `old` to `new`, touching only what differs (empty
/// when nothing does). One transaction: packets see the old or the new rules.
pub(crate) fn diff(old: &Desired, new: &Desired) -> String {
    let (old_sets, new_sets) = (set_decls(old), set_decls(new));
    nft_objects::diff(TABLE, &objects(old, &old_sets), &objects(new, &new_sets))
}

/// Deletes the proxy's table if it exists.
pub(crate) fn delete_table() -> String {
    nft_objects::delete_table(TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(chains: &[(&str, &[&str])], elements: &[(&'static str, &str, &str)]) -> Desired {
        let mut d = Desired::default();
        for (name, rules) in chains {
            d.chains.insert(
                name.to_string(),
                rules.iter().map(|r| r.to_string()).collect(),
            );
        }
        for (map, k, v) in elements {
            d.maps
                .entry(map)
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        d
    }

    #[test]
    fn the_base_table_hooks_nat_and_filter_and_keeps_node_ports_off_localhost() {
        let any = base(&[]);
        assert!(any.contains("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"));
        assert!(any.contains("type nat hook prerouting priority dstnat;"));
        assert!(any.contains("type filter hook forward priority -110;"));
        assert!(any.contains("meta mark & 0x4000 == 0 return"));
        let some = base(&["192.168.1.11".parse().unwrap()]);
        assert!(some.contains("elements = { 192.168.1.11 }"));
        assert!(
            some.contains("ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
        );
    }

    #[test]
    fn a_full_sync_replaces_the_table_in_one_script() {
        let d = desired(
            &[
                ("svc-a", &["goto ep-a"]),
                ("ep-a", &["meta l4proto tcp dnat ip to 10.42.1.5:80"]),
            ],
            &[(SERVICE_IPS, "10.43.0.20 . tcp . 80", "goto svc-a")],
        );
        let s = full(&base(&[]), &d);
        assert!(s.starts_with(
            "table inet skiff-proxy\ndelete table inet skiff-proxy\ntable inet skiff-proxy {"
        ));
        let pos = |n: &str| s.find(n).unwrap_or_else(|| panic!("{n} missing in {s}"));
        assert!(
            pos("add chain inet skiff-proxy svc-a")
                < pos("add rule inet skiff-proxy svc-a goto ep-a")
        );
        assert!(pos("add rule inet skiff-proxy svc-a") < pos("add element inet skiff-proxy service-ips { 10.43.0.20 . tcp . 80 : goto svc-a }"));
    }

    #[test]
    fn a_change_touches_only_what_differs_in_a_safe_order() {
        let old = desired(
            &[
                (
                    "svc-a",
                    &["numgen random mod 2 vmap { 0 : goto ep-1, 1 : goto ep-2 }"],
                ),
                ("ep-1", &["r1"]),
                ("ep-2", &["r2"]),
                ("svc-b", &["goto ep-3"]),
                ("ep-3", &["r3"]),
            ],
            &[
                (SERVICE_IPS, "10.43.0.20 . tcp . 80", "goto svc-a"),
                (SERVICE_IPS, "10.43.0.21 . tcp . 80", "goto svc-b"),
            ],
        );
        assert_eq!(diff(&old, &old), "");
        // ep-2 goes, svc-b goes, svc-c comes.
        let new = desired(
            &[
                ("svc-a", &["goto ep-1"]),
                ("ep-1", &["r1"]),
                ("svc-c", &["goto ep-1"]),
            ],
            &[
                (SERVICE_IPS, "10.43.0.20 . tcp . 80", "goto svc-a"),
                (SERVICE_IPS, "10.43.0.22 . tcp . 80", "goto svc-c"),
            ],
        );
        let s = diff(&old, &new);
        let lines: Vec<&str> = s.lines().collect();
        let at = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("{l} missing in\n{s}"))
        };
        let t = "inet skiff-proxy";
        assert!(
            at(&format!(
                "delete element {t} service-ips {{ 10.43.0.21 . tcp . 80 }}"
            )) < at(&format!("delete chain {t} svc-b"))
        );
        assert!(at(&format!("flush chain {t} svc-a")) < at(&format!("delete chain {t} ep-2")));
        assert!(at(&format!("flush chain {t} ep-2")) < at(&format!("delete chain {t} ep-2")));
        assert!(
            at(&format!("add chain {t} svc-c"))
                < at(&format!(
                    "add element {t} service-ips {{ 10.43.0.22 . tcp . 80 : goto svc-c }}"
                ))
        );
        assert!(
            !s.contains("ep-1 r1"),
            "unchanged chains are not rewritten:\n{s}"
        );
        assert!(
            !s.contains("10.43.0.20"),
            "unchanged elements are not touched:\n{s}"
        );
        assert!(!s.contains("delete table") && !s.contains("flush table"));
    }
}
