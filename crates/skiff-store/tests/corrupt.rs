//! A damaged database file is refused with a message naming the file and the documented
//! recovery, and is left byte-for-byte as found (never "repaired" into silent loss).

mod common;

use common::{open, options, pod, pod_key};
use serde_json::json;
use skiff_store::{Store, StoreError};

const MARKER: &str = "corruption-marker-value-0123456789";

async fn filled(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let store = open(dir);
    for i in 0..20 {
        let mut p = pod(&format!("p{i}"), None, json!({}));
        p["metadata"]["annotations"] = json!({"marker": MARKER});
        store
            .create(&pod_key("d", &format!("p{i}")), p)
            .await
            .unwrap();
    }
    store.close().await;
    dir.path().join("store.redb")
}

fn refused(path: &std::path::Path) -> String {
    let before = std::fs::read(path).unwrap();
    let err = Store::open(path, options()).expect_err("a corrupt file must be refused");
    assert!(matches!(err, StoreError::CorruptFile { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("docs/operations.md"), "{text}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file was modified"
    );
    text
}

#[tokio::test]
async fn damaged_records_are_refused_and_the_file_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(&dir).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let mut hits = 0;
    let mut i = 0;
    while let Some(at) = bytes[i..]
        .windows(MARKER.len())
        .position(|w| w == MARKER.as_bytes())
    {
        // Bytes no JSON text can hold.
        bytes[i + at..i + at + 4].copy_from_slice(&[0xff, 0xfe, 0x00, 0x81]);
        i += at + MARKER.len();
        hits += 1;
    }
    assert!(hits > 0, "marker not found in the file");
    std::fs::write(&path, &bytes).unwrap();
    refused(&path);
}

#[tokio::test]
async fn a_damaged_header_is_refused_and_the_file_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled(&dir).await;
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[..64] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    refused(&path);
}
