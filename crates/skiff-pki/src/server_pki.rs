//! The server's PKI on disk: CA, API serving certificate and admin client certificate, created
//! on first start and reused afterwards.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::SanType;

use crate::ca::san_dns;
use crate::files::{self, SECRET_MODE};
use crate::{kubeconfig_yaml, CertKeyPair, ClusterCa, Identity, KubeconfigParams, PkiError};

/// Leaf certificates expiring within this many seconds are re-issued on start (30 days).
const RENEW_BEFORE_SECONDS: i64 = 30 * 24 * 3600;

/// The names clients may use to reach the API, all put into the serving certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingNames {
    /// IP addresses.
    pub ips: BTreeSet<IpAddr>,
    /// DNS names.
    pub dns: BTreeSet<String>,
}

impl ServingNames {
    /// The standard set: loopback addresses, `localhost`, the host name, the in-cluster
    /// `kubernetes` service names, and the extra addresses (bind and advertise addresses).
    pub fn new(host_name: &str, extra_ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut ips: BTreeSet<IpAddr> = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .collect();
        ips.extend(extra_ips.into_iter().filter(|ip| !ip.is_unspecified()));
        let mut dns: BTreeSet<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        let host = host_name.trim().to_lowercase();
        if !host.is_empty() {
            dns.insert(host);
        }
        ServingNames { ips, dns }
    }

    pub(crate) fn san_types(&self) -> Result<Vec<SanType>, PkiError> {
        let mut sans: Vec<SanType> = self.ips.iter().copied().map(SanType::IpAddress).collect();
        for name in &self.dns {
            sans.push(san_dns(name)?);
        }
        Ok(sans)
    }

    fn matches(&self, cert: &CertKeyPair) -> bool {
        let Ok(info) = cert.info() else { return false };
        let ips: BTreeSet<IpAddr> = info.ip_addresses.into_iter().collect();
        let dns: BTreeSet<String> = info.dns_names.into_iter().collect();
        ips == self.ips && dns == self.dns
    }
}

/// The server's certificates, loaded or created by [`ServerPki::load_or_create`].
#[derive(Debug)]
pub struct ServerPki {
    /// The cluster CA.
    pub ca: ClusterCa,
    /// The API serving certificate.
    pub serving: CertKeyPair,
    /// The admin client certificate (`system:admin`, `system:masters`).
    pub admin: CertKeyPair,
    dir: PathBuf,
}

impl ServerPki {
    /// Loads the PKI from `dir` (usually `DIR/server/tls`), creating the CA and the
    /// certificates that are missing, and re-issuing leaf certificates that were not signed
    /// by the CA, whose names or identity changed, or that expire within 30 days.
    pub fn load_or_create(dir: &Path, names: &ServingNames) -> Result<Self, PkiError> {
        files::ensure_dir(dir)?;
        let ca = match CertKeyPair::load(dir, "ca")? {
            Some(pair) => ClusterCa::from_pair(pair)?,
            None => {
                let ca = ClusterCa::generate()?;
                ca.pair().save(dir, "ca")?;
                tracing::info!(dir = %dir.display(), "generated the cluster CA");
                ca
            }
        };
        let serving = match CertKeyPair::load(dir, "serving")? {
            Some(pair) if usable(&ca, &pair) && names.matches(&pair) => pair,
            existing => {
                let pair = ca.issue_serving(names)?;
                pair.save(dir, "serving")?;
                tracing::info!(
                    renewed = existing.is_some(),
                    ips = ?names.ips,
                    dns = ?names.dns,
                    "issued the API serving certificate"
                );
                pair
            }
        };
        let admin_identity = Identity::admin();
        let admin = match CertKeyPair::load(dir, "admin")? {
            Some(pair) if usable(&ca, &pair) && has_identity(&pair, &admin_identity) => pair,
            existing => {
                let pair = ca.issue_client(&admin_identity)?;
                pair.save(dir, "admin")?;
                tracing::info!(
                    renewed = existing.is_some(),
                    "issued the admin client certificate"
                );
                pair
            }
        };
        Ok(ServerPki {
            ca,
            serving,
            admin,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a kubeconfig for the admin identity to `path` (mode 0600), pointing at
    /// `server_url` (`https://127.0.0.1:6443`). The file is rewritten only if it changed.
    pub fn write_admin_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), PkiError> {
        let text = kubeconfig_yaml(&KubeconfigParams {
            cluster_name: "skiff",
            user_name: "admin",
            server_url,
            ca_pem: self.ca.cert_pem(),
            client: &self.admin,
        });
        if files::read_optional(path)?.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            files::ensure_dir(parent)?;
        }
        files::write_atomic(path, text.as_bytes(), SECRET_MODE)
    }
}

fn usable(ca: &ClusterCa, pair: &CertKeyPair) -> bool {
    let Ok(info) = pair.info() else { return false };
    let now = jiff::Timestamp::now().as_second();
    ca.signed(&pair.cert_pem) && info.not_after - now > RENEW_BEFORE_SECONDS
}

fn has_identity(pair: &CertKeyPair, identity: &Identity) -> bool {
    pair.info()
        .map(|info| info.common_name == identity.user && info.organizations == identity.groups)
        .unwrap_or(false)
}
