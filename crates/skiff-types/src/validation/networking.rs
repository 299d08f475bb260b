//! networking.k8s.io/v1 NetworkPolicies, as upstream's `pkg/apis/networking/validation`
//! (`ValidateNetworkPolicy`, `ValidateNetworkPolicyUpdate`), with its messages.

use std::net::IpAddr;

use serde_json::Value;

use super::errors::{go_quote, FieldError, FieldPath};
use super::meta::{self, NameRule};
use super::names;
use super::value::V;

const CIDR_MESSAGE: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// Validates a new NetworkPolicy.
pub(super) fn validate_network_policy(np: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        np.get("metadata"),
        true,
        NameRule::Subdomain,
        &FieldPath::new("metadata"),
        errs,
    );
    validate_spec(np.get("spec"), &[], errs);
}

/// Validates a NetworkPolicy update (metadata is checked by the caller): the new spec, where
/// CIDRs the old policy already held are accepted as they are (upstream keeps accepting values
/// an older, laxer version stored).
pub(super) fn validate_network_policy_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    let mut existing: Vec<&str> = Vec::new();
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for rule in old.get("spec").get(rules).items() {
            for peer in rule.get(peers).items() {
                let block = peer.get("ipBlock");
                if block.present() {
                    existing.push(block.get("cidr").str());
                    existing.extend(block.get("except").strings());
                }
            }
        }
    }
    validate_spec(new.get("spec"), &existing, errs);
}

fn validate_spec(spec: V<'_>, existing_cidrs: &[&str], errs: &mut Vec<FieldError>) {
    let path = FieldPath::new("spec");
    meta::validate_label_selector(spec.get("podSelector"), &path.child("podSelector"), errs);
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in spec.get(rules).items().enumerate() {
            let rp = path.child(rules).index(i);
            for (j, port) in rule.get("ports").items().enumerate() {
                validate_port(port, &rp.child("ports").index(j), errs);
            }
            for (j, peer) in rule.get(peers).items().enumerate() {
                validate_peer(peer, &rp.child(peers).index(j), existing_cidrs, errs);
            }
        }
    }
    let types = spec.get("policyTypes");
    let tp = path.child("policyTypes");
    if types.len() > 2 {
        let values: Vec<String> = types.items().map(|t| go_quote(t.str())).collect();
        errs.push(FieldError::invalid_rendered(
            tp,
            types.raw(),
            format!("[]networking.PolicyType{{{}}}", values.join(", ")),
            "may not specify more than two policyTypes",
        ));
        return;
    }
    for (i, t) in types.items().enumerate() {
        if !matches!(t.str(), "Ingress" | "Egress") {
            errs.push(FieldError::not_supported(
                tp.index(i),
                t.str(),
                &["Ingress", "Egress"],
            ));
        }
    }
}

/// Upstream `ValidateNetworkPolicyPort`.
fn validate_port(port: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let protocol = port.get("protocol");
    if protocol.present() && !matches!(protocol.str(), "TCP" | "UDP" | "SCTP") {
        errs.push(FieldError::not_supported(
            path.child("protocol"),
            protocol.str(),
            &["TCP", "UDP", "SCTP"],
        ));
    }
    let end_port = port.get("endPort");
    match port.get("port").0 {
        Some(Value::String(name)) => {
            if let Some(end) = end_port.int() {
                errs.push(FieldError::invalid(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for msg in names::port_name(name) {
                errs.push(FieldError::invalid(path.child("port"), name.as_str(), msg));
            }
        }
        Some(number) => {
            let number = number.as_i64().unwrap_or(0);
            for msg in names::port_num(number) {
                errs.push(FieldError::invalid(path.child("port"), number, msg));
            }
            if let Some(end) = end_port.int() {
                if end < number {
                    errs.push(FieldError::invalid(
                        path.child("endPort"),
                        end,
                        "must be greater than or equal to `port`",
                    ));
                }
                for msg in names::port_num(end) {
                    errs.push(FieldError::invalid(path.child("endPort"), end, msg));
                }
            }
        }
        None => {
            if let Some(end) = end_port.int() {
                errs.push(FieldError::invalid(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

/// Upstream `ValidateNetworkPolicyPeer`: exactly one kind of peer, or pod and namespace
/// selectors together.
fn validate_peer(peer: V<'_>, path: &FieldPath, existing: &[&str], errs: &mut Vec<FieldError>) {
    let mut count = 0;
    for key in ["podSelector", "namespaceSelector"] {
        let selector = peer.get(key);
        if selector.present() {
            count += 1;
            meta::validate_label_selector(selector, &path.child(key), errs);
        }
    }
    let block = peer.get("ipBlock");
    if block.present() {
        count += 1;
        validate_ip_block(block, &path.child("ipBlock"), existing, errs);
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a peer"));
    } else if count > 1 && block.present() {
        errs.push(FieldError::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

/// Upstream `ValidateIPBlock`: a valid CIDR, and exceptions strictly inside it.
fn validate_ip_block(
    block: V<'_>,
    path: &FieldPath,
    existing: &[&str],
    errs: &mut Vec<FieldError>,
) {
    let cidr = block.get("cidr").str();
    if cidr.is_empty() {
        errs.push(FieldError::required(path.child("cidr"), ""));
        return;
    }
    let parsed = parse_cidr(cidr);
    if parsed.is_none() && !existing.contains(&cidr) {
        errs.push(FieldError::invalid(path.child("cidr"), cidr, CIDR_MESSAGE));
    }
    let Some((net, bits)) = parsed else {
        return;
    };
    for (i, except) in block.get("except").items().enumerate() {
        let ep = path.child("except").index(i);
        let text = except.str();
        let Some((inner, inner_bits)) = parse_cidr(text) else {
            if !existing.contains(&text) {
                errs.push(FieldError::invalid(ep, text, CIDR_MESSAGE));
            }
            continue;
        };
        if !contains(net, bits, inner) || bits >= inner_bits {
            errs.push(FieldError::invalid(
                ep,
                text,
                "must be a strict subset of `cidr`",
            ));
        }
    }
}

/// A CIDR as Go's `ParseCIDR`: the network address (host bits cleared) and the prefix length.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let net = match ip {
        IpAddr::V4(v4) => IpAddr::V4(ipnet::Ipv4Net::new(v4, bits).ok()?.network()),
        IpAddr::V6(v6) => IpAddr::V6(ipnet::Ipv6Net::new(v6, bits).ok()?.network()),
    };
    Some((net, bits))
}

/// Whether the network `net/bits` contains `ip` (false across address families).
fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            ipnet::Ipv4Net::new(n, bits).is_ok_and(|n| n.contains(&a))
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            ipnet::Ipv6Net::new(n, bits).is_ok_and(|n| n.contains(&a))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::{validate_create, validate_update};
    use crate::defaults::apply_defaults;
    use crate::registry::find;

    fn errors_of(result: Result<(), super::super::ValidationErrors>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(e) => e
                .causes()
                .into_iter()
                .map(|(_, m, f)| format!("{f}: {m}"))
                .collect(),
        }
    }

    fn policy(spec: Value) -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-client", "namespace": "default"},
            "spec": spec,
        })
    }

    fn errors(spec: Value) -> Vec<String> {
        let info = find("networking.k8s.io", "v1", "networkpolicies").expect("served");
        let mut np = policy(spec);
        apply_defaults(info, &mut np);
        errors_of(validate_create(info, &np))
    }

    #[test]
    fn valid_policies_pass() {
        let specs = [
            json!({"podSelector": {}}),
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}},
                                          "namespaceSelector": {}}],
                                "ports": [{"port": 80}, {"port": "http", "protocol": "UDP"},
                                          {"port": 8000, "endPort": 8080}]}],
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                    "except": ["10.1.0.0/16"]}}]}, {}],
                   "policyTypes": ["Ingress", "Egress"]}),
            json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Egress"]}),
        ];
        for spec in specs {
            assert_eq!(errors(spec.clone()), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn bad_policies_get_upstreams_messages() {
        let cases = [
            (
                json!({"ingress": [{"ports": [{"port": 0}]}]}),
                "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ),
            (
                json!({"ingress": [{"ports": [{"port": 70000}]}]}),
                "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ),
            (
                json!({"egress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
                "spec.egress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`",
            ),
            (
                json!({"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}),
                "spec.ingress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is non-numeric",
            ),
            (
                json!({"ingress": [{"ports": [{"endPort": 80}]}]}),
                "spec.ingress[0].ports[0].endPort: Invalid value: 80: may not be specified when `port` is not specified",
            ),
            (
                json!({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
                "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ),
            (
                json!({"ingress": [{"from": [{}]}]}),
                "spec.ingress[0].from[0]: Required value: must specify a peer",
            ),
            (
                json!({"ingress": [{"from": [{"podSelector": {},
                                               "ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
                "spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
                "spec.egress[0].to[0].ipBlock.cidr: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": ""}}]}]}),
                "spec.egress[0].to[0].ipBlock.cidr: Required value",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                        "except": ["10.1.0.0/24"]}}]}]}),
                "spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                        "except": ["10.0.0.0/16"]}}]}]}),
                "spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`",
            ),
            (
                json!({"policyTypes": ["Ingress", "Sideways"]}),
                "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
            ),
            (
                json!({"policyTypes": ["Ingress", "Egress", "Ingress"]}),
                "spec.policyTypes: Invalid value: []networking.PolicyType{\"Ingress\", \"Egress\", \"Ingress\"}: may not specify more than two policyTypes",
            ),
            (
                json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
                "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(errors(spec.clone()), vec![want.to_string()], "{spec}");
        }
    }

    #[test]
    fn defaults_infer_policy_types_and_tcp() {
        let info = find("networking.k8s.io", "v1", "networkpolicies").expect("served");
        let mut np = policy(json!({"ingress": [{"ports": [{"port": 80}]}]}));
        apply_defaults(info, &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(np["spec"]["podSelector"], json!({}));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");

        let mut np = policy(json!({"podSelector": {}, "egress": [{}]}));
        apply_defaults(info, &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));

        let mut np = policy(json!({"podSelector": {}, "policyTypes": ["Egress"]}));
        apply_defaults(info, &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Egress"]));
    }

    #[test]
    fn update_keeps_accepting_stored_cidrs_but_checks_new_ones() {
        let info = find("networking.k8s.io", "v1", "networkpolicies").expect("served");
        let mut old = policy(json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}));
        old["metadata"]["resourceVersion"] = json!("5");
        // A stored value that no longer parses (written by a laxer version) stays accepted.
        let mut stored = old.clone();
        stored["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] = json!("10.0.0.0/40");
        let mut new = stored.clone();
        new["spec"]["policyTypes"] = json!(["Egress"]);
        assert_eq!(
            errors_of(validate_update(info, &stored, &new)),
            Vec::<String>::new()
        );
        let mut new = old.clone();
        new["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] = json!("10.0.0.0/40");
        assert_eq!(
            errors_of(validate_update(info, &old, &new)),
            ["spec.egress[0].to[0].ipBlock.cidr: Invalid value: \"10.0.0.0/40\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
        );
    }
}
