//! Pods and pod templates (`ValidatePodCreate`, `ValidatePodSpec`, `ValidatePodUpdate`,
//! `ValidatePodStatusUpdate`, `ValidatePodTemplateSpec` in `pkg/apis/core/validation`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::{FieldError, FieldPath};
use super::meta::{self, NameRule};
use super::names;
use super::value::{semantic_eq, strip_zero, V};
use super::{immutable, nonnegative};
use crate::quantity::Quantity;

const MAX_INT32: i64 = i32::MAX as i64;

/// Validates a new pod.
pub fn validate_pod(pod: V<'_>, errs: &mut Vec<FieldError>) {
    let meta_path = FieldPath::new("metadata");
    meta::validate_object_meta(
        pod.get("metadata"),
        true,
        NameRule::Subdomain,
        &meta_path,
        errs,
    );
    let spec_path = FieldPath::new("spec");
    validate_pod_spec(pod.get("spec"), &spec_path, true, errs);
    if !pod.get("spec").get("ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            spec_path.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
}

/// Validates a pod template (`spec.template` of workloads): metadata labels and annotations,
/// and the pod spec.
pub fn validate_pod_template_spec(template: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let meta_path = path.child("metadata");
    let m = template.get("metadata");
    meta::validate_labels(m.get("labels"), &meta_path.child("labels"), errs);
    meta::validate_annotations(m.get("annotations"), &meta_path.child("annotations"), errs);
    validate_pod_spec(template.get("spec"), &path.child("spec"), false, errs);
    if !template.get("spec").get("ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// Validates a pod spec (upstream `ValidatePodSpec`).
pub fn validate_pod_spec(spec: V<'_>, path: &FieldPath, is_pod: bool, errs: &mut Vec<FieldError>) {
    let _ = is_pod;
    let volumes = validate_volumes(spec.get("volumes"), &path.child("volumes"), errs);
    let grace = spec.get("terminationGracePeriodSeconds").int();
    let restart_policy = spec.get("restartPolicy").str();
    validate_containers(
        spec.get("containers"),
        &volumes,
        grace,
        &path.child("containers"),
        errs,
    );
    validate_init_containers(spec, &volumes, grace, &path.child("initContainers"), errs);
    validate_restart_policy(restart_policy, &path.child("restartPolicy"), errs);
    validate_dns_policy(spec.get("dnsPolicy").str(), &path.child("dnsPolicy"), errs);
    meta::validate_labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    validate_image_pull_secrets(
        spec.get("imagePullSecrets"),
        &path.child("imagePullSecrets"),
        errs,
    );
    validate_readiness_gates(
        spec.get("readinessGates"),
        &path.child("readinessGates"),
        errs,
    );
    validate_scheduling_gates(
        spec.get("schedulingGates"),
        &path.child("schedulingGates"),
        errs,
    );
    validate_pod_security_context(
        spec.get("securityContext"),
        &path.child("securityContext"),
        errs,
    );
    let sa = spec.get("serviceAccountName").str();
    if !sa.is_empty() {
        for msg in names::dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(
                path.child("serviceAccountName"),
                sa,
                msg,
            ));
        }
    }
    let node = spec.get("nodeName").str();
    if !node.is_empty() {
        for msg in names::dns1123_subdomain(node) {
            errs.push(FieldError::invalid(path.child("nodeName"), node, msg));
        }
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").int() {
        if !(1..=MAX_INT32).contains(&v) {
            errs.push(FieldError::invalid(
                path.child("activeDeadlineSeconds"),
                v,
                names::inclusive_range_error(1, MAX_INT32),
            ));
        }
    }
    for key in ["hostname", "subdomain"] {
        let v = spec.get(key).str();
        if !v.is_empty() {
            for msg in names::dns1123_label(v) {
                errs.push(FieldError::invalid(path.child(key), v, msg));
            }
        }
    }
    validate_tolerations(spec.get("tolerations"), &path.child("tolerations"), errs);
    validate_host_aliases(spec.get("hostAliases"), &path.child("hostAliases"), errs);
    let pc = spec.get("priorityClassName").str();
    if !pc.is_empty() {
        for msg in names::dns1123_subdomain(pc) {
            errs.push(FieldError::invalid(
                path.child("priorityClassName"),
                pc,
                msg,
            ));
        }
    }
    let rc = spec.get("runtimeClassName");
    if rc.present() {
        for msg in names::dns1123_subdomain(rc.str()) {
            errs.push(FieldError::invalid(
                path.child("runtimeClassName"),
                rc.str(),
                msg,
            ));
        }
    }
    let pp = spec.get("preemptionPolicy");
    if pp.present() && !matches!(pp.str(), "PreemptLowerPriority" | "Never") {
        errs.push(FieldError::not_supported(
            path.child("preemptionPolicy"),
            pp.str(),
            &["Never", "PreemptLowerPriority"],
        ));
    }
    validate_resource_list(spec.get("overhead"), &path.child("overhead"), errs);
    validate_topology_spread(
        spec.get("topologySpreadConstraints"),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    validate_dns_config(
        spec.get("dnsConfig"),
        spec.get("dnsPolicy").str(),
        &path.child("dnsConfig"),
        errs,
    );
    validate_affinity(spec.get("affinity"), &path.child("affinity"), errs);
    nonnegative(
        spec.get("terminationGracePeriodSeconds"),
        path.child("terminationGracePeriodSeconds"),
        errs,
    );
    let os = spec.get("os");
    if os.present() {
        let name = os.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(path.child("os").child("name"), ""));
        } else if !matches!(name, "linux" | "windows") {
            errs.push(FieldError::not_supported(
                path.child("os").child("name"),
                name,
                &["linux", "windows"],
            ));
        }
    }
}

fn validate_restart_policy(policy: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
}

fn validate_dns_policy(policy: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        )),
    }
}

/// Validates volumes; returns the volume names.
fn validate_volumes(
    volumes: V<'_>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut names_seen = BTreeSet::new();
    for (i, vol) in volumes.items().enumerate() {
        let p = path.index(i);
        let name = vol.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(p.child("name"), name, msg));
            }
            if names_seen.contains(name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        let sources: Vec<&String> = vol
            .map()
            .iter()
            .filter(|(k, v)| *k != "name" && !v.is_null())
            .map(|(k, _)| k)
            .collect();
        if sources.is_empty() {
            errs.push(FieldError::required(&p, "must specify a volume type"));
        } else if sources.len() > 1 {
            errs.push(FieldError::forbidden(
                p.child(sources[1]),
                "may not specify more than 1 volume type",
            ));
        }
        validate_volume_source(vol, &p, errs);
        if !name.is_empty() {
            names_seen.insert(name.to_string());
        }
    }
    names_seen
}

fn validate_volume_source(vol: V<'_>, p: &FieldPath, errs: &mut Vec<FieldError>) {
    let host_path = vol.get("hostPath");
    if host_path.present() {
        let hp = p.child("hostPath");
        if host_path.get("path").str().is_empty() {
            errs.push(FieldError::required(hp.child("path"), ""));
        }
        let ty = host_path.get("type");
        if ty.present()
            && !matches!(
                ty.str(),
                "" | "DirectoryOrCreate"
                    | "Directory"
                    | "FileOrCreate"
                    | "File"
                    | "Socket"
                    | "CharDevice"
                    | "BlockDevice"
            )
        {
            errs.push(FieldError::not_supported(
                hp.child("type"),
                ty.str(),
                &[
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ],
            ));
        }
    }
    let empty_dir = vol.get("emptyDir");
    if empty_dir.present() {
        let medium = empty_dir.get("medium").str();
        if !matches!(medium, "" | "Memory") && !medium.starts_with("HugePages") {
            errs.push(FieldError::not_supported(
                p.child("emptyDir").child("medium"),
                medium,
                &["", "Memory"],
            ));
        }
        if let Some(Value::String(s)) = empty_dir.get("sizeLimit").0 {
            if let Ok(q) = Quantity::parse(s) {
                if q.signum() < 0 {
                    errs.push(FieldError::forbidden(
                        p.child("emptyDir").child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
        }
    }
    for (source, name_key) in [("configMap", "name"), ("secret", "secretName")] {
        let s = vol.get(source);
        if !s.present() {
            continue;
        }
        let sp = p.child(source);
        let name = s.get(name_key).str();
        if source == "secret" && name.is_empty() {
            errs.push(FieldError::required(sp.child(name_key), ""));
        } else if !name.is_empty() {
            for msg in names::dns1123_subdomain(name) {
                errs.push(FieldError::invalid(sp.child(name_key), name, msg));
            }
        }
        validate_file_mode(s.get("defaultMode"), &sp.child("defaultMode"), errs);
        validate_key_to_paths(s.get("items"), &sp.child("items"), errs);
    }
    let pvc = vol.get("persistentVolumeClaim");
    if pvc.present() && pvc.get("claimName").str().is_empty() {
        errs.push(FieldError::required(
            p.child("persistentVolumeClaim").child("claimName"),
            "",
        ));
    }
    let nfs = vol.get("nfs");
    if nfs.present() {
        let np = p.child("nfs");
        if nfs.get("server").str().is_empty() {
            errs.push(FieldError::required(np.child("server"), ""));
        }
        let path = nfs.get("path").str();
        if path.is_empty() {
            errs.push(FieldError::required(np.child("path"), ""));
        } else if !path.starts_with('/') {
            errs.push(FieldError::invalid(
                np.child("path"),
                path,
                "must be an absolute path",
            ));
        }
    }
    let dapi = vol.get("downwardAPI");
    if dapi.present() {
        validate_file_mode(
            dapi.get("defaultMode"),
            &p.child("downwardAPI").child("defaultMode"),
            errs,
        );
    }
    let projected = vol.get("projected");
    if projected.present() {
        validate_file_mode(
            projected.get("defaultMode"),
            &p.child("projected").child("defaultMode"),
            errs,
        );
    }
}

fn validate_file_mode(mode: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(m) = mode.int() {
        if !(0..=0o777).contains(&m) {
            errs.push(FieldError::invalid(
                path,
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            ));
        }
    }
}

fn validate_key_to_paths(items: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, item) in items.items().enumerate() {
        let p = path.index(i);
        if item.get("key").str().is_empty() {
            errs.push(FieldError::required(p.child("key"), ""));
        }
        let target = item.get("path").str();
        if target.is_empty() {
            errs.push(FieldError::required(p.child("path"), ""));
        } else {
            validate_local_descending_path(target, &p.child("path"), errs);
        }
        validate_file_mode(item.get("mode"), &p.child("mode"), errs);
    }
}

fn validate_local_descending_path(target: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split('/').any(|seg| seg == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn validate_containers(
    containers: V<'_>,
    volumes: &BTreeSet<String>,
    grace: Option<i64>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    let mut seen = BTreeSet::new();
    for (i, c) in containers.items().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, &p, errs);
        let name = c.get("name").str();
        if seen.contains(name) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        } else {
            seen.insert(name.to_string());
        }
        validate_lifecycle(c.get("lifecycle"), grace, &p.child("lifecycle"), errs);
        validate_probe(
            c.get("livenessProbe"),
            grace,
            &p.child("livenessProbe"),
            true,
            errs,
        );
        validate_probe(
            c.get("readinessProbe"),
            grace,
            &p.child("readinessProbe"),
            false,
            errs,
        );
        validate_probe(
            c.get("startupProbe"),
            grace,
            &p.child("startupProbe"),
            true,
            errs,
        );
        if c.get("readinessProbe")
            .get("terminationGracePeriodSeconds")
            .present()
        {
            errs.push(FieldError::invalid(
                p.child("readinessProbe")
                    .child("terminationGracePeriodSeconds"),
                c.get("readinessProbe")
                    .get("terminationGracePeriodSeconds")
                    .raw(),
                "must not be set for readinessProbes",
            ));
        }
        if c.get("startupProbe").present()
            && c.get("startupProbe").get("successThreshold").int0() != 1
        {
            errs.push(FieldError::invalid(
                p.child("startupProbe").child("successThreshold"),
                c.get("startupProbe").get("successThreshold").int0(),
                "must be 1",
            ));
        }
        if c.get("restartPolicy").present() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(containers, path, errs);
}

fn validate_init_containers(
    spec: V<'_>,
    volumes: &BTreeSet<String>,
    grace: Option<i64>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let regular: Vec<&str> = spec
        .get("containers")
        .items()
        .map(|c| c.get("name").str())
        .collect();
    let mut seen = BTreeSet::new();
    for (i, c) in spec.get("initContainers").items().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, &p, errs);
        let name = c.get("name").str();
        if seen.contains(name) || regular.contains(&name) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        } else {
            seen.insert(name.to_string());
        }
        let restart = c.get("restartPolicy");
        let sidecar = restart.present() && restart.str() == "Always";
        if restart.present() && !sidecar {
            errs.push(FieldError::not_supported(
                p.child("restartPolicy"),
                restart.str(),
                &["Always"],
            ));
        }
        if sidecar {
            validate_lifecycle(c.get("lifecycle"), grace, &p.child("lifecycle"), errs);
            validate_probe(
                c.get("livenessProbe"),
                grace,
                &p.child("livenessProbe"),
                true,
                errs,
            );
            validate_probe(
                c.get("readinessProbe"),
                grace,
                &p.child("readinessProbe"),
                false,
                errs,
            );
            validate_probe(
                c.get("startupProbe"),
                grace,
                &p.child("startupProbe"),
                true,
                errs,
            );
        } else {
            for (key, what) in [
                (
                    "lifecycle",
                    "may not be set for init containers without restartPolicy=Always",
                ),
                (
                    "livenessProbe",
                    "may not be set for init containers without restartPolicy=Always",
                ),
                (
                    "readinessProbe",
                    "may not be set for init containers without restartPolicy=Always",
                ),
                (
                    "startupProbe",
                    "may not be set for init containers without restartPolicy=Always",
                ),
            ] {
                if c.get(key).present() {
                    errs.push(FieldError::forbidden(p.child(key), what));
                }
            }
        }
    }
    check_host_port_conflicts(spec.get("initContainers"), path, errs);
}

fn validate_container_common(
    c: V<'_>,
    volumes: &BTreeSet<String>,
    p: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let name = c.get("name").str();
    if name.is_empty() {
        errs.push(FieldError::required(p.child("name"), ""));
    } else {
        for msg in names::dns1123_label(name) {
            errs.push(FieldError::invalid(p.child("name"), name, msg));
        }
    }
    if c.get("image").str().is_empty() {
        errs.push(FieldError::required(p.child("image"), ""));
    }
    match c.get("terminationMessagePolicy").str() {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            p.child("terminationMessagePolicy"),
            "",
        )),
        other => errs.push(FieldError::not_supported(
            p.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(c.get("ports"), &p.child("ports"), errs);
    validate_env(c.get("env"), &p.child("env"), errs);
    validate_env_from(c.get("envFrom"), &p.child("envFrom"), errs);
    validate_volume_mounts(
        c.get("volumeMounts"),
        volumes,
        &p.child("volumeMounts"),
        errs,
    );
    match c.get("imagePullPolicy").str() {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(p.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            p.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    validate_resource_requirements(c.get("resources"), &p.child("resources"), errs);
    validate_security_context(c.get("securityContext"), &p.child("securityContext"), errs);
}

fn validate_container_ports(ports: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, port) in ports.items().enumerate() {
        let p = path.index(i);
        let name = port.get("name").str();
        if !name.is_empty() {
            let msgs = names::port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(p.child("name"), name, msg));
                }
            } else if seen.contains(name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            } else {
                seen.insert(name.to_string());
            }
        }
        let cp = port.get("containerPort").int0();
        if cp == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            for msg in names::port_num(cp) {
                errs.push(FieldError::invalid(p.child("containerPort"), cp, msg));
            }
        }
        let hp = port.get("hostPort").int0();
        if hp != 0 {
            for msg in names::port_num(hp) {
                errs.push(FieldError::invalid(p.child("hostPort"), hp, msg));
            }
        }
        validate_protocol(port.get("protocol").str(), &p.child("protocol"), errs);
    }
}

pub(crate) fn validate_protocol(protocol: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match protocol {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(FieldError::required(path, "")),
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["SCTP", "TCP", "UDP"],
        )),
    }
}

fn check_host_port_conflicts(containers: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (ci, c) in containers.items().enumerate() {
        for (pi, port) in c.get("ports").items().enumerate() {
            let hp = port.get("hostPort").int0();
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                port.get("protocol").str(),
                port.get("hostIP").str(),
                hp
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

fn validate_env(env: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, e) in env.items().enumerate() {
        let p = path.index(i);
        let name = e.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        // RelaxedEnvironmentVariableValidation is on by default in 1.33.
        let mut msgs = Vec::new();
        if name.is_empty() {
            msgs.push("environment variable name must be non-empty".to_string());
        }
        if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
            msgs.push("a valid environment variable name must consist only of printable ASCII characters other than '='".to_string());
        }
        for msg in msgs {
            errs.push(FieldError::invalid(p.child("name"), name, msg));
        }
        validate_env_value_from(e, &p.child("valueFrom"), errs);
    }
}

fn validate_env_value_from(e: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let from = e.get("valueFrom");
    if !from.present() {
        return;
    }
    let mut count = 0;
    let field_ref = from.get("fieldRef");
    if field_ref.present() {
        count += 1;
        let fp = path.child("fieldRef");
        let api_version = field_ref.get("apiVersion").str();
        let field_path = field_ref.get("fieldPath").str();
        if api_version.is_empty() {
            errs.push(FieldError::required(fp.child("apiVersion"), ""));
        }
        if field_path.is_empty() {
            errs.push(FieldError::required(fp.child("fieldPath"), ""));
        } else {
            validate_downward_field_path(field_path, &fp.child("fieldPath"), errs);
        }
    }
    let resource_ref = from.get("resourceFieldRef");
    if resource_ref.present() {
        count += 1;
        let resource = resource_ref.get("resource").str();
        if resource.is_empty() {
            errs.push(FieldError::required(
                path.child("resourceFieldRef").child("resource"),
                "",
            ));
        }
    }
    for (key, label) in [
        ("configMapKeyRef", "configMapKeyRef"),
        ("secretKeyRef", "secretKeyRef"),
    ] {
        let r = from.get(key);
        if r.present() {
            count += 1;
            let rp = path.child(label);
            let k = r.get("key").str();
            if k.is_empty() {
                errs.push(FieldError::required(rp.child("key"), ""));
            } else {
                for msg in names::config_map_key(k) {
                    errs.push(FieldError::invalid(rp.child("key"), k, msg));
                }
            }
            let name = r.get("name").str();
            if name.is_empty() {
                errs.push(FieldError::required(rp.child("name"), ""));
            } else {
                for msg in names::dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(rp.child("name"), name, msg));
                }
            }
        }
    }
    if count == 0 {
        errs.push(FieldError::invalid(
            path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if !e.get("value").str().is_empty() {
        errs.push(FieldError::invalid(
            path,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if count > 1 {
        errs.push(FieldError::invalid(
            path,
            "",
            "may not have more than one field specified at a time",
        ));
    }
}

const VALID_ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn validate_downward_field_path(field_path: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if VALID_ENV_FIELD_PATHS.contains(&field_path) {
        return;
    }
    for prefix in ["metadata.labels", "metadata.annotations"] {
        if let Some(rest) = field_path.strip_prefix(prefix) {
            if let Some(key) = rest.strip_prefix("['").and_then(|r| r.strip_suffix("']")) {
                for msg in names::qualified_name(&key.to_lowercase()) {
                    errs.push(FieldError::invalid(path, field_path, msg));
                }
                return;
            }
        }
    }
    errs.push(FieldError::not_supported(
        path,
        field_path,
        VALID_ENV_FIELD_PATHS,
    ));
}

fn validate_env_from(env_from: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, e) in env_from.items().enumerate() {
        let p = path.index(i);
        let prefix = e.get("prefix").str();
        if !prefix.is_empty()
            && prefix
                .chars()
                .any(|c| !(' '..='~').contains(&c) || c == '=')
        {
            errs.push(FieldError::invalid(
                p.child("prefix"),
                prefix,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        let mut count = 0;
        for key in ["configMapRef", "secretRef"] {
            let r = e.get(key);
            if r.present() {
                count += 1;
                let name = r.get("name").str();
                if name.is_empty() {
                    errs.push(FieldError::required(p.child(key).child("name"), ""));
                } else {
                    for msg in names::dns1123_subdomain(name) {
                        errs.push(FieldError::invalid(p.child(key).child("name"), name, msg));
                    }
                }
            }
        }
        if count == 0 {
            errs.push(FieldError::invalid(
                p,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(FieldError::invalid(
                p,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    mounts: V<'_>,
    volumes: &BTreeSet<String>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_points = BTreeSet::new();
    for (i, m) in mounts.items().enumerate() {
        let p = path.index(i);
        let name = m.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(p.child("name"), name));
        }
        let mount_path = m.get("mountPath").str();
        if mount_path.is_empty() {
            errs.push(FieldError::required(p.child("mountPath"), ""));
        }
        if !mount_points.insert(mount_path.to_string()) {
            errs.push(FieldError::invalid(
                p.child("mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        let sub = m.get("subPath").str();
        if !sub.is_empty() {
            validate_local_descending_path(sub, &p.child("subPath"), errs);
        }
        let propagation = m.get("mountPropagation");
        if propagation.present()
            && !matches!(
                propagation.str(),
                "None" | "HostToContainer" | "Bidirectional"
            )
        {
            errs.push(FieldError::not_supported(
                p.child("mountPropagation"),
                propagation.str(),
                &["Bidirectional", "HostToContainer", "None"],
            ));
        }
    }
}

/// Standard resource names a container may request without a domain prefix.
const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn validate_resource_name(name: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for msg in names::qualified_name(name) {
        errs.push(FieldError::invalid(path, name, msg));
    }
    if !name.contains('/') && !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_hugepages(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
}

/// Validates a resource list: names and non-negative quantities (`ValidateResourceQuantityValue`).
pub(crate) fn validate_resource_list(list: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (name, value) in list.map() {
        let p = path.key(name);
        validate_resource_name(name, &p, errs);
        validate_quantity_value(name, value, &p, errs);
    }
}

fn quantity_of(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn validate_quantity_value(
    name: &str,
    value: &Value,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let Some(q) = quantity_of(value) else {
        return;
    };
    if q.signum() < 0 {
        errs.push(FieldError::invalid(
            path,
            q.canonical(),
            "must be greater than or equal to 0",
        ));
        return;
    }
    // Integer resources (everything but cpu, memory-like and storage) must be whole numbers.
    let decimal_ok = matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || is_hugepages(name)
        || name.starts_with("requests.")
        || name.starts_with("limits.");
    if !decimal_ok
        && name.contains('/')
        && Quantity::from_milli(q.milli_value()) != Quantity::from_units(q.value())
    {
        errs.push(FieldError::invalid(
            path,
            q.canonical(),
            "must be an integer",
        ));
    }
}

fn validate_resource_requirements(resources: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let limits = resources.get("limits");
    let requests = resources.get("requests");
    let lp = path.child("limits");
    let rp = path.child("requests");
    validate_resource_list(limits, &lp, errs);
    validate_resource_list(requests, &rp, errs);
    for (name, req) in requests.map() {
        let Some(req_q) = quantity_of(req) else {
            continue;
        };
        match limits.map().get(name).and_then(quantity_of) {
            Some(lim_q) => {
                if req_q > lim_q {
                    errs.push(FieldError::invalid(
                        rp.key(name),
                        req_q.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            lim_q.canonical()
                        ),
                    ));
                }
            }
            None => {
                if name.contains('/')
                    && !name.starts_with("kubernetes.io/")
                    && !name.starts_with("requests.")
                {
                    errs.push(FieldError::invalid(
                        rp.key(name),
                        req_q.canonical(),
                        "must be equal to {} limit".replace("{}", name),
                    ));
                }
            }
        }
    }
}

fn validate_lifecycle(
    lifecycle: V<'_>,
    grace: Option<i64>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let _ = grace;
    for hook in ["postStart", "preStop"] {
        let h = lifecycle.get(hook);
        if h.present() {
            validate_handler(h, &path.child(hook), errs);
        }
    }
}

fn validate_handler(handler: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let kinds: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc", "sleep"]
        .into_iter()
        .filter(|k| handler.get(k).present())
        .collect();
    if kinds.is_empty() {
        errs.push(FieldError::required(path, "must specify a handler type"));
        return;
    }
    if kinds.len() > 1 {
        errs.push(FieldError::forbidden(
            path.child(kinds[1]),
            "may not specify more than 1 handler type",
        ));
        return;
    }
    let p = path.child(kinds[0]);
    let h = handler.get(kinds[0]);
    match kinds[0] {
        "exec" if h.get("command").is_empty() => {
            errs.push(FieldError::required(p.child("command"), ""));
        }
        "httpGet" => {
            if h.get("path").str().is_empty() {
                errs.push(FieldError::required(p.child("path"), ""));
            }
            validate_port_num_or_name(h.get("port"), &p.child("port"), errs);
            let scheme = h.get("scheme").str();
            if !matches!(scheme, "HTTP" | "HTTPS") {
                errs.push(FieldError::not_supported(
                    p.child("scheme"),
                    scheme,
                    &["HTTP", "HTTPS"],
                ));
            }
        }
        "tcpSocket" => validate_port_num_or_name(h.get("port"), &p.child("port"), errs),
        "grpc" => {
            let port = h.get("port").int0();
            for msg in names::port_num(port) {
                errs.push(FieldError::invalid(p.child("port"), port, msg));
            }
        }
        "sleep" => {
            let s = h.get("seconds").int0();
            if s < 0 {
                errs.push(FieldError::invalid(
                    p.child("seconds"),
                    s,
                    "must be non-negative integer",
                ));
            }
        }
        _ => {}
    }
}

pub(crate) fn validate_port_num_or_name(port: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match port.0 {
        Some(Value::Number(n)) => {
            let v = n.as_i64().unwrap_or(0);
            for msg in names::port_num(v) {
                errs.push(FieldError::invalid(path, v, msg));
            }
        }
        Some(Value::String(s)) if !s.is_empty() => {
            for msg in names::port_name(s) {
                errs.push(FieldError::invalid(path, s.as_str(), msg));
            }
        }
        _ => errs.push(FieldError::required(path, "")),
    }
}

fn validate_probe(
    probe: V<'_>,
    grace: Option<i64>,
    path: &FieldPath,
    one_success: bool,
    errs: &mut Vec<FieldError>,
) {
    let _ = grace;
    if !probe.present() {
        return;
    }
    validate_handler(probe, path, errs);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe.get(key), path.child(key), errs);
    }
    if one_success {
        let st = probe.get("successThreshold").int0();
        if st != 1 {
            errs.push(FieldError::invalid(
                path.child("successThreshold"),
                st,
                "must be 1",
            ));
        }
    }
    if let Some(t) = probe.get("terminationGracePeriodSeconds").int() {
        if t <= 0 {
            errs.push(FieldError::invalid(
                path.child("terminationGracePeriodSeconds"),
                t,
                "must be greater than 0",
            ));
        }
    }
}

fn validate_security_context(sc: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if !sc.present() {
        return;
    }
    for key in ["runAsUser", "runAsGroup"] {
        if let Some(id) = sc.get(key).int() {
            if !(0..=MAX_INT32).contains(&id) {
                errs.push(FieldError::invalid(
                    path.child(key),
                    id,
                    names::inclusive_range_error(0, MAX_INT32),
                ));
            }
        }
    }
    if sc.get("privileged").bool() == Some(true)
        && sc.get("allowPrivilegeEscalation").bool() == Some(false)
    {
        errs.push(FieldError::invalid(
            path,
            sc.raw(),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
    let proc_mount = sc.get("procMount");
    if proc_mount.present() && !matches!(proc_mount.str(), "Default" | "Unmasked") {
        errs.push(FieldError::not_supported(
            path.child("procMount"),
            proc_mount.str(),
            &["Default", "Unmasked"],
        ));
    }
}

fn validate_pod_security_context(sc: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if !sc.present() {
        return;
    }
    for key in ["runAsUser", "runAsGroup", "fsGroup"] {
        if let Some(id) = sc.get(key).int() {
            if !(0..=MAX_INT32).contains(&id) {
                errs.push(FieldError::invalid(
                    path.child(key),
                    id,
                    names::inclusive_range_error(0, MAX_INT32),
                ));
            }
        }
    }
    for (i, g) in sc.get("supplementalGroups").items().enumerate() {
        if let Some(id) = g.int() {
            if !(0..=MAX_INT32).contains(&id) {
                errs.push(FieldError::invalid(
                    path.child("supplementalGroups").index(i),
                    id,
                    names::inclusive_range_error(0, MAX_INT32),
                ));
            }
        }
    }
    for (i, s) in sc.get("sysctls").items().enumerate() {
        let p = path.child("sysctls").index(i);
        let name = s.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
    }
}

fn validate_image_pull_secrets(secrets: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, s) in secrets.items().enumerate() {
        if s.get("name").str().is_empty() {
            errs.push(FieldError::required(path.index(i).child("name"), ""));
        }
    }
}

fn validate_readiness_gates(gates: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, g) in gates.items().enumerate() {
        let ct = g.get("conditionType").str();
        for msg in names::qualified_name(ct) {
            errs.push(FieldError::invalid(
                path.index(i).child("conditionType"),
                ct,
                msg,
            ));
        }
    }
}

fn validate_scheduling_gates(gates: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, g) in gates.items().enumerate() {
        let name = g.get("name").str();
        let p = path.index(i).child("name");
        for msg in names::qualified_name(name) {
            errs.push(FieldError::invalid(p.clone(), name, msg));
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p, name));
        }
    }
}

/// Validates tolerations (upstream `ValidateTolerations`).
pub(crate) fn validate_tolerations(
    tolerations: V<'_>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for (i, t) in tolerations.items().enumerate() {
        let p = path.index(i);
        let key = t.get("key").str();
        if !key.is_empty() {
            for msg in names::qualified_name(key) {
                errs.push(FieldError::invalid(p.child("key"), key, msg));
            }
        }
        let operator = t.get("operator").str();
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        let effect = t.get("effect").str();
        if t.get("tolerationSeconds").present() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = t.get("value").str();
        match operator {
            "" | "Equal" => {
                for msg in names::label_value(value) {
                    errs.push(FieldError::invalid(p.child("operator"), value, msg));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        t.raw(),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(FieldError::not_supported(
                p.child("effect"),
                effect,
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
    }
}

fn validate_host_aliases(aliases: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, a) in aliases.items().enumerate() {
        let p = path.index(i);
        let ip = a.get("ip").str();
        if ip.is_empty() {
            errs.push(FieldError::required(p.child("ip"), ""));
        } else {
            for msg in names::ip_address(ip) {
                errs.push(FieldError::invalid(p.child("ip"), ip, msg));
            }
        }
        for (j, h) in a.get("hostnames").items().enumerate() {
            for msg in names::dns1123_subdomain(h.str()) {
                errs.push(FieldError::invalid(
                    p.child("hostnames").index(j),
                    h.str(),
                    msg,
                ));
            }
        }
    }
}

fn validate_topology_spread(constraints: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, c) in constraints.items().enumerate() {
        let p = path.index(i);
        let skew = c.get("maxSkew").int0();
        if skew <= 0 {
            errs.push(FieldError::invalid(
                p.child("maxSkew"),
                skew,
                "must be greater than zero",
            ));
        }
        let key = c.get("topologyKey").str();
        if key.is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        } else {
            for msg in names::qualified_name(key) {
                errs.push(FieldError::invalid(p.child("topologyKey"), key, msg));
            }
        }
        let action = c.get("whenUnsatisfiable").str();
        if !matches!(action, "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if !key.is_empty() && !action.is_empty() && !seen.insert(format!("{key}/{action}")) {
            errs.push(FieldError::duplicate(
                p.clone(),
                format!("{{{key}, {action}}}"),
            ));
        }
        meta::validate_label_selector(c.get("labelSelector"), &p.child("labelSelector"), errs);
    }
}

fn validate_dns_config(config: V<'_>, policy: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if policy == "None" && !config.present() {
        errs.push(FieldError::required(
            path,
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if !config.present() {
        return;
    }
    if policy == "None" && config.get("nameservers").is_empty() {
        errs.push(FieldError::required(
            path.child("nameservers"),
            "must provide at least one DNS nameserver when `dnsPolicy` is None",
        ));
    }
    let ns = config.get("nameservers");
    if ns.len() > 3 {
        errs.push(FieldError::invalid(
            path.child("nameservers"),
            ns.raw(),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.items().enumerate() {
        for msg in names::ip_address(n.str()) {
            errs.push(FieldError::invalid(
                path.child("nameservers").index(i),
                n.str(),
                msg,
            ));
        }
    }
    let searches = config.get("searches");
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            searches.raw(),
            "must not have more than 32 search paths",
        ));
    }
    for (i, o) in config.get("options").items().enumerate() {
        if o.get("name").str().is_empty() {
            errs.push(FieldError::required(
                path.child("options").index(i),
                "Option.Name must not be empty",
            ));
        }
    }
}

fn validate_node_selector_term(term: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (j, req) in term.get("matchExpressions").items().enumerate() {
        let rp = path.child("matchExpressions").index(j);
        let op = req.get("operator").str();
        let values = req.get("values");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        rp.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        rp.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            "Gt" | "Lt" => {
                if values.len() != 1 {
                    errs.push(FieldError::required(
                        rp.child("values"),
                        "must be specified single value when `operator` is 'Lt' or 'Gt'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                rp.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        let key = req.get("key").str();
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(rp.child("key"), key, msg));
        }
    }
}

fn validate_affinity(affinity: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let na = affinity.get("nodeAffinity");
    if na.present() {
        let req = na.get("requiredDuringSchedulingIgnoredDuringExecution");
        if req.present() {
            let rp = path
                .child("nodeAffinity")
                .child("requiredDuringSchedulingIgnoredDuringExecution");
            let terms = req.get("nodeSelectorTerms");
            if terms.is_empty() {
                errs.push(FieldError::required(
                    rp.child("nodeSelectorTerms"),
                    "must have at least one node selector term",
                ));
            }
            for (i, t) in terms.items().enumerate() {
                validate_node_selector_term(t, &rp.child("nodeSelectorTerms").index(i), errs);
            }
        }
        for (i, pref) in na
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .items()
            .enumerate()
        {
            let pp = path
                .child("nodeAffinity")
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            let w = pref.get("weight").int0();
            if !(1..=100).contains(&w) {
                errs.push(FieldError::invalid(
                    pp.child("weight"),
                    w,
                    "must be in the range 1-100",
                ));
            }
            validate_node_selector_term(pref.get("preference"), &pp.child("preference"), errs);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let a = affinity.get(kind);
        if !a.present() {
            continue;
        }
        for (i, term) in a
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .items()
            .enumerate()
        {
            let tp = path
                .child(kind)
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            validate_pod_affinity_term(term, &tp, errs);
        }
        for (i, w) in a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .items()
            .enumerate()
        {
            let wp = path
                .child(kind)
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            let weight = w.get("weight").int0();
            if !(1..=100).contains(&weight) {
                errs.push(FieldError::invalid(
                    wp.child("weight"),
                    weight,
                    "must be in the range 1-100",
                ));
            }
            validate_pod_affinity_term(
                w.get("podAffinityTerm"),
                &wp.child("podAffinityTerm"),
                errs,
            );
        }
    }
}

fn validate_pod_affinity_term(term: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    meta::validate_label_selector(
        term.get("labelSelector"),
        &path.child("labelSelector"),
        errs,
    );
    let key = term.get("topologyKey").str();
    if key.is_empty() {
        errs.push(FieldError::required(
            path.child("topologyKey"),
            "can not be empty",
        ));
    } else {
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(path.child("topologyKey"), key, msg));
        }
    }
    for (i, ns) in term.get("namespaces").items().enumerate() {
        for msg in names::dns1123_label(ns.str()) {
            errs.push(FieldError::invalid(
                path.child("namespaces").index(i),
                ns.str(),
                msg,
            ));
        }
    }
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a pod update: only images, `activeDeadlineSeconds` (set or shortened), toleration
/// additions and scheduling gate removals may change (upstream `ValidatePodUpdate`).
pub fn validate_pod_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    let spec_path = FieldPath::new("spec");
    validate_pod_spec(new.get("spec"), &spec_path, true, errs);
    let (ns, os) = (new.get("spec"), old.get("spec"));

    let new_ads = ns.get("activeDeadlineSeconds");
    let old_ads = os.get("activeDeadlineSeconds");
    if let Some(n) = new_ads.int() {
        if let Some(o) = old_ads.int() {
            if n > o {
                errs.push(FieldError::invalid(
                    spec_path.child("activeDeadlineSeconds"),
                    n,
                    "must be less than or equal to previous value",
                ));
            }
        }
    } else if old_ads.present() {
        errs.push(FieldError::invalid(
            spec_path.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        ));
    }
    if ns.get("containers").len() != os.get("containers").len() {
        errs.push(FieldError::forbidden(
            spec_path.child("containers"),
            "pod updates may not add or remove containers",
        ));
        return;
    }
    if ns.get("initContainers").len() != os.get("initContainers").len() {
        errs.push(FieldError::forbidden(
            spec_path.child("initContainers"),
            "pod updates may not add or remove containers",
        ));
        return;
    }
    let old_tolerations: Vec<Value> = os.get("tolerations").items().map(|t| t.raw()).collect();
    for t in &old_tolerations {
        let kept = ns
            .get("tolerations")
            .items()
            .any(|n| tolerations_compatible(t, &n.raw()));
        if !kept {
            errs.push(FieldError::forbidden(
                spec_path.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    // Everything else must be identical once the mutable fields are copied over.
    let mut mutated = ns.raw();
    let old_spec = os.raw();
    if let (Some(m), Some(o)) = (mutated.as_object_mut(), old_spec.as_object()) {
        for key in ["containers", "initContainers"] {
            if let (Some(Value::Array(mc)), Some(Value::Array(oc))) = (m.get_mut(key), o.get(key)) {
                for (c, old_c) in mc.iter_mut().zip(oc) {
                    if let (Some(c), Some(image)) = (c.as_object_mut(), old_c.get("image")) {
                        c.insert("image".into(), image.clone());
                    }
                }
            }
        }
        for key in [
            "activeDeadlineSeconds",
            "tolerations",
            "schedulingGates",
            "terminationGracePeriodSeconds",
        ] {
            match o.get(key) {
                Some(v) => {
                    m.insert(key.into(), v.clone());
                }
                None => {
                    m.remove(key);
                }
            }
        }
        // Scheduling: nodeName may be set once by binding, not through update.
        if o.get("nodeName").is_none_or(|n| n.as_str() == Some("")) {
            if let Some(n) = o.get("nodeName") {
                m.insert("nodeName".into(), n.clone());
            } else {
                m.remove("nodeName");
            }
        }
        // Scheduling gates may only be removed (and node selector/affinity added while gated).
        let old_gates: Vec<&str> = os
            .get("schedulingGates")
            .items()
            .map(|g| g.get("name").str())
            .collect();
        for g in ns.get("schedulingGates").items() {
            if !old_gates.contains(&g.get("name").str()) {
                errs.push(FieldError::forbidden(
                    spec_path.child("schedulingGates"),
                    "only deletion is allowed, but found new scheduling gate '".to_string()
                        + g.get("name").str()
                        + "'",
                ));
            }
        }
    }
    if !semantic_eq(Some(&mutated), Some(&old_spec)) {
        let detail = format!("{POD_UPDATE_FORBIDDEN}\n{}", spec_diff(&old_spec, &mutated));
        errs.push(FieldError::forbidden(spec_path, detail));
    }
}

/// Upstream prints a diff of the specs after the message; skiff names the changed fields.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut changed = Vec::new();
    diff_paths(old, new, String::from("spec"), &mut changed);
    format!("changed fields: {}", changed.join(", "))
}

fn diff_paths(old: &Value, new: &Value, path: String, out: &mut Vec<String>) {
    if semantic_eq(Some(old), Some(new)) {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                let (a, b) = (
                    o.get(k).unwrap_or(&Value::Null),
                    n.get(k).unwrap_or(&Value::Null),
                );
                diff_paths(a, b, format!("{path}.{k}"), out);
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                diff_paths(a, b, format!("{path}[{i}]"), out);
            }
        }
        _ => {
            if strip_zero(old) != strip_zero(new) {
                out.push(path);
            }
        }
    }
}

fn tolerations_compatible(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        v
    };
    semantic_eq(Some(&strip(old)), Some(&strip(new)))
}

/// Validates a status update of a pod (upstream `ValidatePodStatusUpdate`).
pub fn validate_pod_status_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("status");
    let status = new.get("status");
    let node = new.get("spec").get("nodeName").str();
    if node.is_empty() && !status.get("nominatedNodeName").is_empty() {
        // allowed
    }
    let nominated = status.get("nominatedNodeName").str();
    if !nominated.is_empty() {
        for msg in names::dns1123_subdomain(nominated) {
            errs.push(FieldError::invalid(
                sp.child("nominatedNodeName"),
                nominated,
                msg,
            ));
        }
    }
    for (key, list) in [
        ("containerStatuses", "containers"),
        ("initContainerStatuses", "initContainers"),
        ("ephemeralContainerStatuses", "ephemeralContainers"),
    ] {
        let spec_names: Vec<&str> = new
            .get("spec")
            .get(list)
            .items()
            .map(|c| c.get("name").str())
            .collect();
        for (i, cs) in status.get(key).items().enumerate() {
            let name = cs.get("name").str();
            if !spec_names.contains(&name) {
                errs.push(FieldError::not_found(
                    sp.child(key).index(i).child("name"),
                    name,
                ));
            }
            nonnegative(
                cs.get("restartCount"),
                sp.child(key).index(i).child("restartCount"),
                errs,
            );
        }
    }
    let phase = status.get("phase").str();
    let old_phase = old.get("status").get("phase").str();
    if matches!(old_phase, "Succeeded" | "Failed") && phase != old_phase {
        errs.push(FieldError::forbidden(
            sp.child("phase"),
            format!("cannot transition from terminal phase {old_phase} to {phase}"),
        ));
    }
    for key in ["podIPs", "hostIPs"] {
        let ips = status.get(key);
        let mut seen = BTreeSet::new();
        for (i, ip) in ips.items().enumerate() {
            let v = ip.get("ip").str();
            let p = sp.child(key).index(i).child("ip");
            if v.is_empty() {
                errs.push(FieldError::required(p, ""));
                continue;
            }
            for msg in names::ip_address(v) {
                errs.push(FieldError::invalid(p.clone(), v, msg));
            }
            if !seen.insert(v.to_string()) {
                errs.push(FieldError::duplicate(p, v));
            }
        }
    }
    validate_status_conditions(status.get("conditions"), &sp.child("conditions"), errs);
    let _ = immutable;
}

fn validate_status_conditions(conditions: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, c) in conditions.items().enumerate() {
        if c.get("type").str().is_empty() {
            errs.push(FieldError::required(
                path.index(i).child("type"),
                "must be specified",
            ));
        }
    }
}
