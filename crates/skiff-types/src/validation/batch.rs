//! batch/v1 Jobs (`k8s.io/kubernetes/pkg/apis/batch/validation`).

use super::errors::{FieldError, FieldPath};
use super::gofmt;
use super::meta::{self, NameRule};
use super::names;
use super::pod;
use super::value::V;
use super::{immutable, nonnegative};
use crate::strategy::{
    CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL,
};

/// Validates a new Job.
pub(super) fn validate_job(job: V<'_>, errs: &mut Vec<FieldError>) {
    validate_job_with(job, true, errs);
}

fn validate_job_with(job: V<'_>, require_prefixed_labels: bool, errs: &mut Vec<FieldError>) {
    meta::validate_object_meta(
        job.get("metadata"),
        true,
        NameRule::Subdomain,
        &FieldPath::new("metadata"),
        errs,
    );
    validate_generated_selector(job, require_prefixed_labels, errs);
    validate_job_spec(job.get("spec"), errs);
    let spec = job.get("spec");
    if spec.get("completionMode").str() == "Indexed" {
        if let Some(c) = spec.get("completions").int().filter(|c| *c > 0) {
            let name = job.get("metadata").get("name").str();
            let hostname = format!("{name}-{}", c - 1);
            if !names::dns1123_label(&hostname).is_empty() {
                errs.push(FieldError::invalid(
                    FieldPath::new("metadata").child("name"),
                    name,
                    format!("will not able to create pod with invalid DNS label: {hostname}"),
                ));
            }
        }
    }
}

/// Upstream `ValidateHasLabel`.
fn has_label(labels: V<'_>, key: &str, want: &str, errs: &mut Vec<FieldError>) {
    let p = FieldPath::new("spec")
        .child("template")
        .child("metadata")
        .child("labels")
        .key(key);
    match labels.map().get(key) {
        None => errs.push(FieldError::required(p, format!("must be '{want}'"))),
        Some(v) if v.as_str() != Some(want) => errs.push(FieldError::invalid_rendered(
            p,
            labels.raw(),
            gofmt::string_map(labels),
            format!("must be '{want}'"),
        )),
        Some(_) => {}
    }
}

/// Upstream `validateGeneratedSelector`: unless `manualSelector`, the pod template carries the
/// job's name and uid labels and the selector selects exactly them.
fn validate_generated_selector(
    job: V<'_>,
    require_prefixed_labels: bool,
    errs: &mut Vec<FieldError>,
) {
    let spec = job.get("spec");
    if spec.get("manualSelector").bool() == Some(true) || !spec.get("selector").present() {
        return;
    }
    let uid = job.get("metadata").get("uid").str();
    let name = job.get("metadata").get("name").str();
    if uid.is_empty() {
        errs.push(FieldError::required(
            FieldPath::new("metadata").child("uid"),
            "",
        ));
    }
    let labels = spec.get("template").get("metadata").get("labels");
    has_label(labels, LEGACY_CONTROLLER_UID_LABEL, uid, errs);
    has_label(labels, LEGACY_JOB_NAME_LABEL, name, errs);
    let mut expected = serde_json::Map::new();
    if require_prefixed_labels {
        has_label(labels, CONTROLLER_UID_LABEL, uid, errs);
        has_label(labels, JOB_NAME_LABEL, name, errs);
        expected.insert(CONTROLLER_UID_LABEL.into(), uid.into());
        expected.insert(JOB_NAME_LABEL.into(), name.into());
    }
    expected.insert(LEGACY_CONTROLLER_UID_LABEL.into(), uid.into());
    expected.insert(LEGACY_JOB_NAME_LABEL.into(), name.into());
    let expected = serde_json::Value::Object(expected);
    if !meta::selector_matches(spec.get("selector"), V::new(&expected)) {
        errs.push(FieldError::invalid_rendered(
            FieldPath::new("spec").child("selector"),
            spec.get("selector").raw(),
            gofmt::label_selector(spec.get("selector")),
            "`selector` not auto-generated",
        ));
    }
}

fn validate_job_spec(spec: V<'_>, errs: &mut Vec<FieldError>) {
    let sp = FieldPath::new("spec");
    let selector = spec.get("selector");
    if !selector.present() {
        errs.push(FieldError::required(sp.child("selector"), ""));
    } else {
        meta::validate_label_selector(selector, &sp.child("selector"), errs);
        let labels = spec.get("template").get("metadata").get("labels");
        if !meta::selector_matches(selector, labels) {
            errs.push(FieldError::invalid_rendered(
                sp.child("template").child("metadata").child("labels"),
                labels.raw(),
                gofmt::string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonnegative(spec.get(key), sp.child(key), errs);
    }
    let mode = spec.get("completionMode");
    if mode.present() {
        match mode.str() {
            "NonIndexed" => {}
            "Indexed" => {
                if !spec.get("completions").present() {
                    errs.push(FieldError::required(
                        sp.child("completions"),
                        "when completion mode is Indexed",
                    ));
                }
                if spec.get("parallelism").int0() > 100_000 {
                    errs.push(FieldError::invalid(
                        sp.child("parallelism"),
                        spec.get("parallelism").int0(),
                        "must be less than or equal to 100000 when completion mode is Indexed",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                sp.child("completionMode"),
                other,
                &["NonIndexed", "Indexed"],
            )),
        }
    }
    let prp = spec.get("podReplacementPolicy");
    if prp.present() {
        if spec.get("podFailurePolicy").present() {
            if prp.str() != "Failed" {
                errs.push(FieldError::not_supported(
                    sp.child("podReplacementPolicy"),
                    prp.str(),
                    &["Failed"],
                ));
            }
        } else if !matches!(prp.str(), "TerminatingOrFailed" | "Failed") {
            errs.push(FieldError::not_supported(
                sp.child("podReplacementPolicy"),
                prp.str(),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let tp = sp.child("template");
    pod::validate_pod_template_spec(spec.get("template"), &tp, errs);
    let restart = spec.get("template").get("spec").get("restartPolicy").str();
    let rp = tp.child("spec").child("restartPolicy");
    if restart == "Always" || restart.is_empty() {
        // Defaulting turns an unset policy into Always, so upstream reports it as missing.
        errs.push(FieldError::required(
            rp,
            "valid values: \"OnFailure\", \"Never\"",
        ));
    } else if restart != "OnFailure" && restart != "Never" {
        errs.push(FieldError::not_supported(
            rp,
            restart,
            &["OnFailure", "Never"],
        ));
    } else if spec.get("podFailurePolicy").present() && restart != "Never" {
        errs.push(FieldError::invalid(
            rp,
            restart,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

/// Validates a Job update: the new object, then the immutable parts of its spec (selector,
/// completions, completion mode, pod template unless the job is suspended and never started).
pub(super) fn validate_job_update(new: V<'_>, old: V<'_>, errs: &mut Vec<FieldError>) {
    let old_labels = old
        .get("spec")
        .get("template")
        .get("metadata")
        .get("labels")
        .map();
    let require_prefixed =
        old_labels.contains_key(JOB_NAME_LABEL) && old_labels.contains_key(CONTROLLER_UID_LABEL);
    validate_job_with(new, require_prefixed, errs);
    let (ns, os) = (new.get("spec"), old.get("spec"));
    let sp = FieldPath::new("spec");
    if !ns.get("selector").same(&os.get("selector")) {
        errs.push(FieldError::invalid_rendered(
            sp.child("selector"),
            ns.get("selector").raw(),
            gofmt::label_selector(ns.get("selector")),
            meta::FIELD_IMMUTABLE,
        ));
    }
    let indexed_elastic = ns.get("completionMode").str() == "Indexed"
        && ns.get("completions").int() == ns.get("parallelism").int()
        && os.get("completions").int() == os.get("parallelism").int();
    if !indexed_elastic {
        immutable(
            ns.get("completions"),
            os.get("completions"),
            sp.child("completions"),
            errs,
        );
    }
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(ns.get(key), os.get(key), sp.child(key), errs);
    }
    let suspended = os.get("suspend").bool() == Some(true);
    let not_started = !old.get("status").get("startTime").present();
    let (mut nt, mut ot) = (ns.get("template").raw(), os.get("template").raw());
    if suspended && not_started {
        // Scheduling directives may change while the job never ran.
        for t in [&mut nt, &mut ot] {
            if let Some(m) = t.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(s) = t.get_mut("spec").and_then(|s| s.as_object_mut()) {
                for k in ["nodeSelector", "affinity", "tolerations", "schedulingGates"] {
                    s.remove(k);
                }
            }
        }
    }
    if !V::new(&nt).same(&V::new(&ot)) {
        errs.push(FieldError::invalid(
            sp.child("template"),
            ns.get("template").raw(),
            meta::FIELD_IMMUTABLE,
        ));
    }
}

/// Validates a Job status update.
pub(super) fn validate_job_status(job: V<'_>, errs: &mut Vec<FieldError>) {
    let status = job.get("status");
    let sp = FieldPath::new("status");
    for key in ["active", "succeeded", "failed", "ready", "terminating"] {
        nonnegative(status.get(key), sp.child(key), errs);
    }
}
