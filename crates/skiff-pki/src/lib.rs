//! Cluster CA, certificates, join tokens and rustls configurations.
//!
//! The server keeps its PKI under `DIR/server/tls/`: the cluster CA (`ca.crt`, `ca.key`), the
//! API serving certificate (`serving.crt`, `serving.key`) and the admin client certificate
//! (`admin.crt`, `admin.key`). Keys are written with mode 0600. [`ServerPki::load_or_create`]
//! creates what is missing, reuses what is valid and re-issues leaf certificates whose names
//! changed or that are close to expiry. All keys are ECDSA P-256.

mod ca;
mod cert;
mod csr;
mod error;
mod files;
mod identity;
mod join;
mod kubeconfig;
mod node_certificates;
mod server_pki;
mod tls;

pub use ca::{
    ClusterCa, IssuedCertificate, LEAF_VALIDITY_DAYS, NODE_CERT_BACKDATE, NODE_CERT_VALIDITY,
};
pub use cert::{CertInfo, CertKeyPair};
pub use csr::{
    cert_signed_by, node_identity, node_name_of, NodeCsr, NODES_GROUP, NODE_USER_PREFIX,
};
pub use error::PkiError;
pub use files::{secure_dir, secure_file, write_atomic, PrivateDirError, SECRET_MODE};
pub use identity::{Identity, ADMIN_GROUP, ADMIN_USER};
pub use join::{
    ca_hash, generate_node_password, hash_node_password, link_server_config,
    link_server_config_checked, pinned_client_config, verify_node_password, BootstrapToken,
    JoinToken, PinCheck, TokenError, NODE_PASSWORD_SECRET_SUFFIX, TOKEN_NAMESPACE,
    TOKEN_SECRET_PREFIX, TOKEN_SECRET_TYPE,
};
pub use kubeconfig::{kubeconfig_yaml, KubeconfigParams};
pub use node_certificates::{node_certificate, NodeCertRecord, NodeCertificates};
pub use server_pki::{ServerPki, ServingNames};
pub use tls::{client_config, server_config};
