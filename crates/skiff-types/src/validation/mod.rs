//! Upstream validation (`k8s.io/kubernetes/pkg/apis/*/validation`) with upstream's messages.
//!
//! Validation reads objects the way a decoded Go struct holds them: a missing field is its zero
//! value, so required fields are reported as upstream does (`spec.containers[0].image:
//! Required value`). Type errors are found first by [`check_types`] (the API server should call
//! it before validation and answer 400 with the [`DecodeError`]); the `validate_*` functions
//! also run it and report a type error as an invalid field, so no ill-typed object passes.

mod apps;
mod batch;
mod core;
mod endpoints;
mod errors;
mod gofmt;
pub mod meta;
pub mod names;
mod networking;
mod pod;
mod schema;
mod value;

pub use errors::{FieldError, FieldErrorKind, FieldPath, ValidationErrors};
pub use schema::{
    check_types, check_types_of, prune_unknown_fields, strict_error, unknown_field_warnings,
    unknown_fields, unknown_fields_of, DecodeError,
};
pub use value::{semantic_eq, V};

use serde_json::Value;

use crate::registry::ResourceInfo;

/// Validates a new object of resource `info` (defaults already applied).
pub fn validate_create(info: &ResourceInfo, object: &Value) -> Result<(), ValidationErrors> {
    type_checked(info, object)?;
    let mut errs = Vec::new();
    let obj = V::new(object);
    match (info.group, info.kind) {
        ("", "Pod") => pod::validate_pod(obj, &mut errs),
        ("", "Namespace") => core::validate_namespace(obj, &mut errs),
        ("", "Node") => core::validate_node(obj, &mut errs),
        ("", "Service") => core::validate_service(obj, &mut errs),
        ("", "ConfigMap") => core::validate_config_map(obj, &mut errs),
        ("", "Secret") => core::validate_secret(obj, &mut errs),
        ("", "ServiceAccount") => core::validate_service_account(obj, &mut errs),
        ("", "Event") => core::validate_event(obj, &mut errs),
        ("apps", "Deployment") => apps::validate_deployment(obj, &mut errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, &mut errs),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, &mut errs),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(obj, &mut errs),
        ("batch", "Job") => batch::validate_job(obj, &mut errs),
        ("coordination.k8s.io", "Lease") => core::validate_lease(obj, &mut errs),
        ("", "Endpoints") => endpoints::validate_endpoints(obj, &mut errs),
        ("discovery.k8s.io", "EndpointSlice") => endpoints::validate_endpoint_slice(obj, &mut errs),
        ("networking.k8s.io", "NetworkPolicy") => {
            networking::validate_network_policy(obj, &mut errs)
        }
        _ => validate_meta_only(info, obj, &mut errs),
    }
    ValidationErrors(errs).into_result()
}

/// Validates an update of the main resource: the new object alone, then what may not change
/// (immutable fields, pod spec, selectors...).
pub fn validate_update(
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
) -> Result<(), ValidationErrors> {
    type_checked(info, new)?;
    let mut errs = Vec::new();
    let (o, n) = (V::new(old), V::new(new));
    meta::validate_object_meta_update(
        n.get("metadata"),
        o.get("metadata"),
        &FieldPath::new("metadata"),
        &mut errs,
    );
    match (info.group, info.kind) {
        ("", "Pod") => pod::validate_pod_update(n, o, &mut errs),
        ("", "Namespace") => core::validate_namespace_update(n, o, &mut errs),
        ("", "Node") => core::validate_node_update(n, o, &mut errs),
        ("", "Service") => core::validate_service_update(n, o, &mut errs),
        ("", "ConfigMap") => core::validate_config_map_update(n, o, &mut errs),
        ("", "Secret") => core::validate_secret_update(n, o, &mut errs),
        ("", "ServiceAccount") => core::validate_service_account_update(n, &mut errs),
        ("", "Event") => core::validate_event_update(n, o, &mut errs),
        ("apps", "Deployment") => apps::validate_deployment_update(n, o, &mut errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set_update(n, o, &mut errs),
        ("apps", "DaemonSet") => apps::validate_daemon_set_update(n, o, &mut errs),
        ("apps", "ControllerRevision") => {
            apps::validate_controller_revision_update(n, o, &mut errs)
        }
        ("batch", "Job") => batch::validate_job_update(n, o, &mut errs),
        ("coordination.k8s.io", "Lease") => core::validate_lease_update(n, &mut errs),
        ("", "Endpoints") => endpoints::validate_endpoints_update(n, &mut errs),
        ("discovery.k8s.io", "EndpointSlice") => {
            endpoints::validate_endpoint_slice_update(n, o, &mut errs)
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            networking::validate_network_policy_update(n, o, &mut errs)
        }
        _ => {}
    }
    ValidationErrors(errs).into_result()
}

/// Validates an update through the `status` subresource (spec and metadata already copied from
/// `old` by [`crate::strategy::prepare_for_status_update`]).
pub fn validate_status_update(
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
) -> Result<(), ValidationErrors> {
    type_checked(info, new)?;
    let mut errs = Vec::new();
    let (o, n) = (V::new(old), V::new(new));
    meta::validate_object_meta_update(
        n.get("metadata"),
        o.get("metadata"),
        &FieldPath::new("metadata"),
        &mut errs,
    );
    match (info.group, info.kind) {
        ("", "Pod") => pod::validate_pod_status_update(n, o, &mut errs),
        ("", "Node") => core::validate_node_status(n, &mut errs),
        ("", "Namespace") => core::validate_namespace_status_update(n, o, &mut errs),
        ("", "Service") => core::validate_service_status(n, &mut errs),
        ("apps", "Deployment") => apps::validate_deployment_status(n, &mut errs),
        ("apps", "ReplicaSet") => apps::validate_replica_set_status(n, &mut errs),
        ("apps", "DaemonSet") => apps::validate_daemon_set_status(n, &mut errs),
        ("batch", "Job") => batch::validate_job_status(n, &mut errs),
        _ => {}
    }
    ValidationErrors(errs).into_result()
}

/// Validates a `v1` `Binding` posted to `pods/binding` (upstream `ValidatePodBinding`).
pub fn validate_binding(binding: &Value) -> Result<(), ValidationErrors> {
    check_types_of("v1", "Binding", binding).map_err(|e| {
        ValidationErrors(vec![FieldError::type_invalid("<object>", None, e.detail)])
    })?;
    let mut errs = Vec::new();
    pod::validate_binding(V::new(binding), &mut errs);
    ValidationErrors(errs).into_result()
}

fn type_checked(info: &ResourceInfo, object: &Value) -> Result<(), ValidationErrors> {
    check_types(info, object)
        .map_err(|e| ValidationErrors(vec![FieldError::type_invalid("<object>", None, e.detail)]))
}

fn validate_meta_only(info: &ResourceInfo, obj: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        obj.get("metadata"),
        info.namespaced,
        meta::NameRule::Subdomain,
        &FieldPath::new("metadata"),
        errs,
    );
}

/// `must be greater than or equal to 0` when `value < 0` (upstream `ValidateNonnegativeField`).
pub(crate) fn nonnegative(value: V<'_>, path: FieldPath, errs: &mut Vec<FieldError>) {
    if let Some(v) = value.int() {
        if v < 0 {
            errs.push(FieldError::invalid(
                path,
                v,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// `field is immutable` when `new` differs from `old`.
pub(crate) fn immutable(new: V<'_>, old: V<'_>, path: FieldPath, errs: &mut Vec<FieldError>) {
    if !new.same(&old) {
        errs.push(FieldError::invalid(path, new.raw(), meta::FIELD_IMMUTABLE));
    }
}
