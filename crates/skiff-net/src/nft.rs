//! skiff's nftables rules: egress masquerade, hostPort DNAT and the localhost guard, all in one
//! table (`inet skiff`). Setup replaces the whole table, rendered from the node state, in one atomic
//! `nft -f -` transaction; while pods come and go only their own DNAT rules are added or
//! deleted (by handle), which avoids the RCU grace period the kernel waits for when rules are
//! flushed or a table is replaced — the difference between ~3 and ~20 ms per attach.
//! Cleanup is "delete the table".
//!
//! skiff drives Debian's `nft` command rather than a netlink library: the text syntax is
//! nftables' documented interface, a whole-table replacement is one atomic kernel
//! transaction, and it costs no extra crates to compile (see ARCHITECTURE.md, skiff-net).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::config::HostPort;
use crate::netns::NetNs;
use crate::NetError;

/// Family and name of skiff's nftables table.
pub const TABLE: &str = "inet skiff";

/// One host port of one pod.
#[derive(Debug, Clone)]
pub(crate) struct HostPortRule {
    /// Identifies the pod's rules (its host veth name, unique per pod).
    pub tag: String,
    pub pod_ip: Ipv4Addr,
    pub port: HostPort,
}

/// What the ruleset is made from.
#[derive(Debug, Clone)]
pub(crate) struct RulesetInput {
    pub bridge: String,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    /// Addresses of the other nodes: pod traffic to them keeps its source address.
    pub peer_nodes: BTreeSet<Ipv4Addr>,
    pub host_ports: Vec<HostPortRule>,
}

/// The complete `nft -f` script that replaces skiff's table.
pub(crate) fn render(input: &RulesetInput) -> String {
    let mut s = String::new();
    // Create-then-delete makes the deletion succeed whether or not the table exists; all of it
    // is one transaction, so packets see either the old or the new rules.
    let _ = writeln!(s, "table {TABLE}");
    let _ = writeln!(s, "delete table {TABLE}");
    let _ = writeln!(s, "table {TABLE} {{");

    let _ = writeln!(s, "\tset peer-nodes {{");
    let _ = writeln!(s, "\t\ttype ipv4_addr");
    if !input.peer_nodes.is_empty() {
        let list: Vec<String> = input.peer_nodes.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "\t\telements = {{ {} }}", list.join(", "));
    }
    let _ = writeln!(s, "\t}}");

    let _ = writeln!(s, "\tchain hostports {{");
    for rule in &input.host_ports {
        let _ = writeln!(s, "\t\t{}", hostport_rule(rule));
    }
    let _ = writeln!(s, "\t}}");

    // `dstnat` is -100; nft only accepts the name on the prerouting hook.
    for hook in ["prerouting", "output"] {
        let _ = writeln!(s, "\tchain {hook} {{");
        let _ = writeln!(s, "\t\ttype nat hook {hook} priority -100; policy accept;");
        let _ = writeln!(s, "\t\tfib daddr type local jump hostports");
        let _ = writeln!(s, "\t}}");
    }

    // The bridge has route_localnet=1 (hostPort through 127.0.0.1), which would also let a pod
    // send to the node's 127.0.0.1 through its gateway and reach services bound to localhost
    // (CVE-2020-8558). Drop new connections to 127.0.0.0/8 that did not come from `lo`, as
    // kube-proxy's KUBE-FIREWALL rule does; replies of hostPort-via-localhost are established.
    let _ = writeln!(s, "\tchain input {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook input priority filter; policy accept;"
    );
    let _ = writeln!(
        s,
        "\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop comment \"no localhost from outside\""
    );
    let _ = writeln!(s, "\t}}");

    let pods = input.pod_cidr;
    let bridge = &input.bridge;
    let _ = writeln!(s, "\tchain postrouting {{");
    let _ = writeln!(
        s,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    );
    // hostPort reached through localhost: the pod cannot answer 127.0.0.1.
    let _ = writeln!(
        s,
        "\t\tip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade comment \"hostPort via localhost\""
    );
    // A pod reaching a hostPort of this node that leads back onto the bridge: without SNAT the
    // answer would go straight back over the bridge, bypassing the reverse DNAT.
    let _ = writeln!(
        s,
        "\t\tct status dnat ip saddr {pods} oifname \"{bridge}\" masquerade comment \"hostPort hairpin\""
    );
    let _ = writeln!(
        s,
        "\t\tip saddr {pods} ip daddr {} return comment \"pod to pod\"",
        input.cluster_cidr
    );
    let _ = writeln!(
        s,
        "\t\tip saddr {pods} ip daddr @peer-nodes return comment \"pod to node\""
    );
    let _ = writeln!(s, "\t\tip saddr {pods} ip daddr 224.0.0.0/4 return");
    let _ = writeln!(
        s,
        "\t\tip saddr {pods} masquerade comment \"egress leaving the cluster\""
    );
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

/// The DNAT rule of one host port.
fn hostport_rule(rule: &HostPortRule) -> String {
    let hp = &rule.port;
    let daddr = match hp.host_ip {
        Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
        _ => String::new(),
    };
    format!(
        "{daddr}{proto} dport {hport} dnat ip to {ip}:{cport} comment \"{comment}\"",
        proto = hp.protocol.nft(),
        hport = hp.host_port,
        ip = rule.pod_ip,
        cport = hp.container_port,
        comment = pod_comment(&rule.tag),
    )
}

/// The comment marking a pod's rules.
fn pod_comment(tag: &str) -> String {
    let safe: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    format!("pod {safe}")
}

/// Script adding the DNAT rules of one pod.
pub(crate) fn render_add_host_ports(rules: &[HostPortRule]) -> String {
    rules
        .iter()
        .map(|rule| format!("add rule {TABLE} hostports {}\n", hostport_rule(rule)))
        .collect()
}

/// Script replacing the set of peer node addresses (one transaction).
pub(crate) fn render_peer_nodes(peer_nodes: &BTreeSet<Ipv4Addr>) -> String {
    let mut s = format!("flush set {TABLE} peer-nodes\n");
    if !peer_nodes.is_empty() {
        let list: Vec<String> = peer_nodes.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "add element {TABLE} peer-nodes {{ {} }}",
            list.join(", ")
        );
    }
    s
}

/// Handles of the rules in `nft -j -a list chain inet skiff hostports` output that carry
/// `comment`.
fn handles_with_comment(listing: &str, comment: &str) -> Result<Vec<u64>, String> {
    let json: serde_json::Value =
        serde_json::from_str(listing).map_err(|e| format!("unreadable nft JSON: {e}"))?;
    let items = json["nftables"]
        .as_array()
        .ok_or_else(|| "nft JSON without an \"nftables\" list".to_string())?;
    Ok(items
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter(|rule| rule["comment"].as_str() == Some(comment))
        .filter_map(|rule| rule["handle"].as_u64())
        .collect())
}

/// Runs `nft` with `args`, feeding `script` on stdin, inside `ns`.
pub(crate) async fn run_nft(
    ns: &NetNs,
    args: &'static [&'static str],
    script: String,
    op: &str,
) -> Result<String, NetError> {
    let output = ns
        .run_async(move || {
            let mut child = Command::new("nft")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            // Written from another thread: nft may fill its output pipes before it has read
            // a long script, and neither side would then make progress.
            let writer = child
                .stdin
                .take()
                .map(|mut stdin| std::thread::spawn(move || stdin.write_all(script.as_bytes())));
            let output = child.wait_with_output()?;
            if let Some(writer) = writer {
                // A write error shows in nft's own status and stderr.
                let _ = writer.join();
            }
            Ok(output)
        })
        .await?
        .map_err(NetError::NftSpawn)?;
    if !output.status.success() {
        return Err(NetError::Nftables {
            op: op.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Replaces skiff's table with the ruleset for `input`.
pub(crate) async fn replace_table(ns: &NetNs, input: &RulesetInput) -> Result<(), NetError> {
    run_nft(ns, &["-f", "-"], render(input), "replace table inet skiff").await?;
    Ok(())
}

/// Adds the DNAT rules of one pod's host ports.
pub(crate) async fn add_host_ports(ns: &NetNs, rules: &[HostPortRule]) -> Result<(), NetError> {
    if rules.is_empty() {
        return Ok(());
    }
    run_nft(
        ns,
        &["-f", "-"],
        render_add_host_ports(rules),
        "add hostPort rules",
    )
    .await?;
    Ok(())
}

/// Deletes the DNAT rules of the pod tagged `tag`.
pub(crate) async fn remove_host_ports(ns: &NetNs, tag: &str) -> Result<(), NetError> {
    let listing = run_nft(
        ns,
        &["-j", "-a", "list", "chain", "inet", "skiff", "hostports"],
        String::new(),
        "list hostPort rules",
    )
    .await?;
    let handles =
        handles_with_comment(&listing, &pod_comment(tag)).map_err(|reason| NetError::Nftables {
            op: "list hostPort rules".into(),
            stderr: reason,
        })?;
    if handles.is_empty() {
        return Ok(());
    }
    let script: String = handles
        .iter()
        .map(|h| format!("delete rule {TABLE} hostports handle {h}\n"))
        .collect();
    run_nft(ns, &["-f", "-"], script, "delete hostPort rules").await?;
    Ok(())
}

/// Replaces the addresses whose pod traffic is not masqueraded.
pub(crate) async fn set_peer_nodes(
    ns: &NetNs,
    peer_nodes: &BTreeSet<Ipv4Addr>,
) -> Result<(), NetError> {
    run_nft(
        ns,
        &["-f", "-"],
        render_peer_nodes(peer_nodes),
        "update peer node set",
    )
    .await?;
    Ok(())
}

/// Deletes skiff's table if it exists.
pub(crate) async fn delete_table(ns: &NetNs) -> Result<(), NetError> {
    let script = format!("table {TABLE}\ndelete table {TABLE}\n");
    run_nft(ns, &["-f", "-"], script, "delete table inet skiff").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    fn input() -> RulesetInput {
        RulesetInput {
            bridge: "skiff0".into(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            peer_nodes: [
                "192.168.1.12".parse().unwrap(),
                "192.168.1.13".parse().unwrap(),
            ]
            .into_iter()
            .collect(),
            host_ports: vec![
                HostPortRule {
                    tag: "skfa\"; drop".into(),
                    pod_ip: "10.42.1.5".parse().unwrap(),
                    port: HostPort {
                        host_port: 8080,
                        container_port: 80,
                        protocol: Protocol::Tcp,
                        host_ip: None,
                    },
                },
                HostPortRule {
                    tag: "skfb".into(),
                    pod_ip: "10.42.1.6".parse().unwrap(),
                    port: HostPort {
                        host_port: 5353,
                        container_port: 53,
                        protocol: Protocol::Udp,
                        host_ip: Some("192.168.1.11".parse().unwrap()),
                    },
                },
            ],
        }
    }

    #[test]
    fn renders_masquerade_with_cluster_and_node_exceptions() {
        let text = render(&input());
        let post = text.split("chain postrouting").nth(1).unwrap();
        let pos = |needle: &str| {
            post.find(needle)
                .unwrap_or_else(|| panic!("missing {needle:?} in\n{text}"))
        };
        // The exceptions come before the catch-all masquerade.
        let masq = pos("ip saddr 10.42.1.0/24 masquerade");
        assert!(pos("ip saddr 10.42.1.0/24 ip daddr 10.42.0.0/16 return") < masq);
        assert!(pos("ip saddr 10.42.1.0/24 ip daddr @peer-nodes return") < masq);
        assert!(pos("ct status dnat ip saddr 10.42.1.0/24 oifname \"skiff0\" masquerade") < masq);
        assert!(text.contains("elements = { 192.168.1.12, 192.168.1.13 }"));
    }

    #[test]
    fn renders_host_ports_with_only_safe_comment_text() {
        let text = render(&input());
        assert!(text.contains("tcp dport 8080 dnat ip to 10.42.1.5:80 comment \"pod skfadrop\""));
        assert!(text.contains(
            "ip daddr 192.168.1.11 udp dport 5353 dnat ip to 10.42.1.6:53 comment \"pod skfb\""
        ));
        assert_eq!(
            text.matches("fib daddr type local jump hostports").count(),
            2
        );
    }

    #[test]
    fn incremental_scripts_add_rules_and_replace_peers() {
        let i = input();
        let text = render_add_host_ports(&i.host_ports);
        assert_eq!(text.lines().count(), 2);
        assert!(text
            .starts_with("add rule inet skiff hostports tcp dport 8080 dnat ip to 10.42.1.5:80"));
        let text = render_peer_nodes(&i.peer_nodes);
        assert_eq!(
            text,
            "flush set inet skiff peer-nodes\n\
             add element inet skiff peer-nodes { 192.168.1.12, 192.168.1.13 }\n"
        );
        assert_eq!(
            render_peer_nodes(&BTreeSet::new()),
            "flush set inet skiff peer-nodes\n"
        );
    }

    #[test]
    fn finds_a_pods_rule_handles_in_nft_json() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "inet", "table": "skiff", "name": "hostports", "handle": 2}},
            {"rule": {"chain": "hostports", "handle": 7, "comment": "pod skfa", "expr": []}},
            {"rule": {"chain": "hostports", "handle": 8, "comment": "pod skfb", "expr": []}},
            {"rule": {"chain": "hostports", "handle": 9, "comment": "pod skfa", "expr": []}}]}"#;
        assert_eq!(
            handles_with_comment(listing, "pod skfa").unwrap(),
            vec![7, 9]
        );
        assert!(handles_with_comment(listing, "pod skfc")
            .unwrap()
            .is_empty());
        assert!(handles_with_comment("not json", "pod skfa").is_err());
    }

    #[test]
    fn drops_localhost_traffic_from_outside_lo() {
        let text = render(&input());
        let chain = text.split("chain input").nth(1).unwrap();
        assert!(chain.contains("type filter hook input"), "{text}");
        assert!(
            chain.contains(
                "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state != { established, related } drop"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_empty_peer_set_has_no_elements_line() {
        let mut i = input();
        i.peer_nodes.clear();
        i.host_ports.clear();
        let text = render(&i);
        assert!(!text.contains("elements"));
        assert!(text.starts_with("table inet skiff\ndelete table inet skiff\n"));
    }
}
