//! Hostile and unusual layers: each case imports an image whose layer tries something, and
//! checks the error names the entry, nothing outside the store changed, and no layer (complete
//! or partial) was left behind.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use common::{require_root, snapshot, tar, write_oci_archive, Entry, Mount, TestImage};
use skiff_image::{
    DevicePolicy, ImageError, ImageInfo, ImageStore, NoProgress, Platform, SetidPolicy,
    StoreOptions, UnsafeEntry,
};

/// A work directory with a store and a "host" directory holding files an attacker would like to
/// change; the store's temporary layer directories are `WORK/store/tmp/<name>/`, so
/// `../../../host` from a layer root is the host directory.
struct Setup {
    work: tempfile::TempDir,
    before: Vec<String>,
}

impl Setup {
    fn new() -> Setup {
        let work = tempfile::tempdir().unwrap();
        let host = work.path().join("host");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("secret"), "do not touch\n").unwrap();
        fs::write(host.join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let before = snapshot(&host);
        Setup { work, before }
    }

    fn host(&self) -> PathBuf {
        self.work.path().join("host")
    }

    fn store(&self, options: StoreOptions) -> ImageStore {
        ImageStore::open_with(&self.work.path().join("store"), options).unwrap()
    }

    /// Imports an image made of `layer` with `options`.
    fn import(&self, layer: Vec<u8>, options: StoreOptions) -> Result<ImageInfo, ImageError> {
        let archive = self.work.path().join("image.tar");
        write_oci_archive(
            &archive,
            &[TestImage {
                name: Some("hostile:latest"),
                layers: vec![layer],
                architecture: "amd64",
                compress: true,
                diff_ids: None,
            }],
            None,
        );
        let store = self.store(options);
        store
            .import_archive(&archive, &NoProgress)
            .map(|mut images| images.remove(0))
    }

    /// The host is unchanged, no layer was stored and no temporary directory is left.
    fn assert_untouched(&self) {
        assert_eq!(
            snapshot(&self.host()),
            self.before,
            "files outside the layer changed"
        );
        assert_eq!(
            fs::metadata(self.host().join("secret")).unwrap().nlink(),
            1,
            "hard link made to a host file"
        );
        let store = self.work.path().join("store");
        assert_eq!(
            fs::read_dir(store.join("layers")).unwrap().count(),
            0,
            "a layer was kept"
        );
        assert_eq!(
            fs::read_dir(store.join("tmp")).unwrap().count(),
            0,
            "temporary files left"
        );
        let store = ImageStore::open(&store).unwrap();
        assert!(store.list().unwrap().is_empty(), "the image was named");
        for stray in ["escape", "store/escape", "pwned"] {
            assert!(!self.work.path().join(stray).exists(), "{stray} created");
        }
    }
}

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

/// Asserts `result` is an [`ImageError::UnsafeLayerEntry`] for `entry` with a reason matching.
fn assert_refused(
    result: Result<ImageInfo, ImageError>,
    entry: &str,
    reason: impl Fn(&UnsafeEntry) -> bool,
) {
    match result {
        Err(ImageError::UnsafeLayerEntry {
            entry: refused,
            reason: why,
            ..
        }) => {
            assert_eq!(refused, entry);
            assert!(reason(&why), "unexpected reason: {why}");
        }
        Err(other) => panic!("expected entry {entry} to be refused, got: {other}"),
        Ok(image) => panic!(
            "expected entry {entry} to be refused, but imported {:?}",
            image.layers
        ),
    }
}

#[test]
fn refuses_parent_directory_paths() {
    let setup = Setup::new();
    let layer = tar(&[
        Entry::File("ok", b"fine", 0o644),
        Entry::Raw(
            b"../../../host/secret".to_vec(),
            tar::EntryType::Regular,
            b"owned",
        ),
    ]);
    let result = setup.import(layer, options());
    assert_refused(result, "../../../host/secret", |r| {
        *r == UnsafeEntry::ParentDirectory
    });
    setup.assert_untouched();
}

#[test]
fn refuses_absolute_paths() {
    let setup = Setup::new();
    let target = setup.host().join("secret");
    let layer = tar(&[Entry::Raw(
        target.display().to_string().into_bytes(),
        tar::EntryType::Regular,
        b"owned",
    )]);
    let error = setup.import(layer, options()).unwrap_err();
    assert!(error.to_string().contains("path is absolute"), "{error}");
    setup.assert_untouched();
}

#[test]
fn refuses_writing_through_a_symlink_to_outside() {
    let setup = Setup::new();
    let host = setup.host().display().to_string();
    let layer = tar(&[
        Entry::Symlink("etc", &host),
        Entry::File("etc/passwd", b"evil::0:0::/:/bin/sh\n", 0o644),
    ]);
    let result = setup.import(layer, options());
    assert_refused(
        result,
        "etc/passwd",
        |r| matches!(r, UnsafeEntry::ThroughSymlink { component } if component == "etc"),
    );
    setup.assert_untouched();

    let layer = tar(&[
        Entry::Symlink("up", "../../../host"),
        Entry::Dir("up/sub", 0o755),
    ]);
    assert_refused(setup.import(layer, options()), "up/sub", |r| {
        matches!(r, UnsafeEntry::ThroughSymlink { .. })
    });
    setup.assert_untouched();
}

#[test]
fn replaces_a_symlink_instead_of_writing_through_it() {
    // The classic: a symlink to a host file, then a regular file of the same name. A naive
    // extractor opens the name for writing and follows the link.
    let setup = Setup::new();
    let target = setup.host().join("secret").display().to_string();
    let layer = tar(&[
        Entry::Symlink("x", &target),
        Entry::File("x", b"replaced", 0o644),
    ]);
    let image = setup.import(layer, options()).unwrap();
    let x = image.layers[0].join("x");
    assert!(fs::symlink_metadata(&x).unwrap().is_file());
    assert_eq!(fs::read(&x).unwrap(), b"replaced");
    assert_eq!(snapshot(&setup.host()), setup.before);
}

#[test]
fn refuses_hard_links_to_outside_or_missing_targets() {
    let setup = Setup::new();
    let host_secret = setup.host().join("secret").display().to_string();
    let cases: Vec<(Vec<Entry>, &str, &str)> = vec![
        (
            vec![Entry::Hardlink("l", "../../../host/secret")],
            "l",
            "points outside the layer",
        ),
        (
            vec![Entry::Hardlink("l", &host_secret)],
            "l",
            "points outside the layer",
        ),
        (
            vec![Entry::Hardlink("l", "not/there")],
            "l",
            "does not exist in the layer",
        ),
        (
            vec![
                Entry::Symlink("s", "../../../host"),
                Entry::Hardlink("l", "s/secret"),
            ],
            "l",
            "passes through a symlink",
        ),
        (
            vec![Entry::Dir("d", 0o755), Entry::Hardlink("l", "d")],
            "l",
            "is a directory",
        ),
    ];
    for (entries, entry, problem) in cases {
        let result = setup.import(tar(&entries), options());
        assert_refused(
            result,
            entry,
            |r| matches!(r, UnsafeEntry::HardlinkTarget { problem: p, .. } if p == problem),
        );
        setup.assert_untouched();
    }

    // A hard link to a file of the layer is fine.
    let layer = tar(&[
        Entry::File("a", b"shared", 0o644),
        Entry::Hardlink("b", "a"),
    ]);
    let image = setup.import(layer, options()).unwrap();
    let (a, b) = (
        fs::metadata(image.layers[0].join("a")).unwrap(),
        fs::metadata(image.layers[0].join("b")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
}

#[test]
fn skips_or_refuses_device_nodes() {
    let setup = Setup::new();
    let layer = || {
        tar(&[
            Entry::Dir("dev", 0o755),
            Entry::CharDevice("dev/mem", 1, 1),
            Entry::Fifo("pipe"),
        ])
    };
    let refuse = StoreOptions {
        unpack: skiff_image::UnpackPolicy {
            devices: DevicePolicy::Refuse,
            ..Default::default()
        },
        ..options()
    };
    assert_refused(setup.import(layer(), refuse), "dev/mem", |r| {
        *r == UnsafeEntry::DeviceNode
    });
    setup.assert_untouched();

    let image = setup.import(layer(), options()).unwrap();
    assert!(
        fs::symlink_metadata(image.layers[0].join("dev/mem")).is_err(),
        "device node created"
    );
    assert!(image.layers[0].join("dev").is_dir());
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(image.layers[0].join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn applies_the_setuid_policy() {
    let setup = Setup::new();
    let layer = || {
        tar(&[
            Entry::File("bin/su", b"#!/bin/sh\n", 0o4755),
            Entry::File("bin/wall", b"x", 0o2755),
        ])
    };
    let with = |setid| StoreOptions {
        unpack: skiff_image::UnpackPolicy {
            setid,
            ..Default::default()
        },
        ..options()
    };

    assert_refused(
        setup.import(layer(), with(SetidPolicy::Refuse)),
        "bin/su",
        |r| matches!(r, UnsafeEntry::Setid { .. }),
    );
    setup.assert_untouched();

    let stripped = setup.import(layer(), with(SetidPolicy::Strip)).unwrap();
    let mode = |image: &ImageInfo, path: &str| {
        fs::metadata(image.layers[0].join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(&stripped, "bin/su"), 0o755);
    assert_eq!(mode(&stripped, "bin/wall"), 0o755);

    if rustix::process::geteuid().is_root() {
        let store = setup.store(options());
        store.remove("hostile").unwrap();
        store.gc(&[]).unwrap();
        let kept = setup.import(layer(), with(SetidPolicy::Keep)).unwrap();
        assert_eq!(mode(&kept, "bin/su"), 0o4755);
        assert_eq!(mode(&kept, "bin/wall"), 0o2755);
    }
}

#[test]
fn refuses_absurd_sizes_and_decompression_bombs() {
    let setup = Setup::new();
    // A header claiming a terabyte (with no data behind it).
    let mut header = tar::Header::new_gnu();
    header.set_path("huge").unwrap();
    header.set_size(1 << 40);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut layer = header.as_bytes().to_vec();
    layer.extend_from_slice(&[0u8; 1024]);
    let result = setup.import(layer, options());
    assert_refused(
        result,
        "huge",
        |r| matches!(r, UnsafeEntry::TooLarge { size, .. } if *size == 1 << 40),
    );
    setup.assert_untouched();

    // 64 MiB of zeros compress to a few dozen KiB; the layer limit is 16 MiB.
    let zeros = vec![0u8; 64 << 20];
    let bomb = tar(&[Entry::File("zeros", &zeros, 0o644)]);
    let small = StoreOptions {
        unpack: skiff_image::UnpackPolicy {
            max_bytes: 16 << 20,
            ..Default::default()
        },
        ..options()
    };
    let error = setup.import(bomb, small.clone()).unwrap_err();
    assert!(
        matches!(
            error,
            ImageError::LayerLimit { .. } | ImageError::UnsafeLayerEntry { .. }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains(&format!("{}", 16u64 << 20)),
        "{error}"
    );
    setup.assert_untouched();

    // Padding after the end of the archive counts too.
    let mut padded = tar(&[Entry::File("small", b"x", 0o644)]);
    padded.extend(std::iter::repeat_n(0u8, 20 << 20));
    let error = setup.import(padded, small).unwrap_err();
    assert!(matches!(error, ImageError::LayerLimit { .. }), "{error}");
    assert!(error.to_string().contains("decompression bomb"), "{error}");
    setup.assert_untouched();
}

#[test]
fn refuses_too_many_entries_and_very_long_names() {
    let setup = Setup::new();
    let names: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
    let entries: Vec<Entry> = names.iter().map(|n| Entry::File(n, b"", 0o644)).collect();
    let few = StoreOptions {
        unpack: skiff_image::UnpackPolicy {
            max_entries: 100,
            ..Default::default()
        },
        ..options()
    };
    let error = setup.import(tar(&entries), few).unwrap_err();
    assert!(
        error.to_string().contains("more than 100 entries"),
        "{error}"
    );
    setup.assert_untouched();

    // A 300-byte name (over NAME_MAX), carried in a GNU long-name entry.
    let long = "n".repeat(300);
    let result = setup.import(tar(&[Entry::File(&long, b"", 0o644)]), options());
    assert_refused(result, &long, |r| {
        *r == UnsafeEntry::NameTooLong { len: 300 }
    });
    setup.assert_untouched();

    // A 4 MiB long-name entry is refused before it is read into memory whole.
    let huge = "d/".repeat(2 << 20);
    let error = setup
        .import(tar(&[Entry::File(&huge, b"", 0o644)]), options())
        .unwrap_err();
    assert!(matches!(error, ImageError::LayerLimit { .. }), "{error}");
    assert!(error.to_string().contains("extension headers"), "{error}");
    setup.assert_untouched();
}

#[test]
fn refuses_layers_that_do_not_match_their_diff_id() {
    let setup = Setup::new();
    let archive = setup.work.path().join("lying.tar");
    // The layer blob matches its own digest, but what it unpacks to is not what the config
    // promises.
    write_oci_archive(
        &archive,
        &[TestImage {
            name: Some("liar:1"),
            layers: vec![tar(&[Entry::File("a", b"1", 0o644)])],
            architecture: "amd64",
            compress: true,
            diff_ids: Some(vec![common::sha256(b"something else")]),
        }],
        None,
    );
    let error = setup
        .store(options())
        .import_archive(&archive, &NoProgress)
        .unwrap_err();
    match &error {
        ImageError::DigestMismatch { what, expected, .. } => {
            assert!(what.contains("uncompressed layer"), "{error}");
            assert_eq!(*expected, common::sha256(b"something else"));
        }
        other => panic!("expected a diff id mismatch, got {other}"),
    }
    setup.assert_untouched();
}

/// Overlay-form whiteouts, checked by mounting the layers with overlayfs as the runtime will.
#[test]
fn whiteouts_become_overlayfs_whiteouts_that_hide_lower_files() {
    if !require_root("whiteouts_become_overlayfs_whiteouts_that_hide_lower_files") {
        return;
    }
    let setup = Setup::new();
    let archive = setup.work.path().join("two-layers.tar");
    let bottom = tar(&[
        Entry::File("keep", b"kept", 0o644),
        Entry::File("gone", b"deleted above", 0o644),
        Entry::Dir("opaque", 0o755),
        Entry::File("opaque/old", b"hidden by the opaque dir", 0o644),
    ]);
    let top = tar(&[
        Entry::File(".wh.gone", b"", 0o644),
        Entry::Dir("opaque", 0o755),
        Entry::File("opaque/.wh..wh..opq", b"", 0o644),
        Entry::File("opaque/new", b"new", 0o644),
    ]);
    write_oci_archive(
        &archive,
        &[TestImage {
            name: Some("layered:1"),
            layers: vec![bottom, top],
            architecture: "amd64",
            compress: false,
            diff_ids: None,
        }],
        None,
    );
    let image = setup
        .store(options())
        .import_archive(&archive, &NoProgress)
        .unwrap()
        .remove(0);
    assert_eq!(image.layers.len(), 2);
    let upper_layer = &image.layers[1];
    let whiteout = fs::symlink_metadata(upper_layer.join("gone")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "whiteout is not a 0:0 device"
    );
    assert!(!upper_layer.join(".wh.gone").exists());
    assert!(!upper_layer.join("opaque/.wh..wh..opq").exists());

    let merged = setup.work.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let lower = format!(
        "{}:{}",
        image.layers[1].display(),
        image.layers[0].display()
    );
    let _mount = Mount::overlay(&lower, &merged);
    let mut names: Vec<String> = fs::read_dir(&merged)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["keep", "opaque"]);
    let mut inside: Vec<String> = fs::read_dir(merged.join("opaque"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    inside.sort();
    assert_eq!(inside, ["new"]);
}
