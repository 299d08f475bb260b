//! Checks of what the runtime needs from a pod before anything is created.

use k8s_openapi::api::core::v1::Pod;

use crate::error::{Result, RuntimeError};
use crate::inputs::PodInputs;
use crate::volumes;

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks what the runtime needs from a pod before anything is created.
pub(crate) fn validate_pod(pod: &Pod, inputs: &PodInputs) -> Result<String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !valid_uid(&uid) {
        return Err(RuntimeError::invalid(
            "metadata.uid",
            format!("{uid:?} is not a valid UID"),
        ));
    }
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(RuntimeError::invalid("metadata.name", "required"));
    }
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| RuntimeError::invalid("spec", "required"))?;
    if spec.containers.is_empty() {
        return Err(RuntimeError::invalid(
            "spec.containers",
            "at least one container is required",
        ));
    }
    if spec.share_process_namespace == Some(true) {
        return Err(RuntimeError::unsupported(
            "spec.shareProcessNamespace",
            "a shared PID namespace needs a long-lived pause process, which skiff does not run",
        ));
    }
    if spec.host_users == Some(false) {
        return Err(RuntimeError::unsupported(
            "spec.hostUsers",
            "user namespaces are not supported",
        ));
    }
    if let Some(policy) = spec.restart_policy.as_deref() {
        if !matches!(policy, "Always" | "OnFailure" | "Never") {
            return Err(RuntimeError::invalid(
                "spec.restartPolicy",
                format!("unknown policy {policy:?}"),
            ));
        }
    }
    let mut names = std::collections::HashSet::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (c, format!("spec.initContainers[{i}]")))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (c, format!("spec.containers[{i}]"))),
        );
    for (c, field) in all {
        if !valid_dns_label(&c.name) {
            return Err(RuntimeError::invalid(
                format!("{field}.name"),
                format!("{:?} is not a valid container name (DNS label)", c.name),
            ));
        }
        if !names.insert(c.name.clone()) {
            return Err(RuntimeError::invalid(
                format!("{field}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        if !inputs.images.contains_key(&c.name) {
            return Err(RuntimeError::MissingInput {
                kind: "image",
                name: c.image.clone().unwrap_or_default(),
                field: format!("{field}.image"),
            });
        }
        if let Some(p) = c.restart_policy.as_deref() {
            if p != "Always" || !field.starts_with("spec.initContainers") {
                return Err(RuntimeError::invalid(
                    format!("{field}.restartPolicy"),
                    "only init containers may set restartPolicy, and only to Always",
                ));
            }
        }
    }
    volumes::validate(pod)?;
    Ok(uid)
}
