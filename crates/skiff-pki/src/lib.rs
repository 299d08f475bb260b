//! Cluster CA, certificates, join tokens and rustls configurations.
//!
//! The server keeps its PKI under `DIR/server/tls/`: the cluster CA (`ca.crt`, `ca.key`), the
//! API serving certificate (`serving.crt`, `serving.key`) and the admin client certificate
//! (`admin.crt`, `admin.key`). Keys are written with mode 0600. [`ServerPki::load_or_create`]
//! creates what is missing, reuses what is valid and re-issues leaf certificates whose names
//! changed or that are close to expiry. All keys are ECDSA P-256.

mod ca;
mod cert;
mod error;
mod files;
mod identity;
mod kubeconfig;
mod server_pki;
mod tls;

pub use ca::{ClusterCa, LEAF_VALIDITY_DAYS};
pub use cert::{CertInfo, CertKeyPair};
pub use error::PkiError;
pub use identity::{Identity, ADMIN_GROUP, ADMIN_USER};
pub use kubeconfig::{kubeconfig_yaml, KubeconfigParams};
pub use server_pki::{ServerPki, ServingNames};
pub use tls::{client_config, server_config};
