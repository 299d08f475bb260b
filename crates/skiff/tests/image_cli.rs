//! `skiff image import|ls|rm` through the real binary: exit codes, output, and errors.

use std::path::Path;
use std::process::{Command, Output};

fn skiff(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run skiff")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn import_list_and_remove_images() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/busybox/build.sh");
    let built = Command::new("bash")
        .arg(&script)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    let data = work.path().join("data");

    let import = skiff(&["image", "import", archive.to_str().unwrap()], &data);
    assert!(import.status.success(), "{}", text(&import.stderr));
    assert!(text(&import.stdout).starts_with("imported docker.io/library/busybox:latest ("));
    assert!(
        import.stderr.is_empty(),
        "quiet when not on a terminal: {}",
        text(&import.stderr)
    );
    assert!(data.join("agent/images-store/index.json").is_file());

    let ls = skiff(&["image", "ls"], &data);
    assert!(ls.status.success());
    let listing = text(&ls.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("IMAGE ID"),
        "{listing}"
    );
    assert!(
        lines[1].starts_with("docker.io/library/busybox") && lines[1].contains("latest"),
        "{listing}"
    );

    // Errors: non-zero exit and a message naming the culprit; good files still imported.
    let bad = work.path().join("not-an-archive.tar");
    std::fs::write(&bad, "definitely not tar").unwrap();
    let import = skiff(
        &[
            "image",
            "import",
            bad.to_str().unwrap(),
            archive.to_str().unwrap(),
        ],
        &data,
    );
    assert!(!import.status.success());
    assert!(
        text(&import.stderr).contains("not-an-archive.tar"),
        "{}",
        text(&import.stderr)
    );
    assert!(text(&import.stdout).contains("imported docker.io/library/busybox:latest"));

    let rm = skiff(&["image", "rm", "busybox:nope"], &data);
    assert!(!rm.status.success());
    assert!(
        text(&rm.stderr).contains("busybox:nope"),
        "{}",
        text(&rm.stderr)
    );

    let rm = skiff(&["image", "rm", "busybox"], &data);
    assert!(rm.status.success(), "{}", text(&rm.stderr));
    assert!(text(&rm.stdout).contains("removed busybox"));
    let ls = skiff(&["image", "ls", "-q"], &data);
    assert!(ls.stdout.is_empty(), "{}", text(&ls.stdout));
    let layers = std::fs::read_dir(data.join("agent/images-store/layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 0, "unused layers are deleted");
}
