//! core/v1 kinds other than pods, and coordination.k8s.io leases
//! (`k8s.io/kubernetes/pkg/apis/core/validation`, `.../coordination/validation`).

use std::collections::BTreeSet;

use base64::Engine as _;
use serde_json::Value;

use super::errors::{FieldError, FieldPath};
use super::meta::{self, NameRule};
use super::names;
use super::pod;
use super::value::V;
use super::{immutable, nonnegative};

/// Largest total size of a Secret's or ConfigMap's data, bytes.
pub(super) const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn meta_path() -> FieldPath {
    FieldPath::new("metadata")
}

// ----------------------------------------------------------------------------------- Namespace

use super::meta::STANDARD_FINALIZERS;

/// Validates a new Namespace.
pub(super) fn validate_namespace(ns: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        ns.get("metadata"),
        false,
        NameRule::Label,
        &meta_path(),
        errs,
    );
    validate_namespace_finalizers(ns, errs);
}

fn validate_namespace_finalizers(ns: V<'_>, errs: &mut Vec<FieldError>) {
    let fp = FieldPath::new("spec").child("finalizers");
    for f in ns.get("spec").get("finalizers").items() {
        let name = f.str();
        for msg in names::qualified_name(name) {
            errs.push(FieldError::invalid(fp.clone(), name, msg));
        }
        if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
            errs.push(FieldError::invalid(
                fp.clone(),
                name,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// Validates a Namespace update.
pub(super) fn validate_namespace_update(new: V<'_>, _old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_namespace_finalizers(new, errs);
}

/// Validates a Namespace status update: the phase follows `deletionTimestamp`.
pub(super) fn validate_namespace_status_update(
    new: V<'_>,
    _old: V<'_>,
    errs: &mut Vec<FieldError>,
) {
    let phase = new.get("status").get("phase").str();
    let deleting = new.get("metadata").get("deletionTimestamp").present();
    let p = FieldPath::new("status").child("phase");
    if !deleting && phase != "Active" {
        errs.push(FieldError::invalid(
            p,
            phase,
            "may only be 'Active' if `deletionTimestamp` is empty",
        ));
    } else if deleting && phase != "Terminating" {
        errs.push(FieldError::invalid(
            p,
            phase,
            "may only be in `Terminating` phase if `deletionTimestamp` is not empty",
        ));
    }
}

// ----------------------------------------------------------------------------------------- Node

/// Validates a new Node.
pub(super) fn validate_node(node: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        node.get("metadata"),
        false,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
    validate_node_spec(node.get("spec"), errs);
    validate_node_status(node, errs);
}

fn validate_node_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    let cidrs = spec.get("podCIDRs");
    let mut families = BTreeSet::new();
    for (i, c) in cidrs.items().enumerate() {
        let p = sp.child("podCIDRs").index(i);
        match parse_cidr(c.str()) {
            Some(v6) => {
                if !families.insert(v6) {
                    errs.push(FieldError::invalid(
                        sp.child("podCIDRs"),
                        cidrs.raw(),
                        "may specify no more than one CIDR for each IP family",
                    ));
                }
            }
            None => errs.push(FieldError::invalid(
                p,
                c.str(),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
        }
    }
    if cidrs.len() > 2 {
        errs.push(FieldError::invalid(
            sp.child("podCIDRs"),
            cidrs.raw(),
            "may specify no more than two CIDRs",
        ));
    }
    let pod_cidr = spec.get("podCIDR").str();
    if !pod_cidr.is_empty() && parse_cidr(pod_cidr).is_none() {
        errs.push(FieldError::invalid(
            sp.child("podCIDR"),
            pod_cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
    validate_taints(spec.get("taints"), &sp.child("taints"), errs);
}

/// `Some(is_ipv6)` for a valid CIDR.
fn parse_cidr(s: &str) -> Option<bool> {
    let (ip, bits) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv6() { 128 } else { 32 };
    (bits <= max).then_some(ip.is_ipv6())
}

/// Validates node taints (upstream `validateNodeTaints`).
pub(crate) fn validate_taints(taints: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, t) in taints.items().enumerate() {
        let p = path.index(i);
        let key = t.get("key").str();
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(p.child("key"), key, msg));
        }
        let value = t.get("value").str();
        for msg in names::label_value(value) {
            errs.push(FieldError::invalid(p.child("value"), value, msg));
        }
        let effect = t.get("effect").str();
        match effect {
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            "" => errs.push(FieldError::required(p.child("effect"), "")),
            other => errs.push(FieldError::not_supported(
                p.child("effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if !seen.insert(format!("{key}:{effect}")) {
            errs.push(FieldError::duplicate(
                p,
                Value::String(format!("{key}={value}:{effect}")),
            ));
            if let Some(last) = errs.last_mut() {
                last.detail = "taints must be unique by key and effect pair".to_string();
            }
        }
    }
}

/// Validates a Node's status (also used for `nodes/status` updates).
pub(super) fn validate_node_status(node: V<'_>, errs: &mut Vec<FieldError>) {
    let status = node.get("status");
    let sp = FieldPath::new("status");
    for key in ["capacity", "allocatable"] {
        pod::validate_resource_list(status.get(key), &sp.child(key), errs);
    }
    for (i, a) in status.get("addresses").items().enumerate() {
        let ty = a.get("type").str();
        if ty.is_empty() {
            errs.push(FieldError::required(
                sp.child("addresses").index(i).child("type"),
                "",
            ));
        }
    }
}

/// Validates a Node update: pod CIDRs may only be set once.
pub(super) fn validate_node_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_node_spec(new.get("spec"), errs);
    let (ns, os) = (new.get("spec"), old.get("spec"));
    let sp = FieldPath::new("spec");
    if !os.get("podCIDRs").is_empty() && !ns.get("podCIDRs").same(&os.get("podCIDRs")) {
        errs.push(FieldError::forbidden(
            sp.child("podCIDRs"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    if !os.get("podCIDR").str().is_empty() && ns.get("podCIDR").str() != os.get("podCIDR").str() {
        errs.push(FieldError::forbidden(
            sp.child("podCIDR"),
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
    if !os.get("providerID").str().is_empty()
        && ns.get("providerID").str() != os.get("providerID").str()
    {
        errs.push(FieldError::forbidden(
            sp.child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

// -------------------------------------------------------------------------------------- Service

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// Validates a new Service (upstream `ValidateService`).
pub(super) fn validate_service(svc: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        svc.get("metadata"),
        true,
        NameRule::Dns1035,
        &meta_path(),
        errs,
    );
    validate_service_spec(svc, errs);
}

fn is_headless(spec: V<'_>) -> bool {
    spec.get("clusterIPs")
        .items()
        .next()
        .is_some_and(|ip| ip.str() == "None")
        || spec.get("clusterIP").str() == "None"
}

/// Go's `%#v` of the `core.ServicePort` key upstream reports duplicates with.
fn service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        super::errors::go_quote(protocol)
    )
}

fn validate_service_spec(svc: V<'_>, errs: &mut Vec<FieldError>) {
    let spec = svc.get("spec");
    let sp = FieldPath::new("spec");
    let ty = spec.get("type").str();
    let headless = is_headless(spec);
    let ports = spec.get("ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => {
            errs.push(FieldError::invalid(
                sp.child("clusterIPs").index(0),
                "None",
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        "ExternalName" => {
            if !spec.get("clusterIPs").is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !spec.get("ipFamilies").is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.get("ipFamilyPolicy").present() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let name = spec.get("externalName").str();
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required(sp.child("externalName"), ""));
            } else {
                for msg in names::dns1123_subdomain(cname) {
                    errs.push(FieldError::invalid(sp.child("externalName"), cname, msg));
                }
            }
        }
        _ => {}
    }
    let many = ports.len() > 1;
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.items().enumerate() {
        let p = sp.child("ports").index(i);
        let name = port.get("name").str();
        if many && name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(p.child("name"), name, msg));
            }
            if !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        let num = port.get("port").int0();
        for msg in names::port_num(num) {
            errs.push(FieldError::invalid(p.child("port"), num, msg));
        }
        pod::validate_protocol(port.get("protocol").str(), &p.child("protocol"), errs);
        pod::validate_port_num_or_name(port.get("targetPort"), &p.child("targetPort"), errs);
        let app = port.get("appProtocol");
        if app.present() {
            for msg in names::qualified_name(app.str()) {
                errs.push(FieldError::invalid(p.child("appProtocol"), app.str(), msg));
            }
        }
    }
    meta::validate_labels(spec.get("selector"), &sp.child("selector"), errs);
    let affinity = spec.get("sessionAffinity").str();
    match affinity {
        "" => errs.push(FieldError::required(sp.child("sessionAffinity"), "")),
        "ClientIP" | "None" => {}
        other => errs.push(FieldError::not_supported(
            sp.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    let config = spec.get("sessionAffinityConfig");
    let cp = sp.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        if !config.present() {
            errs.push(FieldError::required(
                cp,
                "when session affinity type is ClientIP",
            ));
        } else if !config.get("clientIP").present() {
            errs.push(FieldError::required(
                cp.child("clientIP"),
                "when session affinity type is ClientIP",
            ));
        } else if let Some(timeout) = config.get("clientIP").get("timeoutSeconds").int() {
            if !(1..=86400).contains(&timeout) {
                errs.push(FieldError::invalid(
                    cp.child("clientIP").child("timeoutSeconds"),
                    timeout,
                    "must be greater than 0 and less than 86400",
                ));
            }
        } else {
            errs.push(FieldError::required(
                cp.child("clientIP").child("timeoutSeconds"),
                "when session affinity type is ClientIP",
            ));
        }
    } else if affinity == "None" && config.present() {
        errs.push(FieldError::forbidden(
            cp,
            "must not be set when session affinity is None",
        ));
    }
    validate_cluster_ips(spec, &sp, errs);
    for (i, ip) in spec.get("externalIPs").items().enumerate() {
        for msg in names::ip_address(ip.str()) {
            errs.push(FieldError::invalid(
                sp.child("externalIPs").index(i),
                ip.str(),
                msg,
            ));
        }
    }
    match ty {
        "" => errs.push(FieldError::required(sp.child("type"), "")),
        t if SERVICE_TYPES.contains(&t) => {}
        other => errs.push(FieldError::not_supported(
            sp.child("type"),
            other,
            SERVICE_TYPES,
        )),
    }
    if ty == "ClusterIP" {
        for (i, port) in ports.items().enumerate() {
            if port.get("nodePort").int0() != 0 {
                errs.push(FieldError::forbidden(
                    sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.items().enumerate() {
        let np = port.get("nodePort").int0();
        if np == 0 {
            continue;
        }
        if !node_ports.insert((port.get("protocol").str().to_string(), np)) {
            errs.push(FieldError::duplicate(
                sp.child("ports").index(i).child("nodePort"),
                np,
            ));
        }
    }
    let mut keys = BTreeSet::new();
    for (i, port) in ports.items().enumerate() {
        let (protocol, num) = (port.get("protocol").str(), port.get("port").int0());
        if !keys.insert((protocol.to_string(), num)) {
            let mut e = FieldError::duplicate(
                sp.child("ports").index(i),
                serde_json::json!({"port": num, "protocol": protocol}),
            );
            e.rendered = Some(service_port_key(protocol, num));
            errs.push(e);
        }
    }
    if spec.get("allocateLoadBalancerNodePorts").present() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && !spec.get("allocateLoadBalancerNodePorts").present() {
        errs.push(FieldError::required(
            FieldPath::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
    let externally_accessible = ty == "LoadBalancer"
        || ty == "NodePort"
        || (ty == "ClusterIP" && !spec.get("externalIPs").is_empty());
    let etp = spec.get("externalTrafficPolicy").str();
    if !externally_accessible {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(sp.child("externalTrafficPolicy"), ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            sp.child("externalTrafficPolicy"),
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = spec.get("healthCheckNodePort").int0();
    let needs_health_check = ty == "LoadBalancer" && etp == "Local";
    if !needs_health_check && hc != 0 {
        errs.push(FieldError::invalid(
            sp.child("healthCheckNodePort"),
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    let itp = spec.get("internalTrafficPolicy");
    if !itp.present() {
        if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") {
            errs.push(FieldError::required(sp.child("internalTrafficPolicy"), ""));
        }
    } else if !matches!(itp.str(), "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            sp.child("internalTrafficPolicy"),
            itp.str(),
            &["Cluster", "Local"],
        ));
    }
    let td = spec.get("trafficDistribution");
    if td.present() && td.str() != "PreferClose" {
        errs.push(FieldError::not_supported(
            sp.child("trafficDistribution"),
            td.str(),
            &["PreferClose"],
        ));
    }
}

/// Upstream `ValidateServiceClusterIPsRelatedFields` (single- and dual-stack addresses).
fn validate_cluster_ips(spec: V<'_>, sp: &FieldPath, errs: &mut Vec<FieldError>) {
    if spec.get("type").str() == "ExternalName" {
        return;
    }
    let ips_path = sp.child("clusterIPs");
    let cluster_ip = spec.get("clusterIP").str();
    let ips = spec.get("clusterIPs");
    if !cluster_ip.is_empty() {
        match ips.items().next() {
            None => errs.push(FieldError::required(&ips_path, "")),
            Some(first) if first.str() != cluster_ip => {
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips.raw(),
                    "first value must match `clusterIP`",
                ));
            }
            Some(_) => {}
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            ips.raw(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut families = BTreeSet::new();
    for (i, f) in spec.get("ipFamilies").items().enumerate() {
        let p = sp.child("ipFamilies").index(i);
        if !matches!(f.str(), "IPv4" | "IPv6") {
            errs.push(FieldError::not_supported(
                p.clone(),
                f.str(),
                &["IPv4", "IPv6"],
            ));
        }
        if !families.insert(f.str()) {
            errs.push(FieldError::duplicate(p, f.str()));
        }
    }
    let policy = spec.get("ipFamilyPolicy");
    if policy.present()
        && !matches!(
            policy.str(),
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        errs.push(FieldError::not_supported(
            sp.child("ipFamilyPolicy"),
            policy.str(),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    for (i, ip) in ips.items().enumerate() {
        if i == 0 && ip.str() == "None" {
            if ips.len() > 1 {
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips.raw(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        for msg in names::ip_address(ip.str()) {
            errs.push(FieldError::invalid(ips_path.index(i), ip.str(), msg));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips.raw(),
            "may only hold up to 2 values",
        ));
    }
}

/// Validates a Service update: the primary cluster IP may not change once set (except to or
/// from ExternalName).
pub(super) fn validate_service_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    let (ns, os) = (new.get("spec"), old.get("spec"));
    let involves_external =
        ns.get("type").str() == "ExternalName" || os.get("type").str() == "ExternalName";
    if !involves_external {
        let (nips, oips) = (ns.get("clusterIPs"), os.get("clusterIPs"));
        let ips_path = FieldPath::new("spec").child("clusterIPs");
        match (oips.items().next(), nips.items().next()) {
            (Some(o), Some(n)) if o.str() != n.str() => {
                errs.push(FieldError::invalid(
                    ips_path.index(0),
                    n.str(),
                    "may not change once set",
                ));
            }
            (Some(_), None) => {
                errs.push(FieldError::invalid(
                    ips_path,
                    nips.raw(),
                    "primary clusterIP can not be unset",
                ));
            }
            _ => {}
        }
    }
    validate_service_spec(new, errs);
}

/// Validates a Service status update.
pub(super) fn validate_service_status(svc: V<'_>, errs: &mut Vec<FieldError>) {
    let p = FieldPath::new("status")
        .child("loadBalancer")
        .child("ingress");
    for (i, ing) in svc
        .get("status")
        .get("loadBalancer")
        .get("ingress")
        .items()
        .enumerate()
    {
        let ip = ing.get("ip").str();
        if !ip.is_empty() {
            for msg in names::ip_address(ip) {
                errs.push(FieldError::invalid(p.index(i).child("ip"), ip, msg));
            }
        }
        let host = ing.get("hostname").str();
        if !host.is_empty() {
            for msg in names::dns1123_subdomain(host) {
                errs.push(FieldError::invalid(p.index(i).child("hostname"), host, msg));
            }
        }
    }
}

// ---------------------------------------------------------------------------- ConfigMap, Secret

/// Validates a new ConfigMap.
pub(super) fn validate_config_map(cm: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        cm.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
    let mut total = 0usize;
    let binary = cm.get("binaryData");
    for (key, value) in cm.get("data").string_map() {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(
                FieldPath::new("data").key(key),
                key,
                msg,
            ));
        }
        total += value.len();
    }
    for (key, value) in binary.string_map() {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(
                FieldPath::new("binaryData").key(key),
                key,
                msg,
            ));
        }
        if cm.get("data").map().contains_key(key) {
            errs.push(FieldError::invalid(
                FieldPath::new("data").key(key),
                key,
                "duplicate of key present in binaryData",
            ));
        }
        total += base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_or(value.len(), |b| b.len());
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
}

fn immutable_data(new: V<'_>, old: V<'_>, keys: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").bool() != Some(true) {
        return;
    }
    if new.get("immutable").bool() != Some(true) {
        errs.push(FieldError::forbidden(
            FieldPath::new("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
    for key in keys {
        if !new.get(key).same(&old.get(key)) {
            errs.push(FieldError::forbidden(
                FieldPath::new(key),
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// Validates a ConfigMap update: nothing but metadata changes once `immutable` is set.
pub(super) fn validate_config_map_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    immutable_data(new, old, &["data", "binaryData"], errs);
    validate_config_map(new, errs);
}

/// Validates a new Secret.
pub(super) fn validate_secret(secret: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        secret.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
    let data_path = FieldPath::new("data");
    let data = secret.get("data");
    let mut total = 0usize;
    let decode = |v: &str| base64::engine::general_purpose::STANDARD.decode(v).ok();
    for (key, value) in data.string_map() {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(data_path.key(key), key, msg));
        }
        total += decode(value).map_or(value.len(), |b| b.len());
    }
    // stringData is merged into data by the API server before storing; count it too.
    for (key, value) in secret.get("stringData").string_map() {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(
                FieldPath::new("stringData").key(key),
                key,
                msg,
            ));
        }
        total += value.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has =
        |k: &str| data.map().contains_key(k) || secret.get("stringData").map().contains_key(k);
    match secret.get("type").str() {
        "kubernetes.io/service-account-token" => {
            let annotations = secret.get("metadata").get("annotations");
            if annotations
                .get("kubernetes.io/service-account.name")
                .str()
                .is_empty()
            {
                errs.push(FieldError::required(
                    meta_path()
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => {
            if !has(".dockercfg") {
                errs.push(FieldError::required(data_path.key(".dockercfg"), ""));
            }
        }
        "kubernetes.io/dockerconfigjson" => {
            if !has(".dockerconfigjson") {
                errs.push(FieldError::required(data_path.key(".dockerconfigjson"), ""));
            } else if let Some(bytes) = data
                .get(".dockerconfigjson")
                .0
                .and_then(Value::as_str)
                .and_then(decode)
            {
                if serde_json::from_slice::<Value>(&bytes).is_err() {
                    errs.push(FieldError::invalid(
                        data_path.key(".dockerconfigjson"),
                        "<secret contents redacted>",
                        "invalid character in JSON",
                    ));
                }
            }
        }
        "kubernetes.io/basic-auth" => {
            if !has("username") && !has("password") {
                errs.push(FieldError::required(data_path.key("username"), ""));
                errs.push(FieldError::required(data_path.key("password"), ""));
            }
        }
        "kubernetes.io/ssh-auth" => {
            if !has("ssh-privatekey") {
                errs.push(FieldError::required(data_path.key("ssh-privatekey"), ""));
            }
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(FieldError::required(data_path.key("tls.crt"), ""));
            }
            if !has("tls.key") {
                errs.push(FieldError::required(data_path.key("tls.key"), ""));
            }
        }
        "" => errs.push(FieldError::required(FieldPath::new("type"), "")),
        other => {
            for msg in names::qualified_name(other) {
                errs.push(FieldError::invalid(FieldPath::new("type"), other, msg));
            }
        }
    }
}

/// Validates a Secret update: its type never changes; nothing but metadata changes once
/// `immutable` is set.
pub(super) fn validate_secret_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    immutable(
        new.get("type"),
        old.get("type"),
        FieldPath::new("type"),
        errs,
    );
    immutable_data(new, old, &["data"], errs);
    validate_secret(new, errs);
}

// ---------------------------------------------------------------------- ServiceAccount, Event

/// Validates a new ServiceAccount.
pub(super) fn validate_service_account(sa: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        sa.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
}

/// Validates a ServiceAccount update.
pub(super) fn validate_service_account_update(_sa: V<'_>, _errs: &mut Vec<FieldError>) {}

/// Longest `reportingInstance` of an event.
const REPORTING_INSTANCE_LIMIT: usize = 128;
/// Longest `action` of an event.
const ACTION_LIMIT: usize = 128;
/// Longest `reason` of an event.
const REASON_LIMIT: usize = 128;
/// Longest `message` of an event.
const NOTE_LIMIT: usize = 1024;

/// Validates a new core/v1 Event (upstream `legacyValidateEvent`).
pub(super) fn validate_event(event: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        event.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
    validate_event_fields(event, errs);
}

fn validate_event_fields(event: V<'_>, errs: &mut Vec<FieldError>) {
    let ns = event.get("metadata").get("namespace").str();
    let involved_ns = event.get("involvedObject").get("namespace").str();
    let inp = FieldPath::new("involvedObject").child("namespace");
    if !event.get("eventTime").present() {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(FieldError::invalid(
                    inp,
                    involved_ns,
                    "does not match event.namespace",
                ));
            }
        } else if ns != involved_ns {
            errs.push(FieldError::invalid(
                inp,
                involved_ns,
                "does not match event.namespace",
            ));
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(FieldError::invalid(
                inp,
                involved_ns,
                "does not match event.namespace",
            ));
        }
        let controller = event.get("reportingComponent").str();
        if controller.is_empty() {
            errs.push(FieldError::required(
                FieldPath::new("reportingComponent"),
                "",
            ));
        }
        for msg in names::qualified_name(controller) {
            errs.push(FieldError::invalid(
                FieldPath::new("reportingComponent"),
                controller,
                msg,
            ));
        }
        for (key, limit) in [
            ("reportingInstance", REPORTING_INSTANCE_LIMIT),
            ("action", ACTION_LIMIT),
            ("reason", REASON_LIMIT),
        ] {
            let v = event.get(key).str();
            if v.is_empty() {
                errs.push(FieldError::required(FieldPath::new(key), ""));
            }
            if v.len() > limit {
                errs.push(FieldError::invalid(
                    FieldPath::new(key),
                    "",
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if event.get("message").str().len() > NOTE_LIMIT {
            errs.push(FieldError::invalid(
                FieldPath::new("message"),
                "",
                format!("can have at most {NOTE_LIMIT} characters"),
            ));
        }
    }
    for msg in names::dns1123_subdomain(ns) {
        errs.push(FieldError::invalid(FieldPath::new("namespace"), ns, msg));
    }
}

/// Validates an Event update (core/v1 keeps the legacy rules only).
pub(super) fn validate_event_update(new: V<'_>, _old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_event_fields(new, errs);
}

// ------------------------------------------------------------------------------------- Lease

/// Validates a new Lease.
pub(super) fn validate_lease(lease: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        lease.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
    validate_lease_spec(lease.get("spec"), errs);
}

fn validate_lease_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    if let Some(d) = spec.get("leaseDurationSeconds").int() {
        if d <= 0 {
            errs.push(FieldError::invalid(
                sp.child("leaseDurationSeconds"),
                d,
                "must be greater than 0",
            ));
        }
    }
    nonnegative(
        spec.get("leaseTransitions"),
        sp.child("leaseTransitions"),
        errs,
    );
    let strategy = spec.get("strategy");
    if strategy.present() && strategy.str() != "OldestEmulationVersion" {
        errs.push(FieldError::not_supported(
            sp.child("strategy"),
            strategy.str(),
            &["OldestEmulationVersion"],
        ));
    }
}

/// Validates a Lease update.
pub(super) fn validate_lease_update(new: V<'_>, errs: &mut Vec<FieldError>) {
    validate_lease_spec(new.get("spec"), errs);
}
