//! Pulls from a real registry (Debian's `docker-registry`, i.e. distribution 2.8) on loopback,
//! with images pushed by `skopeo`: plain HTTP, mirrors, concurrent pulls, basic auth over TLS
//! with a private CA, and bearer-token auth with a token service.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{busybox, require_tool, tar, write_oci_archive, Entry, TestImage};
use skiff_image::{
    AuthConfig, HostConfig, ImageError, ImageStore, MirrorConfig, NoProgress, RegistryConfig,
    TlsConfig,
};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pass";

fn tools_present(test: &str) -> bool {
    ["docker-registry", "skopeo", "htpasswd", "openssl"]
        .iter()
        .all(|tool| require_tool(test, tool))
}

enum Auth {
    Anonymous,
    Htpasswd,
    /// Token service at this realm URL; tokens are signed by the key whose certificate is at
    /// the path.
    Token {
        realm: String,
        certificate: PathBuf,
    },
}

/// A `docker-registry` process on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    tls: bool,
}

impl Registry {
    fn start(auth: Auth, tls: Option<(&str, &str)>) -> Registry {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            if let Some((certificate, key)) = tls {
                fs::write(dir.path().join("server.crt"), certificate).unwrap();
                fs::write(dir.path().join("server.key"), key).unwrap();
                config += &format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("server.crt").display(),
                    dir.path().join("server.key").display()
                );
            }
            match &auth {
                Auth::Anonymous => {}
                Auth::Htpasswd => {
                    let output = Command::new("htpasswd")
                        .args(["-Bbn", USER, PASSWORD])
                        .output()
                        .unwrap();
                    assert!(output.status.success());
                    fs::write(dir.path().join("htpasswd"), output.stdout).unwrap();
                    config += &format!(
                        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                        dir.path().join("htpasswd").display()
                    );
                }
                Auth::Token { realm, certificate } => {
                    config += &format!(
                        "auth:\n  token:\n    realm: {realm}\n    service: skiff-test\n    issuer: skiff-test-issuer\n    rootcertbundle: {}\n",
                        certificate.display()
                    );
                }
            }
            fs::write(dir.path().join("config.yml"), config).unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: probably the port was taken; try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Make sure it is our registry that listens (not something that took the
                    // port in between): ours would have exited on a bind error.
                    std::thread::sleep(Duration::from_millis(100));
                    if child.try_wait().unwrap().is_none() {
                        return Registry {
                            child,
                            port,
                            dir,
                            tls: tls.is_some(),
                        };
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI archive as `REPO:TAG` with skopeo.
    fn push(&self, archive: &Path, repo_tag: &str, credentials: bool) {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--all", "--dest-tls-verify=false"]);
        if credentials {
            command.args(["--dest-creds", &format!("{USER}:{PASSWORD}")]);
        }
        let output = command
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo push failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// How many successful GETs of a blob the registry served.
    fn blob_gets(&self, digest: &str) -> usize {
        let log = fs::read_to_string(self.dir.path().join("registry.log")).unwrap();
        log.lines()
            .filter(|l| {
                l.contains("\"GET /v2/")
                    && l.contains(&format!("/blobs/{digest} HTTP"))
                    && l.contains("\" 200 ")
            })
            .count()
    }

    /// The plain-HTTP configuration for this registry (when it does not use TLS).
    fn insecure_config(&self) -> RegistryConfig {
        assert!(!self.tls);
        let mut config = RegistryConfig::default();
        config.configs.insert(
            self.host(),
            HostConfig {
                insecure: true,
                ..HostConfig::default()
            },
        );
        config
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The manifest and layer digests of a busybox archive built by the recipe.
fn archive_digests(archive: &Path) -> (String, String) {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(output.status.success());
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    (common::sha256(&output.stdout), layer)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn pulls_over_plain_http_by_tag_and_by_digest() {
    if !tools_present("pulls_over_plain_http_by_tag_and_by_digest") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (archive, _) = busybox(work.path(), "latest", false);
    let (manifest_digest, layer_digest) = archive_digests(&archive);
    let registry = Registry::start(Auth::Anonymous, None);
    registry.push(&archive, "test/busybox:latest", false);
    let config = registry.insecure_config();
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let rt = runtime();

    let name = format!("{}/test/busybox", registry.host());
    let image = rt
        .block_on(store.pull(&name, &config, &NoProgress))
        .unwrap();
    assert_eq!(image.reference.to_string(), format!("{name}:latest"));
    assert_eq!(
        image.repo_digest.as_deref(),
        Some(format!("{name}@{manifest_digest}").as_str())
    );
    assert_eq!(image.manifest_digest, manifest_digest);
    assert!(image.layers[0].join("bin/busybox").is_file());
    assert_eq!(registry.blob_gets(&layer_digest), 1);

    // The same image as an import: same id.
    let imported = ImageStore::open(&work.path().join("other"))
        .unwrap()
        .import_archive(&archive, &NoProgress)
        .unwrap();
    assert_eq!(imported[0].id, image.id);

    // By digest; nothing is downloaded again.
    let pinned = rt
        .block_on(store.pull(&format!("{name}@{manifest_digest}"), &config, &NoProgress))
        .unwrap();
    assert_eq!(pinned.id, image.id);
    assert_eq!(registry.blob_gets(&layer_digest), 1);
    assert!(store
        .resolve(&format!("{name}@{manifest_digest}"))
        .unwrap()
        .is_some());

    // A missing tag: a clear error, and the store is unchanged.
    let error = rt
        .block_on(store.pull(&format!("{name}:nope"), &config, &NoProgress))
        .unwrap_err();
    assert!(matches!(error, ImageError::Registry { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!("{name}:nope")),
        "{error}"
    );
    assert_eq!(store.list().unwrap().len(), 1);

    // Without the insecure setting the client speaks TLS to a plain-HTTP registry and fails.
    let error = rt
        .block_on(store.pull(&name, &RegistryConfig::default(), &NoProgress))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("https://{}", registry.host())),
        "{error}"
    );
}

#[test]
fn concurrent_pulls_share_one_download() {
    if !tools_present("concurrent_pulls_share_one_download") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (archive, _) = busybox(work.path(), "latest", false);
    let (_, layer_digest) = archive_digests(&archive);
    let registry = Registry::start(Auth::Anonymous, None);
    registry.push(&archive, "test/busybox:latest", false);
    let config = registry.insecure_config();
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let name = format!("{}/test/busybox:latest", registry.host());
    let (a, b) = runtime().block_on(async {
        tokio::join!(
            store.pull(&name, &config, &NoProgress),
            store.pull(&name, &config, &NoProgress)
        )
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.id, b.id);
    assert_eq!(a.layers, b.layers);
    assert_eq!(
        registry.blob_gets(&layer_digest),
        1,
        "the layer was downloaded more than once"
    );
    let config_digest = &a.id;
    assert_eq!(
        registry.blob_gets(config_digest),
        1,
        "the config was downloaded more than once"
    );
}

#[test]
fn tries_mirrors_in_order_and_picks_the_platform_from_an_index() {
    if !tools_present("tries_mirrors_in_order_and_picks_the_platform_from_an_index") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("multi.tar");
    write_oci_archive(
        &archive,
        &[
            TestImage {
                name: None,
                layers: vec![tar(&[Entry::File("arch", b"arm64\n", 0o644)])],
                architecture: "arm64",
                compress: true,
                diff_ids: None,
            },
            TestImage {
                name: None,
                layers: vec![tar(&[Entry::File("arch", b"amd64\n", 0o644)])],
                architecture: "amd64",
                compress: true,
                diff_ids: None,
            },
        ],
        Some("docker.io/library/multi:latest"),
    );
    let registry = Registry::start(Auth::Anonymous, None);
    registry.push(&archive, "library/multi:latest", false);

    // docker.io is mirrored: first a dead endpoint, then the local registry.
    let mut config = RegistryConfig::default();
    let dead = format!("http://127.0.0.1:{}", free_port());
    config.mirrors.insert(
        "docker.io".into(),
        MirrorConfig {
            endpoint: vec![dead, format!("http://{}", registry.host())],
        },
    );
    let mut options = skiff_image::StoreOptions::default();
    options.platform.architecture = "amd64".into();
    options.platform.variant = None;
    let store = ImageStore::open_with(&work.path().join("store"), options).unwrap();
    let image = runtime()
        .block_on(store.pull("multi", &config, &NoProgress))
        .unwrap();
    assert_eq!(
        image.reference.to_string(),
        "docker.io/library/multi:latest"
    );
    assert_eq!(
        fs::read_to_string(image.layers[0].join("arch")).unwrap(),
        "amd64\n"
    );
    let repo_digest = image.repo_digest.unwrap();
    assert!(repo_digest.starts_with("docker.io/library/multi@sha256:"));
    assert_ne!(
        repo_digest,
        format!("docker.io/library/multi@{}", image.manifest_digest),
        "the repo digest names the index"
    );
}

/// A CA and a server certificate for 127.0.0.1, as PEM: (ca, server certificate, server key).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skiff test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

#[test]
fn pulls_with_basic_auth_over_tls_with_a_private_ca() {
    if !tools_present("pulls_with_basic_auth_over_tls_with_a_private_ca") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (archive, _) = busybox(work.path(), "latest", false);
    let (ca, certificate, key) = certificates();
    let ca_file = work.path().join("ca.pem");
    fs::write(&ca_file, ca).unwrap();
    let registry = Registry::start(Auth::Htpasswd, Some((&certificate, &key)));
    registry.push(&archive, "private/busybox:1", true);
    let name = format!("{}/private/busybox:1", registry.host());
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let rt = runtime();
    let config_with = |password: &str, ca: Option<&Path>| {
        let mut config = RegistryConfig::default();
        config.configs.insert(
            registry.host(),
            HostConfig {
                auth: Some(AuthConfig {
                    username: Some(USER.into()),
                    password: Some(password.into()),
                    ..AuthConfig::default()
                }),
                tls: ca.map(|ca| TlsConfig {
                    ca_file: Some(ca.to_path_buf()),
                    insecure_skip_verify: false,
                }),
                insecure: false,
            },
        );
        config
    };

    // The system roots do not know the private CA.
    let error = rt
        .block_on(store.pull(&name, &config_with(PASSWORD, None), &NoProgress))
        .unwrap_err();
    let text = format!("{error:?}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    let error = rt
        .block_on(store.pull(&name, &config_with("wrong", Some(&ca_file)), &NoProgress))
        .unwrap_err();
    let text = format!("{error}");
    assert!(
        text.contains("UNAUTHORIZED")
            || text.contains("401")
            || text.to_lowercase().contains("auth"),
        "{text}"
    );
    assert!(store.list().unwrap().is_empty());

    let image = rt
        .block_on(store.pull(&name, &config_with(PASSWORD, Some(&ca_file)), &NoProgress))
        .unwrap();
    assert!(image.layers[0].join("bin/busybox").is_file());

    // A missing CA file is a configuration error naming the file.
    let error = rt
        .block_on(store.pull(
            &name,
            &config_with(PASSWORD, Some(&work.path().join("nope.pem"))),
            &NoProgress,
        ))
        .unwrap_err();
    assert!(
        matches!(error, ImageError::RegistryConfig { .. })
            && error.to_string().contains("nope.pem"),
        "{error}"
    );
}

/// A token service that hands out one pre-signed token to requests with the right basic
/// credentials. Returns its realm URL.
fn token_service(token: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if line.to_lowercase().trim() == format!("authorization: {expected}").to_lowercase()
                {
                    authorized = true;
                }
            }
            let (status, body) = if authorized {
                (
                    "200 OK",
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 3600})
                        .to_string(),
                )
            } else {
                ("401 Unauthorized", "{}".to_owned())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/token")
}

/// An RS256 JWT for the registry, signed with an openssl-made key; returns the token and the
/// signing certificate's path.
fn signed_token(dir: &Path) -> (String, PathBuf) {
    let key = dir.join("token.key");
    let certificate = dir.join("token.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=skiff token signer",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&certificate)
        .output()
        .unwrap()
        .stdout;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({
        "alg": "RS256", "typ": "JWT",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "skiff-test-issuer", "sub": USER, "aud": "skiff-test",
        "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "skiff-test-token",
        "access": [{"type": "repository", "name": "tokened/busybox", "actions": ["pull", "push"]}],
    });
    let signing_input = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let mut signature = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut signature)
        .unwrap();
    assert!(child.wait().unwrap().success());
    (
        format!("{signing_input}.{}", url.encode(signature)),
        certificate,
    )
}

#[test]
fn pulls_with_bearer_tokens_from_a_token_service() {
    if !tools_present("pulls_with_bearer_tokens_from_a_token_service") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (archive, _) = busybox(work.path(), "latest", false);
    let (token, certificate) = signed_token(work.path());
    let realm = token_service(token);
    let registry = Registry::start(Auth::Token { realm, certificate }, None);
    registry.push(&archive, "tokened/busybox:latest", true);
    let name = format!("{}/tokened/busybox", registry.host());
    let store = ImageStore::open(&work.path().join("store")).unwrap();
    let rt = runtime();

    let anonymous = registry.insecure_config();
    let error = rt
        .block_on(store.pull(&name, &anonymous, &NoProgress))
        .unwrap_err();
    assert!(matches!(error, ImageError::Registry { .. }), "{error}");

    let mut config = registry.insecure_config();
    config.configs.get_mut(&registry.host()).unwrap().auth = Some(AuthConfig {
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
        ..AuthConfig::default()
    });
    let image = rt
        .block_on(store.pull(&name, &config, &NoProgress))
        .unwrap();
    assert!(image.layers[0].join("bin/busybox").is_file());
}
