//! Data at rest, against the real binary: private data directory, one server per data
//! directory, Secrets encrypted on disk with key rotation, a corrupt database refused,
//! Events expiring after `--event-ttl`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_tests::inproc::kube_client;
use skiff_tests::process::{skiff_bin, SkiffProcess};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A server started: the API answers before the node link has written `node-token`; wait for
/// it so the files are complete before the test looks at them.
fn started(data: &Path) -> SkiffProcess {
    let server = SkiffProcess::start(data);
    let token = data.join("server/node-token");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !token.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} was not written",
            token.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

fn skiff(args: &[&str]) -> (bool, String) {
    let out = Command::new(skiff_bin())
        .args(args)
        .output()
        .expect("run skiff");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn data_directory_is_private_and_unsafe_modes_are_refused() {
    let dir = skiff_tests::temp_dir("at-rest-modes");
    let data = dir.path().join("data");
    let mut server = started(&data);
    let server_dir = data.join("server");
    for d in [
        &data,
        &server_dir,
        &server_dir.join("db"),
        &server_dir.join("tls"),
    ] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    for f in [
        server_dir.join("db/state.redb"),
        server_dir.join("node-token"),
        server_dir.join("tls/ca.key"),
        server_dir.join("admin.kubeconfig"),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    server.stop();

    // Readable by others: tightened with a log line.
    std::fs::set_permissions(&server_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut server = started(&data);
    assert_eq!(mode(&server_dir), 0o700);
    assert!(server.log().contains("tightened"), "{}", server.log());
    server.stop();

    // Writable by others: refused, naming the path and its mode, left as found.
    std::fs::set_permissions(&server_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = match SkiffProcess::start_on(&data, skiff_tests::free_port()) {
        Ok(_) => panic!("a world-writable data directory was accepted"),
        Err(e) => e,
    };
    assert!(err.contains(&server_dir.display().to_string()), "{err}");
    assert!(err.contains("0777"), "{err}");
    assert_eq!(mode(&server_dir), 0o777);
}

#[test]
fn a_second_server_on_a_live_data_directory_exits_and_touches_nothing() {
    let dir = skiff_tests::temp_dir("at-rest-lock");
    let data = dir.path().join("data");
    let mut first = started(&data);
    // The first server's own node joins after the API answers; wait until its files settle.
    let mut tls = snapshot(&data.join("server/tls"));
    for _ in 0..30 {
        std::thread::sleep(Duration::from_secs(2));
        let again = snapshot(&data.join("server/tls"));
        if again == tls {
            break;
        }
        tls = again;
    }
    let server = snapshot(&data.join("server"));
    // Another port, so only the data directory is shared.
    let err = match SkiffProcess::start_on(&data, skiff_tests::free_port()) {
        Ok(_) => panic!("a second server started on a live data directory"),
        Err(e) => e,
    };
    assert!(err.contains("in use by another skiff server"), "{err}");
    assert_eq!(
        snapshot(&data.join("server/tls")),
        tls,
        "certificates were rewritten"
    );
    assert_eq!(
        snapshot(&data.join("server")),
        server,
        "server files were rewritten"
    );
    // The first server still serves.
    runtime().block_on(async {
        let client = kube_client(&first.kubeconfig()).await;
        let secrets: Api<Secret> = Api::namespaced(client, "default");
        secrets
            .list(&Default::default())
            .await
            .expect("first server serves");
    });
    first.stop();
}

fn secret(name: &str, value: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"password": value},
    }))
    .unwrap()
}

async fn password(secrets: &Api<Secret>, name: &str) -> String {
    let s = secrets.get(name).await.expect("get secret");
    let data = s.data.expect("data");
    String::from_utf8(data["password"].0.clone()).unwrap()
}

#[test]
fn secrets_are_encrypted_at_rest_and_keys_rotate_without_downtime() {
    const VALUE: &str = "plaintext-password-that-must-not-hit-disk";
    let dir = skiff_tests::temp_dir("at-rest-encryption");
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let mut server = SkiffProcess::start_with_args(&data, &["--secrets-encryption"]);
    let rt = runtime();
    let db = data.join("server/db/state.redb");
    let config = data.join("server/cred/encryption-config.json");
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&data.join("server/cred")), 0o700);

    let (ok, status) = skiff(&["secrets-encrypt", "status", "--data-dir", data_arg]);
    assert!(ok, "{status}");
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
    assert!(status.contains("Current Rotation Stage: start"), "{status}");
    let first_key = status
        .lines()
        .find(|l| l.trim_start().starts_with('*'))
        .and_then(|l| l.split_whitespace().last())
        .expect("an active key")
        .to_string();

    rt.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let secrets: Api<Secret> = Api::namespaced(client, "default");
        secrets
            .create(&PostParams::default(), &secret("db", VALUE))
            .await
            .unwrap();
        // Stored as base64 in `data`; both forms are looked for.
        assert_eq!(password(&secrets, "db").await, VALUE);
    });
    let b64 = base64_like::encode(VALUE.as_bytes());
    // The join token's secret part, kept in a bootstrap-token Secret.
    let token = std::fs::read_to_string(data.join("server/node-token")).unwrap();
    let token_secret = token.trim().rsplit('.').next().unwrap().to_string();
    let bytes = std::fs::read(&db).unwrap();
    assert!(
        !contains(&bytes, VALUE.as_bytes()),
        "Secret value in plaintext on disk"
    );
    assert!(
        !contains(&bytes, b64.as_bytes()),
        "Secret value (base64) on disk"
    );
    assert!(
        !contains(&bytes, token_secret.as_bytes()),
        "join token on disk"
    );
    assert!(
        !contains(
            &bytes,
            base64_like::encode(token_secret.as_bytes()).as_bytes()
        ),
        "join token (base64) on disk"
    );
    assert!(
        contains(&bytes, b"k8s:enc:aesgcm:v1:"),
        "no encrypted record found"
    );

    // Rotation while the server runs: the server does it; reads go on.
    let (ok, out) = skiff(&["secrets-encrypt", "rotate-keys", "--data-dir", data_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("running server"), "{out}");
    let (_, status) = skiff(&["secrets-encrypt", "status", "--data-dir", data_arg]);
    assert!(
        status.contains("Current Rotation Stage: reencrypt_finished"),
        "{status}"
    );
    assert!(
        !status.contains(&first_key),
        "old key still listed: {status}"
    );
    rt.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let secrets: Api<Secret> = Api::namespaced(client, "default");
        assert_eq!(password(&secrets, "db").await, VALUE);
    });
    server.stop();

    // Restart with the rotated key file (the old key removed): everything reads.
    let mut server = SkiffProcess::start_with_args(&data, &["--secrets-encryption"]);
    rt.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let secrets: Api<Secret> = Api::namespaced(client, "default");
        assert_eq!(password(&secrets, "db").await, VALUE);
    });
    server.stop();

    // Rotation with no server running: the command does it itself.
    let (ok, out) = skiff(&["secrets-encrypt", "rotate-keys", "--data-dir", data_arg]);
    assert!(ok, "{out}");
    assert!(out.contains("no server was running"), "{out}");
    let mut server = SkiffProcess::start_with_args(&data, &["--secrets-encryption"]);
    rt.block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let secrets: Api<Secret> = Api::namespaced(client, "default");
        assert_eq!(password(&secrets, "db").await, VALUE);
    });
    server.stop();
    let bytes = std::fs::read(&db).unwrap();
    assert!(!contains(&bytes, VALUE.as_bytes()));
}

#[test]
fn a_corrupt_database_is_refused_with_the_recovery_path() {
    let dir = skiff_tests::temp_dir("at-rest-corrupt");
    let data = dir.path().join("data");
    let mut server = started(&data);
    server.stop();
    let db = data.join("server/db/state.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[..64] {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let err = match SkiffProcess::start_on(&data, skiff_tests::free_port()) {
        Ok(_) => panic!("a corrupt database was accepted"),
        Err(e) => e,
    };
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains("docs/operations.md"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the corrupt file was modified"
    );
}

#[test]
fn events_expire_after_the_event_ttl() {
    let dir = skiff_tests::temp_dir("at-rest-event-ttl");
    let data = dir.path().join("data");
    let mut server = SkiffProcess::start_with_args(&data, &["--event-ttl", "2s"]);
    runtime().block_on(async {
        let client = kube_client(&server.kubeconfig()).await;
        let events: Api<Event> = Api::namespaced(client, "default");
        let event: Event = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "short-lived"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Test", "message": "expires", "type": "Normal",
        }))
        .unwrap();
        events.create(&PostParams::default(), &event).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while events.get_opt("short-lived").await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "Event not expired");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    server.stop();
}

/// Standard base64 (the form Secrets' `data` is stored in), without a dependency.
mod base64_like {
    pub(crate) fn encode(input: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
