//! A layer that does not fit on the store's disk fails before unpacking with a reason naming
//! the layer and the sizes, and leaves no layer and no temporary directory behind.

mod common;

use std::fs;
use std::process::Command;

use common::{require_root, tar, write_oci_archive, Entry, TestImage};
use skiff_image::{ImageStore, NoProgress, Platform, StoreOptions};

#[test]
fn a_layer_larger_than_the_free_space_is_refused_up_front() {
    if !require_root("a_layer_larger_than_the_free_space_is_refused_up_front") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // 8 MiB of zeros: a few KiB compressed, far more than the 4 MiB disk once unpacked.
    let zeros = vec![0u8; 8 << 20];
    let archive = work.path().join("big.tar");
    write_oci_archive(
        &archive,
        &[TestImage {
            name: Some("big:1"),
            layers: vec![tar(&[Entry::File("zeros", &zeros, 0o644)])],
            architecture: "amd64",
            compress: true,
            diff_ids: None,
        }],
        None,
    );
    let disk = work.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 4 MiB tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());

    let options = StoreOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        },
        ..StoreOptions::default()
    };
    let store = ImageStore::open_with(&disk.join("store"), options).unwrap();
    let error = store
        .import_archive(&archive, &NoProgress)
        .expect_err("the layer cannot fit")
        .to_string();
    assert!(
        error.contains("no space left for layer sha256:") && error.contains("(needs 83"),
        "{error}"
    );
    assert!(store.list().unwrap().is_empty(), "an image was named");
    let layers = fs::read_dir(disk.join("store/layers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(layers, 0, "a layer is in place");
    let tmp = fs::read_dir(disk.join("store/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0, "half-unpacked work is left in tmp/");
}
