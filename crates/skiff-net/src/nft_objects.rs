//! The part of an nftables table that changes at run time — named chains with their rules,
//! named sets, verdict-map elements — and the two `nft -f` scripts made from it: all of it
//! (added after a table's fixed base) and the change from one state to the next, touching
//! only what differs. Shared by the service proxy and the NetworkPolicy enforcer, whose
//! tables differ only in what their objects are. Pure text, unit-tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Map elements per `add element` line.
const ELEMENTS_PER_LINE: usize = 500;

/// The run-time objects of one table, borrowed from whoever planned them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Objects<'a> {
    /// Chain name → its rules, in order.
    pub chains: &'a BTreeMap<String, Vec<String>>,
    /// Set name → its declaration (what goes between the braces of `add set … { }`).
    pub sets: &'a BTreeMap<String, String>,
    /// Map name (declared in the table's base) → element key → verdict.
    pub maps: &'a BTreeMap<&'static str, BTreeMap<String, String>>,
}

fn set_decl(table: &str, name: &str, decl: &str) -> String {
    format!("add set {table} {name} {{ {decl} }}\n")
}

fn add_rules(s: &mut String, table: &str, chain: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(s, "add rule {table} {chain} {r}");
    }
}

fn elements(s: &mut String, verb: &str, table: &str, map: &str, items: &[String]) {
    for chunk in items.chunks(ELEMENTS_PER_LINE) {
        let _ = writeln!(s, "{verb} element {table} {map} {{ {} }}", chunk.join(", "));
    }
}

/// The commands that add `objects` to `table` (whose base, with the maps, exists).
pub(crate) fn add_all(table: &str, objects: &Objects<'_>) -> String {
    let mut s = String::new();
    for name in objects.chains.keys() {
        let _ = writeln!(s, "add chain {table} {name}");
    }
    for (name, decl) in objects.sets {
        s.push_str(&set_decl(table, name, decl));
    }
    for (name, rules) in objects.chains {
        add_rules(&mut s, table, name, rules);
    }
    for (map, items) in objects.maps {
        let items: Vec<String> = items.iter().map(|(k, v)| format!("{k} : {v}")).collect();
        elements(&mut s, "add", table, map, &items);
    }
    s
}

/// The commands that change `table` from `old` to `new`, touching only what differs (empty
/// when nothing does). Sent as one transaction, packets see the old or the new rules.
pub(crate) fn diff(table: &str, old: &Objects<'_>, new: &Objects<'_>) -> String {
    let mut s = String::new();
    let empty = BTreeMap::new();
    let map_names: std::collections::BTreeSet<&str> =
        old.maps.keys().chain(new.maps.keys()).copied().collect();
    // 1. Map elements that go or change (before the chains they point to go).
    let mut additions: Vec<(&str, Vec<String>)> = Vec::new();
    for map in map_names {
        let before = old.maps.get(map).unwrap_or(&empty);
        let after = new.maps.get(map).unwrap_or(&empty);
        let gone: Vec<String> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        elements(&mut s, "delete", table, map, &gone);
        let added: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k} : {v}"))
            .collect();
        additions.push((map, added));
    }
    // 2. New chains and sets exist before any rule names them.
    for name in new.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
        let _ = writeln!(s, "add chain {table} {name}");
    }
    for (name, decl) in new.sets.iter().filter(|(n, _)| !old.sets.contains_key(*n)) {
        s.push_str(&set_decl(table, name, decl));
    }
    // 3. Changed chains are rewritten, new ones filled, removed ones emptied.
    for (name, rules) in new.chains {
        match old.chains.get(name) {
            Some(previous) if previous == rules => {}
            Some(_) => {
                let _ = writeln!(s, "flush chain {table} {name}");
                add_rules(&mut s, table, name, rules);
            }
            None => add_rules(&mut s, table, name, rules),
        }
    }
    let removed: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    for name in &removed {
        let _ = writeln!(s, "flush chain {table} {name}");
    }
    // 4. New map elements, now that their chains exist.
    for (map, added) in additions {
        elements(&mut s, "add", table, map, &added);
    }
    // 5. What nothing names any more.
    for name in removed {
        let _ = writeln!(s, "delete chain {table} {name}");
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(s, "delete set {table} {name}");
    }
    s
}

/// Creates `table` if missing and deletes it: "delete the table if it exists", which `nft`
/// has no single command for (before 1.0.8's `destroy`).
pub(crate) fn delete_table(table: &str) -> String {
    format!("table {table}\ndelete table {table}\n")
}
