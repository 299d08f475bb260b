//! Who a client certificate says its holder is: user = subject CN, groups = subject O values
//! (the Kubernetes convention for X.509 client authentication).

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

/// User name of the cluster administrator.
pub const ADMIN_USER: &str = "system:admin";
/// Group whose members may do everything (as upstream's `system:masters`).
pub const ADMIN_GROUP: &str = "system:masters";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user name (certificate common name).
    pub user: String,
    /// The groups (certificate organisations).
    pub groups: Vec<String>,
}

impl Identity {
    /// Makes an identity from a user name and groups.
    pub fn new(
        user: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Identity {
            user: user.into(),
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }

    /// The cluster administrator (`system:admin` in `system:masters`).
    pub fn admin() -> Self {
        Identity::new(ADMIN_USER, [ADMIN_GROUP])
    }

    /// Whether the identity is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Reads the identity from a DER client certificate. The certificate's chain must already
    /// have been verified (rustls does this during the handshake).
    pub fn from_cert_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
        let subject = cert.subject();
        let user = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        if user.is_empty() {
            return Err(PkiError::InvalidCertificate(
                "client certificate has no subject common name (the user name)".into(),
            ));
        }
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(str::to_string)
            .collect();
        Ok(Identity { user, groups })
    }

    pub(crate) fn validate(&self) -> Result<(), PkiError> {
        if self.user.trim().is_empty() {
            return Err(PkiError::InvalidIdentity("the user name is empty".into()));
        }
        if self.groups.len() > 1 {
            return Err(PkiError::InvalidIdentity(format!(
                "a certificate can carry one group, not {} ({:?})",
                self.groups.len(),
                self.groups
            )));
        }
        if let Some(g) = self.groups.iter().find(|g| g.trim().is_empty()) {
            return Err(PkiError::InvalidIdentity(format!(
                "empty group name in {:?} ({g:?})",
                self.groups
            )));
        }
        Ok(())
    }
}
