//! Upstream defaulting (`SetDefaults_*` in `k8s.io/kubernetes/pkg/apis/*/v1/defaults.go`, the
//! generated defaulters that call them on nested types, and the defaults the admission plugins
//! `ServiceAccount`, `Priority` and `DefaultTolerationSeconds` add to pods).
//!
//! Defaulting runs on every write (create, update, patch), before validation, so it only fills
//! what is missing; what must only happen once at creation lives in [`crate::strategy`].

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::quantity::Quantity;
use crate::registry::ResourceInfo;

/// Default grace period of a pod, seconds.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Scheduler that handles pods without `schedulerName`.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Seconds a pod tolerates a not-ready or unreachable node (DefaultTolerationSeconds plugin).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;
/// Taint put on nodes that are not ready.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint put on nodes that are unreachable.
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Label holding a namespace's own name.
pub const LABEL_METADATA_NAME: &str = "kubernetes.io/metadata.name";
/// Default file mode of secret, configMap, downwardAPI and projected volumes (0644).
const DEFAULT_VOLUME_MODE: i64 = 0o644;

/// Fills in upstream's defaults for an object of resource `info`. Values of the wrong JSON type
/// are left alone for validation to report.
pub fn apply_defaults(info: &ResourceInfo, object: &mut Value) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    match (info.group, info.kind) {
        ("", "Pod") => default_pod(obj),
        ("", "Service") => default_service(obj),
        ("", "Secret") => default_secret(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "Node") => default_node(obj),
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => default_replicaset(obj),
        ("apps", "DaemonSet") => default_daemonset(obj),
        ("batch", "Job") => default_job(obj),
        ("", "Endpoints") => default_endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(obj),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(obj),
        _ => {}
    }
}

/// Upstream `SetDefaults_Endpoints`: ports without a protocol are TCP.
fn default_endpoints(obj: &mut Map<String, Value>) {
    for subset in each_obj(obj, "subsets") {
        for port in each_obj(subset, "ports") {
            if matches!(port.get("protocol"), None | Some(Value::Null))
                || port.get("protocol").and_then(Value::as_str) == Some("")
            {
                port.insert("protocol".to_string(), Value::from("TCP"));
            }
        }
    }
}

/// Upstream discovery `SetDefaults_EndpointPort`: a missing name is `""`, a missing protocol TCP.
fn default_endpoint_slice(obj: &mut Map<String, Value>) {
    for port in each_obj(obj, "ports") {
        set_default(port, "name", Value::from(""));
        set_default(port, "protocol", Value::from("TCP"));
    }
}

/// Upstream networking/v1 `SetDefaults_NetworkPolicy` and `SetDefaults_NetworkPolicyPort`:
/// `policyTypes` is `[Ingress]`, plus `Egress` when there are egress rules; ports without a
/// protocol are TCP. `podSelector` (a struct in Go, always written) is `{}` when absent.
fn default_network_policy(obj: &mut Map<String, Value>) {
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    set_default(spec, "podSelector", Value::Object(Map::new()));
    for rules in ["ingress", "egress"] {
        for rule in each_obj(spec, rules) {
            for port in each_obj(rule, "ports") {
                set_default(port, "protocol", Value::from("TCP"));
            }
        }
    }
    if is_empty_or_absent(spec, "policyTypes") {
        let mut types = vec![Value::from("Ingress")];
        if !is_empty_or_absent(spec, "egress") {
            types.push(Value::from("Egress"));
        }
        spec.insert("policyTypes".to_string(), Value::Array(types));
    }
}

/// Inserts `value` at `key` when the key is absent or `null`.
fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    match obj.get(key) {
        None | Some(Value::Null) => {
            obj.insert(key.to_string(), value);
        }
        Some(_) => {}
    }
}

/// The object at `key`, created (empty) when absent or `null`; `None` when of another type.
fn child_obj<'a>(obj: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    if matches!(obj.get(key), None | Some(Value::Null)) {
        obj.insert(key.to_string(), Value::Object(Map::new()));
    }
    obj.get_mut(key).and_then(Value::as_object_mut)
}

/// The object at `key` when present.
fn existing_obj<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    obj.get_mut(key).and_then(Value::as_object_mut)
}

/// The objects of the list at `key` when present.
fn each_obj<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn is_empty_or_absent(obj: &Map<String, Value>, key: &str) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates

fn default_pod(pod: &mut Map<String, Value>) {
    let Some(spec) = existing_obj(pod, "spec") else {
        return;
    };
    // SetDefaults_Pod: requests default to limits (pods only, not templates).
    for key in ["containers", "initContainers"] {
        for c in each_obj(spec, key) {
            default_requests_from_limits(c);
        }
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for key in ["containers", "initContainers"] {
            for c in each_obj(spec, key) {
                for p in each_obj(c, "ports") {
                    if matches!(p.get("hostPort"), None | Some(Value::Null))
                        || p.get("hostPort") == Some(&json!(0))
                    {
                        if let Some(cp) = p.get("containerPort").cloned() {
                            p.insert("hostPort".into(), cp);
                        }
                    }
                }
            }
        }
    }
    // ServiceAccount admission: pods run as the namespace's `default` service account.
    if is_empty_or_absent(spec, "serviceAccountName") && is_empty_or_absent(spec, "serviceAccount")
    {
        spec.insert("serviceAccountName".into(), json!("default"));
    }
    // Priority admission: no priority class means priority 0, preempting lower priorities.
    if is_empty_or_absent(spec, "priorityClassName") {
        set_default(spec, "priority", json!(0));
    }
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    // DefaultTolerationSeconds admission.
    default_toleration_seconds(spec);
    default_pod_spec(spec);
}

fn default_requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = existing_obj(container, "resources") else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let Some(requests) = child_obj(resources, "requests") else {
        return;
    };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    if !matches!(
        spec.get("tolerations"),
        None | Some(Value::Null) | Some(Value::Array(_))
    ) {
        return;
    }
    let mut tolerations: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for taint in [TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE] {
        let tolerated = tolerations.iter().any(|t| tolerates_no_execute(t, taint));
        if !tolerated {
            tolerations.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
    spec.insert("tolerations".into(), Value::Array(tolerations));
}

/// Whether toleration `t` tolerates the `NoExecute` taint `key` (upstream `ToleratesTaint`).
fn tolerates_no_execute(t: &Value, key: &str) -> bool {
    let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
    if !effect.is_empty() && effect != "NoExecute" {
        return false;
    }
    let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
    let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
    if t_key.is_empty() {
        return operator == "Exists";
    }
    t_key == key && operator == "Exists"
}

/// Defaults of a `PodSpec` (also inside templates): SetDefaults_PodSpec and the nested
/// defaulters (containers, probes, volumes, resource lists).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(
        spec,
        "terminationGracePeriodSeconds",
        json!(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS),
    );
    set_default(spec, "schedulerName", json!(DEFAULT_SCHEDULER_NAME));
    // v1 conversion keeps the deprecated `serviceAccount` in step with `serviceAccountName`.
    match (
        spec.get("serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
        spec.get("serviceAccount")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
    ) {
        (Some(name), None) => {
            let name = name.to_string();
            spec.insert("serviceAccount".into(), json!(name));
        }
        (None, Some(name)) => {
            let name = name.to_string();
            spec.insert("serviceAccountName".into(), json!(name));
        }
        _ => {}
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in each_obj(spec, key) {
            default_container(c);
        }
    }
    for v in each_obj(spec, "volumes") {
        default_volume(v);
    }
    if let Some(overhead) = existing_obj(spec, "overhead") {
        canonicalize_resource_list(overhead);
    }
    if let Some(resources) = existing_obj(spec, "resources") {
        default_resource_requirements(resources);
    }
}

/// Defaults of a `PodTemplateSpec` (Deployments, ReplicaSets, DaemonSets, Jobs).
fn default_template(spec: &mut Map<String, Value>) {
    if let Some(template) = existing_obj(spec, "template") {
        if let Some(pod_spec) = existing_obj(template, "spec") {
            default_pod_spec(pod_spec);
        }
    }
}

/// Upstream `parsers.ParseImageName` tag: the tag of `image`, `latest` when it has neither tag
/// nor digest, empty when it has only a digest.
pub fn image_tag(image: &str) -> &str {
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None if has_digest => "",
        None => "latest",
    }
}

fn default_container(c: &mut Map<String, Value>) {
    if is_empty_or_absent(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    if is_empty_or_absent(c, "terminationMessagePath") {
        c.insert(
            "terminationMessagePath".into(),
            json!("/dev/termination-log"),
        );
    }
    if is_empty_or_absent(c, "terminationMessagePolicy") {
        c.insert("terminationMessagePolicy".into(), json!("File"));
    }
    for p in each_obj(c, "ports") {
        if is_empty_or_absent(p, "protocol") {
            p.insert("protocol".into(), json!("TCP"));
        }
    }
    set_default(c, "resources", json!({}));
    if let Some(resources) = existing_obj(c, "resources") {
        default_resource_requirements(resources);
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing_obj(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = existing_obj(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = existing_obj(lifecycle, hook) {
                if let Some(get) = existing_obj(h, "httpGet") {
                    default_http_get(get);
                }
            }
        }
    }
    for env in each_obj(c, "env") {
        if let Some(from) = existing_obj(env, "valueFrom") {
            if let Some(field_ref) = existing_obj(from, "fieldRef") {
                default_field_ref(field_ref);
            }
        }
    }
}

fn default_field_ref(field_ref: &mut Map<String, Value>) {
    if is_empty_or_absent(field_ref, "apiVersion") {
        field_ref.insert("apiVersion".into(), json!("v1"));
    }
}

fn default_probe(p: &mut Map<String, Value>) {
    for (key, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if matches!(p.get(key), None | Some(Value::Null)) || p.get(key) == Some(&json!(0)) {
            p.insert(key.into(), json!(value));
        }
    }
    if let Some(get) = existing_obj(p, "httpGet") {
        default_http_get(get);
    }
}

fn default_http_get(get: &mut Map<String, Value>) {
    if is_empty_or_absent(get, "path") {
        get.insert("path".into(), json!("/"));
    }
    if is_empty_or_absent(get, "scheme") {
        get.insert("scheme".into(), json!("HTTP"));
    }
}

/// Volume sources upstream knows; a volume with none of them becomes an `emptyDir`.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Map<String, Value>) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|s| !matches!(v.get(*s), None | Some(Value::Null)));
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = existing_obj(v, source) {
            set_default(s, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        }
    }
    if let Some(d) = existing_obj(v, "downwardAPI") {
        for item in each_obj(d, "items") {
            if let Some(f) = existing_obj(item, "fieldRef") {
                default_field_ref(f);
            }
        }
    }
    if let Some(p) = existing_obj(v, "projected") {
        for source in each_obj(p, "sources") {
            if let Some(token) = existing_obj(source, "serviceAccountToken") {
                set_default(token, "expirationSeconds", json!(3600));
            }
            if let Some(d) = existing_obj(source, "downwardAPI") {
                for item in each_obj(d, "items") {
                    if let Some(f) = existing_obj(item, "fieldRef") {
                        default_field_ref(f);
                    }
                }
            }
        }
    }
    if let Some(h) = existing_obj(v, "hostPath") {
        set_default(h, "type", json!(""));
    }
    if let Some(e) = existing_obj(v, "emptyDir") {
        let text = match e.get("sizeLimit") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        if let Some(q) = text.and_then(|t| Quantity::parse(&t).ok()) {
            e.insert("sizeLimit".into(), json!(q.canonical()));
        }
    }
    if let Some(image) = existing_obj(v, "image") {
        if is_empty_or_absent(image, "pullPolicy") {
            let reference = image.get("reference").and_then(Value::as_str).unwrap_or("");
            let policy = if image_tag(reference) == "latest" {
                "Always"
            } else {
                "IfNotPresent"
            };
            image.insert("pullPolicy".into(), json!(policy));
        }
    }
}

fn default_resource_requirements(resources: &mut Map<String, Value>) {
    for key in ["limits", "requests"] {
        if let Some(list) = existing_obj(resources, key) {
            canonicalize_resource_list(list);
        }
    }
}

/// SetDefaults_ResourceList: every quantity rounded up to milli units and written in canonical
/// form (what upstream's decode/encode round trip stores). Unparsable values are left for
/// validation.
pub fn canonicalize_resource_list(list: &mut Map<String, Value>) {
    for value in list.values_mut() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if let Ok(q) = Quantity::parse(&text) {
            *value = Value::String(round_up_milli(q).canonical());
        }
    }
}

fn round_up_milli(q: Quantity) -> Quantity {
    let milli = q.milli_value();
    if Quantity::from_milli(milli) == q {
        q
    } else {
        // Keep the value's own format where it is exact in millis.
        Quantity::from_milli(milli)
    }
}

// ---------------------------------------------------------------------------------------------
// Other core kinds

fn default_service(svc: &mut Map<String, Value>) {
    let Some(spec) = child_obj(svc, "spec") else {
        return;
    };
    if is_empty_or_absent(spec, "sessionAffinity") {
        spec.insert("sessionAffinity".into(), json!("None"));
    }
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    if is_empty_or_absent(spec, "type") {
        spec.insert("type".into(), json!("ClusterIP"));
    }
    for p in each_obj(spec, "ports") {
        if is_empty_or_absent(p, "protocol") {
            p.insert("protocol".into(), json!("TCP"));
        }
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible =
        ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips);
    if externally_accessible && is_empty_or_absent(spec, "externalTrafficPolicy") {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// SetDefaults_Secret plus the v1 conversion: `stringData` is write-only, merged into `data`
/// (base64) and dropped, its keys winning over `data`'s.
fn default_secret(secret: &mut Map<String, Value>) {
    set_default(secret, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    if let Some(data) = child_obj(secret, "data") {
        for (k, v) in string_data {
            if let Value::String(s) = v {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

fn default_namespace(ns: &mut Map<String, Value>) {
    let name = ns
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        if let Some(meta) = child_obj(ns, "metadata") {
            if let Some(labels) = child_obj(meta, "labels") {
                labels.insert(LABEL_METADATA_NAME.into(), json!(name));
            }
        }
    }
    if let Some(status) = child_obj(ns, "status") {
        if is_empty_or_absent(status, "phase") {
            status.insert("phase".into(), json!("Active"));
        }
    }
}

fn default_node(node: &mut Map<String, Value>) {
    let Some(status) = existing_obj(node, "status") else {
        return;
    };
    if let Some(capacity) = existing_obj(status, "capacity") {
        canonicalize_resource_list(capacity);
    }
    if let Some(allocatable) = existing_obj(status, "allocatable") {
        canonicalize_resource_list(allocatable);
    }
    if matches!(status.get("allocatable"), None | Some(Value::Null)) {
        if let Some(capacity) = status.get("capacity").cloned() {
            status.insert("allocatable".into(), capacity);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// apps/v1 and batch/v1

fn default_deployment(d: &mut Map<String, Value>) {
    let Some(spec) = child_obj(d, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    if let Some(strategy) = child_obj(spec, "strategy") {
        if is_empty_or_absent(strategy, "type") {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = child_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_replicaset(rs: &mut Map<String, Value>) {
    let Some(spec) = child_obj(rs, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    default_template(spec);
}

fn default_daemonset(ds: &mut Map<String, Value>) {
    let Some(spec) = child_obj(ds, "spec") else {
        return;
    };
    if let Some(strategy) = child_obj(spec, "updateStrategy") {
        if is_empty_or_absent(strategy, "type") {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(ru) = child_obj(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

fn default_job(job: &mut Map<String, Value>) {
    let template_labels = job
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    let Some(spec) = child_obj(job, "spec") else {
        return;
    };
    let unset =
        |spec: &Map<String, Value>, k: &str| matches!(spec.get(k), None | Some(Value::Null));
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") {
            6
        } else {
            i64::from(i32::MAX)
        };
        spec.insert("backoffLimit".into(), json!(limit));
    }
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if let Some(policy) = existing_obj(spec, "podFailurePolicy") {
        for rule in each_obj(policy, "rules") {
            for pattern in each_obj(rule, "onPodConditions") {
                if is_empty_or_absent(pattern, "status") {
                    pattern.insert("status".into(), json!("True"));
                }
            }
        }
    }
    default_template(spec);
    if let Some(labels) = template_labels {
        if let Some(meta) = child_obj(job, "metadata") {
            let empty = meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                meta.insert("labels".into(), labels);
            }
        }
    }
}

#[cfg(test)]
mod tests;
