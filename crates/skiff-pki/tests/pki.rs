//! PKI behaviour as the server and its clients see it: files, reuse, renewal, identities, TLS.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use base64::Engine;
use skiff_pki::{client_config, server_config, ClusterCa, Identity, ServerPki, ServingNames};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn names(host: &str) -> ServingNames {
    ServingNames::new(host, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))])
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_start_creates_everything_with_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("server/tls");
    let pki = ServerPki::load_or_create(&tls, &names("edge-1")).unwrap();
    for name in ["ca", "serving", "admin"] {
        assert_eq!(mode(&tls.join(format!("{name}.key"))), 0o600, "{name}.key");
        assert!(tls.join(format!("{name}.crt")).exists(), "{name}.crt");
    }
    let serving = pki.serving.info().unwrap();
    for dns in [
        "localhost",
        "edge-1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
    ] {
        assert!(
            serving.dns_names.iter().any(|d| d == dns),
            "SAN {dns} missing: {serving:?}"
        );
    }
    for ip in ["127.0.0.1", "10.0.0.7"] {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(serving.ip_addresses.contains(&ip), "SAN {ip} missing");
    }
    let admin = pki.admin.info().unwrap();
    assert_eq!(admin.common_name, "system:admin");
    assert_eq!(admin.organizations, vec!["system:masters"]);
    assert!(pki.ca.pair().info().unwrap().is_ca);
    assert!(pki.ca.signed(&pki.serving.cert_pem));
    assert!(pki.ca.signed(&pki.admin.cert_pem));
}

#[test]
fn restart_reuses_certificates_and_reissues_serving_when_names_change() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServerPki::load_or_create(dir.path(), &names("edge-1")).unwrap();
    let again = ServerPki::load_or_create(dir.path(), &names("edge-1")).unwrap();
    assert_eq!(first.ca.cert_pem(), again.ca.cert_pem());
    assert_eq!(first.serving.cert_pem, again.serving.cert_pem);
    assert_eq!(first.admin.cert_pem, again.admin.cert_pem);

    let renamed = ServerPki::load_or_create(dir.path(), &names("edge-2")).unwrap();
    assert_eq!(first.ca.cert_pem(), renamed.ca.cert_pem(), "CA is kept");
    assert_eq!(
        first.admin.cert_pem, renamed.admin.cert_pem,
        "admin cert is kept"
    );
    assert_ne!(first.serving.cert_pem, renamed.serving.cert_pem);
    let info = renamed.serving.info().unwrap();
    assert!(info.dns_names.iter().any(|d| d == "edge-2"));
    assert!(!info.dns_names.iter().any(|d| d == "edge-1"));
}

#[test]
fn certificate_from_another_ca_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ServerPki::load_or_create(dir.path(), &names("edge-1")).unwrap();
    let other = ClusterCa::generate().unwrap();
    let foreign = other.issue_client(&Identity::admin()).unwrap();
    foreign.save(dir.path(), "admin").unwrap();
    let reloaded = ServerPki::load_or_create(dir.path(), &names("edge-1")).unwrap();
    assert_ne!(reloaded.admin.cert_pem, foreign.cert_pem);
    assert!(pki.ca.signed(&reloaded.admin.cert_pem));
    assert!(!pki.ca.signed(&foreign.cert_pem));
}

#[test]
fn corrupt_key_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    ServerPki::load_or_create(dir.path(), &names("edge-1")).unwrap();
    std::fs::write(dir.path().join("ca.crt"), "not a certificate").unwrap();
    let err = ServerPki::load_or_create(dir.path(), &names("edge-1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca.crt"), "{err}");
}

#[test]
fn identity_is_read_from_client_certificates() {
    let ca = ClusterCa::generate().unwrap();
    let node = Identity::new("system:node:edge-3", ["system:nodes"]);
    let pair = ca.issue_client(&node).unwrap();
    let read = Identity::from_cert_der(&pair.cert_der().unwrap()).unwrap();
    assert_eq!(read, node);
    let err = ca
        .issue_client(&Identity::new("", Vec::<String>::new()))
        .unwrap_err();
    assert!(err.to_string().contains("user name is empty"), "{err}");
}

#[test]
fn csr_signing_uses_the_identity_chosen_by_the_ca() {
    let ca = ClusterCa::generate().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:admin");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let node = Identity::new("system:node:edge-4", ["system:nodes"]);
    let cert_pem = ca.sign_csr(&csr, &node).unwrap();
    assert!(ca.signed(&cert_pem));
    let pair = skiff_pki::CertKeyPair {
        cert_pem,
        key_pem: key.serialize_pem(),
    };
    let info = pair.info().unwrap();
    assert_eq!(info.common_name, "system:node:edge-4");
    assert_eq!(info.organizations, vec!["system:nodes"]);
    assert!(info.dns_names.is_empty(), "requested SANs are dropped");

    let err = ca.sign_csr("garbage", &node).unwrap_err().to_string();
    assert!(err.contains("invalid certificate signing request"), "{err}");
}

#[test]
fn kubeconfig_embeds_ca_and_admin_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ServerPki::load_or_create(&dir.path().join("tls"), &names("edge-1")).unwrap();
    let path = dir.path().join("admin.kubeconfig");
    pki.write_admin_kubeconfig(&path, "https://127.0.0.1:6443")
        .unwrap();
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let field = |name: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        line.split_once(':').unwrap().1.trim().to_string()
    };
    let decode = |name: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(field(name))
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(field("server"), "\"https://127.0.0.1:6443\"");
    assert_eq!(decode("certificate-authority-data"), pki.ca.cert_pem());
    assert_eq!(decode("client-certificate-data"), pki.admin.cert_pem);
    assert_eq!(decode("client-key-data"), pki.admin.key_pem);
    assert_eq!(field("current-context"), "\"skiff\"");
}

/// Runs a TLS handshake and returns the identity the server saw (None = no client cert).
async fn handshake(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
) -> Result<Option<Identity>, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let identity = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Identity::from_cert_der(c).unwrap());
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok::<_, String>(identity)
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let client_result = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    }
    .await;
    let server_result = server_task.await.unwrap();
    client_result?;
    server_result
}

#[tokio::test]
async fn tls_configs_authenticate_clients_by_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ServerPki::load_or_create(dir.path(), &names("edge-1")).unwrap();
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let server = || server_config(pki.ca.cert_pem(), &pki.serving, alpn).unwrap();

    let admin = client_config(pki.ca.cert_pem(), Some(&pki.admin), alpn).unwrap();
    assert_eq!(
        handshake(server(), admin).await.unwrap(),
        Some(Identity::admin())
    );

    let anonymous = client_config(pki.ca.cert_pem(), None, alpn).unwrap();
    assert_eq!(handshake(server(), anonymous).await.unwrap(), None);

    let other = ClusterCa::generate().unwrap();
    let forged = other.issue_client(&Identity::admin()).unwrap();
    let forged = client_config(pki.ca.cert_pem(), Some(&forged), alpn).unwrap();
    assert!(
        handshake(server(), forged).await.is_err(),
        "a certificate from another CA must be refused"
    );

    let wrong_trust = client_config(other.cert_pem(), None, alpn).unwrap();
    assert!(
        handshake(server(), wrong_trust).await.is_err(),
        "a client trusting another CA must refuse the server"
    );
}

#[test]
fn node_certificates_stay_valid_when_the_clock_steps_back_hours() {
    let ca = ClusterCa::generate().unwrap();
    let csr = skiff_pki::NodeCsr::generate("edge-5").unwrap();
    let node = Identity::new("system:node:edge-5", ["system:nodes"]);
    let issued = ca
        .sign_node_csr(&csr.csr_pem, &node, skiff_pki::NODE_CERT_VALIDITY)
        .unwrap();
    let info = skiff_pki::CertKeyPair {
        cert_pem: issued.pem,
        key_pem: csr.key_pem,
    }
    .info()
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // NTP stepping a fast clock back by hours must not make it "not yet valid".
    assert!(
        info.not_before <= now - 23 * 3600,
        "notBefore {} is less than a day before now {now}",
        info.not_before
    );
    let validity = skiff_pki::NODE_CERT_VALIDITY.as_secs() as i64;
    assert!((info.not_after - now - validity).abs() <= 5, "{info:?}");
}
