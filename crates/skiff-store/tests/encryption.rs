//! Encryption at rest: with Secrets encrypted, no Secret value reaches the database file —
//! neither the current state nor the history — while reads return plaintext; a restart with
//! the key reads everything, one without it refuses; re-encryption moves every record to a
//! new key so the old one can be dropped.

mod common;

use std::sync::Arc;

use common::options;
use serde_json::json;
use skiff_store::{
    Encryption, EncryptionConfig, Key, NamedKey, Store, StoreOptions, AESGCM_PREFIX,
};

const VALUE_V1: &str = "hunter2-first-plaintext-value";
const VALUE_V2: &str = "hunter2-second-plaintext-value";

fn config(names: &[&str]) -> EncryptionConfig {
    EncryptionConfig::aesgcm(
        &["secrets"],
        names
            .iter()
            .map(|n| NamedKey::generate(*n).unwrap())
            .collect(),
    )
}

fn open(
    path: &std::path::Path,
    config: Option<&EncryptionConfig>,
) -> Result<Store, skiff_store::StoreError> {
    Store::open(
        path,
        StoreOptions {
            encryption: config.map(|c| Arc::new(Encryption::new(c).unwrap())),
            ..options()
        },
    )
}

fn secret(value: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-password"},
        "stringData": {"password": value},
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn secrets_never_reach_the_file_in_plaintext_and_survive_restart_and_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let first = config(&["key1"]);
    let key = Key::namespaced("secrets", "default", "db-password");
    {
        let store = open(&path, Some(&first)).unwrap();
        let created = store.create(&key, secret(VALUE_V1)).await.unwrap();
        // Updated once: the history now holds the first value as the state before.
        let mut v = created.value();
        v["stringData"]["password"] = json!(VALUE_V2);
        store.update(&key, v).await.unwrap();
        // A ConfigMap stays plain (only Secrets are configured).
        store
            .create(
                &Key::namespaced("configmaps", "default", "c"),
                json!({"metadata": {"name": "c"}, "data": {"k": "visible-configmap-value"}}),
            )
            .await
            .unwrap();
        // Reads come from memory, in plaintext.
        let got = store.get(&key).unwrap().value();
        assert_eq!(got["stringData"]["password"], VALUE_V2);
        store.close().await;
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !contains(&bytes, VALUE_V1.as_bytes()),
        "old value (history) in the file"
    );
    assert!(
        !contains(&bytes, VALUE_V2.as_bytes()),
        "current value in the file"
    );
    assert!(
        contains(&bytes, b"k8s:enc:aesgcm:v1:key1:"),
        "sealed records carry upstream's prefix"
    );
    assert!(
        contains(&bytes, b"visible-configmap-value"),
        "the test greps the right file"
    );

    // Without the key the store refuses to start and names the key it needs.
    let err = open(&path, None).unwrap_err().to_string();
    assert!(err.contains("key1"), "{err}");
    let err = open(&path, Some(&config(&["other"])))
        .unwrap_err()
        .to_string();
    assert!(err.contains("key1"), "{err}");

    // Restart with the key: plaintext again, history included.
    let store = open(&path, Some(&first)).unwrap();
    assert_eq!(
        store.get(&key).unwrap().value()["stringData"]["password"],
        VALUE_V2
    );

    // Rotation: a new primary key with the old one kept for reading; everything is rewritten.
    let mut staged = config(&["key2"]);
    let old_key = first.keys().next().unwrap().clone();
    staged.resources[0].providers[0]
        .aesgcm
        .as_mut()
        .unwrap()
        .keys
        .push(old_key);
    let rewritten = store
        .reencrypt(Some(Arc::new(Encryption::new(&staged).unwrap())))
        .await
        .unwrap();
    // The object and its two history records.
    assert_eq!(rewritten, 3);
    // Writes after the rotation use the new key, and nothing is left to rewrite.
    let mut v = store.get(&key).unwrap().value();
    v["stringData"]["password"] = json!("third");
    store.update(&key, v).await.unwrap();
    let only_new = {
        let mut c = staged.clone();
        c.resources[0].providers[0]
            .aesgcm
            .as_mut()
            .unwrap()
            .keys
            .truncate(1);
        c
    };
    assert_eq!(
        store
            .reencrypt(Some(Arc::new(Encryption::new(&only_new).unwrap())))
            .await
            .unwrap(),
        0,
        "every record already sealed with the new key"
    );
    store.close().await;

    // The old key is gone from the configuration: every record still reads.
    let store = open(&path, Some(&only_new)).unwrap();
    assert_eq!(
        store.get(&key).unwrap().value()["stringData"]["password"],
        "third"
    );
    store.close().await;
    assert!(!AESGCM_PREFIX.is_empty());
}

#[tokio::test]
async fn enabling_encryption_on_a_plain_store_reads_old_values_and_reencrypt_seals_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let key = Key::namespaced("secrets", "default", "db-password");
    {
        let store = open(&path, None).unwrap();
        store.create(&key, secret(VALUE_V1)).await.unwrap();
        store.close().await;
    }
    let c = config(&["k"]);
    let store = open(&path, Some(&c)).unwrap();
    assert_eq!(
        store.get(&key).unwrap().value()["stringData"]["password"],
        VALUE_V1
    );
    // The object and its creation event.
    let n = store
        .reencrypt(Some(Arc::new(Encryption::new(&c).unwrap())))
        .await
        .unwrap();
    assert_eq!(n, 2);
    store.close().await;
    let store = open(&path, Some(&c)).unwrap();
    assert_eq!(
        store.get(&key).unwrap().value()["stringData"]["password"],
        VALUE_V1
    );
}

#[tokio::test]
async fn the_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db").join("state.redb");
    let store = open(&path, None).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    store.close().await;
    // An existing file others could read is tightened on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open(&path, None).unwrap();
    assert_eq!(mode(&path), 0o600);
    store.close().await;
}
