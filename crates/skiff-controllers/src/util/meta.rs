//! Object metadata helpers: keys, owner references, timestamps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;

/// `namespace/name` (or `name` for cluster-scoped objects), as upstream's cache keys.
pub fn key_of(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", name_of(meta)),
        _ => name_of(meta).to_string(),
    }
}

/// The object's name, or `""`.
pub fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// The object's namespace, or `""`.
pub fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

/// The object's uid, or `""`.
pub fn uid_of(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

/// Whether the object is being deleted.
pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// A controller owner reference to `owner` (`controller` and `blockOwnerDeletion` true), as
/// upstream's `metav1.NewControllerRef`.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: name_of(meta).to_string(),
        uid: uid_of(meta).to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The current time as an API timestamp, in whole seconds (what the API stores), so a
/// value compares equal to itself after a round trip through the server.
pub fn now() -> Time {
    let t = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// Seconds from `time` to now (negative if `time` lies in the future).
pub fn seconds_since(time: &Time) -> f64 {
    let elapsed = jiff::Timestamp::now().duration_since(time.0);
    elapsed.as_secs_f64()
}

/// `Kind namespace/name` for messages.
pub fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{} {}", K::kind(&()), key_of(object.meta()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    #[test]
    fn keys_and_controller_refs() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(key_of(&rs.metadata), "prod/web");
        let r = controller_ref(&rs);
        assert_eq!(r.api_version, "apps/v1");
        assert_eq!(r.kind, "ReplicaSet");
        assert_eq!(r.uid, "u1");
        let pod_meta = ObjectMeta {
            owner_references: Some(vec![r]),
            ..Default::default()
        };
        assert!(is_controlled_by(&pod_meta, "u1"));
        assert!(!is_controlled_by(&pod_meta, "u2"));
        assert_eq!(describe(&rs), "ReplicaSet prod/web");
    }
}
