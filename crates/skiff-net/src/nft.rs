//! skiff's nftables rules: egress masquerade and hostPort DNAT, all in one table
//! (`inet skiff`), rendered from the node state and replaced in one atomic `nft -f -`
//! transaction. Cleanup is "delete the table".
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
    pub uid: String,
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
        let hp = &rule.port;
        let daddr = match hp.host_ip {
            Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "\t\t{daddr}{proto} dport {hport} dnat ip to {ip}:{cport} comment \"pod {uid}\"",
            proto = hp.protocol.nft(),
            hport = hp.host_port,
            ip = rule.pod_ip,
            cport = hp.container_port,
            uid = comment_safe(&rule.uid),
        );
    }
    let _ = writeln!(s, "\t}}");

    // `dstnat` is -100; nft only accepts the name on the prerouting hook.
    for hook in ["prerouting", "output"] {
        let _ = writeln!(s, "\tchain {hook} {{");
        let _ = writeln!(s, "\t\ttype nat hook {hook} priority -100; policy accept;");
        let _ = writeln!(s, "\t\tfib daddr type local jump hostports");
        let _ = writeln!(s, "\t}}");
    }

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

/// Keeps what is safe inside an nft comment string.
fn comment_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        .take(100)
        .collect()
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
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(script.as_bytes())?;
            }
            child.wait_with_output()
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
pub(crate) async fn apply(ns: &NetNs, input: &RulesetInput) -> Result<(), NetError> {
    run_nft(ns, &["-f", "-"], render(input), "replace table inet skiff").await?;
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
                    uid: "uid-a\"; drop".into(),
                    pod_ip: "10.42.1.5".parse().unwrap(),
                    port: HostPort {
                        host_port: 8080,
                        container_port: 80,
                        protocol: Protocol::Tcp,
                        host_ip: None,
                    },
                },
                HostPortRule {
                    uid: "uid-b".into(),
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
        assert!(text.contains("tcp dport 8080 dnat ip to 10.42.1.5:80 comment \"pod uid-adrop\""));
        assert!(text.contains(
            "ip daddr 192.168.1.11 udp dport 5353 dnat ip to 10.42.1.6:53 comment \"pod uid-b\""
        ));
        assert_eq!(
            text.matches("fib daddr type local jump hostports").count(),
            2
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
