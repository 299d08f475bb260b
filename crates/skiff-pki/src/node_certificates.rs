//! Which node certificates are still good: the server records every certificate it issues to a
//! node (serial, expiry, the join token the node joined with) and accepts a node certificate
//! only while its serial is recorded for that node. Deleting the Node or revoking the token
//! drops the records, so the certificates stop working at once, on the link (TLS handshake and
//! live sessions) and on the API (401), instead of staying valid until they expire.
//!
//! Certificates that are not node identities are not this module's business.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::{node_name_of, CertInfo, Identity};

/// One certificate issued to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertRecord {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Unix time after which it is invalid anyway (the record can then go).
    pub not_after: i64,
    /// Id of the join token the node joined with.
    pub token_id: String,
}

/// The certificates issued to each node and still good (cheap to clone; shared by the node
/// link, which records and revokes, and the TLS verifiers and API, which check).
#[derive(Debug, Clone, Default)]
pub struct NodeCertificates {
    nodes: Arc<RwLock<HashMap<String, Vec<NodeCertRecord>>>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl NodeCertificates {
    /// Records a certificate issued to `node`; drops the node's expired records. Returns the
    /// node's records (to persist).
    pub fn record(&self, node: &str, record: NodeCertRecord) -> Vec<NodeCertRecord> {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let records = nodes.entry(node.to_string()).or_default();
        let now = now();
        records.retain(|r| r.not_after > now && r.serial != record.serial);
        records.push(record);
        records.clone()
    }

    /// Replaces the records of `node` (loading them at start).
    pub fn set(&self, node: &str, records: Vec<NodeCertRecord>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.insert(node.to_string(), records);
    }

    /// Revokes every certificate of `node`; whether it had any.
    pub fn revoke_node(&self, node: &str) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes
            .remove(node)
            .is_some_and(|records| !records.is_empty())
    }

    /// The nodes that joined with token `token_id` (to revoke with the token).
    pub fn nodes_joined_with(&self, token_id: &str) -> Vec<String> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = nodes
            .iter()
            .filter(|(_, records)| records.iter().any(|r| r.token_id == token_id))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// The token the node's newest certificate traces back to.
    pub fn token_of(&self, node: &str) -> Option<String> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(node)
            .and_then(|records| records.last())
            .map(|r| r.token_id.clone())
    }

    /// Whether `node` holds an unexpired, unrevoked certificate.
    pub fn is_current(&self, node: &str) -> bool {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let now = now();
        nodes
            .get(node)
            .is_some_and(|records| records.iter().any(|r| r.not_after > now))
    }

    /// Whether certificate `serial` of `node` is recorded (not revoked).
    pub fn accepts(&self, node: &str, serial: &str) -> bool {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(node)
            .is_some_and(|records| records.iter().any(|r| r.serial == serial))
    }

    /// Checks a verified DER client certificate: `Ok` for non-node identities and recorded
    /// node certificates, else why not.
    pub fn check_der(&self, der: &[u8]) -> Result<(), String> {
        let Some((node, serial)) = node_certificate(der) else {
            return Ok(());
        };
        if self.accepts(&node, &serial) {
            Ok(())
        } else {
            Err(format!(
                "the certificate of node {node:?} (serial {serial}) was revoked"
            ))
        }
    }
}

/// The node name and serial of a DER certificate, if it is a node identity.
pub fn node_certificate(der: &[u8]) -> Option<(String, String)> {
    let info = CertInfo::from_der(der).ok()?;
    let identity = Identity::new(info.common_name, info.organizations);
    let node = node_name_of(&identity)?.to_string();
    Some((node, info.serial))
}

/// A client verifier that refuses revoked node certificates after `inner` verified the chain.
#[derive(Debug)]
pub(crate) struct RevocationVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub certificates: NodeCertificates,
}

impl ClientCertVerifier for RevocationVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match self.certificates.check_der(end_entity) {
            Ok(()) => Ok(verified),
            Err(reason) => {
                tracing::info!(%reason, "refusing a revoked node certificate");
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(serial: &str, token: &str, not_after: i64) -> NodeCertRecord {
        NodeCertRecord {
            serial: serial.into(),
            not_after,
            token_id: token.into(),
        }
    }

    #[test]
    fn records_are_checked_and_revoked_per_node_and_token() {
        let certs = NodeCertificates::default();
        let later = now() + 3600;
        certs.record("n1", record("aa", "tok001", later));
        certs.record("n1", record("bb", "tok001", later));
        // An expired record is dropped on the next record.
        certs.record("n2", record("cc", "tok002", now() - 1));
        let kept = certs.record("n2", record("dd", "tok002", later));
        assert_eq!(kept.len(), 1);
        assert!(certs.accepts("n1", "aa") && certs.accepts("n1", "bb"));
        assert!(!certs.accepts("n2", "aa"), "serials are per node");
        assert_eq!(certs.nodes_joined_with("tok001"), ["n1"]);
        assert_eq!(certs.token_of("n2").as_deref(), Some("tok002"));
        assert!(certs.revoke_node("n1"));
        assert!(!certs.accepts("n1", "aa"));
        assert!(!certs.is_current("n1"));
        assert!(certs.is_current("n2"));
    }
}
