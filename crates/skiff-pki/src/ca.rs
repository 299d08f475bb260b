//! The cluster certificate authority: generates and signs every certificate of the cluster.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use std::time::Duration;

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{CertKeyPair, Identity, PkiError, ServingNames};

/// Validity of the CA certificate, in days (10 years, as upstream's kubeadm).
pub(crate) const CA_VALIDITY_DAYS: i64 = 3650;
/// Validity of serving and client certificates, in days.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// Validity of node certificates: short, because they are renewed over the link (at two thirds
/// of their life) and a revoked node's last certificate should not outlive it for long.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Slack before a node certificate's issue time: a day, as the other certificates' "from
/// yesterday", so a clock that NTP steps back by hours (a machine booted with a fast RTC) or
/// skew between machines never makes a freshly issued certificate "not yet valid".
pub const NODE_CERT_BACKDATE: Duration = Duration::from_secs(24 * 3600);
/// Common name of the API serving certificate.
const SERVING_COMMON_NAME: &str = "kube-apiserver";

/// A node certificate as issued: what the server records to revoke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub pem: String,
    /// Its serial number, lower-case hex.
    pub serial: String,
    /// Unix time after which it is invalid.
    pub not_after: i64,
}

/// The cluster CA: its certificate and the key that signs with it.
pub struct ClusterCa {
    pair: CertKeyPair,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.pair.cert_pem)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Generates a new self-signed CA named `skiff-ca@<unix time>`.
    pub fn generate() -> Result<Self, PkiError> {
        let key = new_key("the CA key")?;
        let mut params = base_params(CA_VALIDITY_DAYS);
        let now = jiff::Timestamp::now().as_second();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("skiff-ca@{now}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "the CA certificate".into(),
                source,
            })?;
        let pair = CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(ClusterCa {
            pair,
            issuer: Issuer::new(params, key),
        })
    }

    /// Uses an existing CA certificate and key.
    pub fn from_pair(pair: CertKeyPair) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&pair.key_pem).map_err(|e| PkiError::InvalidPem {
            what: "CA private key".into(),
            detail: e.to_string(),
        })?;
        let info = pair.info()?;
        if !info.is_ca {
            return Err(PkiError::InvalidCertificate(format!(
                "certificate {:?} is not a CA certificate",
                info.common_name
            )));
        }
        let issuer =
            Issuer::from_ca_cert_pem(&pair.cert_pem, key).map_err(|source| PkiError::Generate {
                what: "an issuer from the CA certificate".into(),
                source,
            })?;
        Ok(ClusterCa { pair, issuer })
    }

    /// The CA certificate and key, PEM.
    pub fn pair(&self) -> &CertKeyPair {
        &self.pair
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.pair.cert_pem
    }

    /// Issues the API serving certificate for `names`.
    pub fn issue_serving(&self, names: &ServingNames) -> Result<CertKeyPair, PkiError> {
        let key = new_key("the serving key")?;
        let mut params = base_params(LEAF_VALIDITY_DAYS);
        params
            .distinguished_name
            .push(DnType::CommonName, SERVING_COMMON_NAME);
        params.subject_alt_names = names.san_types()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, key, "the serving certificate")
    }

    /// Issues a client certificate for `identity` (CN = user, O = groups).
    pub fn issue_client(&self, identity: &Identity) -> Result<CertKeyPair, PkiError> {
        identity.validate()?;
        let key = new_key("a client key")?;
        let mut params = base_params(LEAF_VALIDITY_DAYS);
        params.distinguished_name = identity_name(identity);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(
            params,
            key,
            &format!("a client certificate for {}", identity.user),
        )
    }

    /// Signs a certificate signing request as a client certificate for `identity`. Whatever
    /// subject, names and usages the request asks for are ignored: the CA decides the
    /// identity (the node link uses this when a node joins). Returns the certificate, PEM.
    pub fn sign_csr(&self, csr_pem: &str, identity: &Identity) -> Result<String, PkiError> {
        self.sign_csr_with(csr_pem, identity, base_params(LEAF_VALIDITY_DAYS))
    }

    /// Signs a node's certificate request as [`ClusterCa::sign_csr`] does, valid for
    /// `validity` from now (valid from [`NODE_CERT_BACKDATE`] before now, against clock steps); returns the
    /// certificate with the serial and expiry the server records to revoke it later.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        validity: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let mut params = base_params(0);
        params.not_before = epoch + now.saturating_sub(NODE_CERT_BACKDATE);
        params.not_after = epoch + now + validity;
        let pem = self.sign_csr_with(csr_pem, identity, params)?;
        let info = CertKeyPair {
            cert_pem: pem.clone(),
            key_pem: String::new(),
        }
        .info()?;
        Ok(IssuedCertificate {
            pem,
            serial: info.serial,
            not_after: info.not_after,
        })
    }

    fn sign_csr_with(
        &self,
        csr_pem: &str,
        identity: &Identity,
        mut params: CertificateParams,
    ) -> Result<String, PkiError> {
        identity.validate()?;
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::InvalidCsr)?;
        params.distinguished_name = identity_name(identity);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        csr.params = params;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|source| PkiError::Generate {
                what: format!("a certificate for {}", identity.user),
                source,
            })?;
        Ok(cert.pem())
    }

    /// Whether `cert_pem` was signed by this CA.
    pub fn signed(&self, cert_pem: &str) -> bool {
        let Ok(ca_der) = self.pair.cert_der() else {
            return false;
        };
        let leaf = CertKeyPair {
            cert_pem: cert_pem.to_string(),
            key_pem: String::new(),
        };
        let Ok(leaf_der) = leaf.cert_der() else {
            return false;
        };
        let (Ok((_, ca)), Ok((_, leaf))) = (
            X509Certificate::from_der(&ca_der),
            X509Certificate::from_der(&leaf_der),
        ) else {
            return false;
        };
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    fn sign(
        &self,
        params: CertificateParams,
        key: KeyPair,
        what: &str,
    ) -> Result<CertKeyPair, PkiError> {
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: what.to_string(),
                source,
            })?;
        Ok(CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn new_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate {
        what: what.to_string(),
        source,
    })
}

/// Parameters with a random serial and a validity from yesterday to `days` from today
/// (day granularity; a day of slack against clock skew between machines).
fn base_params(days: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let start = today.yesterday().unwrap_or(today);
    let end = today
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(jiff::civil::Date::MAX);
    params.not_before = rcgen::date_time_ymd(
        i32::from(start.year()),
        start.month() as u8,
        start.day() as u8,
    );
    params.not_after =
        rcgen::date_time_ymd(i32::from(end.year()), end.month() as u8, end.day() as u8);
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.use_authority_key_identifier_extension = true;
    params
}

fn identity_name(identity: &Identity) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for group in &identity.groups {
        name.push(DnType::OrganizationName, group.as_str());
    }
    name.push(DnType::CommonName, identity.user.as_str());
    name
}

pub(crate) fn san_dns(name: &str) -> Result<SanType, PkiError> {
    Ok(SanType::DnsName(name.to_string().try_into().map_err(
        |_| PkiError::InvalidDnsName {
            name: name.to_string(),
        },
    )?))
}
