//! Importing archives: the busybox recipe (OCI and docker-save forms), multi-platform indexes,
//! compressed archives, names, listing, removal and garbage collection.

mod common;

use std::fs;

use common::{busybox, require_tool, tar, write_oci_archive, Entry, TestImage};
use skiff_image::{ImageError, ImageStore, NoProgress, Platform, StoreOptions};

#[test]
fn imports_the_busybox_recipe_and_resolves_it_by_name_and_id() {
    let work = tempfile::tempdir().unwrap();
    let (archive, _) = busybox(work.path(), "latest", false);
    let store = ImageStore::open(&work.path().join("store")).unwrap();

    let imported = store.import_archive(&archive, &NoProgress).unwrap();
    assert_eq!(imported.len(), 1);
    // Other users of the host cannot reach the layers (and their setuid binaries).
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(work.path().join("store"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let image = &imported[0];
    assert_eq!(
        image.reference.to_string(),
        "docker.io/library/busybox:latest"
    );
    assert!(
        image.id.starts_with("sha256:") && image.id.len() == 71,
        "{}",
        image.id
    );
    let repo_digest = image.repo_digest.as_deref().unwrap();
    assert!(
        repo_digest.starts_with("docker.io/library/busybox@sha256:"),
        "{repo_digest}"
    );
    assert_eq!(
        image.config.config().as_ref().unwrap().cmd().as_deref(),
        Some(&["sh".to_owned()][..])
    );
    assert_eq!(image.layers.len(), 1);
    assert!(image.layers[0].is_absolute());

    // The layer is a usable root file system.
    let layer = &image.layers[0];
    assert!(layer.join("bin/busybox").is_file());
    assert!(
        layer.join("bin/sh").is_file(),
        "applets are hard links in /bin"
    );
    let passwd = fs::read_to_string(layer.join("etc/passwd")).unwrap();
    assert!(
        passwd.starts_with("root:x:0:0:") && passwd.contains("nobody"),
        "{passwd}"
    );
    assert_eq!(
        fs::read_to_string(layer.join("etc/skiff-image-tag")).unwrap(),
        "latest\n"
    );
    let output = std::process::Command::new(layer.join("bin/busybox"))
        .arg("true")
        .status()
        .unwrap();
    assert!(output.success());

    for name in [
        "busybox",
        "docker.io/library/busybox:latest",
        &image.id,
        &image.id[7..],
        repo_digest,
    ] {
        let found = store
            .resolve(name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(found.id, image.id, "{name}");
        assert_eq!(found.layers, image.layers, "{name}");
    }
    assert!(store.resolve("busybox:other").unwrap().is_none());
    assert!(store.resolve("alpine").unwrap().is_none());

    // Importing again changes nothing.
    let again = store.import_archive(&archive, &NoProgress).unwrap();
    assert_eq!(again[0].id, image.id);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn imports_docker_save_archives() {
    if !require_tool("imports_docker_save_archives", "skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (oci, docker) = busybox(work.path(), "1.36-v2", true);
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let from_docker = store.import_archive(&docker.unwrap(), &NoProgress).unwrap();
    assert_eq!(from_docker.len(), 1);
    let image = &from_docker[0];
    assert_eq!(
        image.reference.to_string(),
        "docker.io/library/busybox:1.36-v2"
    );
    assert_eq!(
        image.repo_digest, None,
        "docker save carries no registry digest"
    );
    assert_eq!(
        fs::read_to_string(image.layers[0].join("etc/skiff-image-tag")).unwrap(),
        "1.36-v2\n"
    );

    // The same image from the OCI archive has the same id and shares the unpacked layer.
    let from_oci = store.import_archive(&oci, &NoProgress).unwrap();
    assert_eq!(from_oci[0].id, image.id);
    assert_eq!(from_oci[0].layers, image.layers);
}

#[test]
fn picks_the_current_platform_from_a_multi_platform_index() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("multi.tar");
    let amd64 = tar(&[Entry::File("arch", b"amd64\n", 0o644)]);
    let arm64 = tar(&[Entry::File("arch", b"arm64\n", 0o644)]);
    write_oci_archive(
        &archive,
        &[
            TestImage {
                name: None,
                layers: vec![arm64],
                architecture: "arm64",
                compress: true,
                diff_ids: None,
            },
            TestImage {
                name: None,
                layers: vec![amd64],
                architecture: "amd64",
                compress: true,
                diff_ids: None,
            },
        ],
        Some("example.com/multi:1.0"),
    );
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let options = StoreOptions {
            platform: Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            },
            ..StoreOptions::default()
        };
        let store =
            ImageStore::open_with(&work.path().join(format!("store-{arch}")), options).unwrap();
        let image = &store.import_archive(&archive, &NoProgress).unwrap()[0];
        assert_eq!(image.reference.to_string(), "example.com/multi:1.0");
        assert_eq!(
            fs::read_to_string(image.layers[0].join("arch")).unwrap(),
            format!("{arch}\n")
        );
        // The repo digest names the index, as a registry would.
        assert!(image
            .repo_digest
            .as_deref()
            .unwrap()
            .starts_with("example.com/multi@sha256:"));
        assert_ne!(
            image.repo_digest.as_deref().unwrap(),
            format!("example.com/multi@{}", image.manifest_digest)
        );
    }

    let options = StoreOptions {
        platform: Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..StoreOptions::default()
    };
    let store = ImageStore::open_with(&work.path().join("store-s390x"), options).unwrap();
    let error = store
        .import_archive(&archive, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("linux/s390x") && error.contains("linux/amd64"),
        "{error}"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn imports_compressed_archives_and_skips_unnamed_images() {
    let work = tempfile::tempdir().unwrap();
    let plain = work.path().join("two.tar");
    write_oci_archive(
        &plain,
        &[
            TestImage {
                name: Some("app:v1"),
                layers: vec![tar(&[Entry::File("v", b"1", 0o644)])],
                architecture: "amd64",
                compress: false,
                diff_ids: None,
            },
            TestImage {
                name: None,
                layers: vec![tar(&[Entry::File("v", b"?", 0o644)])],
                architecture: "amd64",
                compress: false,
                diff_ids: None,
            },
        ],
        None,
    );
    let gz = work.path().join("two.tar.gz");
    fs::write(&gz, common::gzip(&fs::read(&plain).unwrap())).unwrap();
    let mut options = StoreOptions::default();
    options.platform.architecture = "amd64".into();
    options.platform.variant = None;
    let store = ImageStore::open_with(&work.path().join("store"), options).unwrap();
    let images = store.import_archive(&gz, &NoProgress).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].reference.to_string(), "docker.io/library/app:v1");
    assert_eq!(fs::read(images[0].layers[0].join("v")).unwrap(), b"1");
}

#[test]
fn refuses_broken_archives_and_keeps_the_store() {
    let work = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&work.path().join("store")).unwrap();

    let not_tar = work.path().join("notes.txt");
    fs::write(&not_tar, "hello, I am not an archive ".repeat(100)).unwrap();
    let error = store.import_archive(&not_tar, &NoProgress).unwrap_err();
    assert!(
        matches!(error, ImageError::InvalidArchive { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("notes.txt"), "{error}");

    let missing = store
        .import_archive(&work.path().join("absent.tar"), &NoProgress)
        .unwrap_err();
    assert!(missing.to_string().contains("absent.tar"), "{missing}");

    // A blob whose content does not match its name.
    let tampered = work.path().join("tampered.tar");
    write_oci_archive(
        &tampered,
        &[TestImage {
            name: Some("app:v1"),
            layers: vec![tar(&[Entry::File("v", b"1", 0o644)])],
            architecture: "amd64",
            compress: false,
            diff_ids: None,
        }],
        None,
    );
    let mut bytes = fs::read(&tampered).unwrap();
    let at = bytes
        .windows(3)
        .position(|w| w == b"\x001\x00")
        .map(|p| p + 1);
    let position = at.unwrap_or_else(|| bytes.iter().position(|&b| b == b'1').unwrap());
    bytes[position] = b'2';
    fs::write(&tampered, &bytes).unwrap();
    let error = store.import_archive(&tampered, &NoProgress).unwrap_err();
    assert!(
        matches!(error, ImageError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn lists_removes_and_collects_garbage() {
    let work = tempfile::tempdir().unwrap();
    let (latest, _) = busybox(work.path(), "latest", false);
    let (v2, _) = busybox(work.path(), "v2", false);
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let first = store
        .import_archive(&latest, &NoProgress)
        .unwrap()
        .remove(0);
    let second = store.import_archive(&v2, &NoProgress).unwrap().remove(0);
    assert_ne!(first.id, second.id);

    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(list[1].repo_tags, ["docker.io/library/busybox:v2"]);
    assert!(list[0].size > 500_000, "{}", list[0].size);

    // Nothing is garbage while both are named.
    let report = store.gc(&[]).unwrap();
    assert_eq!(
        (report.removed_blobs, report.removed_layers),
        (0, 0),
        "{report:?}"
    );

    let error = store.remove("busybox:nope").unwrap_err();
    assert!(matches!(error, ImageError::NotFound { .. }), "{error}");
    store.remove("busybox:v2").unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(store.resolve("busybox:v2").unwrap().is_none());

    // A removed image still used by a container keeps its config and layers.
    let report = store.gc(std::slice::from_ref(&second.id)).unwrap();
    assert_eq!(report.removed_layers, 0, "{report:?}");
    assert_eq!(
        report.removed_blobs, 2,
        "manifest and compressed layer go: {report:?}"
    );
    assert!(second.layers[0].is_dir());

    // Once unused, it goes.
    let report = store.gc(&[]).unwrap();
    assert_eq!(
        (report.removed_blobs, report.removed_layers),
        (1, 1),
        "{report:?}"
    );
    assert!(!second.layers[0].exists());
    assert!(report.freed_bytes > 1_000_000, "{report:?}");
    // The other image is intact.
    let kept = store.resolve("busybox").unwrap().unwrap();
    assert!(kept.layers[0].join("bin/busybox").is_file());

    // Removing by (short) id removes every name of the image.
    store.remove(&first.id[7..19]).unwrap();
    assert!(store.list().unwrap().is_empty());
    store.gc(&[]).unwrap();
    let blobs = fs::read_dir(work.path().join("store/blobs/sha256"))
        .unwrap()
        .count();
    let layers = fs::read_dir(work.path().join("store/layers"))
        .unwrap()
        .count();
    assert_eq!((blobs, layers), (0, 0));
}

#[test]
fn imports_a_directory_of_archives_for_air_gapped_nodes() {
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("agent/images");
    fs::create_dir_all(&images).unwrap();
    busybox(&images, "latest", false);
    busybox(&images, "v2", false);
    fs::write(images.join("broken.tar"), "not an archive").unwrap();
    fs::write(images.join("README"), "ignored").unwrap();
    let store = ImageStore::open(&work.path().join("store")).unwrap();

    let outcomes = store.import_directory(&images, &NoProgress).unwrap();
    let names: Vec<String> = outcomes
        .iter()
        .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["broken.tar", "busybox-latest.tar", "busybox-v2.tar"]
    );
    assert!(outcomes[0].1.is_err());
    assert!(outcomes[1].1.is_ok() && outcomes[2].1.is_ok());
    assert_eq!(store.list().unwrap().len(), 2);

    let none = store
        .import_directory(&work.path().join("absent"), &NoProgress)
        .unwrap();
    assert!(none.is_empty());
}

#[test]
fn gc_keeps_layers_that_a_mounted_overlay_uses() {
    if !common::require_root("gc_keeps_layers_that_a_mounted_overlay_uses") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (archive, _) = busybox(work.path(), "in-use", false);
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let image = store
        .import_archive(&archive, &NoProgress)
        .unwrap()
        .remove(0);
    let merged = work.path().join("merged");
    fs::create_dir(&merged).unwrap();
    // A read-only overlay needs two lower dirs: the layer over an empty one.
    let empty = work.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let lower = format!("{}:{}", image.layers[0].display(), empty.display());
    let mount = common::Mount::overlay(&lower, &merged);

    // The image is removed and nobody says it is in use, but a container's rootfs is mounted.
    store.remove("busybox:in-use").unwrap();
    let report = store.gc(&[]).unwrap();
    assert_eq!(report.removed_layers, 0, "{report:?}");
    assert!(merged.join("bin/busybox").is_file());

    drop(mount);
    let report = store.gc(&[]).unwrap();
    assert_eq!(report.removed_layers, 1, "{report:?}");
    assert!(!image.layers[0].exists());
}
