//! An import killed in the middle of unpacking leaves no layer that looks complete and no
//! image name; the next store open removes the leftovers and a new import succeeds.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{tar, write_oci_archive, Entry, TestImage};
use skiff_image::{ImageStore, NoProgress, Platform, StoreOptions};

const CHILD_ENV: &str = "SKIFF_IMAGE_TEST_CHILD_IMPORT";

fn options() -> StoreOptions {
    StoreOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..StoreOptions::default()
    }
}

/// Not a test: the child process of the test below, which runs it with `--ignored`. Imports
/// `ARCHIVE` into `STORE` (both from the environment).
#[test]
#[ignore = "child process of a_killed_import_leaves_no_partial_layer"]
fn child_import() {
    let spec = std::env::var(CHILD_ENV).expect("run by a_killed_import_leaves_no_partial_layer");
    let (archive, store) = spec.split_once('\n').unwrap();
    let store = ImageStore::open_with(Path::new(store), options()).unwrap();
    store
        .import_archive(Path::new(archive), &NoProgress)
        .unwrap();
}

#[test]
fn a_killed_import_leaves_no_partial_layer() {
    let work = tempfile::tempdir().unwrap();
    // Many files, so unpacking takes long enough to be interrupted.
    let names: Vec<String> = (0..20_000).map(|i| format!("d{}/f{i}", i % 100)).collect();
    let data = vec![b'x'; 2048];
    let entries: Vec<Entry> = names.iter().map(|n| Entry::File(n, &data, 0o644)).collect();
    let archive = work.path().join("big.tar");
    write_oci_archive(
        &archive,
        &[TestImage {
            name: Some("big:1"),
            layers: vec![tar(&entries)],
            architecture: "amd64",
            compress: true,
            diff_ids: None,
        }],
        None,
    );
    let store_dir = work.path().join("store");
    let tmp = store_dir.join("tmp");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_import", "--ignored", "--nocapture"])
        .env(
            CHILD_ENV,
            format!("{}\n{}", archive.display(), store_dir.display()),
        )
        .spawn()
        .unwrap();
    // Wait until the layer is being unpacked, then kill the importer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let unpacking = loop {
        let busy = fs::read_dir(&tmp)
            .map(|entries| {
                entries.flatten().any(|e| {
                    e.file_name().to_string_lossy().ends_with("-layer")
                        && fs::read_dir(e.path())
                            .map(|d| d.count() > 10)
                            .unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if busy || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break busy;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        unpacking,
        "the child finished before it could be interrupted"
    );

    assert_eq!(
        fs::read_dir(store_dir.join("layers")).unwrap().count(),
        0,
        "a partial layer is in place"
    );
    assert!(
        fs::read_dir(&tmp).unwrap().count() > 0,
        "the interrupted work should still be in tmp/"
    );
    let store = ImageStore::open_with(&store_dir, options()).unwrap();
    assert!(store.list().unwrap().is_empty(), "an image was named");
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "leftovers of the dead importer are removed on open"
    );

    let image = store
        .import_archive(&archive, &NoProgress)
        .unwrap()
        .remove(0);
    assert_eq!(
        fs::read(image.layers[0].join("d7/f19907")).unwrap().len(),
        2048
    );
}
