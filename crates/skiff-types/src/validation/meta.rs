//! Object metadata validation (`k8s.io/apimachinery/pkg/api/validation/objectmeta.go`) and
//! label selectors (`k8s.io/apimachinery/pkg/apis/meta/v1/validation`).

use serde_json::Value;

use super::errors::{FieldError, FieldPath};
use super::names;
use super::value::V;

/// Total size of all annotation keys and values, bytes.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Upstream's message for a changed immutable field.
pub const FIELD_IMMUTABLE: &str = "field is immutable";

/// How object names of a kind are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label (services).
    Dns1035,
    /// A path segment: anything but `.`, `..`, `/` and `%` (events, nodes use subdomain).
    PathSegment,
}

/// Errors of `name` under `rule`; `prefix` when checking a `generateName` (a trailing `-` is
/// allowed, as upstream's `maskTrailingDash`).
pub fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => names::dns1123_subdomain(name),
        NameRule::Label => names::dns1123_label(name),
        NameRule::Dns1035 => names::dns1035_label(name),
        NameRule::PathSegment => {
            if prefix {
                let mut errs = Vec::new();
                for bad in ["/", "%"] {
                    if name.contains(bad) {
                        errs.push(format!("may not contain '{bad}'"));
                    }
                }
                errs
            } else {
                names::path_segment_name(name)
            }
        }
    }
}

/// Validates `metadata` of a new object (upstream `ValidateObjectMeta`).
pub fn validate_object_meta(
    meta: V<'_>,
    namespaced: bool,
    rule: NameRule,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let generate_name = meta.get("generateName").str();
    if !generate_name.is_empty() {
        for msg in name_errors(rule, generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta.get("name").str();
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_errors(rule, name, false) {
            errs.push(FieldError::invalid(path.child("name"), name, msg));
        }
    }
    let namespace = meta.get("namespace").str();
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(path.child("namespace"), ""));
        } else {
            for msg in names::dns1123_label(namespace) {
                errs.push(FieldError::invalid(path.child("namespace"), namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.get("generation").int() {
        if g < 0 {
            errs.push(FieldError::invalid(
                path.child("generation"),
                g,
                "must be greater than or equal to 0",
            ));
        }
    }
    validate_common(meta, path, errs);
    validate_finalizers(meta.get("finalizers"), &path.child("finalizers"), errs);
    validate_kube_finalizer_names(meta, path, errs);
}

/// Finalizers without a domain must be one of the standard ones (core's
/// `validateKubeFinalizerName`, reported per index on top of the generic check).
fn validate_kube_finalizer_names(meta: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, f) in meta.get("finalizers").items().enumerate() {
        let name = f.str();
        let p = path.child("finalizers").index(i);
        for msg in names::qualified_name(name) {
            errs.push(FieldError::invalid(p.clone(), name, msg));
        }
        if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
            errs.push(FieldError::invalid(
                p,
                name,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

/// Finalizer names that need no domain prefix.
pub const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn validate_common(meta: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    validate_labels(meta.get("labels"), &path.child("labels"), errs);
    validate_annotations(meta.get("annotations"), &path.child("annotations"), errs);
    validate_owner_references(
        meta.get("ownerReferences"),
        &path.child("ownerReferences"),
        errs,
    );
    validate_managed_fields(
        meta.get("managedFields"),
        &path.child("managedFields"),
        errs,
    );
}

/// Validates label keys and values (upstream `ValidateLabels`).
pub fn validate_labels(labels: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (k, v) in labels.string_map() {
        for msg in names::qualified_name(k) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        for msg in names::label_value(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
}

/// Validates annotation keys and total size (upstream `ValidateAnnotations`).
pub fn validate_annotations(annotations: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    for (k, v) in annotations.string_map() {
        for msg in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(refs: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut first_controller = String::new();
    for r in refs.items() {
        let api_version = r.get("apiVersion").str();
        let version = match api_version.split_once('/') {
            Some((_, v)) => v,
            None => api_version,
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        let kind = r.get("kind").str();
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                path.child("kind"),
                kind,
                "must not be empty",
            ));
        }
        let name = r.get("name").str();
        if name.is_empty() {
            errs.push(FieldError::invalid(
                path.child("name"),
                name,
                "must not be empty",
            ));
        }
        let uid = r.get("uid").str();
        if uid.is_empty() {
            errs.push(FieldError::invalid(
                path.child("uid"),
                uid,
                "must not be empty",
            ));
        }
        if r.get("controller").bool() == Some(true) {
            let current = format!("{kind}/{name}");
            if first_controller.is_empty() {
                first_controller = current;
            } else {
                errs.push(FieldError::invalid(
                    path,
                    refs.raw(),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {current}"),
                ));
            }
        }
    }
}

fn validate_finalizers(finalizers: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let list = finalizers.strings();
    for f in &list {
        for msg in names::qualified_name(f) {
            errs.push(FieldError::invalid(path, *f, msg));
        }
    }
    if list.contains(&"orphan") && list.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            finalizers.raw(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

fn validate_managed_fields(fields: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for (i, f) in fields.items().enumerate() {
        let p = path.index(i);
        let operation = f.get("operation").str();
        if !matches!(operation, "Apply" | "Update") {
            errs.push(FieldError::invalid(
                p.child("operation"),
                operation,
                "must be `Apply` or `Update`",
            ));
        }
        let fields_type = f.get("fieldsType").str();
        if !fields_type.is_empty() && fields_type != "FieldsV1" {
            errs.push(FieldError::invalid(
                p.child("fieldsType"),
                fields_type,
                "must be `FieldsV1`",
            ));
        }
        let manager = f.get("manager").str();
        if manager.len() > 128 {
            errs.push(FieldError::too_long(p.child("manager"), 128));
        }
        if manager.chars().any(|c| c.is_control()) {
            errs.push(FieldError::invalid(
                p.child("manager"),
                manager,
                "must only contain printable characters",
            ));
        }
        if f.get("subresource").str().len() > 256 {
            errs.push(FieldError::too_long(p.child("subresource"), 256));
        }
    }
}

/// Validates `metadata` of an updated object against the stored one
/// (upstream `ValidateObjectMetaUpdate`).
pub fn validate_object_meta_update(
    new: V<'_>,
    old: V<'_>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    if old.get("deletionTimestamp").present() {
        let old_finalizers = old.get("finalizers").strings();
        let added: Vec<&str> = new
            .get("finalizers")
            .strings()
            .into_iter()
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                path.child("finalizers"),
                format!("no new finalizers can be added if the object is being deleted, found new finalizers {}", go_string_slice(&added)),
            ));
        }
    }
    let (new_gen, old_gen) = (new.get("generation").int0(), old.get("generation").int0());
    if new_gen < old_gen {
        errs.push(FieldError::invalid(
            path.child("generation"),
            new_gen,
            "must not be decremented",
        ));
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let (n, o) = (new.get(key), old.get(key));
        if !n.same(&o) {
            errs.push(FieldError::invalid(
                path.child(key),
                n.raw(),
                FIELD_IMMUTABLE,
            ));
        }
    }
    validate_common(new, path, errs);
    validate_kube_finalizer_names(new, path, errs);
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_string_slice(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| super::errors::go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Validates a `metav1.LabelSelector` (upstream `ValidateLabelSelector`).
pub fn validate_label_selector(selector: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if !selector.present() {
        return;
    }
    for (i, req) in selector.get("matchExpressions").items().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let operator = req.get("operator").str();
        let values = req.get("values");
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(FieldError::invalid(
                p.child("operator"),
                operator,
                "not a valid selector operator",
            )),
        }
        let key = req.get("key").str();
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(p.child("key"), key, msg));
        }
        for (j, v) in values.items().enumerate() {
            for msg in names::label_value(v.str()) {
                errs.push(FieldError::invalid(
                    p.child("values").index(j),
                    v.str(),
                    msg,
                ));
            }
        }
    }
    validate_labels(
        selector.get("matchLabels"),
        &path.child("matchLabels"),
        errs,
    );
}

/// Whether a label selector (matchLabels + matchExpressions) matches `labels`.
pub fn selector_matches(selector: V<'_>, labels: V<'_>) -> bool {
    let get = |k: &str| labels.map().get(k).and_then(Value::as_str);
    for (k, v) in selector.get("matchLabels").string_map() {
        if get(k) != Some(v) {
            return false;
        }
    }
    for req in selector.get("matchExpressions").items() {
        let key = req.get("key").str();
        let values = req.get("values").strings();
        let ok = match req.get("operator").str() {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a label selector selects nothing-in-particular, i.e. everything (upstream: empty
/// selectors are invalid for workloads).
pub fn selector_is_empty(selector: V<'_>) -> bool {
    selector.get("matchLabels").is_empty() && selector.get("matchExpressions").is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(meta: Value, namespaced: bool, rule: NameRule) -> Vec<String> {
        let mut errs = Vec::new();
        validate_object_meta(
            V::new(&meta),
            namespaced,
            rule,
            &FieldPath::new("metadata"),
            &mut errs,
        );
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn name_is_required_and_checked() {
        assert_eq!(
            run(json!({"namespace": "default"}), true, NameRule::Subdomain),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let errs = run(
            json!({"name": "Web_1", "namespace": "default"}),
            true,
            NameRule::Subdomain,
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with(
            "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"
        ));
        assert!(run(
            json!({"name": "web.example", "namespace": "default"}),
            true,
            NameRule::Subdomain
        )
        .is_empty());
        assert_eq!(
            run(json!({"name": "web.example"}), false, NameRule::Label),
            vec!["metadata.name: Invalid value: \"web.example\": must not contain dots"]
        );
    }

    #[test]
    fn generate_name_allows_trailing_dash() {
        assert!(run(
            json!({"generateName": "web-", "name": "web-abcde", "namespace": "d"}),
            true,
            NameRule::Subdomain
        )
        .is_empty());
        assert_eq!(
            run(
                json!({"generateName": "Web-", "name": "web-abcde", "namespace": "d"}),
                true,
                NameRule::Subdomain
            )
            .len(),
            1
        );
    }

    #[test]
    fn namespace_scope_is_enforced() {
        assert_eq!(
            run(json!({"name": "a"}), true, NameRule::Subdomain),
            vec!["metadata.namespace: Required value"]
        );
        assert_eq!(
            run(
                json!({"name": "a", "namespace": "x"}),
                false,
                NameRule::Subdomain
            ),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn labels_and_annotations() {
        let errs = run(
            json!({"name": "a", "namespace": "d", "labels": {"ok": "yes", "bad key": "v", "k": "-bad"}}),
            true,
            NameRule::Subdomain,
        );
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters"));
        assert!(errs[1].starts_with(
            "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"
        ));
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let errs = run(
            json!({"name": "a", "namespace": "d", "annotations": {"k": big}}),
            true,
            NameRule::Subdomain,
        );
        assert_eq!(
            errs,
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
        assert!(run(
            json!({"name": "a", "namespace": "d", "annotations": {"Example.COM/Key": "v"}}),
            true,
            NameRule::Subdomain
        )
        .is_empty());
    }

    #[test]
    fn owner_references() {
        let errs = run(
            json!({"name": "a", "namespace": "d", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "1", "controller": true},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "s", "uid": "2", "controller": true},
            {"apiVersion": "", "kind": "", "name": "", "uid": ""}]}),
            true,
            NameRule::Subdomain,
        );
        assert!(errs[0].ends_with("Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/r and ReplicaSet/s"));
        assert_eq!(&errs[1..], &[
            "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
            "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
            "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
            "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
        ]);
    }

    #[test]
    fn immutable_meta_fields() {
        let old = json!({"name": "a", "namespace": "d", "uid": "1", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 2});
        let new = json!({"name": "a", "namespace": "d", "uid": "2", "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 1});
        let mut errs = Vec::new();
        validate_object_meta_update(
            V::new(&new),
            V::new(&old),
            &FieldPath::new("metadata"),
            &mut errs,
        );
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            vec![
                "metadata.generation: Invalid value: 1: must not be decremented",
                "metadata.uid: Invalid value: \"2\": field is immutable",
            ]
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let old = json!({"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a/b"]});
        let new = json!({"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a/b", "c/d"]});
        let mut errs = Vec::new();
        validate_object_meta_update(
            V::new(&new),
            V::new(&old),
            &FieldPath::new("metadata"),
            &mut errs,
        );
        assert_eq!(errs[0].to_string(), "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"c/d\"]");
    }

    #[test]
    fn selectors() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert!(selector_matches(
            V::new(&sel),
            V::new(&json!({"app": "web", "tier": "a"}))
        ));
        assert!(!selector_matches(
            V::new(&sel),
            V::new(&json!({"app": "web", "tier": "c"}))
        ));
        assert!(!selector_matches(
            V::new(&sel),
            V::new(&json!({"tier": "a"}))
        ));
        let bad = json!({"matchExpressions": [{"key": "k", "operator": "In"}, {"key": "k", "operator": "Exists", "values": ["x"]}, {"key": "k", "operator": "Foo"}]});
        let mut errs = Vec::new();
        validate_label_selector(
            V::new(&bad),
            &FieldPath::new("spec").child("selector"),
            &mut errs,
        );
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(msgs, vec![
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
            "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            "spec.selector.matchExpressions[2].operator: Invalid value: \"Foo\": not a valid selector operator",
        ]);
    }
}
