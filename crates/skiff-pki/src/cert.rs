//! A certificate with its private key, both PEM, and what can be read back from a certificate.

use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{self, PUBLIC_MODE, SECRET_MODE};
use crate::PkiError;

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Clone)]
pub struct CertKeyPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertKeyPair {
    /// The certificate as DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, PkiError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(|e| PkiError::InvalidPem {
            what: "certificate".into(),
            detail: e.to_string(),
        })
    }

    /// The private key as DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| PkiError::InvalidPem {
            what: "private key".into(),
            detail: e.to_string(),
        })
    }

    /// What the certificate says.
    pub fn info(&self) -> Result<CertInfo, PkiError> {
        CertInfo::from_der(&self.cert_der()?)
    }

    /// Loads `NAME.crt` and `NAME.key` from `dir`; `None` if either is missing.
    pub fn load(dir: &Path, name: &str) -> Result<Option<Self>, PkiError> {
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        let (Some(cert_pem), Some(key_pem)) = (
            files::read_optional(&cert_path)?,
            files::read_optional(&key_path)?,
        ) else {
            return Ok(None);
        };
        let pair = CertKeyPair { cert_pem, key_pem };
        pair.cert_der().map_err(|e| rename_what(e, &cert_path))?;
        pair.key_der().map_err(|e| rename_what(e, &key_path))?;
        Ok(Some(pair))
    }

    /// Writes `NAME.crt` (0644) and `NAME.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), PkiError> {
        files::write_atomic(
            &dir.join(format!("{name}.key")),
            self.key_pem.as_bytes(),
            SECRET_MODE,
        )?;
        files::write_atomic(
            &dir.join(format!("{name}.crt")),
            self.cert_pem.as_bytes(),
            PUBLIC_MODE,
        )
    }
}

fn rename_what(error: PkiError, path: &Path) -> PkiError {
    match error {
        PkiError::InvalidPem { what, detail } => PkiError::InvalidPem {
            what: format!("{} ({what})", path.display()),
            detail,
        },
        other => other,
    }
}

/// The parts of a certificate skiff cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name.
    pub common_name: String,
    /// Subject organisations.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Unix time (seconds) from which the certificate is valid.
    pub not_before: i64,
    /// Unix time (seconds) after which the certificate is no longer valid.
    pub not_after: i64,
    /// Serial number, lower-case hex (what revocation records name).
    pub serial: String,
    /// Whether the certificate is a CA.
    pub is_ca: bool,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(str::to_string)
            .collect();
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            ip_addresses.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            ip_addresses.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            common_name,
            organizations,
            dns_names,
            ip_addresses,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: hex::encode(cert.raw_serial()),
            is_ca: cert.is_ca(),
        })
    }
}
