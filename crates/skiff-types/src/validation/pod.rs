//! Pods and pod templates, following `ValidatePodCreate`, `ValidatePodSpec`,
//! `ValidatePodTemplateSpec`, `ValidatePodUpdate` and `ValidatePodStatusUpdate` in
//! `k8s.io/kubernetes/pkg/apis/core/validation` (field order, paths and messages as upstream,
//! including upstream's path quirks such as `spec.template.labels`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::errors::{FieldError, FieldPath};
use super::meta::{self, NameRule};
use super::names;
use super::nonnegative;
use super::value::{semantic_eq, strip_zero, V};
use crate::quantity::Quantity;

const MAX_INT32: i64 = i32::MAX as i64;
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const NOT_POSITIVE: &str = "must be greater than zero";
const RELAXED_ENV_NAME_ERROR: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// Validates a new pod (upstream `ValidatePodCreate`).
pub(super) fn validate_pod(pod: V<'_>, errs: &mut Vec<FieldError>) {
    validate_pod_metadata_and_spec(pod, errs);
    let spec = pod.get("spec");
    let sp = FieldPath::new("spec");
    if !spec.get("ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            sp.child("ephemeralContainers"),
            "cannot be set on create",
        ));
    }
    if !spec.get("nodeName").str().is_empty() && !spec.get("schedulingGates").is_empty() {
        errs.push(FieldError::forbidden(
            sp.child("nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        ));
    }
    validate_pod_ips(pod.get("status"), errs);
}

/// Upstream `validatePodMetadataAndSpec`: metadata, spec, and the pod-only container checks.
fn validate_pod_metadata_and_spec(pod: V<'_>, errs: &mut Vec<FieldError>) {
    let mp = FieldPath::new("metadata");
    meta::validate_object_meta(pod.get("metadata"), true, NameRule::Subdomain, &mp, errs);
    let spec = pod.get("spec");
    let sp = FieldPath::new("spec");
    validate_pod_spec(spec, &sp, true, errs);
    if spec.get("serviceAccountName").str().is_empty() {
        for (vi, vol) in spec.get("volumes").items().enumerate() {
            for (si, source) in vol.get("projected").get("sources").items().enumerate() {
                if source.get("serviceAccountToken").present() {
                    errs.push(FieldError::forbidden(
                        sp.child("volumes")
                            .index(vi)
                            .child("projected")
                            .child("sources")
                            .index(si)
                            .child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        for (i, c) in spec.get(key).items().enumerate() {
            let image = c.get("image").str();
            if image.len() != image.trim().len() {
                errs.push(FieldError::invalid(
                    sp.child(key).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
}

/// Validates a pod template (`spec.template` of workloads, upstream `ValidatePodTemplateSpec`).
/// As upstream, template labels and annotations are reported at `<path>.labels` and
/// `<path>.annotations`.
pub(super) fn validate_pod_template_spec(
    template: V<'_>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let m = template.get("metadata");
    meta::validate_labels(m.get("labels"), &path.child("labels"), errs);
    meta::validate_annotations(m.get("annotations"), &path.child("annotations"), errs);
    validate_pod_spec(template.get("spec"), &path.child("spec"), false, errs);
    if !template.get("spec").get("ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// Validates a pod spec (upstream `ValidatePodSpec`); `is_pod` when it is a Pod's own spec
/// rather than a template's.
pub(super) fn validate_pod_spec(
    spec: V<'_>,
    path: &FieldPath,
    is_pod: bool,
    errs: &mut Vec<FieldError>,
) {
    if !spec.get("terminationGracePeriodSeconds").present() {
        errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "",
        ));
    }
    let grace = spec.get("terminationGracePeriodSeconds").int();
    let host_users = spec.get("hostUsers").bool() != Some(false);
    let restart_policy = spec.get("restartPolicy").str();
    let volumes = validate_volumes(spec.get("volumes"), &path.child("volumes"), errs);
    validate_containers(
        spec.get("containers"),
        &volumes,
        grace,
        restart_policy,
        host_users,
        &path.child("containers"),
        errs,
    );
    validate_init_containers(
        spec,
        &volumes,
        grace,
        restart_policy,
        host_users,
        &path.child("initContainers"),
        errs,
    );
    validate_ephemeral_containers(
        spec,
        &volumes,
        restart_policy,
        host_users,
        &path.child("ephemeralContainers"),
        errs,
    );
    if spec.get("hostNetwork").bool() == Some(true) {
        for (i, c) in spec.get("containers").items().enumerate() {
            for (j, port) in c.get("ports").items().enumerate() {
                let (hp, cp) = (
                    port.get("hostPort").int0(),
                    port.get("containerPort").int0(),
                );
                if (is_pod || hp != 0) && hp != cp {
                    errs.push(FieldError::invalid(
                        path.child("containers")
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    validate_restart_policy(restart_policy, &path.child("restartPolicy"), errs);
    validate_dns_policy(spec.get("dnsPolicy").str(), &path.child("dnsPolicy"), errs);
    meta::validate_labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    validate_pod_security_context(spec, path, errs);
    validate_image_pull_secrets(
        spec.get("imagePullSecrets"),
        &path.child("imagePullSecrets"),
        errs,
    );
    validate_affinity(spec.get("affinity"), &path.child("affinity"), errs);
    validate_dns_config(
        spec.get("dnsConfig"),
        spec.get("dnsPolicy").str(),
        &path.child("dnsConfig"),
        errs,
    );
    for (i, g) in spec.get("readinessGates").items().enumerate() {
        let ct = g.get("conditionType").str();
        for msg in names::qualified_name(ct) {
            errs.push(FieldError::invalid(
                path.child("readinessGates").index(i).child("conditionType"),
                ct,
                msg,
            ));
        }
    }
    validate_scheduling_gates(
        spec.get("schedulingGates"),
        &path.child("schedulingGates"),
        errs,
    );
    validate_topology_spread(
        spec.get("topologySpreadConstraints"),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    if spec.get("hostUsers").bool() == Some(false) {
        for (key, p) in [
            ("hostNetwork", "hostNetwork"),
            ("hostPID", "HostPID"),
            ("hostIPC", "HostIPC"),
        ] {
            if spec.get(key).bool() == Some(true) {
                errs.push(FieldError::forbidden(
                    path.child(p),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    for (key, value) in [
        ("serviceAccountName", spec.get("serviceAccountName").str()),
        ("nodeName", spec.get("nodeName").str()),
    ] {
        if !value.is_empty() {
            for msg in names::dns1123_subdomain(value) {
                errs.push(FieldError::invalid(path.child(key), value, msg));
            }
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
    if pp.present() {
        match pp.str() {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(path.child("preemptionPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                path.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if spec.get("overhead").present() {
        let wrapped = serde_json::json!({"limits": spec.get("overhead").raw()});
        validate_resource_requirements(V::new(&wrapped), &path.child("overhead"), errs);
    }
    let os = spec.get("os");
    if os.present() {
        let name = os.get("name").str();
        let op = path.child("os").child("name");
        if name.is_empty() {
            errs.push(FieldError::required(op, ""));
        } else if !matches!(name, "linux" | "windows") {
            errs.push(FieldError::not_supported(op, name, &["linux", "windows"]));
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
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
}

// ----------------------------------------------------------------------------------- volumes

/// Volume sources in upstream's checking order, with the path upstream names them by when a
/// second source is given (including its `downwarAPI` and `cephFS` spellings).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// Validates volumes; returns the valid volume names with their source kind.
fn validate_volumes(
    volumes: V<'_>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> Vec<(String, &'static str)> {
    let mut valid: Vec<(String, &'static str)> = Vec::new();
    for (i, vol) in volumes.items().enumerate() {
        let p = path.index(i);
        let name = vol.get("name").str();
        let mut el = Vec::new();
        let kind = validate_volume_source(vol, &p, &mut el);
        if name.is_empty() {
            el.push(FieldError::required(p.child("name"), ""));
        } else {
            for msg in names::dns1123_label(name) {
                el.push(FieldError::invalid(p.child("name"), name, msg));
            }
        }
        if valid.iter().any(|(n, _)| n == name) {
            el.push(FieldError::duplicate(p.child("name"), name));
        }
        if el.is_empty() {
            valid.push((name.to_string(), kind));
        } else {
            errs.extend(el);
        }
    }
    valid
}

fn validate_volume_source(vol: V<'_>, p: &FieldPath, errs: &mut Vec<FieldError>) -> &'static str {
    let mut kind = "";
    for (source, label) in VOLUME_SOURCES {
        if !vol.get(source).present() {
            continue;
        }
        if !kind.is_empty() {
            errs.push(FieldError::forbidden(
                p.child(label),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        kind = source;
        validate_one_volume_source(source, vol.get(source), &p.child(source), errs);
    }
    if kind.is_empty() {
        errs.push(FieldError::required(p, "must specify a volume type"));
    }
    kind
}

fn validate_one_volume_source(source: &str, s: V<'_>, sp: &FieldPath, errs: &mut Vec<FieldError>) {
    match source {
        "emptyDir" => {
            if let Some(q) = s.get("sizeLimit").0.and_then(quantity_of) {
                if q.signum() < 0 {
                    errs.push(FieldError::forbidden(
                        sp.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
        }
        "hostPath" => {
            let hp = s.get("path").str();
            if hp.is_empty() {
                errs.push(FieldError::required(sp.child("path"), ""));
                return;
            }
            validate_no_backsteps(hp, &sp.child("path"), errs);
            let ty = s.get("type");
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
                    sp.child("type"),
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
        "gitRepo" => {
            if s.get("repository").str().is_empty() {
                errs.push(FieldError::required(sp.child("repository"), ""));
            }
            validate_local_descending_path(s.get("directory").str(), &sp.child("directory"), errs);
        }
        "secret" | "configMap" => {
            let name_key = if source == "secret" {
                "secretName"
            } else {
                "name"
            };
            if s.get(name_key).str().is_empty() {
                errs.push(FieldError::required(sp.child(name_key), ""));
            }
            validate_file_mode(s.get("defaultMode"), &sp.child("defaultMode"), errs);
            for (i, item) in s.get("items").items().enumerate() {
                validate_key_to_path(item, &sp.child("items").index(i), errs);
            }
        }
        "persistentVolumeClaim" if s.get("claimName").str().is_empty() => {
            errs.push(FieldError::required(sp.child("claimName"), ""));
        }
        "nfs" => {
            if s.get("server").str().is_empty() {
                errs.push(FieldError::required(sp.child("server"), ""));
            }
            let path = s.get("path").str();
            if path.is_empty() {
                errs.push(FieldError::required(sp.child("path"), ""));
            }
            if !path.starts_with('/') {
                errs.push(FieldError::invalid(
                    sp.child("path"),
                    path,
                    "must be an absolute path",
                ));
            }
        }
        "downwardAPI" => {
            validate_file_mode(s.get("defaultMode"), &sp.child("defaultMode"), errs);
            for item in s.get("items").items() {
                validate_downward_api_file(item, sp, errs);
            }
        }
        "projected" => {
            validate_file_mode(s.get("defaultMode"), &sp.child("defaultMode"), errs);
            validate_projection_sources(s, sp, errs);
        }
        "csi" if s.get("driver").str().is_empty() => {
            errs.push(FieldError::required(sp.child("driver"), ""));
        }
        "image" => {
            if s.get("reference").str().is_empty() {
                errs.push(FieldError::required(sp.child("reference"), ""));
            }
            let policy = s.get("pullPolicy").str();
            if !matches!(policy, "Always" | "IfNotPresent" | "Never") {
                errs.push(FieldError::not_supported(
                    sp.child("pullPolicy"),
                    policy,
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
        }
        _ => {}
    }
}

fn validate_downward_api_file(file: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let fp = file.get("path").str();
    if fp.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    validate_local_non_reserved_path(fp, &path.child("path"), errs);
    if file.get("fieldRef").present() {
        validate_object_field_selector(
            file.get("fieldRef"),
            VALID_VOLUME_FIELD_PATHS,
            &path.child("fieldRef"),
            errs,
        );
        if file.get("resourceFieldRef").present() {
            errs.push(FieldError::invalid(
                path,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if file.get("resourceFieldRef").present() {
        let r = file.get("resourceFieldRef");
        if r.get("containerName").str().is_empty() {
            errs.push(FieldError::required(
                path.child("resourceFieldRef").child("containerName"),
                "",
            ));
        } else {
            validate_resource_field_ref(r, &path.child("resourceFieldRef"), errs);
        }
    } else {
        errs.push(FieldError::required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    validate_file_mode(file.get("mode"), &path.child("mode"), errs);
}

fn validate_projection_sources(projection: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut all_paths: BTreeSet<String> = BTreeSet::new();
    for (i, source) in projection.get("sources").items().enumerate() {
        let sp = path.child("sources").index(i);
        let mut count = 0;
        for key in ["secret", "configMap"] {
            let s = source.get(key);
            if !s.present() {
                continue;
            }
            count += 1;
            let pp = sp.child(key);
            if s.get("name").str().is_empty() {
                errs.push(FieldError::required(pp.child("name"), ""));
            }
            for (j, item) in s.get("items").items().enumerate() {
                validate_key_to_path(item, &pp.child("items").index(j), errs);
                let p = item.get("path").str();
                if !p.is_empty() && !all_paths.insert(p.to_string()) {
                    errs.push(FieldError::invalid(
                        path,
                        s.get("name").str(),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        let d = source.get("downwardAPI");
        if d.present() {
            count += 1;
            for item in d.get("items").items() {
                validate_downward_api_file(item, &sp.child("downwardAPI"), errs);
                let p = item.get("path").str();
                if !p.is_empty() && !all_paths.insert(p.to_string()) {
                    errs.push(FieldError::invalid(path, p, "conflicting duplicate paths"));
                }
            }
        }
        let token = source.get("serviceAccountToken");
        if token.present() {
            count += 1;
            let tp = sp.child("serviceAccountToken");
            let exp = token.get("expirationSeconds").int0();
            if exp < 600 {
                errs.push(FieldError::invalid(
                    tp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if exp > 1 << 32 {
                errs.push(FieldError::invalid(
                    tp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let tpath = token.get("path").str();
            if tpath.is_empty() {
                errs.push(FieldError::required(path.child("path"), ""));
            } else {
                validate_local_non_reserved_path(tpath, &path.child("path"), errs);
            }
        }
        if source.get("clusterTrustBundle").present() {
            count += 1;
        }
        if count > 1 {
            errs.push(FieldError::forbidden(
                sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

fn validate_file_mode(mode: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(m) = mode.int() {
        if !(0..=0o777).contains(&m) {
            errs.push(FieldError::invalid(path, m, FILE_MODE_ERROR));
        }
    }
}

fn validate_key_to_path(item: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if item.get("key").str().is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    }
    let target = item.get("path").str();
    if target.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    validate_local_non_reserved_path(target, &path.child("path"), errs);
    validate_file_mode(item.get("mode"), &path.child("mode"), errs);
}

fn validate_no_backsteps(target: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if target.split('/').any(|seg| seg == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn validate_local_descending_path(target: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    validate_no_backsteps(target, path, errs);
}

fn validate_local_non_reserved_path(target: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    validate_local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(FieldError::invalid(
            path,
            target,
            "must not start with '..'",
        ));
    }
}

// -------------------------------------------------------------------------------- containers

fn validate_containers(
    containers: V<'_>,
    volumes: &[(String, &'static str)],
    grace: Option<i64>,
    restart_policy: &str,
    host_users: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if containers.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, c) in containers.items().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, restart_policy, host_users, &p, errs);
        let name = c.get("name").str();
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        }
        if c.get("lifecycle").present() {
            validate_lifecycle(c.get("lifecycle"), grace, &p.child("lifecycle"), errs);
        }
        validate_liveness_or_startup_probe(
            c.get("livenessProbe"),
            grace,
            &p.child("livenessProbe"),
            errs,
        );
        validate_readiness_probe(
            c.get("readinessProbe"),
            grace,
            &p.child("readinessProbe"),
            errs,
        );
        validate_liveness_or_startup_probe(
            c.get("startupProbe"),
            grace,
            &p.child("startupProbe"),
            errs,
        );
        if c.get("restartPolicy").present() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(containers.items().collect(), path, errs);
}

fn validate_init_containers(
    spec: V<'_>,
    volumes: &[(String, &'static str)],
    grace: Option<i64>,
    restart_policy: &str,
    host_users: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut all_names: BTreeSet<String> = spec
        .get("containers")
        .items()
        .map(|c| c.get("name").str().to_string())
        .collect();
    for (i, c) in spec.get("initContainers").items().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, restart_policy, host_users, &p, errs);
        let restart = c.get("restartPolicy");
        let mut sidecar = false;
        if restart.present() {
            if restart.str() == "Always" {
                sidecar = true;
            } else {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy"),
                    restart.str(),
                    &["Always"],
                ));
            }
        }
        let name = c.get("name").str();
        if all_names.contains(name) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        } else if !name.is_empty() {
            all_names.insert(name.to_string());
        }
        check_host_port_conflicts(vec![c], path, errs);
        if sidecar {
            if c.get("lifecycle").present() {
                validate_lifecycle(c.get("lifecycle"), grace, &p.child("lifecycle"), errs);
            }
            validate_liveness_or_startup_probe(
                c.get("livenessProbe"),
                grace,
                &p.child("livenessProbe"),
                errs,
            );
            validate_readiness_probe(
                c.get("readinessProbe"),
                grace,
                &p.child("readinessProbe"),
                errs,
            );
            validate_liveness_or_startup_probe(
                c.get("startupProbe"),
                grace,
                &p.child("startupProbe"),
                errs,
            );
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if c.get(key).present() {
                    errs.push(FieldError::forbidden(
                        p.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// Fields an ephemeral container may set (upstream `allowedEphemeralContainerFields`).
const EPHEMERAL_FORBIDDEN_FIELDS: &[&str] = &[
    "ports",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resizePolicy",
    "restartPolicy",
];

fn validate_ephemeral_containers(
    spec: V<'_>,
    volumes: &[(String, &'static str)],
    restart_policy: &str,
    host_users: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let others: BTreeSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec.get(k).items())
        .map(|c| c.get("name").str())
        .collect();
    let mut all: BTreeSet<&str> = others.clone();
    for (i, c) in spec.get("ephemeralContainers").items().enumerate() {
        let p = path.index(i);
        validate_container_common(c, volumes, restart_policy, host_users, &p, errs);
        let image = c.get("image").str();
        if image.len() != image.trim().len() {
            errs.push(FieldError::invalid(
                p.child("image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
        let name = c.get("name").str();
        if !all.insert(name) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        }
        let target = c.get("targetContainerName").str();
        if !target.is_empty() && !others.contains(target) {
            errs.push(FieldError::not_found(
                p.child("targetContainerName"),
                target,
            ));
        }
        for key in EPHEMERAL_FORBIDDEN_FIELDS {
            if strip_zero(&c.get(key).raw()).is_some() {
                errs.push(FieldError::forbidden(
                    p.child(key),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, m) in c.get("volumeMounts").items().enumerate() {
            for key in ["subPath", "subPathExpr"] {
                if !m.get(key).str().is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("volumeMounts").index(j).child(key),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

fn validate_container_common(
    c: V<'_>,
    volumes: &[(String, &'static str)],
    restart_policy: &str,
    host_users: bool,
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
    validate_volume_mounts(c, volumes, &p.child("volumeMounts"), errs);
    validate_volume_devices(c, volumes, &p.child("volumeDevices"), errs);
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
    validate_resize_policy(
        c.get("resizePolicy"),
        restart_policy,
        &p.child("resizePolicy"),
        errs,
    );
    validate_security_context(
        c.get("securityContext"),
        host_users,
        &p.child("securityContext"),
        errs,
    );
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
            } else if !seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
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

/// `TCP`, `UDP` or `SCTP` (required).
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

fn check_host_port_conflicts(containers: Vec<V<'_>>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
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

fn relaxed_env_name_errors(name: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if name.is_empty() {
        msgs.push("environment variable name must be non-empty".to_string());
    }
    if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        msgs.push(RELAXED_ENV_NAME_ERROR.to_string());
    }
    msgs
}

fn validate_env(env: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, e) in env.items().enumerate() {
        let p = path.index(i);
        let name = e.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        // RelaxedEnvironmentVariableValidation is on by default in 1.33.
        for msg in relaxed_env_name_errors(name) {
            errs.push(FieldError::invalid(p.child("name"), name, msg));
        }
        validate_env_value_from(e, &p.child("valueFrom"), errs);
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

const VALID_VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

const VALID_RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_env_value_from(e: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let from = e.get("valueFrom");
    if !from.present() {
        return;
    }
    let mut count = 0;
    if from.get("fieldRef").present() {
        count += 1;
        validate_object_field_selector(
            from.get("fieldRef"),
            VALID_ENV_FIELD_PATHS,
            &path.child("fieldRef"),
            errs,
        );
    }
    if from.get("resourceFieldRef").present() {
        count += 1;
        let r = from.get("resourceFieldRef");
        if r.get("resource").str().is_empty() {
            errs.push(FieldError::required(
                path.child("resourceFieldRef").child("resource"),
                "",
            ));
        } else {
            validate_resource_field_ref(r, &path.child("resourceFieldRef"), errs);
        }
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        let r = from.get(key);
        if !r.present() {
            continue;
        }
        count += 1;
        let rp = path.child(key);
        let name = r.get("name").str();
        for msg in names::dns1123_subdomain(name) {
            errs.push(FieldError::invalid(rp.child("name"), name, msg));
        }
        let k = r.get("key").str();
        if k.is_empty() {
            errs.push(FieldError::required(rp.child("key"), ""));
        } else {
            for msg in names::config_map_key(k) {
                errs.push(FieldError::invalid(rp.child("key"), k, msg));
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

fn validate_resource_field_ref(r: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let resource = r.get("resource").str();
    if !VALID_RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("limits.hugepages-")
        && !resource.starts_with("requests.hugepages-")
    {
        errs.push(FieldError::not_supported(
            path.child("resource"),
            resource,
            VALID_RESOURCE_FIELD_PATHS,
        ));
    }
}

/// Splits `metadata.labels['key']` into `("metadata.labels", "key")`.
fn split_subscripted(field_path: &str) -> Option<(&str, &str)> {
    let rest = field_path.strip_suffix("']")?;
    let (path, key) = rest.split_once("['")?;
    Some((path, key))
}

/// Upstream `validateObjectFieldSelector` with the v1 conversion of downward API field paths.
fn validate_object_field_selector(
    fs: V<'_>,
    valid: &[&str],
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if fs.get("apiVersion").str().is_empty() {
        errs.push(FieldError::required(path.child("apiVersion"), ""));
        return;
    }
    let field_path = fs.get("fieldPath").str();
    if field_path.is_empty() {
        errs.push(FieldError::required(path.child("fieldPath"), ""));
        return;
    }
    let api_version = fs.get("apiVersion").str();
    let converted = if api_version != "v1" {
        Err(format!("unsupported pod version: {api_version}"))
    } else if let Some((p, _)) = split_subscripted(field_path) {
        if matches!(p, "metadata.annotations" | "metadata.labels") {
            Ok(field_path.to_string())
        } else {
            Err(format!(
                "field label does not support subscript: {field_path}"
            ))
        }
    } else {
        match field_path {
            "metadata.annotations"
            | "metadata.labels"
            | "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.serviceAccountName"
            | "spec.schedulerName"
            | "status.phase"
            | "status.hostIP"
            | "status.hostIPs"
            | "status.podIP"
            | "status.podIPs" => Ok(field_path.to_string()),
            "spec.host" => Ok("spec.nodeName".to_string()),
            other => Err(format!("field label not supported: {other}")),
        }
    };
    let internal = match converted {
        Ok(p) => p,
        Err(e) => {
            errs.push(FieldError::invalid(
                path.child("fieldPath"),
                field_path,
                format!("error converting fieldPath: {e}"),
            ));
            return;
        }
    };
    if let Some((p, subscript)) = split_subscripted(&internal) {
        match p {
            "metadata.annotations" => {
                for msg in names::qualified_name(&subscript.to_lowercase()) {
                    errs.push(FieldError::invalid(path, subscript.to_lowercase(), msg));
                }
            }
            "metadata.labels" => {
                for msg in names::qualified_name(subscript) {
                    errs.push(FieldError::invalid(path, subscript, msg));
                }
            }
            other => errs.push(FieldError::invalid(
                path,
                other,
                "does not support subscript",
            )),
        }
    } else if !valid.contains(&internal.as_str()) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            internal,
            valid,
        ));
    }
}

fn validate_env_from(env_from: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, e) in env_from.items().enumerate() {
        let p = path.index(i);
        let prefix = e.get("prefix").str();
        if !prefix.is_empty() {
            for msg in relaxed_env_name_errors(prefix) {
                errs.push(FieldError::invalid(p.child("prefix"), prefix, msg));
            }
        }
        let mut count = 0;
        for key in ["configMapRef", "secretRef"] {
            let r = e.get(key);
            if !r.present() {
                continue;
            }
            count += 1;
            let name = r.get("name").str();
            if name.is_empty() {
                errs.push(FieldError::required(p.child(key).child("name"), ""));
            } else {
                for msg in meta::name_errors(NameRule::Subdomain, name, true) {
                    errs.push(FieldError::invalid(p.child(key).child("name"), name, msg));
                }
            }
        }
        if count == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    c: V<'_>,
    volumes: &[(String, &'static str)],
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let devices: Vec<(&str, &str)> = c
        .get("volumeDevices")
        .items()
        .map(|d| (d.get("name").str(), d.get("devicePath").str()))
        .collect();
    let privileged = c.get("securityContext").get("privileged").bool() == Some(true);
    let mut mount_points = BTreeSet::new();
    for (i, m) in c.get("volumeMounts").items().enumerate() {
        let p = path.index(i);
        let name = m.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        let volume = volumes.iter().find(|(n, _)| n == name);
        if volume.is_none() {
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
        if devices.iter().any(|(n, _)| *n == name) {
            errs.push(FieldError::invalid(
                p.child("name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.iter().any(|(_, dp)| *dp == mount_path) {
            errs.push(FieldError::invalid(
                p.child("mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub = m.get("subPath").str();
        let sub_expr = m.get("subPathExpr").str();
        if volume.is_some_and(|(_, kind)| *kind == "image") {
            if !sub.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPath"),
                    sub,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_expr.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPathExpr"),
                    sub_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        // Upstream reports these two at the list path, without the index.
        if !sub.is_empty() {
            validate_local_descending_path(sub, &path.child("subPath"), errs);
        }
        if !sub_expr.is_empty() {
            if !sub.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            validate_local_descending_path(sub_expr, &path.child("subPathExpr"), errs);
        }
        let propagation = m.get("mountPropagation");
        if propagation.present() {
            let pp = path.child("mountPropagation");
            if !matches!(
                propagation.str(),
                "None" | "HostToContainer" | "Bidirectional"
            ) {
                errs.push(FieldError::not_supported(
                    pp.clone(),
                    propagation.str(),
                    &["Bidirectional", "HostToContainer", "None"],
                ));
            }
            if propagation.str() == "Bidirectional" && !privileged {
                errs.push(FieldError::forbidden(
                    pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        let rro = m.get("recursiveReadOnly");
        if rro.present() {
            let rp = path.child("recursiveReadOnly");
            match rro.str() {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if m.get("readOnly").bool() != Some(true) {
                        errs.push(FieldError::forbidden(
                            rp.clone(),
                            "may only be specified when readOnly is true",
                        ));
                    }
                    if propagation.present() && propagation.str() != "None" {
                        errs.push(FieldError::forbidden(
                            rp,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => errs.push(FieldError::not_supported(
                    rp,
                    other,
                    &["Disabled", "Enabled", "IfPossible"],
                )),
            }
        }
    }
}

fn validate_volume_devices(
    c: V<'_>,
    volumes: &[(String, &'static str)],
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mounts: Vec<(&str, &str)> = c
        .get("volumeMounts")
        .items()
        .map(|m| (m.get("name").str(), m.get("mountPath").str()))
        .collect();
    let mut device_paths = BTreeSet::new();
    let mut device_names = BTreeSet::new();
    for (i, d) in c.get("volumeDevices").items().enumerate() {
        let p = path.index(i);
        let name = d.get("name").str();
        let dev_path = d.get("devicePath").str();
        let matched = volumes.iter().find(|(n, _)| n == name);
        if name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if device_names.contains(name) {
            errs.push(FieldError::invalid(p.child("name"), name, "must be unique"));
        }
        match matched {
            Some((_, kind)) if !matches!(*kind, "persistentVolumeClaim" | "ephemeral") => {
                errs.push(FieldError::invalid(
                    p.child("name"),
                    name,
                    "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
                ));
            }
            Some(_) => {}
            None => errs.push(FieldError::not_found(p.child("name"), name)),
        }
        if dev_path.is_empty() {
            errs.push(FieldError::required(p.child("devicePath"), ""));
        }
        if device_paths.contains(dev_path) {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                dev_path,
                "must be unique",
            ));
        }
        if !dev_path.is_empty() && dev_path.split('/').any(|s| s == "..") {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                dev_path,
                "can not contain backsteps ('..')",
            ));
        } else {
            device_paths.insert(dev_path.to_string());
        }
        if mounts.iter().any(|(n, _)| *n == name) {
            errs.push(FieldError::invalid(
                p.child("name"),
                name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.iter().any(|(_, mp)| *mp == dev_path) {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                dev_path,
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            device_names.insert(name.to_string());
        }
    }
}

fn validate_resize_policy(
    policies: V<'_>,
    restart_policy: &str,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let mut seen = BTreeSet::new();
    for (i, p) in policies.items().enumerate() {
        let resource = p.get("resourceName").str();
        if !seen.insert(resource.to_string()) {
            errs.push(FieldError::duplicate(path.index(i), resource));
        }
        match resource {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(path, other, &["cpu", "memory"])),
        }
        let policy = p.get("restartPolicy").str();
        match policy {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart_policy == "Never" && policy != "NotRequired" {
            errs.push(FieldError::invalid(
                path,
                policy,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

// --------------------------------------------------------------------------------- resources

/// Resource names a container may use without a domain prefix.
fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Upstream's standard resource names (containers, quotas, limit ranges).
fn is_standard_resource(name: &str) -> bool {
    is_standard_container_resource(name)
        || matches!(
            name,
            "storage"
                | "pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "requests.cpu"
                | "requests.memory"
                | "requests.storage"
                | "requests.ephemeral-storage"
                | "limits.cpu"
                | "limits.memory"
                | "limits.ephemeral-storage"
                | "services.nodeports"
                | "services.loadbalancers"
        )
        || name.starts_with("requests.hugepages-")
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// Upstream `validateContainerResourceName`.
fn validate_container_resource_name(name: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let msgs = names::qualified_name(name);
    if !msgs.is_empty() {
        for msg in msgs {
            errs.push(FieldError::invalid(path, name, msg));
        }
    } else if !name.contains('/') && !is_standard_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
        return;
    }
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && name.starts_with("requests.") {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

pub(crate) fn quantity_of(value: &Value) -> Option<Quantity> {
    match value {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// Upstream `ValidateResourceQuantityValue`: non-negative, whole for integer resources.
fn validate_quantity_value(name: &str, q: &Quantity, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if q.signum() < 0 {
        errs.push(FieldError::invalid(
            path,
            q.canonical(),
            "must be greater than or equal to 0",
        ));
    }
    let integer_resource =
        !is_native_resource(name) || matches!(name, "pods" | "services" | "secrets" | "configmaps");
    if integer_resource && q.milli_value() % 1000 != 0 {
        errs.push(FieldError::invalid(
            path,
            q.canonical(),
            "must be an integer",
        ));
    }
}

/// Validates a resource list (node capacity, overhead...) as upstream's
/// `ValidateResourceQuantityValue` with resource-name checks.
pub(crate) fn validate_resource_list(list: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (name, value) in list.map() {
        let p = path.key(name);
        for msg in names::qualified_name(name) {
            errs.push(FieldError::invalid(p.clone(), name.as_str(), msg));
        }
        if let Some(q) = quantity_of(value) {
            validate_quantity_value(name, &q, &p, errs);
        }
    }
}

/// Upstream `ValidateContainerResourceRequirements`.
fn validate_resource_requirements(resources: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let limits = resources.get("limits");
    let requests = resources.get("requests");
    let (mut lim_cpu_mem, mut req_cpu_mem, mut lim_huge, mut req_huge) =
        (false, false, false, false);
    for (name, value) in limits.map() {
        let p = lim_path.key(name);
        validate_container_resource_name(name, &p, errs);
        if let Some(q) = quantity_of(value) {
            validate_quantity_value(name, &q, &p, errs);
        }
        lim_huge |= name.starts_with("hugepages-");
        lim_cpu_mem |= matches!(name.as_str(), "cpu" | "memory");
    }
    for (name, value) in requests.map() {
        let p = req_path.key(name);
        validate_container_resource_name(name, &p, errs);
        let q = quantity_of(value);
        if let Some(q) = &q {
            validate_quantity_value(name, q, &p, errs);
        }
        match (q, limits.map().get(name).and_then(quantity_of)) {
            (Some(q), Some(limit)) => {
                if q != limit && !is_overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.canonical(),
                        format!("must be equal to {name} limit of {}", limit.canonical()),
                    ));
                } else if q > limit {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            limit.canonical()
                        ),
                    ));
                }
            }
            (_, None) if !is_overcommit_allowed(name) => {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
        req_huge |= name.starts_with("hugepages-");
        req_cpu_mem |= matches!(name.as_str(), "cpu" | "memory");
    }
    if !lim_cpu_mem && !req_cpu_mem && (lim_huge || req_huge) {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
}

// ------------------------------------------------------------------------ probes, lifecycle

fn validate_lifecycle(
    lifecycle: V<'_>,
    grace: Option<i64>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for hook in ["postStart", "preStop"] {
        if lifecycle.get(hook).present() {
            validate_handler(lifecycle.get(hook), grace, true, &path.child(hook), errs);
        }
    }
}

/// Upstream `validateHandler`: exactly one of exec, httpGet, tcpSocket, grpc (probes) or sleep
/// (lifecycle hooks).
fn validate_handler(
    handler: V<'_>,
    grace: Option<i64>,
    lifecycle: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut count = 0;
    for kind in kinds {
        let h = handler.get(kind);
        if !h.present() {
            continue;
        }
        let p = path.child(kind);
        if count > 0 {
            errs.push(FieldError::forbidden(
                p,
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        count += 1;
        match *kind {
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
                for header in h.get("httpHeaders").items() {
                    let name = header.get("name").str();
                    let ok = !name.is_empty()
                        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
                    if !ok {
                        errs.push(FieldError::invalid(
                            p.child("httpHeaders"),
                            name,
                            names::regex_error(
                                "a valid HTTP header must consist of alphanumeric characters or '-'",
                                "[-A-Za-z0-9]+",
                                &["X-Header-Name"],
                            ),
                        ));
                    }
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
                let seconds = h.get("seconds").int0();
                if let Some(g) = grace {
                    // PodLifecycleSleepActionAllowZero is on by default in 1.33.
                    if seconds < 0 || seconds > g {
                        errs.push(FieldError::invalid(
                            p,
                            seconds,
                            format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

/// A port given by number (1-65535) or by IANA name.
pub(crate) fn validate_port_num_or_name(port: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match port.0 {
        Some(Value::String(s)) => {
            for msg in names::port_name(s) {
                errs.push(FieldError::invalid(path, s.as_str(), msg));
            }
        }
        other => {
            let v = other.and_then(Value::as_i64).unwrap_or(0);
            for msg in names::port_num(v) {
                errs.push(FieldError::invalid(path, v, msg));
            }
        }
    }
}

fn validate_probe(probe: V<'_>, grace: Option<i64>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    validate_handler(probe, grace, false, path, errs);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(probe.get(key), path.child(key), errs);
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

fn validate_liveness_or_startup_probe(
    probe: V<'_>,
    grace: Option<i64>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if !probe.present() {
        return;
    }
    validate_probe(probe, grace, path, errs);
    let st = probe.get("successThreshold").int0();
    if st != 1 {
        errs.push(FieldError::invalid(
            path.child("successThreshold"),
            st,
            "must be 1",
        ));
    }
}

fn validate_readiness_probe(
    probe: V<'_>,
    grace: Option<i64>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if !probe.present() {
        return;
    }
    validate_probe(probe, grace, path, errs);
    if let Some(t) = probe.get("terminationGracePeriodSeconds").int() {
        errs.push(FieldError::invalid(
            path.child("terminationGracePeriodSeconds"),
            t,
            "must not be set for readinessProbes",
        ));
    }
}

// -------------------------------------------------------------------------- security context

fn validate_id(v: V<'_>, path: FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(id) = v.int() {
        if !(0..=MAX_INT32).contains(&id) {
            errs.push(FieldError::invalid(
                path,
                id,
                names::inclusive_range_error(0, MAX_INT32),
            ));
        }
    }
}

fn validate_seccomp_profile(sp: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if !sp.present() {
        return;
    }
    let ty = sp.get("type").str();
    match ty {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(FieldError::required(
            path.child("type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let local = sp.get("localhostProfile");
    if ty == "Localhost" {
        if !local.present() {
            errs.push(FieldError::required(
                path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            ));
        } else {
            validate_local_descending_path(local.str(), &path.child("localhostProfile"), errs);
        }
    } else if local.present() {
        errs.push(FieldError::invalid(
            path.child("localhostProfile"),
            sp.raw(),
            "can only be set when seccomp type is Localhost",
        ));
    }
}

/// Upstream `ValidateSecurityContext` (container level).
fn validate_security_context(
    sc: V<'_>,
    host_users: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if !sc.present() {
        return;
    }
    validate_id(sc.get("runAsUser"), path.child("runAsUser"), errs);
    validate_id(sc.get("runAsGroup"), path.child("runAsGroup"), errs);
    let proc_mount = sc.get("procMount");
    if proc_mount.present() {
        match proc_mount.str() {
            "Default" | "Unmasked" => {}
            other => errs.push(FieldError::not_supported(
                path.child("procMount"),
                other,
                &["Default", "Unmasked"],
            )),
        }
        if host_users && proc_mount.str() == "Unmasked" {
            errs.push(FieldError::forbidden(
                path.child("procMount"),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    validate_seccomp_profile(
        sc.get("seccompProfile"),
        &path.child("seccompProfile"),
        errs,
    );
    if sc.get("allowPrivilegeEscalation").bool() == Some(false) {
        if sc.get("privileged").bool() == Some(true) {
            errs.push(FieldError::invalid(
                path,
                sc.raw(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        for cap in sc.get("capabilities").get("add").items() {
            if cap.str() == "CAP_SYS_ADMIN" {
                errs.push(FieldError::invalid(
                    path,
                    sc.raw(),
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
    }
}

/// Upstream `validatePodSpecSecurityContext` (pod level; `shareProcessNamespace` and the host
/// namespaces live in the spec in v1).
fn validate_pod_security_context(spec: V<'_>, spec_path: &FieldPath, errs: &mut Vec<FieldError>) {
    let sc = spec.get("securityContext");
    let path = spec_path.child("securityContext");
    validate_id(sc.get("fsGroup"), path.child("fsGroup"), errs);
    validate_id(sc.get("runAsUser"), path.child("runAsUser"), errs);
    validate_id(sc.get("runAsGroup"), path.child("runAsGroup"), errs);
    for (i, g) in sc.get("supplementalGroups").items().enumerate() {
        validate_id(g, path.child("supplementalGroups").index(i), errs);
    }
    if spec.get("shareProcessNamespace").bool() == Some(true)
        && spec.get("hostPID").bool() == Some(true)
    {
        errs.push(FieldError::invalid(
            path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctl_names = BTreeSet::new();
    for (i, s) in sc.get("sysctls").items().enumerate() {
        let name = s.get("name").str();
        let np = path.child("sysctls").index(i).child("name");
        if name.is_empty() {
            errs.push(FieldError::required(np, ""));
        } else if !sysctl_names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(np, name));
        }
    }
    let policy = sc.get("fsGroupChangePolicy");
    if policy.present() && !matches!(policy.str(), "OnRootMismatch" | "Always") {
        errs.push(FieldError::not_supported(
            path.child("fsGroupChangePolicy"),
            policy.str(),
            &["Always", "OnRootMismatch"],
        ));
    }
    validate_seccomp_profile(
        sc.get("seccompProfile"),
        &path.child("seccompProfile"),
        errs,
    );
}

fn validate_image_pull_secrets(secrets: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, s) in secrets.items().enumerate() {
        if s.map().keys().any(|k| k != "name") {
            errs.push(FieldError::invalid(
                path.index(i),
                s.raw(),
                "only name may be set",
            ));
        }
    }
}

fn validate_scheduling_gates(gates: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, g) in gates.items().enumerate() {
        let name = g.get("name").str();
        for msg in names::qualified_name(name) {
            errs.push(FieldError::invalid(path.index(i), name, msg));
        }
        if !seen.insert(name.to_string()) {
            errs.push(FieldError::duplicate(path.index(i), name));
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
                let msgs = names::label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        value,
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
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

fn validate_host_aliases(aliases: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, a) in aliases.items().enumerate() {
        let p = path.index(i);
        let ip = a.get("ip").str();
        for msg in names::ip_address(ip) {
            errs.push(FieldError::invalid(p.child("ip"), ip, msg));
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
    let all: Vec<V<'_>> = constraints.items().collect();
    for (i, c) in all.iter().enumerate() {
        let p = path.index(i);
        let skew = c.get("maxSkew").int0();
        if skew <= 0 {
            errs.push(FieldError::invalid(p.child("maxSkew"), skew, NOT_POSITIVE));
        }
        let key = c.get("topologyKey").str();
        if key.is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        }
        let action = c.get("whenUnsatisfiable").str();
        if !matches!(action, "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let repeated = all[i + 1..].iter().any(|o| {
            o.get("topologyKey").str() == key && o.get("whenUnsatisfiable").str() == action
        });
        if repeated {
            errs.push(FieldError::duplicate(
                p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{key}, {action}}}"),
            ));
        }
        if let Some(min) = c.get("minDomains").int() {
            if min <= 0 {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    min,
                    NOT_POSITIVE,
                ));
            }
            if action != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    min,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                ));
            }
        }
        for key in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            let v = c.get(key);
            if v.present() && !matches!(v.str(), "Honor" | "Ignore") {
                errs.push(FieldError::not_supported(
                    p.child(key),
                    v.str(),
                    &["Honor", "Ignore"],
                ));
            }
        }
        meta::validate_label_selector(c.get("labelSelector"), &p.child("labelSelector"), errs);
    }
}

fn validate_dns_config(config: V<'_>, policy: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if policy == "None" {
        if !config.present() {
            errs.push(FieldError::required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        }
        if config.get("nameservers").is_empty() {
            errs.push(FieldError::required(
                path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    if !config.present() {
        return;
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
    if searches.strings().join(" ").len() > 2048 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            searches.raw(),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.items().enumerate() {
        let search = s.str();
        if search == "." {
            continue;
        }
        let search = search.strip_suffix('.').unwrap_or(search);
        // RelaxedDNSSearchValidation (beta in 1.33) allows underscores.
        let relaxed = search.replace('_', "a");
        if !names::dns1123_subdomain(&relaxed).is_empty() {
            errs.push(FieldError::invalid(
                path.child("searches").index(i),
                search,
                names::regex_error(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
                    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
                    &["example.com"],
                ),
            ));
        }
    }
    for (i, o) in config.get("options").items().enumerate() {
        if o.get("name").str().is_empty() {
            errs.push(FieldError::required(
                path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

// ---------------------------------------------------------------------------------- affinity

fn validate_node_selector_term(
    term: V<'_>,
    allow_invalid_values: bool,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for (j, req) in term.get("matchExpressions").items().enumerate() {
        let rp = path.child("matchExpressions").index(j);
        let values = req.get("values");
        match req.get("operator").str() {
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
        if !allow_invalid_values {
            for (k, v) in values.items().enumerate() {
                for msg in names::label_value(v.str()) {
                    errs.push(FieldError::invalid(
                        rp.child("values").index(k),
                        v.str(),
                        msg,
                    ));
                }
            }
        }
    }
    for (j, req) in term.get("matchFields").items().enumerate() {
        let rp = path.child("matchFields").index(j);
        match req.get("operator").str() {
            "In" | "NotIn" => {
                if req.get("values").len() != 1 {
                    errs.push(FieldError::required(
                        rp.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
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
        if key != "metadata.name" {
            errs.push(FieldError::invalid(
                rp.child("key"),
                key,
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in req.get("values").items().enumerate() {
                for msg in names::dns1123_subdomain(v.str()) {
                    errs.push(FieldError::invalid(
                        rp.child("values").index(k),
                        v.str(),
                        msg,
                    ));
                }
            }
        }
    }
}

fn validate_affinity(affinity: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let na = affinity.get("nodeAffinity");
    if na.present() {
        let np = path.child("nodeAffinity");
        let req = na.get("requiredDuringSchedulingIgnoredDuringExecution");
        if req.present() {
            let tp = np
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms");
            let terms = req.get("nodeSelectorTerms");
            if terms.is_empty() {
                errs.push(FieldError::required(
                    tp,
                    "must have at least one node selector term",
                ));
            } else {
                for (i, t) in terms.items().enumerate() {
                    validate_node_selector_term(t, false, &tp.index(i), errs);
                }
            }
        }
        for (i, pref) in na
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .items()
            .enumerate()
        {
            let pp = np
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
            validate_node_selector_term(
                pref.get("preference"),
                true,
                &pp.child("preference"),
                errs,
            );
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
    meta::validate_label_selector(
        term.get("namespaceSelector"),
        &path.child("namespaceSelector"),
        errs,
    );
    for ns in term.get("namespaces").items() {
        for msg in names::dns1123_label(ns.str()) {
            errs.push(FieldError::invalid(path.child("namespace"), ns.str(), msg));
        }
    }
    let key = term.get("topologyKey").str();
    if key.is_empty() {
        errs.push(FieldError::required(
            path.child("topologyKey"),
            "can not be empty",
        ));
    }
    for msg in names::qualified_name(key) {
        errs.push(FieldError::invalid(path.child("topologyKey"), key, msg));
    }
}

// ----------------------------------------------------------------------------------- updates

const UPDATABLE_POD_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Validates a pod update (upstream `ValidatePodUpdate`): only images, `activeDeadlineSeconds`
/// (set or shortened), toleration additions and scheduling gate removals may change; for gated
/// pods also node selector and node affinity additions.
pub(super) fn validate_pod_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_pod_metadata_and_spec(new, errs);
    let sp = FieldPath::new("spec");
    let (ns, os) = (new.get("spec"), old.get("spec"));
    for key in ["containers", "initContainers"] {
        let (nc, oc) = (ns.get(key), os.get(key));
        if nc.len() != oc.len() {
            errs.push(FieldError::forbidden(
                sp.child(key),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in nc.items().enumerate() {
            let image = c.get("image").str();
            if image.is_empty() {
                errs.push(FieldError::required(
                    sp.child(key).index(i).child("image"),
                    "",
                ));
            }
            if image.trim().len() != image.len() {
                errs.push(FieldError::invalid(
                    sp.child(key).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    let (new_ads, old_ads) = (
        ns.get("activeDeadlineSeconds"),
        os.get("activeDeadlineSeconds"),
    );
    if let Some(n) = new_ads.int() {
        if !(0..=MAX_INT32).contains(&n) {
            errs.push(FieldError::invalid(
                sp.child("activeDeadlineSeconds"),
                n,
                names::inclusive_range_error(0, MAX_INT32),
            ));
            return;
        }
        if old_ads.int().is_some_and(|o| o < n) {
            errs.push(FieldError::invalid(
                sp.child("activeDeadlineSeconds"),
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
    } else if old_ads.present() {
        errs.push(FieldError::invalid(
            sp.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        ));
    }
    validate_only_added_tolerations(
        ns.get("tolerations"),
        os.get("tolerations"),
        &sp.child("tolerations"),
        errs,
    );
    let old_gates: Vec<&str> = os
        .get("schedulingGates")
        .items()
        .map(|g| g.get("name").str())
        .collect();
    for (i, g) in ns.get("schedulingGates").items().enumerate() {
        let name = g.get("name").str();
        if !old_gates.contains(&name) {
            errs.push(FieldError::forbidden(
                sp.child("schedulingGates").index(i).child("name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if ns.same(&os) {
        return;
    }
    let old_spec = os.raw();
    let mut munged = ns.raw();
    if let (Some(m), Some(o)) = (munged.as_object_mut(), old_spec.as_object()) {
        for key in ["containers", "initContainers"] {
            if let (Some(Value::Array(mc)), Some(Value::Array(oc))) = (m.get_mut(key), o.get(key)) {
                for (c, old_c) in mc.iter_mut().zip(oc) {
                    if let Some(c) = c.as_object_mut() {
                        match old_c.get("image") {
                            Some(image) => c.insert("image".into(), image.clone()),
                            None => c.remove("image"),
                        };
                    }
                }
            }
        }
        let copy_old = |key: &str, m: &mut serde_json::Map<String, Value>| match o.get(key) {
            Some(v) => {
                m.insert(key.into(), v.clone());
            }
            None => {
                m.remove(key);
            }
        };
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            copy_old(key, m);
        }
        let old_grace = o
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            copy_old("terminationGracePeriodSeconds", m);
        }
        if !os.get("schedulingGates").is_empty() {
            // Gated pods may gain node selector entries and node affinity (additions only).
            let new_sel = V(m.get("nodeSelector"))
                .string_map()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>();
            let old_sel = os.get("nodeSelector");
            for (k, v) in old_sel.string_map() {
                if !new_sel.iter().any(|(nk, nv)| nk == k && nv == v) {
                    errs.push(FieldError::invalid(
                        sp.child("nodeSelector"),
                        V(m.get("nodeSelector")).raw(),
                        "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                    ));
                    break;
                }
            }
            copy_old("nodeSelector", m);
            let old_na = os.get("affinity").get("nodeAffinity").raw();
            if let Some(aff) = m.get_mut("affinity").and_then(Value::as_object_mut) {
                if old_na.is_null() {
                    aff.remove("nodeAffinity");
                } else {
                    aff.insert("nodeAffinity".into(), old_na);
                }
                if aff.is_empty() && o.get("affinity").is_none() {
                    m.remove("affinity");
                }
            }
        }
    }
    if !semantic_eq(Some(&munged), Some(&old_spec)) {
        let detail = format!(
            "pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n{}",
            spec_diff(&old_spec, &munged)
        );
        errs.push(FieldError::forbidden(sp, detail));
    }
}

fn validate_only_added_tolerations(
    new: V<'_>,
    old: V<'_>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        v
    };
    for o in old.items() {
        let found = new
            .items()
            .any(|n| semantic_eq(Some(&strip(&o.raw())), Some(&strip(&n.raw()))));
        if !found {
            errs.push(FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
    validate_tolerations(new, path, errs);
}

/// Upstream prints a `cmp.Diff` of the specs after the message; skiff lists the changed fields
/// with their old and new values.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut changed = Vec::new();
    diff_paths(old, new, String::from("spec"), &mut changed);
    changed.join("\n")
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
        _ => out.push(format!("  {path}: {} -> {}", old, new)),
    }
}

// ------------------------------------------------------------------------------------ status

fn validate_pod_ips(status: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("status");
    for key in ["podIPs", "hostIPs"] {
        let ips = status.get(key);
        let kp = sp.child(key);
        if key == "hostIPs" && !ips.is_empty() {
            let first = ips.items().next().map(|i| i.get("ip").str()).unwrap_or("");
            if status.get("hostIP").str() != first {
                errs.push(FieldError::invalid(
                    kp.index(0).child("ip"),
                    first,
                    "must be equal to `hostIP`",
                ));
            }
        }
        for (i, ip) in ips.items().enumerate() {
            for msg in names::ip_address(ip.get("ip").str()) {
                errs.push(FieldError::invalid(kp.index(i), ip.get("ip").str(), msg));
            }
        }
        if ips.len() > 1 {
            let addrs: Vec<&str> = ips.items().map(|i| i.get("ip").str()).collect();
            let v6 = addrs.iter().filter(|a| a.contains(':')).count();
            let dual = v6 == 1 && addrs.len() == 2;
            if !dual {
                errs.push(FieldError::invalid(
                    &kp,
                    ips.raw(),
                    "may specify no more than one IP for each IP family",
                ));
            }
            let mut seen = BTreeSet::new();
            for (i, ip) in ips.items().enumerate() {
                if !seen.insert(ip.get("ip").str()) {
                    errs.push(FieldError::duplicate(kp.index(i), ip.raw()));
                }
            }
        }
    }
}

/// Validates a status update of a pod (upstream `ValidatePodStatusUpdate`).
pub(super) fn validate_pod_status_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    // Upstream reports custom pod conditions under `metadata.conditions`.
    let cp = FieldPath::new("metadata").child("conditions");
    for (i, c) in new.get("status").get("conditions").items().enumerate() {
        let ty = c.get("type").str();
        if matches!(ty, "PodScheduled" | "Ready" | "Initialized") {
            continue;
        }
        for msg in names::qualified_name(ty) {
            errs.push(FieldError::invalid(cp.index(i).child("Type"), ty, msg));
        }
    }
    let sp = FieldPath::new("status");
    if new.get("spec").get("nodeName").str() != old.get("spec").get("nodeName").str() {
        errs.push(FieldError::forbidden(
            sp.child("nodeName"),
            "may not be changed directly",
        ));
    }
    let status = new.get("status");
    let nominated = status.get("nominatedNodeName").str();
    if nominated != old.get("status").get("nominatedNodeName").str() && !nominated.is_empty() {
        for msg in names::dns1123_subdomain(nominated) {
            errs.push(FieldError::invalid(
                sp.child("nominatedNodeName"),
                nominated,
                msg,
            ));
        }
    }
    let (nq, oq) = (status.get("qosClass"), old.get("status").get("qosClass"));
    if !nq.same(&oq) {
        errs.push(FieldError::invalid(
            sp.child("qosClass"),
            nq.raw(),
            meta::FIELD_IMMUTABLE,
        ));
    }
    let restart = old.get("spec").get("restartPolicy").str();
    let sidecars: Vec<&str> = old
        .get("spec")
        .get("initContainers")
        .items()
        .filter(|c| c.get("restartPolicy").str() == "Always")
        .map(|c| c.get("name").str())
        .collect();
    for (key, policy) in [
        ("containerStatuses", restart),
        ("initContainerStatuses", restart),
        ("ephemeralContainerStatuses", "Never"),
    ] {
        if policy == "Always" {
            continue;
        }
        for (i, o) in old.get("status").get(key).items().enumerate() {
            let terminated = o.get("state").get("terminated");
            if !terminated.present() {
                continue;
            }
            if terminated.get("exitCode").int0() != 0 && policy == "OnFailure" {
                continue;
            }
            if key == "initContainerStatuses" && sidecars.contains(&o.get("name").str()) {
                continue;
            }
            let reopened = status.get(key).items().any(|n| {
                n.get("name").str() == o.get("name").str()
                    && !n.get("state").get("terminated").present()
            });
            if reopened {
                errs.push(FieldError::forbidden(
                    sp.child(key).index(i).child("state"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
    validate_pod_ips(status, errs);
}

/// Validates a `v1` `Binding` posted to `pods/binding` (upstream `ValidatePodBinding`).
pub(super) fn validate_binding(binding: V<'_>, errs: &mut Vec<FieldError>) {
    let kind = binding.get("target").get("kind").str();
    if !kind.is_empty() && kind != "Node" {
        errs.push(FieldError::not_supported(
            FieldPath::new("target").child("kind"),
            kind,
            &["Node", "<empty>"],
        ));
    }
    if binding.get("target").get("name").str().is_empty() {
        errs.push(FieldError::required(
            FieldPath::new("target").child("name"),
            "",
        ));
    }
}
