//! rustls configurations: the API server's (client certificates requested, verified against
//! the cluster CA, but not required) and clients' (trusting only the cluster CA).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::{CertKeyPair, PkiError};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| PkiError::InvalidPem {
            what: "CA certificate".into(),
            detail: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(PkiError::InvalidPem {
            what: "CA certificate".into(),
            detail: "no certificate found".into(),
        });
    }
    Ok(Arc::new(roots))
}

/// Server configuration presenting `serving`, asking clients for a certificate signed by the
/// CA in `ca_pem` (clients without one still connect; the API answers them 401), offering
/// `alpn` protocols (e.g. `h2`, `http/1.1`).
pub fn server_config(
    ca_pem: &str,
    serving: &CertKeyPair,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, PkiError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![serving.cert_der()?], serving.key_der()?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Client configuration trusting only the CA in `ca_pem`, authenticating with `client` if
/// given, offering `alpn` protocols.
pub fn client_config(
    ca_pem: &str,
    client: Option<&CertKeyPair>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, PkiError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match client {
        Some(pair) => builder.with_client_auth_cert(vec![pair.cert_der()?], pair.key_der()?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
