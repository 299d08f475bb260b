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
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn meta_path() -> FieldPath {
    FieldPath::new("metadata")
}

// ----------------------------------------------------------------------------------- Namespace

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Validates a new Namespace.
pub fn validate_namespace(ns: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_namespace_update(new: V<'_>, _old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_namespace_finalizers(new, errs);
}

/// Validates a Namespace status update: the phase follows `deletionTimestamp`.
pub fn validate_namespace_status_update(new: V<'_>, _old: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_node(node: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_node_status(node: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_node_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
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

/// Validates a new Service.
pub fn validate_service(svc: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        svc.get("metadata"),
        true,
        NameRule::Dns1035,
        &meta_path(),
        errs,
    );
    validate_service_spec(svc.get("spec"), errs);
}

fn validate_service_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    let ty = spec.get("type").str();
    let cluster_ip = spec.get("clusterIP").str();
    let headless = cluster_ip == "None";
    match ty {
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => {
            let name = spec.get("externalName").str();
            let en = sp.child("externalName");
            if name.is_empty() {
                errs.push(FieldError::required(en, ""));
            } else {
                let trimmed = name.strip_suffix('.').unwrap_or(name);
                let mut msgs = names::dns1123_subdomain(trimmed);
                if msgs.is_empty() && !trimmed.contains('.') {
                    msgs.push(
                        "should be a domain with at least two segments separated by dots"
                            .to_string(),
                    );
                }
                for msg in msgs {
                    errs.push(FieldError::invalid(en.clone(), trimmed, msg));
                }
            }
            if !cluster_ip.is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("clusterIP"),
                    "may not be set for ExternalName services",
                ));
            }
        }
        "" => errs.push(FieldError::required(sp.child("type"), "")),
        other => errs.push(FieldError::not_supported(
            sp.child("type"),
            other,
            SERVICE_TYPES,
        )),
    }
    let ports = spec.get("ports");
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    let many = ports.len() > 1;
    let mut port_names = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
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
        let protocol = port.get("protocol").str();
        pod::validate_protocol(protocol, &p.child("protocol"), errs);
        if !port_keys.insert(format!("{num}/{protocol}")) {
            errs.push(FieldError::duplicate(
                p.clone(),
                serde_json::json!({"port": num, "protocol": protocol}),
            ));
        }
        let target = port.get("targetPort");
        pod::validate_port_num_or_name(target, &p.child("targetPort"), errs);
        if let Some(node_port) = port.get("nodePort").int().filter(|n| *n != 0) {
            if ty != "NodePort" && ty != "LoadBalancer" {
                errs.push(FieldError::forbidden(
                    p.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            for msg in names::port_num(node_port) {
                errs.push(FieldError::invalid(p.child("nodePort"), node_port, msg));
            }
        }
    }
    if !cluster_ip.is_empty() && !headless {
        for msg in names::ip_address(cluster_ip) {
            errs.push(FieldError::invalid(sp.child("clusterIP"), cluster_ip, msg));
        }
    }
    match spec.get("sessionAffinity").str() {
        "None" | "ClientIP" => {}
        "" => errs.push(FieldError::required(sp.child("sessionAffinity"), "")),
        other => errs.push(FieldError::not_supported(
            sp.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    if spec.get("sessionAffinity").str() == "ClientIP" {
        let timeout = spec
            .get("sessionAffinityConfig")
            .get("clientIP")
            .get("timeoutSeconds")
            .int0();
        if !(1..=86400).contains(&timeout) {
            errs.push(FieldError::invalid(
                sp.child("sessionAffinityConfig")
                    .child("clientIP")
                    .child("timeoutSeconds"),
                timeout,
                "must be greater than 0 and less than 86400",
            ));
        }
    }
    meta::validate_labels(spec.get("selector"), &sp.child("selector"), errs);
    let etp = spec.get("externalTrafficPolicy");
    if etp.present() && !matches!(etp.str(), "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            sp.child("externalTrafficPolicy"),
            etp.str(),
            &["Cluster", "Local"],
        ));
    }
    let itp = spec.get("internalTrafficPolicy");
    if itp.present() && !matches!(itp.str(), "Cluster" | "Local") {
        errs.push(FieldError::not_supported(
            sp.child("internalTrafficPolicy"),
            itp.str(),
            &["Cluster", "Local"],
        ));
    }
    for (i, ip) in spec.get("externalIPs").items().enumerate() {
        for msg in names::ip_address(ip.str()) {
            errs.push(FieldError::invalid(
                sp.child("externalIPs").index(i),
                ip.str(),
                msg,
            ));
        }
    }
}

/// Validates a Service update: the cluster IP is immutable (except to or from ExternalName).
pub fn validate_service_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_service_spec(new.get("spec"), errs);
    let (ns, os) = (new.get("spec"), old.get("spec"));
    let involves_external =
        ns.get("type").str() == "ExternalName" || os.get("type").str() == "ExternalName";
    if !involves_external {
        let (nip, oip) = (ns.get("clusterIP").str(), os.get("clusterIP").str());
        if !oip.is_empty() && nip != oip {
            errs.push(FieldError::invalid(
                FieldPath::new("spec").child("clusterIP"),
                nip,
                meta::FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Validates a Service status update.
pub fn validate_service_status(svc: V<'_>, errs: &mut Vec<FieldError>) {
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
    }
}

// ---------------------------------------------------------------------------- ConfigMap, Secret

/// Validates a new ConfigMap.
pub fn validate_config_map(cm: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_config_map_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    immutable_data(new, old, &["data", "binaryData"], errs);
    validate_config_map(new, errs);
}

/// Validates a new Secret.
pub fn validate_secret(secret: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_secret_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_service_account(sa: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        sa.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path(),
        errs,
    );
}

/// Validates a ServiceAccount update.
pub fn validate_service_account_update(_sa: V<'_>, _errs: &mut Vec<FieldError>) {}

/// Longest `reportingInstance` of an event.
const REPORTING_INSTANCE_LIMIT: usize = 128;
/// Longest `action` of an event.
const ACTION_LIMIT: usize = 128;
/// Longest `reason` of an event.
const REASON_LIMIT: usize = 128;
/// Longest `message` of an event.
const NOTE_LIMIT: usize = 1024;

/// Validates a new core/v1 Event (upstream `legacyValidateEvent`).
pub fn validate_event(event: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_event_update(new: V<'_>, _old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_event_fields(new, errs);
}

// ------------------------------------------------------------------------------------- Lease

/// Validates a new Lease.
pub fn validate_lease(lease: V<'_>, errs: &mut Vec<FieldError>) {
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
pub fn validate_lease_update(new: V<'_>, errs: &mut Vec<FieldError>) {
    validate_lease_spec(new.get("spec"), errs);
}
