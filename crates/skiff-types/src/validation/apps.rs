//! apps/v1: Deployments, ReplicaSets, DaemonSets, ControllerRevisions
//! (`k8s.io/kubernetes/pkg/apis/apps/validation`).

use serde_json::Value;

use super::errors::{FieldError, FieldPath};
use super::gofmt;
use super::meta::{self, NameRule};
use super::names;
use super::pod;
use super::value::V;
use super::{immutable, nonnegative};

fn validate_meta(obj: V<'_>, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        obj.get("metadata"),
        true,
        NameRule::Subdomain,
        &FieldPath::new("metadata"),
        errs,
    );
}

/// `spec.selector`: required, valid and not empty.
fn validate_selector(spec: V<'_>, path: &FieldPath, what: &str, errs: &mut Vec<FieldError>) {
    let selector = spec.get("selector");
    let sp = path.child("selector");
    if !selector.present() {
        errs.push(FieldError::required(sp, ""));
        return;
    }
    meta::validate_label_selector(selector, &sp, errs);
    if meta::selector_is_empty(selector) {
        errs.push(FieldError::invalid_rendered(
            sp,
            selector.raw(),
            gofmt::label_selector(selector),
            format!("empty selector is invalid for {what}"),
        ));
    }
}

/// Template of a ReplicaSet-like workload (upstream `ValidatePodTemplateSpecForReplicaSet`).
fn validate_template_for_replica_set(
    spec: V<'_>,
    path: &FieldPath,
    kind_word: &str,
    errs: &mut Vec<FieldError>,
) {
    // The template is a struct upstream: an absent one validates as an empty one.
    let template = spec.get("template");
    let tp = path.child("template");
    let selector = spec.get("selector");
    let labels = template.get("metadata").get("labels");
    // An absent selector selects nothing (upstream's `labels.Nothing()`), so it never matches.
    let mismatch = if selector.present() {
        !meta::selector_is_empty(selector) && !meta::selector_matches(selector, labels)
    } else {
        true
    };
    if mismatch {
        errs.push(FieldError::invalid_rendered(
            tp.child("metadata").child("labels"),
            labels.raw(),
            gofmt::string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
    pod::validate_pod_template_spec(template, &tp, errs);
    let restart = template.get("spec").get("restartPolicy").str();
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if template.get("spec").get("activeDeadlineSeconds").present() {
        errs.push(FieldError::forbidden(
            tp.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind_word} is not Supported"),
        ));
    }
}

fn int_or_percent(v: V<'_>) -> Option<(i64, bool)> {
    match v.0 {
        Some(Value::Number(n)) => n.as_i64().map(|i| (i, false)),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| (p, true)),
        _ => None,
    }
}

fn validate_positive_int_or_percent(v: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match v.0 {
        Some(Value::String(s)) => {
            for msg in names::percent(s) {
                errs.push(FieldError::invalid_rendered(
                    path,
                    v.raw(),
                    gofmt::int_or_string(v),
                    msg,
                ));
            }
        }
        Some(Value::Number(n)) => {
            let i = n.as_i64().unwrap_or(0);
            if i < 0 {
                errs.push(FieldError::invalid(
                    path,
                    i,
                    "must be greater than or equal to 0",
                ));
            }
        }
        _ => {}
    }
}

fn not_more_than_100_percent(v: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    if let Some((value, true)) = int_or_percent(v) {
        if value > 100 {
            errs.push(FieldError::invalid_rendered(
                path,
                v.raw(),
                gofmt::int_or_string(v),
                "must not be greater than 100%",
            ));
        }
    }
}

fn validate_rolling_update(ru: V<'_>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let unavailable = ru.get("maxUnavailable");
    let surge = ru.get("maxSurge");
    validate_positive_int_or_percent(unavailable, &path.child("maxUnavailable"), errs);
    validate_positive_int_or_percent(surge, &path.child("maxSurge"), errs);
    let zero = |v: V<'_>| int_or_percent(v).map_or(!v.present(), |(i, _)| i == 0);
    if zero(unavailable) && zero(surge) {
        errs.push(FieldError::invalid_rendered(
            path.child("maxUnavailable"),
            unavailable.raw(),
            gofmt::int_or_string(unavailable),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    not_more_than_100_percent(unavailable, &path.child("maxUnavailable"), errs);
}

/// Validates a new Deployment.
pub(super) fn validate_deployment(d: V<'_>, errs: &mut Vec<FieldError>) {
    validate_meta(d, errs);
    validate_deployment_spec(d.get("spec"), errs);
}

fn validate_deployment_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    nonnegative(spec.get("replicas"), sp.child("replicas"), errs);
    validate_selector(spec, &sp, "deployment", errs);
    validate_template_for_replica_set(spec, &sp, "ReplicaSet", errs);
    let strategy = spec.get("strategy");
    let stp = sp.child("strategy");
    match strategy.get("type").str() {
        "Recreate" => {
            if strategy.get("rollingUpdate").present() {
                errs.push(FieldError::forbidden(
                    stp.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = strategy.get("rollingUpdate");
            if ru.present() {
                validate_rolling_update(ru, &stp.child("rollingUpdate"), errs);
            } else {
                errs.push(FieldError::required(
                    stp.child("rollingUpdate"),
                    "this should be defaulted and never be nil",
                ));
            }
        }
        other => {
            let mut e = FieldError::not_supported(stp, other, &["Recreate", "RollingUpdate"]);
            e.rendered = Some(format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                super::errors::go_quote(other)
            ));
            errs.push(e);
        }
    }
    nonnegative(
        spec.get("minReadySeconds"),
        sp.child("minReadySeconds"),
        errs,
    );
    nonnegative(
        spec.get("revisionHistoryLimit"),
        sp.child("revisionHistoryLimit"),
        errs,
    );
    if let Some(pds) = spec.get("progressDeadlineSeconds").int() {
        nonnegative(
            spec.get("progressDeadlineSeconds"),
            sp.child("progressDeadlineSeconds"),
            errs,
        );
        if pds <= spec.get("minReadySeconds").int0() {
            errs.push(FieldError::invalid(
                sp.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
}

fn selector_immutable(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    let (ns, os) = (
        new.get("spec").get("selector"),
        old.get("spec").get("selector"),
    );
    if !ns.same(&os) {
        errs.push(FieldError::invalid_rendered(
            FieldPath::new("spec").child("selector"),
            ns.raw(),
            gofmt::label_selector(ns),
            meta::FIELD_IMMUTABLE,
        ));
    }
}

/// Validates a Deployment update: the new spec, and the selector may not change.
pub(super) fn validate_deployment_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_deployment_spec(new.get("spec"), errs);
    selector_immutable(new, old, errs);
}

fn validate_workload_status(status: V<'_>, keys: &[&str], errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("status");
    for key in keys {
        nonnegative(status.get(key), sp.child(key), errs);
    }
    nonnegative(
        status.get("observedGeneration"),
        sp.child("observedGeneration"),
        errs,
    );
}

/// Validates a Deployment status update.
pub(super) fn validate_deployment_status(d: V<'_>, errs: &mut Vec<FieldError>) {
    let status = d.get("status");
    validate_workload_status(
        status,
        &[
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "terminatingReplicas",
        ],
        errs,
    );
    let sp = FieldPath::new("status");
    let replicas = status.get("replicas").int0();
    for key in ["updatedReplicas", "availableReplicas"] {
        let v = status.get(key).int0();
        if v > replicas {
            errs.push(FieldError::invalid(
                sp.child(key),
                v,
                "cannot be greater than status.replicas",
            ));
        }
    }
    let ready = status.get("readyReplicas").int0();
    let available = status.get("availableReplicas").int0();
    if available > ready && status.get("readyReplicas").present() {
        errs.push(FieldError::invalid(
            sp.child("availableReplicas"),
            available,
            "cannot be greater than readyReplicas",
        ));
    }
    if let Some(c) = status.get("collisionCount").int() {
        if c < 0 {
            errs.push(FieldError::invalid(
                sp.child("collisionCount"),
                c,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Validates a new ReplicaSet.
pub(super) fn validate_replica_set(rs: V<'_>, errs: &mut Vec<FieldError>) {
    validate_meta(rs, errs);
    validate_replica_set_spec(rs.get("spec"), errs);
}

fn validate_replica_set_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    nonnegative(spec.get("replicas"), sp.child("replicas"), errs);
    nonnegative(
        spec.get("minReadySeconds"),
        sp.child("minReadySeconds"),
        errs,
    );
    validate_selector(spec, &sp, "deployment", errs);
    validate_template_for_replica_set(spec, &sp, "ReplicaSet", errs);
}

/// Validates a ReplicaSet update.
pub(super) fn validate_replica_set_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_replica_set_spec(new.get("spec"), errs);
    selector_immutable(new, old, errs);
}

/// Validates a ReplicaSet status update.
pub(super) fn validate_replica_set_status(rs: V<'_>, errs: &mut Vec<FieldError>) {
    let status = rs.get("status");
    validate_workload_status(
        status,
        &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "terminatingReplicas",
        ],
        errs,
    );
    let sp = FieldPath::new("status");
    let replicas = status.get("replicas").int0();
    for key in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
        let v = status.get(key).int0();
        if v > replicas {
            errs.push(FieldError::invalid(
                sp.child(key),
                v,
                "cannot be greater than status.replicas",
            ));
        }
    }
    let ready = status.get("readyReplicas").int0();
    let available = status.get("availableReplicas").int0();
    if available > ready {
        errs.push(FieldError::invalid(
            sp.child("availableReplicas"),
            available,
            "cannot be greater than readyReplicas",
        ));
    }
}

/// Validates a new DaemonSet.
pub(super) fn validate_daemon_set(ds: V<'_>, errs: &mut Vec<FieldError>) {
    validate_meta(ds, errs);
    validate_daemon_set_spec(ds.get("spec"), errs);
}

fn validate_daemon_set_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    let selector = spec.get("selector");
    meta::validate_label_selector(selector, &sp.child("selector"), errs);
    let template = spec.get("template");
    let tp = sp.child("template");
    let labels = template.get("metadata").get("labels");
    // An absent selector selects nothing, so it never matches the template (upstream reports
    // only this, not a missing selector).
    if !selector.present() || !meta::selector_matches(selector, labels) {
        errs.push(FieldError::invalid_rendered(
            tp.child("metadata").child("labels"),
            labels.raw(),
            gofmt::string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
    if selector.present() && meta::selector_is_empty(selector) {
        errs.push(FieldError::invalid_rendered(
            sp.child("selector"),
            selector.raw(),
            gofmt::label_selector(selector),
            "empty selector is invalid for daemonset",
        ));
    }
    pod::validate_pod_template_spec(template, &tp, errs);
    let restart = template.get("spec").get("restartPolicy").str();
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if let Some(ads) = template.get("spec").get("activeDeadlineSeconds").int() {
        errs.push(FieldError::invalid(
            tp.child("spec").child("activeDeadlineSeconds"),
            ads,
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    nonnegative(
        spec.get("minReadySeconds"),
        sp.child("minReadySeconds"),
        errs,
    );
    nonnegative(
        spec.get("templateGeneration"),
        sp.child("templateGeneration"),
        errs,
    );
    let strategy = spec.get("updateStrategy");
    let stp = sp.child("updateStrategy");
    match strategy.get("type").str() {
        "OnDelete" => {}
        "RollingUpdate" => {
            let ru = strategy.get("rollingUpdate");
            if !ru.present() {
                errs.push(FieldError::required(stp.child("rollingUpdate"), ""));
            } else {
                let rp = stp.child("rollingUpdate");
                let unavailable = ru.get("maxUnavailable");
                let surge = ru.get("maxSurge");
                validate_positive_int_or_percent(unavailable, &rp.child("maxUnavailable"), errs);
                validate_positive_int_or_percent(surge, &rp.child("maxSurge"), errs);
                not_more_than_100_percent(unavailable, &rp.child("maxUnavailable"), errs);
                not_more_than_100_percent(surge, &rp.child("maxSurge"), errs);
                let non_zero = |v: V<'_>| int_or_percent(v).is_some_and(|(i, _)| i != 0);
                match (non_zero(unavailable), non_zero(surge)) {
                    (true, true) => errs.push(FieldError::invalid_rendered(
                        rp.child("maxSurge"),
                        surge.raw(),
                        gofmt::int_or_string(surge),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => errs.push(FieldError::required(
                        rp.child("maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    )),
                    _ => {}
                }
            }
        }
        other => {
            let mut e = FieldError::not_supported(stp, other, &["RollingUpdate", "OnDelete"]);
            e.rendered = Some(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                super::errors::go_quote(other)
            ));
            errs.push(e);
        }
    }
    nonnegative(
        spec.get("revisionHistoryLimit"),
        sp.child("revisionHistoryLimit"),
        errs,
    );
}

/// Validates a DaemonSet update.
pub(super) fn validate_daemon_set_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    validate_daemon_set_spec(new.get("spec"), errs);
    selector_immutable(new, old, errs);
}

/// Validates a DaemonSet status update.
pub(super) fn validate_daemon_set_status(ds: V<'_>, errs: &mut Vec<FieldError>) {
    validate_workload_status(
        ds.get("status"),
        &[
            "currentNumberScheduled",
            "numberMisscheduled",
            "desiredNumberScheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
        ],
        errs,
    );
}

/// Validates a new ControllerRevision.
pub(super) fn validate_controller_revision(cr: V<'_>, errs: &mut Vec<FieldError>) {
    validate_meta(cr, errs);
    if !cr.get("data").present() {
        errs.push(FieldError::required(
            FieldPath::new("data"),
            "data is mandatory",
        ));
    }
    nonnegative(cr.get("revision"), FieldPath::new("revision"), errs);
}

/// Validates a ControllerRevision update: `data` is immutable.
pub(super) fn validate_controller_revision_update(
    new: V<'_>,
    old: V<'_>,
    errs: &mut Vec<FieldError>,
) {
    nonnegative(new.get("revision"), FieldPath::new("revision"), errs);
    immutable(
        new.get("data"),
        old.get("data"),
        FieldPath::new("data"),
        errs,
    );
}
