//! Create, get, update, delete: metadata the store maintains, preconditions, errors.

mod common;

use common::*;
use serde_json::json;
use skiff_store::{Key, Preconditions, StoreError};

#[tokio::test]
async fn create_sets_metadata_and_revisions_increase() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.revision(), 0);
    let a = store
        .create(&pod_key("default", "a"), pod("a", None, json!({})))
        .await
        .unwrap();
    let b = store
        .create(&pod_key("default", "b"), pod("b", None, json!({})))
        .await
        .unwrap();
    assert_eq!(a.revision(), 1);
    assert_eq!(b.revision(), 2);
    assert_eq!(store.revision(), 2);
    let v = a.value();
    let m = &v["metadata"];
    assert_eq!(m["resourceVersion"], "1");
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["generation"], 1);
    assert!(uuid_like(m["uid"].as_str().unwrap()));
    assert_ne!(a.value()["metadata"]["uid"], b.value()["metadata"]["uid"]);
    let ts = m["creationTimestamp"].as_str().unwrap();
    assert!(jiff_parse(ts), "{ts}");
    // get returns the same stored state.
    let got = store.get(&pod_key("default", "a")).unwrap();
    assert_eq!(got.json(), a.json());
    assert!(store.get(&pod_key("default", "zzz")).is_none());
    assert!(store.get(&pod_key("other", "a")).is_none());
    assert_eq!(store.count("pods", Some("default")), 2);
    assert_eq!(store.count("pods", None), 2);
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

fn jiff_parse(s: &str) -> bool {
    s.parse::<jiff::Timestamp>().is_ok() && !s.contains('.')
}

#[tokio::test]
async fn create_existing_name_is_already_exists_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = pod_key("default", "a");
    let first = store
        .create(&key, pod("a", None, json!({"v": "1"})))
        .await
        .unwrap();
    let err = store
        .create(&key, pod("a", None, json!({"v": "2"})))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }));
    assert_eq!(err.to_string(), "pods \"a\" already exists");
    assert_eq!(store.revision(), 1);
    assert_eq!(store.get(&key).unwrap().json(), first.json());
}

#[tokio::test]
async fn update_preconditions_generation_and_noop() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = pod_key("default", "a");
    let created = store.create(&key, pod("a", None, json!({}))).await.unwrap();

    // Status-only change: new revision, same generation, uid and timestamp kept.
    let mut v = created.value();
    v["status"]["phase"] = json!("Running");
    v["metadata"]["uid"] = json!("forged");
    let updated = store.update(&key, v).await.unwrap();
    assert_eq!(updated.revision(), 2);
    let uv = updated.value();
    assert_eq!(uv["metadata"]["generation"], 1);
    assert_eq!(uv["metadata"]["uid"], created.value()["metadata"]["uid"]);
    assert_eq!(
        uv["metadata"]["creationTimestamp"],
        created.value()["metadata"]["creationTimestamp"]
    );
    assert_eq!(uv["status"]["phase"], "Running");

    // Spec change bumps generation.
    let mut v = updated.value();
    v["spec"]["containers"][0]["image"] = json!("nginx");
    let spec_changed = store.update(&key, v).await.unwrap();
    assert_eq!(spec_changed.value()["metadata"]["generation"], 2);

    // Stale resourceVersion: conflict, nothing changes.
    let mut stale = created.value();
    stale["metadata"]["labels"] = json!({"x": "y"});
    let err = store.update(&key, stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert_eq!(
        err.to_string(),
        "Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(store.get(&key).unwrap().revision(), 3);

    // Without resourceVersion: unconditional.
    let mut v = spec_changed.value();
    v["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    v["metadata"]["labels"] = json!({"x": "y"});
    let unconditional = store.update(&key, v).await.unwrap();
    assert_eq!(unconditional.revision(), 4);

    // No-op update: no new revision, stored object returned.
    let same = store.update(&key, unconditional.value()).await.unwrap();
    assert_eq!(same.revision(), 4);
    assert_eq!(store.revision(), 4);

    // Missing object.
    let err = store
        .update(&pod_key("default", "nope"), pod("nope", None, json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    assert_eq!(err.to_string(), "pods \"nope\" not found");
}

#[tokio::test]
async fn hostile_objects_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = pod_key("default", "a");
    let created = store.create(&key, pod("a", None, json!({}))).await.unwrap();
    let cases = [
        (json!("a string"), "must be a JSON object"),
        (json!({"metadata": []}), "metadata: Invalid value"),
        (
            json!({"metadata": {"name": "b"}}),
            "metadata.name: Invalid value: \"b\"",
        ),
        (
            json!({"metadata": {"namespace": "kube-system"}}),
            "metadata.namespace: Invalid value",
        ),
        (
            json!({"metadata": {"resourceVersion": "x1"}}),
            "metadata.resourceVersion: Invalid value: \"x1\"",
        ),
        (
            json!({"metadata": {"resourceVersion": 5}}),
            "metadata.resourceVersion: Invalid value: 5",
        ),
    ];
    for (bad, msg) in cases {
        let err = store.update(&key, bad.clone()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidObject { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(msg), "{bad}: {err}");
    }
    let err = store
        .create(&pod_key("default", "x/y"), json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("may not contain '/'"), "{err}");
    let err = store
        .create(&Key::namespaced("pods", "default", ""), json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("name is required"), "{err}");
    assert_eq!(store.revision(), 1);
    assert_eq!(store.get(&key).unwrap().json(), created.json());
    assert_eq!(store.count("pods", None), 1);
}

#[tokio::test]
async fn delete_preconditions_and_last_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = pod_key("default", "a");
    let created = store.create(&key, pod("a", None, json!({}))).await.unwrap();
    let uid = created.value()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();

    let err = store
        .delete(
            &key,
            Preconditions {
                uid: Some("other".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Operation cannot be fulfilled on pods \"a\": Precondition failed: UID in precondition: other, UID in object meta: {uid}")
    );
    let err = store
        .delete(
            &key,
            Preconditions {
                resource_version: Some(7),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("ResourceVersion in precondition: 7, ResourceVersion in object meta: 1"),
        "{err}"
    );
    assert!(store.get(&key).is_some());

    let deleted = store
        .delete(
            &key,
            Preconditions {
                uid: Some(uid),
                resource_version: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(deleted.revision(), 2);
    assert_eq!(deleted.value()["metadata"]["resourceVersion"], "2");
    assert_eq!(deleted.value()["spec"], created.value()["spec"]);
    assert!(store.get(&key).is_none());
    assert_eq!(store.count("pods", None), 0);
    let err = store
        .delete(&key, Preconditions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    // Re-create after delete gets a fresh uid and the next revision.
    let again = store.create(&key, pod("a", None, json!({}))).await.unwrap();
    assert_eq!(again.revision(), 3);
    assert_ne!(
        again.value()["metadata"]["uid"],
        created.value()["metadata"]["uid"]
    );
}

#[tokio::test]
async fn cluster_scoped_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let key = Key::cluster("nodes", "n1");
    let node = store
        .create(
            &key,
            json!({"kind": "Node", "metadata": {"namespace": "ignored"}}),
        )
        .await
        .unwrap();
    assert!(node.value()["metadata"].get("namespace").is_none());
    assert_eq!(node.value()["metadata"]["name"], "n1");
    assert_eq!(store.count("nodes", None), 1);
    assert!(store.get(&Key::cluster("nodes", "n1")).is_some());
}
