//! Auto-deploy of `DIR/server/manifests` (issue 8) with the real binary and kubectl: applied at
//! start, on change (objects added, changed, removed from a file), on a new file; a removed
//! file's objects are deleted (also when removed while the server was down), unless
//! `--manifests-prune=false`; `.skip` disables a file; a broken file changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use skiff_tests::kubectl::{self, Kubectl};
use skiff_tests::process::SkiffProcess;

fn kubectl_for(server: &SkiffProcess) -> Option<Kubectl> {
    match kubectl::find("1.32") {
        Some(bin) => Some(Kubectl::new(&bin, &server.kubeconfig())),
        None => {
            skiff_tests::skip("kubectl 1.32 (/usr/bin/kubectl) is not installed");
            None
        }
    }
}

fn wait_for(server: &SkiffProcess, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\nserver log:\n{}",
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn config_map(name: &str, namespace: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  value: \"{value}\"\n"
    )
}

/// Writes a file atomically (as editors and `cp` then `mv` do).
fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn value(k: &Kubectl, namespace: &str, name: &str) -> Option<String> {
    let run = k.run(&[
        "-n",
        namespace,
        "get",
        "configmap",
        name,
        "-o",
        "jsonpath={.data.value}",
    ]);
    run.ok.then_some(run.stdout)
}

#[test]
fn manifests_are_applied_updated_and_pruned() {
    skiff_tests::install_crypto();
    let dir = skiff_tests::temp_dir("ops-deploy");
    let manifests = dir.path().join("server/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    // Present before the first start: a namespace and objects in it, in one file.
    write(
        &manifests,
        "apps.yaml",
        &format!(
            "{}---\n{}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
            config_map("one", "apps", "1"),
            config_map("two", "apps", "2"),
        ),
    );
    let mut server = SkiffProcess::start(dir.path());
    let Some(k) = kubectl_for(&server) else {
        return;
    };
    wait_for(&server, "the manifest at start", || {
        value(&k, "apps", "one").as_deref() == Some("1")
    });
    assert_eq!(value(&k, "apps", "two").as_deref(), Some("2"));
    let owned = k.ok(&[
        "-n",
        "apps",
        "get",
        "configmaps",
        "-l",
        "skiff.dev/managed-by=deploy",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.annotations.skiff\\.dev/manifest} {end}",
    ]);
    assert_eq!(owned.trim(), "one=apps.yaml two=apps.yaml");

    // Change: one value changes, `two` leaves the file, `three` joins it.
    write(
        &manifests,
        "apps.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\n{}---\n{}",
            config_map("one", "apps", "1b"),
            config_map("three", "apps", "3"),
        ),
    );
    wait_for(&server, "the changed manifest", || {
        value(&k, "apps", "one").as_deref() == Some("1b")
            && value(&k, "apps", "three").is_some()
            && value(&k, "apps", "two").is_none()
    });

    // A second file; a broken edit of it changes nothing; fixing it applies.
    write(
        &manifests,
        "extra.yml",
        &config_map("extra", "default", "e"),
    );
    wait_for(&server, "a new manifest", || {
        value(&k, "default", "extra").as_deref() == Some("e")
    });
    write(
        &manifests,
        "extra.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [broken\n",
    );
    wait_for(&server, "the broken manifest to be reported", || {
        server.log().contains("extra.yml: not valid YAML")
    });
    assert_eq!(value(&k, "default", "extra").as_deref(), Some("e"));
    write(
        &manifests,
        "extra.yml",
        &config_map("extra", "default", "fixed"),
    );
    wait_for(&server, "the fixed manifest", || {
        value(&k, "default", "extra").as_deref() == Some("fixed")
    });

    // An object the API refuses is reported naming it, and nothing of the file is pruned.
    write(
        &manifests,
        "extra.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n",
    );
    wait_for(&server, "the refused object to be reported", || {
        server.log().contains("ConfigMap default/Not_Valid")
    });
    assert_eq!(value(&k, "default", "extra").as_deref(), Some("fixed"));
    write(
        &manifests,
        "extra.yml",
        &config_map("extra", "default", "again"),
    );
    wait_for(&server, "the repaired manifest", || {
        value(&k, "default", "extra").as_deref() == Some("again")
    });

    // .skip: the file is neither applied nor pruned.
    std::fs::write(manifests.join("extra.yml.skip"), "").unwrap();
    write(
        &manifests,
        "extra.yml",
        &config_map("extra", "default", "skipped"),
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(value(&k, "default", "extra").as_deref(), Some("again"));
    std::fs::remove_file(manifests.join("extra.yml.skip")).unwrap();
    wait_for(&server, "the file to be enabled again", || {
        value(&k, "default", "extra").as_deref() == Some("skipped")
    });

    // Removing a file deletes its objects (not the objects of other files).
    std::fs::remove_file(manifests.join("extra.yml")).unwrap();
    wait_for(&server, "the removed manifest's objects to go", || {
        value(&k, "default", "extra").is_none()
    });
    assert!(value(&k, "apps", "one").is_some());
    // Objects made by hand are never touched.
    k.ok(&["create", "configmap", "by-hand"]);

    // Removed while the server is down: deleted at the next start.
    server.stop();
    std::fs::remove_file(manifests.join("apps.yaml")).unwrap();
    let server = SkiffProcess::start_on(dir.path(), server.port).expect("restart");
    let k = Kubectl::new(&kubectl::find("1.32").unwrap(), &server.kubeconfig());
    wait_for(
        &server,
        "objects of a manifest removed while stopped to go",
        || value(&k, "apps", "one").is_none() && value(&k, "apps", "three").is_none(),
    );
    assert!(k.run(&["get", "configmap", "by-hand"]).ok);
}

#[test]
fn without_pruning_removed_manifests_leave_their_objects() {
    skiff_tests::install_crypto();
    let dir = skiff_tests::temp_dir("ops-deploy-keep");
    let manifests = dir.path().join("server/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    write(&manifests, "keep.yaml", &config_map("kept", "default", "k"));
    let server = SkiffProcess::start_with_args(dir.path(), &["--manifests-prune=false"]);
    let Some(k) = kubectl_for(&server) else {
        return;
    };
    wait_for(&server, "the manifest", || {
        value(&k, "default", "kept").is_some()
    });
    std::fs::remove_file(manifests.join("keep.yaml")).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(value(&k, "default", "kept").as_deref(), Some("k"));
}
