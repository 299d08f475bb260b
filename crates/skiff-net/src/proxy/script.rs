//! `nft -f` scripts of the service proxy: the fixed base table, the full (re)build, and the
//! incremental change from one [`Desired`] to the next. Pure text, unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::plan::{
    Desired, MAPS, MASQ_MARK, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS,
    SERVICE_NODEPORTS,
};

/// Family and name of the proxy's own table. Separate from `inet skiff` so that the pod
/// network's table replacement at setup never removes Service rules, and the proxy's first
/// sync can atomically replace its own table without touching host ports.
pub const TABLE: &str = "inet skiff-proxy";

/// Map elements per `add element` line.
const ELEMENTS_PER_LINE: usize = 500;

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

fn set_decl(name: &str, timeout: u32) -> String {
    format!(
        "add set {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}\n"
    )
}

fn add_rules(s: &mut String, chain: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(s, "add rule {TABLE} {chain} {r}");
    }
}

fn elements(s: &mut String, verb: &str, map: &str, items: &[String]) {
    for chunk in items.chunks(ELEMENTS_PER_LINE) {
        let _ = writeln!(s, "{verb} element {TABLE} {map} {{ {} }}", chunk.join(", "));
    }
}

/// The script that atomically replaces the proxy's table with `base` plus `desired`
/// (first sync, or recovery after an incremental change failed).
pub(crate) fn full(base_table: &str, desired: &Desired) -> String {
    let mut s = format!("table {TABLE}\ndelete table {TABLE}\n{base_table}");
    for name in desired.chains.keys() {
        let _ = writeln!(s, "add chain {TABLE} {name}");
    }
    for (name, timeout) in &desired.sets {
        s.push_str(&set_decl(name, *timeout));
    }
    for (name, rules) in &desired.chains {
        add_rules(&mut s, name, rules);
    }
    for (map, items) in &desired.maps {
        let items: Vec<String> = items.iter().map(|(k, v)| format!("{k} : {v}")).collect();
        elements(&mut s, "add", map, &items);
    }
    s
}

/// The script that changes the table from `old` to `new`, touching only what differs (empty
/// when nothing does). One transaction: packets see the old or the new rules.
pub(crate) fn diff(old: &Desired, new: &Desired) -> String {
    let mut s = String::new();
    let empty = BTreeMap::new();
    // 1. Map elements that go or change (before the chains they point to go).
    let mut additions: Vec<(&str, Vec<String>)> = Vec::new();
    for map in MAPS {
        let before = old.maps.get(map).unwrap_or(&empty);
        let after = new.maps.get(map).unwrap_or(&empty);
        let gone: Vec<String> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        elements(&mut s, "delete", map, &gone);
        let added: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} : {v}"))
            .collect();
        additions.push((map, added));
    }
    // 2. New chains and sets exist before any rule names them.
    for name in new.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
        let _ = writeln!(s, "add chain {TABLE} {name}");
    }
    for (name, timeout) in new.sets.iter().filter(|(n, _)| !old.sets.contains_key(*n)) {
        s.push_str(&set_decl(name, *timeout));
    }
    // 3. Changed chains are rewritten, new ones filled, removed ones emptied.
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            Some(previous) if previous == rules => {}
            Some(_) => {
                let _ = writeln!(s, "flush chain {TABLE} {name}");
                add_rules(&mut s, name, rules);
            }
            None => add_rules(&mut s, name, rules),
        }
    }
    let removed: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    for name in &removed {
        let _ = writeln!(s, "flush chain {TABLE} {name}");
    }
    // 4. New map elements, now that their chains exist.
    for (map, added) in additions {
        elements(&mut s, "add", map, &added);
    }
    // 5. What nothing names any more.
    for name in removed {
        let _ = writeln!(s, "delete chain {TABLE} {name}");
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(s, "delete set {TABLE} {name}");
    }
    s
}

/// Deletes the proxy's table if it exists.
pub(crate) fn delete_table() -> String {
    format!("table {TABLE}\ndelete table {TABLE}\n")
}
