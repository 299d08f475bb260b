//! What the store itself maintains in `metadata`: uid, creationTimestamp, generation,
//! resourceVersion; and the checks on the shape of incoming objects.

use serde_json::{Map, Value};

use crate::{Key, Object, Preconditions, StoreError};

fn invalid(key: &Key, message: impl Into<String>) -> StoreError {
    StoreError::InvalidObject {
        key: key.clone(),
        message: message.into(),
    }
}

/// Checks the object is a JSON object with an object `metadata` whose name and namespace agree
/// with the key (filling them in when absent); returns `metadata`.
fn check_shape<'a>(
    key: &Key,
    value: &'a mut Value,
) -> Result<&'a mut Map<String, Value>, StoreError> {
    let Some(obj) = value.as_object_mut() else {
        return Err(invalid(key, "the object must be a JSON object"));
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return Err(invalid(key, "metadata: Invalid value: must be an object"));
    };
    match meta.get("name") {
        None | Some(Value::Null) => {
            meta.insert("name".into(), Value::String(key.name.clone()));
        }
        Some(Value::String(n)) if *n == key.name => {}
        Some(other) => {
            return Err(invalid(
                key,
                format!(
                    "metadata.name: Invalid value: {other}: does not match the name {:?} the object is stored under",
                    key.name
                ),
            ))
        }
    }
    match &key.namespace {
        Some(ns) => match meta.get("namespace") {
            None | Some(Value::Null) => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
            Some(Value::String(n)) if n == ns => {}
            Some(other) => {
                return Err(invalid(
                    key,
                    format!(
                        "metadata.namespace: Invalid value: {other}: does not match the namespace {ns:?} the object is stored under"
                    ),
                ))
            }
        },
        // Upstream clears the namespace of cluster-scoped objects.
        None => {
            meta.remove("namespace");
        }
    }
    Ok(meta)
}

/// The current time as upstream writes timestamps (RFC 3339, whole seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Prepares a new object: uid (kept when the caller — the API server — already assigned one,
/// as upstream fills it before create strategies run), creationTimestamp, generation 1; the
/// resourceVersion is set by the writer when it assigns the revision.
pub(crate) fn prepare_create(key: &Key, mut value: Value) -> Result<Value, StoreError> {
    key.check().map_err(|m| invalid(key, m))?;
    let meta = check_shape(key, &mut value)?;
    let has_uid = matches!(meta.get("uid"), Some(Value::String(uid)) if !uid.is_empty());
    if !has_uid {
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
    }
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    meta.insert("generation".into(), Value::from(1));
    meta.remove("resourceVersion");
    Ok(value)
}

/// The resourceVersion precondition carried by an update (`metadata.resourceVersion`, unless
/// empty), checked for syntax.
pub(crate) fn update_precondition(key: &Key, value: &Value) -> Result<Option<u64>, StoreError> {
    match value.get("metadata").and_then(|m| m.get("resourceVersion")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse::<u64>().map(Some).map_err(|_| {
            invalid(
                key,
                format!(
                    "metadata.resourceVersion: Invalid value: {s:?}: must be a decimal integer"
                ),
            )
        }),
        Some(other) => Err(invalid(
            key,
            format!("metadata.resourceVersion: Invalid value: {other}: must be a string"),
        )),
    }
}

/// Checks the shape of an update before it is queued.
pub(crate) fn check_update(
    key: &Key,
    mut value: Value,
) -> Result<(Value, Option<u64>), StoreError> {
    key.check().map_err(|m| invalid(key, m))?;
    check_shape(key, &mut value)?;
    let precondition = update_precondition(key, &value)?;
    Ok((value, precondition))
}

/// The outcome of merging an update onto the stored state.
pub(crate) enum Merged {
    /// Nothing changed: the stored object stands (no new revision, as upstream).
    Unchanged,
    /// The new state, resourceVersion still to be set.
    Changed(Value),
}

/// Applies an update: keeps uid and creationTimestamp, bumps generation when anything outside
/// metadata and status changed (or deletion starts), detects no-op updates.
pub(crate) fn merge_update(
    key: &Key,
    stored: &Object,
    mut new: Value,
    precondition: Option<u64>,
) -> Result<Merged, StoreError> {
    if let Some(rv) = precondition {
        if rv != stored.revision() {
            return Err(StoreError::Conflict {
                key: key.clone(),
                message: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
    }
    let old = stored.value();
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let old_generation = old_meta
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let spec_changed = {
        let differs = |a: &Value, b: &Value| {
            let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
                return true;
            };
            let skip =
                |k: &String| matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind");
            a.iter()
                .filter(|(k, _)| !skip(k))
                .any(|(k, v)| b.get(k) != Some(v))
                || b.iter()
                    .filter(|(k, _)| !skip(k))
                    .any(|(k, _)| !a.contains_key(k))
        };
        differs(&old, &new)
    };
    let meta = check_shape(key, &mut new)?;
    let deletion_starts = meta.get("deletionTimestamp").is_some_and(|v| !v.is_null())
        && old_meta
            .and_then(|m| m.get("deletionTimestamp"))
            .is_none_or(Value::is_null);
    for field in ["uid", "creationTimestamp"] {
        match old_meta.and_then(|m| m.get(field)) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    let generation = old_generation + i64::from(spec_changed || deletion_starts);
    meta.insert("generation".into(), Value::from(generation));
    meta.insert(
        "resourceVersion".into(),
        Value::String(stored.revision().to_string()),
    );
    if new == old {
        return Ok(Merged::Unchanged);
    }
    Ok(Merged::Changed(new))
}

/// Checks delete preconditions against the stored object.
pub(crate) fn check_delete(
    key: &Key,
    stored: &Object,
    pre: &Preconditions,
) -> Result<(), StoreError> {
    if let Some(uid) = &pre.uid {
        let value = stored.value();
        let actual = value
            .get("metadata")
            .and_then(|m| m.get("uid"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if actual != uid {
            return Err(StoreError::Conflict {
                key: key.clone(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            });
        }
    }
    if let Some(rv) = pre.resource_version {
        if rv != stored.revision() {
            return Err(StoreError::Conflict {
                key: key.clone(),
                message: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    stored.revision()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> Key {
        Key::namespaced("pods", "d", "p")
    }

    #[test]
    fn create_sets_metadata() {
        let v = prepare_create(
            &key(),
            json!({"metadata": {"resourceVersion": "5"}, "spec": {}}),
        )
        .unwrap();
        let m = &v["metadata"];
        assert_eq!(m["name"], "p");
        assert_eq!(m["namespace"], "d");
        assert_eq!(m["generation"], 1);
        assert!(m.get("resourceVersion").is_none());
        assert_eq!(m["uid"].as_str().unwrap().len(), 36);
        let ts = m["creationTimestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    }

    #[test]
    fn create_keeps_a_uid_assigned_by_the_caller() {
        let v = prepare_create(&key(), json!({"metadata": {"uid": "given"}, "spec": {}})).unwrap();
        assert_eq!(v["metadata"]["uid"], "given");
        let v = prepare_create(&key(), json!({"metadata": {"uid": ""}, "spec": {}})).unwrap();
        assert_eq!(v["metadata"]["uid"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn create_rejects_bad_shapes() {
        let e = prepare_create(&key(), json!([1])).unwrap_err().to_string();
        assert!(e.contains("must be a JSON object"), "{e}");
        let e = prepare_create(&key(), json!({"metadata": 3}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata: Invalid value"), "{e}");
        let e = prepare_create(&key(), json!({"metadata": {"name": "q"}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("pods \"p\" is invalid: metadata.name: Invalid value: \"q\""),
            "{e}"
        );
        let e = prepare_create(&key(), json!({"metadata": {"namespace": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metadata.namespace: Invalid value: \"x\""),
            "{e}"
        );
        let v = prepare_create(
            &Key::cluster("nodes", "n"),
            json!({"metadata": {"namespace": "x"}}),
        )
        .unwrap();
        assert!(v["metadata"].get("namespace").is_none());
    }

    #[test]
    fn update_generation_and_noop() {
        let created = prepare_create(&key(), json!({"spec": {"a": 1}, "status": {}})).unwrap();
        let mut stored_v = created.clone();
        crate::object::set_resource_version(&mut stored_v, 7);
        let stored = Object::new(key(), 7, serde_json::to_vec(&stored_v).unwrap());

        // No change at all (and without rv) -> unchanged.
        let mut same = created.clone();
        same["metadata"].as_object_mut().unwrap().remove("uid");
        assert!(matches!(
            merge_update(&key(), &stored, same, None).unwrap(),
            Merged::Unchanged
        ));

        // Status change: no generation bump.
        let mut st = created.clone();
        st["status"] = json!({"phase": "Running"});
        let Merged::Changed(v) = merge_update(&key(), &stored, st, Some(7)).unwrap() else {
            panic!()
        };
        assert_eq!(v["metadata"]["generation"], 1);

        // Spec change: bump; uid/creationTimestamp preserved even if the client changed them.
        let mut sp = created.clone();
        sp["spec"]["a"] = json!(2);
        sp["metadata"]["uid"] = json!("forged");
        let Merged::Changed(v) = merge_update(&key(), &stored, sp, None).unwrap() else {
            panic!()
        };
        assert_eq!(v["metadata"]["generation"], 2);
        assert_eq!(v["metadata"]["uid"], created["metadata"]["uid"]);

        // Deletion starting bumps generation.
        let mut del = created.clone();
        del["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        let Merged::Changed(v) = merge_update(&key(), &stored, del, None).unwrap() else {
            panic!()
        };
        assert_eq!(v["metadata"]["generation"], 2);

        // Stale rv.
        let e = merge_update(&key(), &stored, created.clone(), Some(6))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, "Operation cannot be fulfilled on pods \"p\": the object has been modified; please apply your changes to the latest version and try again");
    }

    #[test]
    fn bad_resource_version_in_update() {
        let e = check_update(&key(), json!({"metadata": {"resourceVersion": "abc"}}))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("metadata.resourceVersion: Invalid value: \"abc\""),
            "{e}"
        );
        assert_eq!(
            check_update(&key(), json!({"metadata": {"resourceVersion": ""}}))
                .unwrap()
                .1,
            None
        );
        assert_eq!(
            check_update(&key(), json!({"metadata": {"resourceVersion": "12"}}))
                .unwrap()
                .1,
            Some(12)
        );
    }
}
