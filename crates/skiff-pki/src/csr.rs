//! Node identities and their certificate requests: a node is `system:node:<name>` in group
//! `system:nodes` (the upstream convention the node authorizer relies on).

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::{Identity, PkiError};

/// User-name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Group of node identities.
pub const NODES_GROUP: &str = "system:nodes";

/// The identity of node `name`.
pub fn node_identity(name: &str) -> Identity {
    Identity::new(format!("{NODE_USER_PREFIX}{name}"), [NODES_GROUP])
}

/// The node name if `identity` is a node identity (`system:node:<name>` in `system:nodes`).
pub fn node_name_of(identity: &Identity) -> Option<&str> {
    if !identity.in_group(NODES_GROUP) {
        return None;
    }
    identity
        .user
        .strip_prefix(NODE_USER_PREFIX)
        .filter(|name| !name.is_empty())
}

/// A fresh key and a PKCS#10 request for node `name`'s client certificate.
#[derive(Clone)]
pub struct NodeCsr {
    /// The request (PEM).
    pub csr_pem: String,
    /// The new private key (PEM); stays on the node.
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCsr").finish_non_exhaustive()
    }
}

impl NodeCsr {
    /// Generates an ECDSA P-256 key and a request for `system:node:<name>`.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            PkiError::Generate {
                what: "a node key".into(),
                source,
            }
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, NODES_GROUP);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{NODE_USER_PREFIX}{name}"));
        let csr = params
            .serialize_request(&key)
            .map_err(|source| PkiError::Generate {
                what: format!("a certificate request for node {name}"),
                source,
            })?;
        let csr_pem = csr.pem().map_err(|source| PkiError::Generate {
            what: format!("a certificate request for node {name}"),
            source,
        })?;
        Ok(Self {
            csr_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// Whether `cert_pem` carries a valid signature by the CA certificate `ca_pem` (no key needed).
pub fn cert_signed_by(ca_pem: &str, cert_pem: &str) -> bool {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (Ok(ca_der), Ok(leaf_der)) = (
        CertificateDer::from_pem_slice(ca_pem.as_bytes()),
        CertificateDer::from_pem_slice(cert_pem.as_bytes()),
    ) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::{ca_hash, hash_node_password, verify_node_password, JoinToken};
    use crate::{CertKeyPair, ClusterCa};

    #[test]
    fn a_node_csr_signed_by_the_ca_carries_the_node_identity() {
        let ca = ClusterCa::generate().unwrap();
        let csr = NodeCsr::generate("edge-1").unwrap();
        // The CA decides the identity, whatever the request says.
        let cert_pem = ca.sign_csr(&csr.csr_pem, &node_identity("edge-1")).unwrap();
        assert!(ca.signed(&cert_pem));
        assert!(cert_signed_by(ca.cert_pem(), &cert_pem));
        let other = ClusterCa::generate().unwrap();
        assert!(!cert_signed_by(other.cert_pem(), &cert_pem));
        let pair = CertKeyPair {
            cert_pem,
            key_pem: csr.key_pem,
        };
        let identity = Identity::from_cert_der(&pair.cert_der().unwrap()).unwrap();
        assert_eq!(node_name_of(&identity), Some("edge-1"));
        assert_eq!(identity.groups, vec![NODES_GROUP.to_string()]);
    }

    #[test]
    fn only_node_identities_have_a_node_name() {
        assert_eq!(node_name_of(&Identity::admin()), None);
        assert_eq!(
            node_name_of(&Identity::new("system:node:x", ["other"])),
            None
        );
        assert_eq!(
            node_name_of(&Identity::new("system:node:", [NODES_GROUP])),
            None
        );
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = ClusterCa::generate().unwrap();
        let err = ca
            .sign_csr(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                &node_identity("x"),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("certificate signing request"),
            "{err}"
        );
    }

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let ca = ClusterCa::generate().unwrap();
        let hash = ca_hash(ca.cert_pem()).unwrap();
        let token = JoinToken::generate(&hash);
        let text = token.to_string();
        assert!(text.starts_with("K10") && text.contains("::"));
        assert_eq!(JoinToken::parse(&text).unwrap(), token);
        for bad in [
            "",
            "abcdef.0123456789abcdef",
            "K10zz::abcdef.x",
            &format!("K10{hash}abcdef.x"),
            &format!("K10{hash}::ABCDEF.x"),
            &format!("K10{hash}::abcdef."),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let derived = JoinToken::from_server_flag(&hash, "my cluster secret");
        assert!(derived.is_err(), "whitespace is refused");
        let a = JoinToken::from_server_flag(&hash, "s3cret-value").unwrap();
        let b = JoinToken::from_server_flag(&hash, "s3cret-value").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.secret, "s3cret-value");
        let full = JoinToken::from_server_flag(&hash, &text).unwrap();
        assert_eq!(full, token);
        let other = JoinToken::generate(&"0".repeat(64)).to_string();
        assert!(JoinToken::from_server_flag(&hash, &other).is_err());
    }

    #[test]
    fn node_passwords_verify() {
        let stored = hash_node_password("pw-1");
        assert!(verify_node_password("pw-1", &stored));
        assert!(!verify_node_password("pw-2", &stored));
        assert!(!verify_node_password("pw-1", "garbage"));
    }
}
