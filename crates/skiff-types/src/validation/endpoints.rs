//! core/v1 Endpoints and discovery.k8s.io/v1 EndpointSlices, as upstream's
//! `pkg/apis/core/validation` (`ValidateEndpoints`) and `pkg/apis/discovery/validation`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::errors::{FieldError, FieldPath};
use super::immutable;
use super::meta::{self, NameRule};
use super::names;
use super::pod;
use super::value::V;

/// Address types a new slice may carry (`IP` is accepted on update only, as upstream).
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 100;

// ------------------------------------------------------------------------------------ Endpoints

/// Validates a new Endpoints object.
pub(super) fn validate_endpoints(ep: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        ep.get("metadata"),
        true,
        NameRule::Subdomain,
        &FieldPath::new("metadata"),
        errs,
    );
    validate_subsets(ep, errs);
}

/// Validates an Endpoints update (metadata is checked by the caller): the subsets alone.
pub(super) fn validate_endpoints_update(ep: V<'_>, errs: &mut Vec<FieldError>) {
    validate_subsets(ep, errs);
}

fn validate_subsets(ep: V<'_>, errs: &mut Vec<FieldError>) {
    let path = FieldPath::new("subsets");
    for (i, subset) in ep.get("subsets").items().enumerate() {
        let sp = path.index(i);
        if subset.get("addresses").is_empty() && subset.get("notReadyAddresses").is_empty() {
            errs.push(FieldError::required(
                sp.clone(),
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for list in ["addresses", "notReadyAddresses"] {
            for (j, address) in subset.get(list).items().enumerate() {
                validate_endpoint_address(address, &sp.child(list).index(j), errs);
            }
        }
        let ports = subset.get("ports");
        let many = ports.len() > 1;
        for (j, port) in ports.items().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = port.get("name").str();
            if many && name.is_empty() {
                errs.push(FieldError::required(pp.child("name"), ""));
            } else if !name.is_empty() {
                for msg in names::dns1123_label(name) {
                    errs.push(FieldError::invalid(pp.child("name"), name, msg));
                }
            }
            let num = port.get("port").int0();
            for msg in names::port_num(num) {
                errs.push(FieldError::invalid(pp.child("port"), num, msg));
            }
            pod::validate_protocol(port.get("protocol").str(), &pp.child("protocol"), errs);
            validate_app_protocol(port.get("appProtocol"), &pp.child("appProtocol"), errs);
        }
    }
}

fn validate_endpoint_address(address: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let ip = address.get("ip").str();
    let ip_path = path.child("ip");
    for msg in names::ip_address(ip) {
        errs.push(FieldError::invalid(ip_path.clone(), ip, msg));
    }
    let hostname = address.get("hostname").str();
    if !hostname.is_empty() {
        for msg in names::dns1123_label(hostname) {
            errs.push(FieldError::invalid(path.child("hostname"), hostname, msg));
        }
    }
    let node = address.get("nodeName");
    if node.present() {
        for msg in names::dns1123_subdomain(node.str()) {
            errs.push(FieldError::invalid(path.child("nodeName"), node.str(), msg));
        }
    }
    non_special_ip(ip, &ip_path, errs);
}

/// Upstream `ValidateNonSpecialIP`: endpoints may not point at unspecified, loopback or
/// link-local addresses (a Service must not become a way to reach the node itself).
fn non_special_ip(value: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let Ok(ip) = value.parse::<IpAddr>() else {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "must be a valid IP address",
        ));
        return;
    };
    if ip.is_unspecified() {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            format!("may not be unspecified ({value})"),
        ));
    }
    if ip.is_loopback() {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let (link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            ((s[0] & 0xffc0) == 0xfe80, (s[0] & 0xff0f) == 0xff02)
        }
    };
    if link_local {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

fn validate_app_protocol(app: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if app.present() {
        for msg in names::qualified_name(app.str()) {
            errs.push(FieldError::invalid(path.clone(), app.str(), msg));
        }
    }
}

// -------------------------------------------------------------------------------- EndpointSlice

/// Validates a new EndpointSlice.
pub(super) fn validate_endpoint_slice(slice: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        slice.get("metadata"),
        true,
        NameRule::Subdomain,
        &FieldPath::new("metadata"),
        errs,
    );
    validate_slice(slice, ADDRESS_TYPES, errs);
}

/// Validates an EndpointSlice update (metadata is checked by the caller): the deprecated `IP` address type is still accepted, and
/// `addressType` may not change.
pub(super) fn validate_endpoint_slice_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_slice(new, &["FQDN", "IP", "IPv4", "IPv6"], errs);
    immutable(
        new.get("addressType"),
        old.get("addressType"),
        FieldPath::new("addressType"),
        errs,
    );
}

fn validate_slice(slice: V<'_>, address_types: &[&str], errs: &mut Vec<FieldError>) {
    let address_type = slice.get("addressType").str();
    if address_type.is_empty() {
        errs.push(FieldError::required(FieldPath::new("addressType"), ""));
    } else if !address_types.contains(&address_type) {
        errs.push(FieldError::not_supported(
            FieldPath::new("addressType"),
            address_type,
            address_types,
        ));
    }
    validate_slice_endpoints(slice.get("endpoints"), address_type, errs);
    validate_slice_ports(slice.get("ports"), errs);
}

fn validate_slice_endpoints(endpoints: V<'_>, address_type: &str, errs: &mut Vec<FieldError>) {
    let path = FieldPath::new("endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(FieldError::too_many(path, endpoints.len(), MAX_ENDPOINTS));
        return;
    }
    for (i, endpoint) in endpoints.items().enumerate() {
        let ep = path.index(i);
        let ap = ep.child("addresses");
        let addresses = endpoint.get("addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(
                ap.clone(),
                "must contain at least 1 address",
            ));
        } else if addresses.len() > MAX_ADDRESSES {
            errs.push(FieldError::too_many(
                ap.clone(),
                addresses.len(),
                MAX_ADDRESSES,
            ));
        }
        for (j, address) in addresses.items().enumerate() {
            let a = address.str();
            let p = ap.index(j);
            match address_type {
                "IP" => {
                    for msg in names::ip_address(a) {
                        errs.push(FieldError::invalid(p.clone(), a, msg));
                    }
                }
                "IPv4" => {
                    if !a.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()) {
                        errs.push(FieldError::invalid(
                            p.clone(),
                            a,
                            "must be a valid IPv4 address",
                        ));
                    }
                    non_special_ip(a, &p, errs);
                }
                "IPv6" => {
                    if !a.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
                        errs.push(FieldError::invalid(
                            p.clone(),
                            a,
                            "must be a valid IPv6 address",
                        ));
                    }
                    non_special_ip(a, &p, errs);
                }
                "FQDN" => {
                    for msg in fqdn_errors(a) {
                        errs.push(FieldError::invalid(p.clone(), a, msg));
                    }
                }
                _ => {}
            }
        }
        let hostname = endpoint.get("hostname");
        if hostname.present() {
            for msg in names::dns1123_label(hostname.str()) {
                errs.push(FieldError::invalid(
                    ep.child("hostname"),
                    hostname.str(),
                    msg,
                ));
            }
        }
        let node = endpoint.get("nodeName");
        if node.present() {
            for msg in names::dns1123_subdomain(node.str()) {
                errs.push(FieldError::invalid(ep.child("nodeName"), node.str(), msg));
            }
        }
    }
}

/// Upstream `IsFullyQualifiedDomainName`: at least two labels, a valid subdomain.
fn fqdn_errors(name: &str) -> Vec<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return vec!["Required value".to_string()];
    }
    let mut out = names::dns1123_subdomain(name);
    if out.is_empty() && !name.contains('.') {
        out.push("should be a domain with at least two segments separated by dots".to_string());
    }
    out
}

fn validate_slice_ports(ports: V<'_>, errs: &mut Vec<FieldError>) {
    let path = FieldPath::new("ports");
    if ports.len() > MAX_PORTS {
        errs.push(FieldError::too_many(path, ports.len(), MAX_PORTS));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, port) in ports.items().enumerate() {
        let pp = path.index(i);
        let name = port.get("name").str();
        if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(pp.child("name"), name, msg));
            }
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(pp.child("name"), name));
        }
        let protocol = port.get("protocol");
        if !protocol.present() {
            errs.push(FieldError::required(pp.child("protocol"), ""));
        } else if !matches!(protocol.str(), "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                pp.child("protocol"),
                protocol.str(),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        validate_app_protocol(port.get("appProtocol"), &pp.child("appProtocol"), errs);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{validate_create, validate_update};
    use crate::registry::find;

    fn slice_errors(slice: serde_json::Value) -> Vec<String> {
        let info = find("discovery.k8s.io", "v1", "endpointslices").expect("served");
        match validate_create(info, &slice) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .causes()
                .into_iter()
                .map(|(_, m, f)| format!("{f}: {m}"))
                .collect(),
        }
    }

    fn endpoints_errors(ep: serde_json::Value) -> Vec<String> {
        let info = find("", "v1", "endpoints").expect("served");
        match validate_create(info, &ep) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .causes()
                .into_iter()
                .map(|(_, m, f)| format!("{f}: {m}"))
                .collect(),
        }
    }

    fn slice(address_type: &str, addresses: &[&str]) -> serde_json::Value {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc12", "namespace": "default"},
            "addressType": address_type,
            "endpoints": [{"addresses": addresses, "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        })
    }

    #[test]
    fn slices_validate_as_upstream() {
        let cases: &[(serde_json::Value, &[&str])] = &[
            (slice("IPv4", &["10.42.0.5"]), &[]),
            (slice("", &["10.42.0.5"]), &["addressType: Required value"]),
            (
                slice("IP", &["10.42.0.5"]),
                &[
                    r#"addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6""#,
                ],
            ),
            (
                slice("IPv4", &["fd00::1"]),
                &[
                    r#"endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address"#,
                ],
            ),
            (
                slice("IPv4", &["127.0.0.1"]),
                &[
                    r#"endpoints[0].addresses[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#,
                ],
            ),
            (
                slice("IPv4", &[]),
                &["endpoints[0].addresses: Required value: must contain at least 1 address"],
            ),
            (slice("IPv6", &["fd00::1"]), &[]),
            (slice("FQDN", &["example.com"]), &[]),
        ];
        for (object, want) in cases {
            let got = slice_errors(object.clone());
            let got: Vec<&str> = got.iter().map(String::as_str).collect();
            assert_eq!(got, *want, "{object}");
        }
    }

    #[test]
    fn slice_ports_need_unique_names_and_a_protocol() {
        let mut s = slice("IPv4", &["10.42.0.5"]);
        s["ports"] = json!([
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "http", "port": 81},
            {"name": "x", "port": 82, "protocol": "ICMP"},
        ]);
        let got = slice_errors(s);
        assert!(
            got.contains(&r#"ports[1].name: Duplicate value: "http""#.to_string()),
            "{got:?}"
        );
        assert!(
            got.contains(&"ports[1].protocol: Required value".to_string()),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|e| e.starts_with("ports[2].protocol: Unsupported value")),
            "{got:?}"
        );
    }

    #[test]
    fn slice_address_type_is_immutable() {
        let info = find("discovery.k8s.io", "v1", "endpointslices").expect("served");
        let old = slice("IPv4", &["10.42.0.5"]);
        let new = slice("IPv6", &["fd00::1"]);
        let err = validate_update(info, &old, &new).expect_err("immutable");
        assert!(
            err.causes()
                .iter()
                .any(|(_, m, f)| f == "addressType" && m.contains("field is immutable")),
            "{err:?}"
        );
    }

    #[test]
    fn endpoints_validate_as_upstream() {
        let ep = |subsets: serde_json::Value| {
            json!({"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": "web", "namespace": "default"}, "subsets": subsets})
        };
        assert_eq!(
            endpoints_errors(ep(json!([{"addresses": [{"ip": "10.42.0.5"}],
                                        "ports": [{"port": 80, "protocol": "TCP"}]}]))),
            Vec::<String>::new()
        );
        assert_eq!(
            endpoints_errors(ep(json!([{"ports": [{"port": 80, "protocol": "TCP"}]}]))),
            ["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
        );
        assert_eq!(
            endpoints_errors(ep(json!([{"addresses": [{"ip": "nope"}]}]))),
            [
                r#"subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                r#"subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address"#,
            ]
        );
        assert_eq!(
            endpoints_errors(ep(
                json!([{"notReadyAddresses": [{"ip": "169.254.169.254"}]},
                                       {"addresses": [{"ip": "0.0.0.0"}]}])
            )),
            [
                r#"subsets[0].notReadyAddresses[0].ip: Invalid value: "169.254.169.254": may not be in the link-local range (169.254.0.0/16, fe80::/10)"#,
                r#"subsets[1].addresses[0].ip: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)"#,
            ]
        );
        assert_eq!(
            endpoints_errors(ep(json!([{"addresses": [{"ip": "10.42.0.5"}],
                "ports": [{"port": 80, "protocol": "TCP"}, {"name": "b", "port": 70000, "protocol": "TCP"}]}]))),
            [
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
    }
}
