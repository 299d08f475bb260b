//! Joining nodes: join tokens (k3s format, stored as upstream bootstrap-token Secrets), pinning
//! the server by the hash of the cluster CA, and node passwords that protect a node's name.
//!
//! A token reads `K10<sha256 of the CA certificate's DER, hex>::<id>.<secret>`. The id names
//! the Secret `kube-system/bootstrap-token-<id>` holding the secret, its expiry and usages; the
//! CA hash lets an agent check the server on first contact with nothing but the token.

use std::sync::{Arc, Mutex};

use base64::Engine;
use rand::Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::node_certificates::RevocationVerifier;
use crate::{CertKeyPair, NodeCertificates, PkiError};

/// Prefix of a full join token (k3s' token format version 10).
pub(crate) const TOKEN_PREFIX: &str = "K10";
/// Namespace of bootstrap-token Secrets.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// Prefix of bootstrap-token Secret names.
pub const TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
/// Type of bootstrap-token Secrets.
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Suffix of the Secrets holding node password hashes (`<node>.node-password.skiff`).
pub const NODE_PASSWORD_SECRET_SUFFIX: &str = ".node-password.skiff";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a token string or a stored token is not usable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The string is not `K10<hash>::<id>.<secret>`.
    #[error("invalid join token: {0}")]
    Malformed(String),
    /// No bootstrap-token Secret has this id (never created, or revoked).
    #[error("join token {id} is unknown or was revoked")]
    Unknown {
        /// Token id.
        id: String,
    },
    /// The secret does not match.
    #[error("join token {id}: wrong secret")]
    WrongSecret {
        /// Token id.
        id: String,
    },
    /// The token expired.
    #[error("join token {id} expired at {expiration}")]
    Expired {
        /// Token id.
        id: String,
        /// When it expired (RFC 3339).
        expiration: String,
    },
    /// The stored Secret is not a usable bootstrap token.
    #[error("join token {id}: {reason}")]
    Unusable {
        /// Token id.
        id: String,
        /// What is wrong with the Secret.
        reason: String,
    },
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// sha256 of the cluster CA certificate (DER), lower-case hex.
    pub ca_hash: String,
    /// Token id (names the bootstrap-token Secret).
    pub id: String,
    /// Token secret.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}{}::{}.{}",
            self.ca_hash, self.id, self.secret
        )
    }
}

impl JoinToken {
    /// Parses `K10<hash>::<id>.<secret>`.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(TOKEN_PREFIX) else {
            return Err(TokenError::Malformed(
                "expected K10<CA hash>::<id>.<secret>, as in the server's node-token file \
                 (a token without the CA hash cannot authenticate the server)"
                    .into(),
            ));
        };
        let Some((hash, credentials)) = rest.split_once("::") else {
            return Err(TokenError::Malformed(
                "missing '::' between the CA hash and the credentials".into(),
            ));
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed(format!(
                "the CA hash must be 64 hex digits, got {:?}",
                hash
            )));
        }
        let (id, secret) = split_credentials(credentials)?;
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            id,
            secret,
        })
    }

    /// A new random token for the CA with hash `ca_hash`.
    pub fn generate(ca_hash: &str) -> Self {
        Self {
            ca_hash: ca_hash.to_string(),
            id: random_string(ID_LEN),
            secret: random_string(SECRET_LEN),
        }
    }

    /// The token the server derives from `--token`: a full token (its CA hash must be ours),
    /// `<id>.<secret>`, or any other string used as the secret of a token whose id is derived
    /// from it (so the same `--token` always yields the same full token).
    pub fn from_server_flag(ca_hash: &str, flag: &str) -> Result<Self, TokenError> {
        let flag = flag.trim();
        if flag.is_empty() {
            return Err(TokenError::Malformed("the token is empty".into()));
        }
        if flag.starts_with(TOKEN_PREFIX) && flag.contains("::") {
            let token = Self::parse(flag)?;
            if token.ca_hash != ca_hash {
                return Err(TokenError::Malformed(format!(
                    "the token's CA hash {} is not this server's CA ({ca_hash})",
                    token.ca_hash
                )));
            }
            return Ok(token);
        }
        if let Ok((id, secret)) = split_credentials(flag) {
            return Ok(Self {
                ca_hash: ca_hash.to_string(),
                id,
                secret,
            });
        }
        if flag.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::Malformed(
                "the token must not contain whitespace".into(),
            ));
        }
        let digest = hex::encode(Sha256::digest(flag.as_bytes()));
        Ok(Self {
            ca_hash: ca_hash.to_string(),
            id: digest[..ID_LEN].to_string(),
            secret: flag.to_string(),
        })
    }

    /// Name of the Secret holding this token.
    pub fn secret_name(&self) -> String {
        format!("{TOKEN_SECRET_PREFIX}{}", self.id)
    }
}

fn split_credentials(credentials: &str) -> Result<(String, String), TokenError> {
    let Some((id, secret)) = credentials.split_once('.') else {
        return Err(TokenError::Malformed(
            "expected <id>.<secret> after '::'".into(),
        ));
    };
    if id.len() != ID_LEN || !id.bytes().all(|b| TOKEN_ALPHABET.contains(&b)) {
        return Err(TokenError::Malformed(format!(
            "the token id must be {ID_LEN} characters [a-z0-9], got {id:?}"
        )));
    }
    if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::Malformed(
            "the token secret must be non-empty and without whitespace".into(),
        ));
    }
    Ok((id.to_string(), secret.to_string()))
}

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())] as char)
        .collect()
}

/// sha256 of the first certificate in `ca_pem` (its DER), lower-case hex: the token's pin.
pub fn ca_hash(ca_pem: &str) -> Result<String, PkiError> {
    let der = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::InvalidPem {
            what: "CA certificate".into(),
            detail: "no certificate found".into(),
        })?
        .map_err(|e| PkiError::InvalidPem {
            what: "CA certificate".into(),
            detail: e.to_string(),
        })?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// A bootstrap token as stored in its Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// Token id.
    pub id: String,
    /// Token secret.
    pub secret: String,
    /// Expiry (RFC 3339), if any.
    pub expiration: Option<jiff::Timestamp>,
    /// Free text.
    pub description: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("expiration", &self.expiration)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl BootstrapToken {
    /// The Secret object (JSON) that stores this token, as upstream's bootstrap tokens.
    pub fn to_secret(&self) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let mut data = serde_json::Map::new();
        data.insert("token-id".into(), json!(b64(&self.id)));
        data.insert("token-secret".into(), json!(b64(&self.secret)));
        data.insert("usage-bootstrap-authentication".into(), json!(b64("true")));
        if !self.description.is_empty() {
            data.insert("description".into(), json!(b64(&self.description)));
        }
        if let Some(expiration) = self.expiration {
            data.insert("expiration".into(), json!(b64(&expiration.to_string())));
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("{TOKEN_SECRET_PREFIX}{}", self.id),
                "namespace": TOKEN_NAMESPACE,
            },
            "type": TOKEN_SECRET_TYPE,
            "data": data,
        })
    }

    /// Reads a token from its Secret (JSON), checking type and usages.
    pub fn from_secret(secret: &Value) -> Result<Self, TokenError> {
        let name = secret
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let id_from_name = name.strip_prefix(TOKEN_SECRET_PREFIX).unwrap_or(name);
        let unusable = |reason: String| TokenError::Unusable {
            id: id_from_name.to_string(),
            reason,
        };
        if secret.get("type").and_then(Value::as_str) != Some(TOKEN_SECRET_TYPE) {
            return Err(unusable(format!(
                "Secret {name} is not of type {TOKEN_SECRET_TYPE}"
            )));
        }
        let field = |key: &str| -> Result<Option<String>, TokenError> {
            if let Some(text) = secret
                .pointer(&format!("/stringData/{key}"))
                .and_then(Value::as_str)
            {
                return Ok(Some(text.to_string()));
            }
            let Some(encoded) = secret
                .pointer(&format!("/data/{key}"))
                .and_then(Value::as_str)
            else {
                return Ok(None);
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| unusable(format!("data.{key} is not base64: {e}")))?;
            String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| unusable(format!("data.{key} is not UTF-8")))
        };
        let id = field("token-id")?.ok_or_else(|| unusable("data.token-id is missing".into()))?;
        if id != id_from_name {
            return Err(unusable(format!(
                "data.token-id {id:?} does not match the Secret name {name}"
            )));
        }
        let secret_value = field("token-secret")?
            .ok_or_else(|| unusable("data.token-secret is missing".into()))?;
        if field("usage-bootstrap-authentication")?.as_deref() != Some("true") {
            return Err(unusable(
                "the token is not allowed for authentication (usage-bootstrap-authentication is not \"true\")".into(),
            ));
        }
        let expiration = match field("expiration")? {
            None => None,
            Some(text) => Some(text.parse::<jiff::Timestamp>().map_err(|e| {
                unusable(format!(
                    "data.expiration {text:?} is not an RFC 3339 time: {e}"
                ))
            })?),
        };
        Ok(Self {
            id,
            secret: secret_value,
            expiration,
            description: field("description")?.unwrap_or_default(),
        })
    }

    /// Checks a presented secret at time `now`.
    pub fn check(&self, presented_secret: &str, now: jiff::Timestamp) -> Result<(), TokenError> {
        if !constant_time_eq(self.secret.as_bytes(), presented_secret.as_bytes()) {
            return Err(TokenError::WrongSecret {
                id: self.id.clone(),
            });
        }
        if let Some(expiration) = self.expiration {
            if now >= expiration {
                return Err(TokenError::Expired {
                    id: self.id.clone(),
                    expiration: expiration.to_string(),
                });
            }
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random node password (kept by the agent in its data dir).
pub fn generate_node_password() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Salted hash of a node password, as stored by the server (`sha256:<salt>:<hash>`).
pub fn hash_node_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let salt = hex::encode(salt);
    let hash = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .finalize();
    format!("sha256:{salt}:{}", hex::encode(hash))
}

/// Whether `password` matches a hash made by [`hash_node_password`].
pub fn verify_node_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.splitn(3, ':');
    let (Some("sha256"), Some(salt), Some(expected)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hash = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .finalize();
    constant_time_eq(hex::encode(hash).as_bytes(), expected.as_bytes())
}

/// Server configuration for the node link: presents `serving` followed by the CA certificate
/// (so joining agents can check the CA against their pin), requests but does not require a
/// client certificate signed by the CA, TLS 1.3 only (QUIC).
pub fn link_server_config(
    ca_pem: &str,
    serving: &CertKeyPair,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, PkiError> {
    link_server_config_checked(ca_pem, serving, alpn, None)
}

/// [`link_server_config`] that also refuses node certificates `certificates` does not accept
/// (revoked: the Node was deleted or its join token revoked).
pub fn link_server_config_checked(
    ca_pem: &str,
    serving: &CertKeyPair,
    alpn: &[&[u8]],
    certificates: Option<NodeCertificates>,
) -> Result<rustls::ServerConfig, PkiError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    let ca_der = first_cert(ca_pem, "CA certificate")?;
    roots.add(ca_der.clone())?;
    let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    if let Some(certificates) = certificates {
        verifier = Arc::new(RevocationVerifier {
            inner: verifier,
            certificates,
        });
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![serving.cert_der()?, ca_der], serving.key_der()?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Client configuration for a joining agent: trusts a server whose chain contains a CA
/// certificate with hash `ca_hash` and whose certificate that CA signed for the server name.
/// The returned [`PinCheck`] tells why a handshake was refused.
pub fn pinned_client_config(
    ca_hash: &str,
    alpn: &[&[u8]],
) -> Result<(rustls::ClientConfig, PinCheck), PkiError> {
    let check = PinCheck::default();
    let verifier = PinnedCaVerifier {
        pin: ca_hash.to_ascii_lowercase(),
        provider: provider(),
        check: check.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((config, check))
}

/// Records the last reason a pinned verification failed, for a clear message to the user.
#[derive(Debug, Clone, Default)]
pub struct PinCheck(Arc<Mutex<Option<String>>>);

impl PinCheck {
    /// Why the last verification failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn fail(&self, reason: String) -> rustls::Error {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some(reason.clone());
        }
        rustls::Error::General(reason)
    }
}

#[derive(Debug)]
struct PinnedCaVerifier {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    check: PinCheck,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented: Vec<String> = intermediates
            .iter()
            .map(|c| hex::encode(Sha256::digest(c.as_ref())))
            .collect();
        let Some(index) = presented.iter().position(|h| *h == self.pin) else {
            return Err(self.check.fail(format!(
                "the server's CA does not match the token: the token pins CA sha256 {}, the server presented {}",
                self.pin,
                if presented.is_empty() { "no CA certificate".to_string() } else { presented.join(", ") }
            )));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(intermediates[index].clone().into_owned())
            .map_err(|e| {
                self.check
                    .fail(format!("the pinned CA certificate is unusable: {e}"))
            })?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| self.check.fail(format!("cannot build the verifier: {e}")))?;
        verifier
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
            .map_err(|e| {
                self.check.fail(format!(
                    "the server certificate is not valid for {server_name:?} under the pinned CA: {e}"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn first_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::InvalidPem {
            what: what.into(),
            detail: "no certificate found".into(),
        })?
        .map_err(|e| PkiError::InvalidPem {
            what: what.into(),
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterCa, ServingNames};

    fn server_for(ca: &ClusterCa) -> rustls::ServerConfig {
        let serving = ca
            .issue_serving(&ServingNames::new("skiff-test", []))
            .unwrap();
        link_server_config(ca.cert_pem(), &serving, &[b"skiff-link/1"]).unwrap()
    }

    /// Runs a TLS handshake in memory; returns the client's error, if any.
    fn handshake(client: rustls::ClientConfig, server: rustls::ServerConfig) -> Result<(), String> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                let _ = s.read_tls(&mut &buf[..]);
                let _ = s.process_new_packets();
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                c.read_tls(&mut &buf[..]).unwrap();
                c.process_new_packets().map_err(|e| e.to_string())?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn the_pinned_ca_is_accepted() {
        let ca = ClusterCa::generate().unwrap();
        let (client, check) =
            pinned_client_config(&ca_hash(ca.cert_pem()).unwrap(), &[b"skiff-link/1"]).unwrap();
        handshake(client, server_for(&ca)).unwrap();
        assert_eq!(check.failure(), None);
    }

    #[test]
    fn another_ca_is_refused_with_a_clear_reason() {
        let ca = ClusterCa::generate().unwrap();
        let impostor = ClusterCa::generate().unwrap();
        let pin = ca_hash(ca.cert_pem()).unwrap();
        let (client, check) = pinned_client_config(&pin, &[b"skiff-link/1"]).unwrap();
        let err = handshake(client, server_for(&impostor)).unwrap_err();
        let reason = check.failure().unwrap();
        assert!(reason.contains("does not match the token"), "{reason}");
        assert!(reason.contains(&pin), "{reason}");
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn a_leaf_not_signed_by_the_pinned_ca_is_refused() {
        // The impostor presents the real CA certificate (public) next to its own leaf.
        let ca = ClusterCa::generate().unwrap();
        let impostor = ClusterCa::generate().unwrap();
        let leaf = impostor
            .issue_serving(&ServingNames::new("skiff-test", []))
            .unwrap();
        let forged = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    leaf.cert_der().unwrap(),
                    first_cert(ca.cert_pem(), "ca").unwrap(),
                ],
                leaf.key_der().unwrap(),
            )
            .unwrap();
        let (client, check) = pinned_client_config(&ca_hash(ca.cert_pem()).unwrap(), &[]).unwrap();
        assert!(handshake(client, forged).is_err());
        let reason = check.failure().unwrap();
        assert!(reason.contains("under the pinned CA"), "{reason}");
    }

    #[test]
    fn bootstrap_secrets_round_trip_and_check() {
        let token = BootstrapToken {
            id: "abcdef".into(),
            secret: "0123456789abcdef".into(),
            expiration: Some("2030-01-01T00:00:00Z".parse().unwrap()),
            description: "for the lab".into(),
        };
        let secret = token.to_secret();
        assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(secret["type"], TOKEN_SECRET_TYPE);
        let back = BootstrapToken::from_secret(&secret).unwrap();
        assert_eq!(back, token);
        let before: jiff::Timestamp = "2029-12-31T23:59:59Z".parse().unwrap();
        let after: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        back.check("0123456789abcdef", before).unwrap();
        assert_eq!(
            back.check("0123456789abcdeX", before),
            Err(TokenError::WrongSecret {
                id: "abcdef".into()
            })
        );
        let expired = back.check("0123456789abcdef", after).unwrap_err();
        assert!(
            expired.to_string().contains("expired at 2030-01-01"),
            "{expired}"
        );
    }

    #[test]
    fn unusable_secrets_are_named() {
        let mut secret = BootstrapToken {
            id: "abcdef".into(),
            secret: "s".into(),
            expiration: None,
            description: String::new(),
        }
        .to_secret();
        secret["data"]["usage-bootstrap-authentication"] = json!("ZmFsc2U=");
        let err = BootstrapToken::from_secret(&secret).unwrap_err();
        assert!(
            err.to_string().contains("usage-bootstrap-authentication"),
            "{err}"
        );
        secret["type"] = json!("Opaque");
        let err = BootstrapToken::from_secret(&secret).unwrap_err();
        assert!(err.to_string().contains("not of type"), "{err}");
    }
}
