//! Object keys and their encodings (in-memory map key, database key).

use std::fmt;

/// Identifies an object: resource (plural, qualified by group unless core, e.g. `pods`,
/// `deployments.apps`, `leases.coordination.k8s.io`), namespace (None for cluster-scoped
/// resources) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Resource plural, qualified by group unless core.
    pub resource: String,
    /// Namespace, None for cluster-scoped resources.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl Key {
    /// A key; `namespace` None for cluster-scoped resources.
    pub fn new(
        resource: impl Into<String>,
        namespace: Option<&str>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    /// A namespaced key.
    pub fn namespaced(
        resource: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// A cluster-scoped key.
    pub fn cluster(resource: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// The position of the object within its resource: `namespace/name`, or `name` for
    /// cluster-scoped objects. Ordering by it is upstream's list order (etcd key order).
    pub(crate) fn map_key(&self) -> Box<str> {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name).into_boxed_str(),
            None => self.name.clone().into_boxed_str(),
        }
    }

    /// The key in the database objects table: `resource \0 map_key`.
    #[cfg(test)]
    pub(crate) fn db_key(&self) -> Vec<u8> {
        db_key(&self.resource, &self.map_key())
    }

    /// Parses a database key back into a key.
    pub(crate) fn from_db_key(bytes: &[u8]) -> Option<Key> {
        let s = std::str::from_utf8(bytes).ok()?;
        let (resource, map_key) = s.split_once('\0')?;
        Some(match map_key.split_once('/') {
            Some((ns, name)) => Key::namespaced(resource, ns, name),
            None => Key::cluster(resource, map_key),
        })
    }

    /// Checks the parts are usable as a key (no separators inside them).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.resource.is_empty() || self.resource.contains(['\0', '/']) {
            return Err(format!(
                "resource {:?} is not a valid resource name",
                self.resource
            ));
        }
        if self.name.is_empty() {
            return Err("metadata.name: Required value: name is required".to_string());
        }
        if self.name.contains(['\0', '/']) {
            return Err(format!(
                "metadata.name: Invalid value: {:?}: may not contain '/'",
                self.name
            ));
        }
        if let Some(ns) = &self.namespace {
            if ns.is_empty() || ns.contains(['\0', '/']) {
                return Err(format!(
                    "metadata.namespace: Invalid value: {ns:?}: not a valid namespace"
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn db_key(resource: &str, map_key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(resource.len() + 1 + map_key.len());
    k.extend_from_slice(resource.as_bytes());
    k.push(0);
    k.extend_from_slice(map_key.as_bytes());
    k
}

/// Upstream's way of naming an object in messages: `pods "web-1"`.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.resource, self.name)
    }
}

/// The map-key range holding one namespace's objects: `ns/` up to (excluding) `ns0`.
pub(crate) fn namespace_range(ns: &str) -> (String, String) {
    (format!("{ns}/"), format!("{ns}0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_key_round_trip() {
        for k in [
            Key::namespaced("pods", "default", "web-1"),
            Key::cluster("nodes", "n1"),
            Key::namespaced("deployments.apps", "kube-system", "x"),
        ] {
            assert_eq!(Key::from_db_key(&k.db_key()), Some(k));
        }
    }

    #[test]
    fn display_like_upstream() {
        assert_eq!(Key::namespaced("pods", "d", "x").to_string(), "pods \"x\"");
    }

    #[test]
    fn rejects_separators() {
        assert!(Key::namespaced("pods", "d", "a/b").check().is_err());
        assert!(Key::namespaced("pods", "", "a").check().is_err());
        assert!(Key::cluster("", "a").check().is_err());
        assert!(Key::cluster("nodes", "").check().is_err());
        assert!(Key::cluster("nodes", "n").check().is_ok());
    }
}
