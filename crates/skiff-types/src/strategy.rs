//! What upstream's registry strategies (`k8s.io/kubernetes/pkg/registry/*/strategy.go`) do to an
//! object beyond defaulting: on create (`PrepareForCreate`), on update of the main resource and
//! on update of the `status` subresource (`PrepareForUpdate`).
//!
//! The API server calls, in this order: create — assign `metadata.uid`, [`prepare_for_create`],
//! [`crate::defaults::apply_defaults`], [`crate::validation::validate_create`]; update —
//! [`prepare_for_update`] (or [`prepare_for_status_update`]), `apply_defaults`,
//! `validate_update` (or `validate_status_update`).

use serde_json::{json, Map, Value};

use crate::quantity::Quantity;
use crate::registry::ResourceInfo;

/// Label holding the job name on a Job's pods (legacy form).
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Label holding the job name on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Label holding the job uid on a Job's pods (legacy form).
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// Label holding the job uid on a Job's pods; the generated selector matches it.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Annotation counting DaemonSet template changes (upstream's `templateGeneration`).
pub const DAEMONSET_TEMPLATE_GENERATION_ANNOTATION: &str =
    "deprecated.daemonset.template.generation";
/// Finalizer every namespace starts with; the namespace controller removes it.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Prepares a new object for storage as upstream's `PrepareForCreate`: resets status (pods start
/// `Pending` with their QoS class, namespaces `Active`), adds the `kubernetes` namespace
/// finalizer, generates a Job's selector and pod labels (needs `metadata.uid`, so assign it
/// first), starts a DaemonSet's template generation at 1.
pub fn prepare_for_create(info: &ResourceInfo, object: &mut Value) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    match (info.group, info.kind) {
        ("", "Pod") => {
            let mut status = json!({"phase": "Pending"});
            if let Some(spec) = obj.get("spec") {
                status["qosClass"] = json!(pod_qos_class(spec));
                let gated = spec
                    .get("schedulingGates")
                    .and_then(Value::as_array)
                    .is_some_and(|g| !g.is_empty());
                if gated {
                    status["conditions"] = json!([{
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "SchedulingGated",
                        "message": "Scheduling is blocked due to non-empty scheduling gates",
                    }]);
                }
            }
            obj.insert("status".into(), status);
        }
        ("", "Namespace") => {
            obj.insert("status".into(), json!({"phase": "Active"}));
            let spec = ensure_obj(obj, "spec");
            let finalizers = spec
                .entry("finalizers")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !finalizers.is_array() {
                *finalizers = Value::Array(Vec::new());
            }
            if let Value::Array(list) = finalizers {
                if !list.iter().any(|f| f.as_str() == Some(NAMESPACE_FINALIZER)) {
                    list.push(json!(NAMESPACE_FINALIZER));
                }
            }
        }
        ("", "Service") => {
            obj.insert("status".into(), json!({"loadBalancer": {}}));
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                // Old clients set only `clusterIP`; upstream mirrors it into `clusterIPs`.
                let ip = spec
                    .get("clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let ips_empty = spec
                    .get("clusterIPs")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if !ip.is_empty() && ips_empty {
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
                    if matches!(spec.get("ipFamilyPolicy"), None | Some(Value::Null)) {
                        spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
                    }
                    if matches!(spec.get("ipFamilies"), None | Some(Value::Null)) {
                        spec.insert("ipFamilies".into(), json!(["IPv4"]));
                    }
                }
            }
        }
        ("apps", "Deployment") | ("apps", "ReplicaSet") => {
            obj.insert("status".into(), json!({}));
        }
        ("apps", "DaemonSet") => {
            obj.insert("status".into(), json!({}));
            let meta = ensure_obj(obj, "metadata");
            let annotations = ensure_obj(meta, "annotations");
            annotations.insert(DAEMONSET_TEMPLATE_GENERATION_ANNOTATION.into(), json!("1"));
        }
        ("batch", "Job") => {
            obj.insert("status".into(), json!({}));
            let manual = obj
                .get("spec")
                .and_then(|s| s.get("manualSelector"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !manual {
                generate_job_selector(obj);
            }
        }
        _ => {}
    }
}

/// Upstream `generateSelector`: labels the Job's pod template with the job name and uid and
/// selects on `batch.kubernetes.io/controller-uid`. Does nothing without `metadata.uid`.
pub fn generate_job_selector(job: &mut Map<String, Value>) {
    let meta = job.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(uid) = meta
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
    else {
        return;
    };
    let spec = ensure_obj(job, "spec");
    {
        let template = ensure_obj(spec, "template");
        let tmeta = ensure_obj(template, "metadata");
        let labels = ensure_obj(tmeta, "labels");
        for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    let selector = ensure_obj(spec, "selector");
    let match_labels = ensure_obj(selector, "matchLabels");
    match_labels
        .entry(CONTROLLER_UID_LABEL)
        .or_insert_with(|| json!(uid));
}

/// Prepares an update of the main resource as upstream's `BeforeUpdate` and
/// `PrepareForUpdate`: system metadata the client cannot change (`uid` when omitted,
/// `creationTimestamp`, `deletionTimestamp`, `deletionGracePeriodSeconds`, `generation`) is taken
/// from `old`; the status cannot be changed this way (copied from `old`), nor a namespace's
/// finalizers; a DaemonSet's template generation advances when its pod template changes; a
/// Service's `clusterIPs` follow a changed `clusterIP`.
pub fn prepare_for_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    let Some(obj) = new.as_object_mut() else {
        return;
    };
    keep_system_metadata(old, obj);
    if info.has_subresource("status") {
        match old.get("status") {
            Some(status) => {
                obj.insert("status".into(), status.clone());
            }
            None => {
                obj.remove("status");
            }
        }
    }
    match (info.group, info.kind) {
        ("", "Namespace") => {
            let old_finalizers = old.get("spec").and_then(|s| s.get("finalizers")).cloned();
            let spec = ensure_obj(obj, "spec");
            match old_finalizers {
                Some(f) => {
                    spec.insert("finalizers".into(), f);
                }
                None => {
                    spec.remove("finalizers");
                }
            }
        }
        ("", "Service") => {
            let old_spec = old.get("spec");
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                let ip = spec
                    .get("clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let old_ip = old_spec
                    .and_then(|s| s.get("clusterIP"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let ips_unchanged =
                    spec.get("clusterIPs") == old_spec.and_then(|s| s.get("clusterIPs"));
                let ips_empty = spec
                    .get("clusterIPs")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if !ip.is_empty() && (ips_empty || (ips_unchanged && ip != old_ip)) {
                    spec.insert("clusterIPs".into(), json!([ip]));
                } else if ip.is_empty() && ips_unchanged && !old_ip.is_empty() {
                    spec.remove("clusterIPs");
                }
            }
        }
        ("apps", "DaemonSet") => {
            let old_template = old.get("spec").and_then(|s| s.get("template"));
            let new_template = obj.get("spec").and_then(|s| s.get("template"));
            let old_generation = old
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(DAEMONSET_TEMPLATE_GENERATION_ANNOTATION))
                .and_then(Value::as_str)
                .and_then(|g| g.parse::<i64>().ok());
            let generation = match old_generation {
                Some(g) if old_template != new_template => Some(g + 1),
                Some(g) => Some(g),
                None => None,
            };
            if let Some(g) = generation {
                let meta = ensure_obj(obj, "metadata");
                let annotations = ensure_obj(meta, "annotations");
                annotations.insert(
                    DAEMONSET_TEMPLATE_GENERATION_ANNOTATION.into(),
                    json!(g.to_string()),
                );
            }
        }
        _ => {}
    }
}

/// Upstream `BeforeUpdate`: metadata only the server sets survives any update.
fn keep_system_metadata(old: &Value, obj: &mut Map<String, Value>) {
    let Some(old_meta) = old.get("metadata").and_then(Value::as_object) else {
        return;
    };
    let meta = ensure_obj(obj, "metadata");
    if meta
        .get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        if let Some(uid) = old_meta.get("uid") {
            meta.insert("uid".into(), uid.clone());
        }
    }
    for key in [
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        if let Some(v) = old_meta.get(key).filter(|v| !v.is_null()) {
            meta.insert(key.into(), v.clone());
        }
    }
}

/// Prepares an update through the `status` subresource as upstream's status strategies: the
/// `spec` is copied from `old` (only the status changes), plus what each strategy protects —
/// a pod's owner references, a Deployment's labels — and the system metadata of
/// `BeforeUpdate`.
pub fn prepare_for_status_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    let Some(obj) = new.as_object_mut() else {
        return;
    };
    keep_system_metadata(old, obj);
    match old.get("spec") {
        Some(spec) => {
            obj.insert("spec".into(), spec.clone());
        }
        None => {
            obj.remove("spec");
        }
    }
    let protected: &[&str] = match (info.group, info.kind) {
        ("", "Pod") => &["ownerReferences"],
        ("apps", "Deployment") => &["labels"],
        _ => &[],
    };
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let meta = ensure_obj(obj, "metadata");
    for key in protected {
        match old_meta.and_then(|m| m.get(*key)) {
            Some(v) => {
                meta.insert((*key).into(), v.clone());
            }
            None => {
                meta.remove(*key);
            }
        }
    }
}

fn ensure_obj<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj.insert(key.to_string(), Value::Object(Map::new()));
    }
    match obj.get_mut(key) {
        Some(Value::Object(m)) => m,
        _ => unreachable!("just inserted an object"),
    }
}

/// QoS class of a pod spec (upstream `GetPodQOS`): `Guaranteed` when every container limits
/// CPU and memory and requests equal limits, `BestEffort` when nothing is requested or limited,
/// `Burstable` otherwise.
pub fn pod_qos_class(spec: &Value) -> &'static str {
    let mut requests: Vec<(String, Quantity)> = Vec::new();
    let mut limits: Vec<(String, Quantity)> = Vec::new();
    let mut guaranteed = true;
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    let add = |acc: &mut Vec<(String, Quantity)>, name: &str, q: Quantity| match acc
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some((_, total)) => {
            if let Some(sum) = total.checked_add(&q) {
                *total = sum;
            }
        }
        None => acc.push((name.to_string(), q)),
    };
    for c in containers {
        let resources = c.get("resources");
        let list = |key: &str| -> Vec<(String, Quantity)> {
            resources
                .and_then(|r| r.get(key))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(name, _)| matches!(name.as_str(), "cpu" | "memory"))
                .filter_map(|(name, v)| Some((name.clone(), Quantity::parse(v.as_str()?).ok()?)))
                .filter(|(_, q)| q.signum() > 0)
                .collect()
        };
        for (name, q) in list("requests") {
            add(&mut requests, &name, q);
        }
        let container_limits = list("limits");
        let has = |n: &str| container_limits.iter().any(|(name, _)| name == n);
        if !(has("cpu") && has("memory")) {
            guaranteed = false;
        }
        for (name, q) in container_limits {
            add(&mut limits, &name, q);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            match limits.iter().find(|(n, _)| n == name) {
                Some((_, lim)) if lim == req => {}
                _ => {
                    guaranteed = false;
                    break;
                }
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    fn info(group: &str, plural: &str) -> &'static ResourceInfo {
        find(group, "v1", plural).expect("resource")
    }

    #[test]
    fn pods_start_pending_with_qos() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]},
            "status": {"phase": "Running", "podIP": "1.2.3.4"}});
        prepare_for_create(info("", "pods"), &mut pod);
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
    }

    #[test]
    fn qos_classes() {
        let best = json!({"containers": [{"name": "a"}]});
        assert_eq!(pod_qos_class(&best), "BestEffort");
        let burst =
            json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(pod_qos_class(&burst), "Burstable");
        let guaranteed = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "0.5", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(pod_qos_class(&guaranteed), "Guaranteed");
        let partial = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b"}]});
        assert_eq!(pod_qos_class(&partial), "Burstable");
        let unequal = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(pod_qos_class(&unequal), "Burstable");
        let zero = json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "0"}}}]});
        assert_eq!(pod_qos_class(&zero), "BestEffort");
    }

    #[test]
    fn scheduling_gates_mark_pod_unschedulable() {
        let mut pod = json!({"spec": {"schedulingGates": [{"name": "g"}], "containers": []}});
        prepare_for_create(info("", "pods"), &mut pod);
        assert_eq!(pod["status"]["conditions"][0]["reason"], "SchedulingGated");
    }

    #[test]
    fn namespaces_get_the_kubernetes_finalizer_once() {
        let mut ns = json!({"metadata": {"name": "demo"}});
        prepare_for_create(info("", "namespaces"), &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        let mut ns = json!({"metadata": {"name": "demo"}, "spec": {"finalizers": ["example.com/x", "kubernetes"]}});
        prepare_for_create(info("", "namespaces"), &mut ns);
        assert_eq!(
            ns["spec"]["finalizers"],
            json!(["example.com/x", "kubernetes"])
        );
    }

    #[test]
    fn job_selector_is_generated_from_uid() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": []}}}});
        prepare_for_create(info("batch", "jobs"), &mut job);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
                   "controller-uid": "u-1", "job-name": "pi"})
        );
        let mut manual = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}});
        prepare_for_create(info("batch", "jobs"), &mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"a": "b"}})
        );
        assert_eq!(
            manual["spec"]["template"]["metadata"]["labels"],
            json!({"a": "b"})
        );
    }

    #[test]
    fn updates_keep_status_and_status_updates_keep_spec() {
        let old = json!({"metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "d", "labels": {"a": "2"}}, "spec": {"replicas": 3}, "status": {"replicas": 9}});
        prepare_for_update(info("apps", "deployments"), &old, &mut new);
        assert_eq!(new["status"], json!({"replicas": 1}));
        assert_eq!(new["spec"]["replicas"], 3);
        assert_eq!(new["metadata"]["labels"]["a"], "2");

        let mut status = json!({"metadata": {"name": "d", "labels": {"a": "2"}}, "spec": {"replicas": 3}, "status": {"replicas": 2}});
        prepare_for_status_update(info("apps", "deployments"), &old, &mut status);
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 2);
        assert_eq!(
            status["metadata"]["labels"]["a"], "1",
            "deployment labels are protected"
        );

        let old_pod = json!({"metadata": {"name": "p", "uid": "u", "ownerReferences": [{"uid": "rs"}], "labels": {"a": "1"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
        let mut pod = json!({"metadata": {"name": "p", "ownerReferences": [], "labels": {"a": "2"}},
            "spec": {"nodeName": "other"}, "status": {"phase": "Running"}});
        prepare_for_status_update(info("", "pods"), &old_pod, &mut pod);
        assert_eq!(pod["spec"]["nodeName"], "n1");
        assert_eq!(pod["metadata"]["ownerReferences"], json!([{"uid": "rs"}]));
        assert_eq!(
            pod["metadata"]["labels"]["a"], "2",
            "pod status updates may change labels, as upstream"
        );
        assert_eq!(pod["metadata"]["uid"], "u");
        assert_eq!(pod["status"]["phase"], "Running");
    }

    #[test]
    fn configmaps_have_no_status_to_protect() {
        let old = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        let mut new = json!({"metadata": {"name": "c"}, "data": {"a": "2"}});
        prepare_for_update(info("", "configmaps"), &old, &mut new);
        assert_eq!(new["data"]["a"], "2");
    }

    #[test]
    fn daemonset_template_generation_advances_on_template_change() {
        let mut ds = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        prepare_for_create(info("apps", "daemonsets"), &mut ds);
        assert_eq!(
            ds["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION_ANNOTATION],
            "1"
        );
        let mut same = ds.clone();
        prepare_for_update(info("apps", "daemonsets"), &ds, &mut same);
        assert_eq!(
            same["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION_ANNOTATION],
            "1"
        );
        let mut changed = ds.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("x:2");
        prepare_for_update(info("apps", "daemonsets"), &ds, &mut changed);
        assert_eq!(
            changed["metadata"]["annotations"][DAEMONSET_TEMPLATE_GENERATION_ANNOTATION],
            "2"
        );
    }

    #[test]
    fn namespace_finalizers_only_change_through_finalize() {
        let old = json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let mut new = json!({"metadata": {"name": "n"}, "spec": {"finalizers": []}});
        prepare_for_update(info("", "namespaces"), &old, &mut new);
        assert_eq!(new["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(new["status"]["phase"], "Active");
    }
}
