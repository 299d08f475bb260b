//! Patch metadata of the served types: which lists merge, and by which key.
//!
//! Upstream reads the `patchStrategy`/`patchMergeKey` struct tags of the Go types
//! (`k8s.io/api/*/v1/types.go`); k8s-openapi does not carry them, so they are tabulated here for
//! the types skiff serves. Fields not listed behave as upstream's untagged fields: objects merge
//! key by key, lists are replaced whole.

/// A node type in the patch schema (only types that lead to tagged fields are named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// A top-level object of the given kind.
    Object(&'static str),
    /// `metav1.ObjectMeta`.
    ObjectMeta,
    /// `core/v1.PodTemplateSpec`.
    PodTemplateSpec,
    /// `core/v1.PodSpec`.
    PodSpec,
    /// `core/v1.Container` and `EphemeralContainer`.
    Container,
    /// `core/v1.PodStatus`.
    PodStatus,
    /// `core/v1.NodeSpec`.
    NodeSpec,
    /// `core/v1.NodeStatus`.
    NodeStatus,
    /// `core/v1.ServiceSpec`.
    ServiceSpec,
    /// A status whose only tagged field is `conditions` merged by `type`
    /// (Deployment, ReplicaSet, DaemonSet, Job, Namespace, Service statuses).
    ConditionsStatus,
    /// The spec of a workload holding a pod `template` (Deployment, ReplicaSet, DaemonSet, Job).
    WorkloadSpec,
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch list replaces the whole list (upstream default, also "atomic" lists).
    Replace,
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without a key).
    MergeScalars,
    /// A list of objects merged by the value of this key (`patchMergeKey`).
    MergeByKey(&'static str),
}

/// Patch metadata of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    /// Type of the field's value (or of its list items), when it leads to tagged fields.
    pub child: Option<PatchType>,
    /// How the field merges when it is a list.
    pub list: ListStrategy,
}

const UNTAGGED: FieldMeta = FieldMeta {
    child: None,
    list: ListStrategy::Replace,
};

const fn by_key(child: Option<PatchType>, key: &'static str) -> FieldMeta {
    FieldMeta {
        child,
        list: ListStrategy::MergeByKey(key),
    }
}

const fn nested(child: PatchType) -> FieldMeta {
    FieldMeta {
        child: Some(child),
        list: ListStrategy::Replace,
    }
}

/// The schema root for objects of `kind`.
pub fn root(kind: &'static str) -> PatchType {
    PatchType::Object(kind)
}

/// Patch metadata of `field` inside a value of type `ty`.
pub fn lookup(ty: PatchType, field: &str) -> FieldMeta {
    use PatchType as T;
    match (ty, field) {
        (T::Object(_), "metadata") => nested(T::ObjectMeta),
        (T::Object("Pod"), "spec") => nested(T::PodSpec),
        (T::Object("Pod"), "status") => nested(T::PodStatus),
        (T::Object("PodTemplate"), "template") => nested(T::PodTemplateSpec),
        (T::Object("Deployment" | "ReplicaSet" | "DaemonSet" | "Job"), "spec") => {
            nested(T::WorkloadSpec)
        }
        (
            T::Object("Deployment" | "ReplicaSet" | "DaemonSet" | "Job" | "Namespace" | "Service"),
            "status",
        ) => nested(T::ConditionsStatus),
        (T::Object("Node"), "spec") => nested(T::NodeSpec),
        (T::Object("Node"), "status") => nested(T::NodeStatus),
        (T::Object("Service"), "spec") => nested(T::ServiceSpec),
        (T::Object("ServiceAccount"), "secrets") => by_key(None, "name"),

        (T::ObjectMeta, "finalizers") => FieldMeta {
            child: None,
            list: ListStrategy::MergeScalars,
        },
        (T::ObjectMeta, "ownerReferences") => by_key(None, "uid"),

        (T::WorkloadSpec, "template") => nested(T::PodTemplateSpec),
        (T::PodTemplateSpec, "metadata") => nested(T::ObjectMeta),
        (T::PodTemplateSpec, "spec") => nested(T::PodSpec),

        (T::PodSpec, "volumes") => by_key(None, "name"),
        (T::PodSpec, "initContainers" | "containers" | "ephemeralContainers") => {
            by_key(Some(T::Container), "name")
        }
        (T::PodSpec, "imagePullSecrets") => by_key(None, "name"),
        (T::PodSpec, "hostAliases") => by_key(None, "ip"),
        (T::PodSpec, "topologySpreadConstraints") => by_key(None, "topologyKey"),
        (T::PodSpec, "schedulingGates") => by_key(None, "name"),
        (T::PodSpec, "resourceClaims") => by_key(None, "name"),

        (T::Container, "ports") => by_key(None, "containerPort"),
        (T::Container, "env") => by_key(None, "name"),
        (T::Container, "volumeMounts") => by_key(None, "mountPath"),
        (T::Container, "volumeDevices") => by_key(None, "devicePath"),

        (T::PodStatus, "conditions") => by_key(None, "type"),
        (T::PodStatus, "podIPs" | "hostIPs") => by_key(None, "ip"),
        (T::PodStatus, "resourceClaimStatuses") => by_key(None, "name"),

        (T::NodeSpec, "podCIDRs") => FieldMeta {
            child: None,
            list: ListStrategy::MergeScalars,
        },
        (T::NodeStatus, "conditions" | "addresses") => by_key(None, "type"),

        (T::ServiceSpec, "ports") => by_key(None, "port"),
        (T::ConditionsStatus, "conditions") => by_key(None, "type"),
        _ => UNTAGGED,
    }
}

/// Patch metadata of `field` inside a value of type `ty`, untagged when the type is unknown.
pub fn lookup_in(ty: Option<PatchType>, field: &str) -> FieldMeta {
    match ty {
        Some(t) => lookup(t, field),
        None => UNTAGGED,
    }
}

/// Human-readable name of a schema node, for error messages.
pub fn name(ty: Option<PatchType>) -> String {
    match ty {
        Some(PatchType::Object(kind)) => kind.to_string(),
        Some(other) => format!("{other:?}"),
        None => "value".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let spec = lookup(
            lookup(root("Pod"), "spec").child.expect("spec"),
            "containers",
        );
        assert_eq!(spec.list, ListStrategy::MergeByKey("name"));
        let ports = lookup(spec.child.expect("container"), "ports");
        assert_eq!(ports.list, ListStrategy::MergeByKey("containerPort"));
    }

    #[test]
    fn tolerations_and_args_are_replaced() {
        assert_eq!(
            lookup(PatchType::PodSpec, "tolerations").list,
            ListStrategy::Replace
        );
        assert_eq!(
            lookup(PatchType::Container, "args").list,
            ListStrategy::Replace
        );
        assert_eq!(
            lookup(PatchType::Container, "envFrom").list,
            ListStrategy::Replace
        );
    }

    #[test]
    fn deployment_template_reaches_pod_spec() {
        let spec = lookup(root("Deployment"), "spec").child.expect("spec");
        let template = lookup(spec, "template").child.expect("template");
        assert_eq!(lookup(template, "spec").child, Some(PatchType::PodSpec));
        assert_eq!(
            lookup(template, "metadata").child,
            Some(PatchType::ObjectMeta)
        );
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        assert_eq!(
            lookup(PatchType::ObjectMeta, "finalizers").list,
            ListStrategy::MergeScalars
        );
        assert_eq!(
            lookup(PatchType::ObjectMeta, "ownerReferences").list,
            ListStrategy::MergeByKey("uid")
        );
    }
}
