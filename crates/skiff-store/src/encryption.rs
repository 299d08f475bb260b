//! Encryption at rest of chosen resources (Secrets by default), in upstream's format.
//!
//! The keys come from an upstream `EncryptionConfiguration` (apiserver.config.k8s.io/v1) with
//! `aesgcm` and `identity` providers. The first provider of a resource decides how it is
//! written: `aesgcm` encrypts with its first key, `identity` stores plain JSON. Every `aesgcm`
//! key listed can decrypt, so a rotation lists the new key first and the old ones after until
//! everything is rewritten. A stored value is `k8s:enc:aesgcm:v1:<key name>:` followed by the
//! 12-byte nonce and the AES-256-GCM ciphertext with its tag, as upstream; the database key of
//! the object is the additional authenticated data, so a record cannot be moved to another
//! object. Values without the prefix are plain JSON (written before encryption was enabled).
//!
//! Encryption happens where bytes enter redb: the in-memory state and the watch cache hold
//! plaintext, the file (objects and history) never does.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// Prefix of every value encrypted by this provider.
pub const AESGCM_PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";

/// Why an encryption configuration or a stored value cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EncryptionError {
    /// The configuration is not valid.
    #[error("invalid encryption configuration: {0}")]
    Config(String),
    /// A stored value names a key the configuration lacks.
    #[error("{key}: encrypted with key {name:?}, which the encryption configuration does not hold (restore the configuration that had it)")]
    UnknownKey {
        /// The object.
        key: String,
        /// The key name in the value's prefix.
        name: String,
    },
    /// A stored value does not decrypt (wrong key bytes, tampering, corruption).
    #[error("{key}: cannot decrypt the stored value (key {name:?}): wrong key or damaged record")]
    Decrypt {
        /// The object.
        key: String,
        /// The key name in the value's prefix.
        name: String,
    },
}

/// Upstream `EncryptionConfiguration`, the subset skiff uses (`aesgcm` and `identity`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// `EncryptionConfiguration`.
    pub kind: String,
    /// `apiserver.config.k8s.io/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Which resources use which providers.
    pub resources: Vec<ResourceEncryption>,
}

/// One `resources` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceEncryption {
    /// Resources: `secrets`, `configmaps`, `deployments.apps`, ...
    pub resources: Vec<String>,
    /// Providers in order; the first writes, all read.
    pub providers: Vec<Provider>,
}

/// One provider (exactly one field set, as upstream).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Provider {
    /// AES-GCM with these keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<KeyList>,
    /// No encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `aesgcm.keys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyList {
    /// The keys; the first encrypts.
    pub keys: Vec<NamedKey>,
}

/// A key: its name (in every value it encrypts) and 32 bytes in base64.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedKey {
    /// Name recorded in encrypted values.
    pub name: String,
    /// 32 bytes (AES-256), standard base64.
    pub secret: String,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedKey")
            .field("name", &self.name)
            .finish()
    }
}

impl NamedKey {
    /// A new random key named `name`.
    pub fn generate(name: impl Into<String>) -> Result<NamedKey, EncryptionError> {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| EncryptionError::Config("no randomness for a new key".into()))?;
        Ok(NamedKey {
            name: name.into(),
            secret: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }
}

impl EncryptionConfig {
    /// A configuration encrypting `resources` with `keys` (the first encrypts), reading
    /// plaintext written before.
    pub fn aesgcm(resources: &[&str], keys: Vec<NamedKey>) -> EncryptionConfig {
        EncryptionConfig {
            kind: "EncryptionConfiguration".into(),
            api_version: "apiserver.config.k8s.io/v1".into(),
            resources: vec![ResourceEncryption {
                resources: resources.iter().map(|r| r.to_string()).collect(),
                providers: vec![
                    Provider {
                        aesgcm: Some(KeyList { keys }),
                        identity: None,
                    },
                    Provider {
                        aesgcm: None,
                        identity: Some(Default::default()),
                    },
                ],
            }],
        }
    }

    /// Every `aesgcm` key, in order (the first of the first provider encrypts).
    pub fn keys(&self) -> impl Iterator<Item = &NamedKey> {
        self.resources
            .iter()
            .flat_map(|r| r.providers.iter())
            .filter_map(|p| p.aesgcm.as_ref())
            .flat_map(|k| k.keys.iter())
    }

    /// The key that encrypts new writes, if the first provider is `aesgcm`.
    pub fn primary(&self) -> Option<&NamedKey> {
        self.resources
            .first()?
            .providers
            .first()?
            .aesgcm
            .as_ref()?
            .keys
            .first()
    }
}

/// The usable form of an [`EncryptionConfig`]: which resources to encrypt, with which key,
/// and every key that may decrypt.
pub struct Encryption {
    /// Resource → name of the key that encrypts it (absent: written as plain JSON).
    writers: HashMap<String, String>,
    keys: HashMap<String, LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("writers", &self.writers)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Encryption {
    /// Checks and loads a configuration.
    pub fn new(config: &EncryptionConfig) -> Result<Encryption, EncryptionError> {
        use base64::Engine;
        let bad = |m: String| EncryptionError::Config(m);
        if config.kind != "EncryptionConfiguration" {
            return Err(bad(format!(
                "kind is {:?}, not EncryptionConfiguration",
                config.kind
            )));
        }
        let mut keys = HashMap::new();
        let mut writers = HashMap::new();
        let mut seen = HashSet::new();
        for entry in &config.resources {
            let first = entry
                .providers
                .first()
                .ok_or_else(|| bad("a resources entry has no providers".into()))?;
            for p in &entry.providers {
                if p.aesgcm.is_some() == p.identity.is_some() {
                    return Err(bad(
                        "each provider must be exactly one of aesgcm or identity".into(),
                    ));
                }
                for k in p.aesgcm.iter().flat_map(|l| l.keys.iter()) {
                    if k.name.is_empty() || k.name.contains(':') {
                        return Err(bad(format!(
                            "key name {:?} must be non-empty without ':'",
                            k.name
                        )));
                    }
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(k.secret.trim())
                        .map_err(|e| bad(format!("key {:?} is not base64: {e}", k.name)))?;
                    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
                        bad(format!(
                            "key {:?} has {} bytes; AES-256-GCM needs 32",
                            k.name,
                            bytes.len()
                        ))
                    })?;
                    keys.insert(k.name.clone(), LessSafeKey::new(unbound));
                }
                if p.aesgcm.as_ref().is_some_and(|l| l.keys.is_empty()) {
                    return Err(bad("an aesgcm provider has no keys".into()));
                }
            }
            for r in &entry.resources {
                if !seen.insert(r.clone()) {
                    return Err(bad(format!("resource {r:?} is listed twice")));
                }
                if let Some(key) = first.aesgcm.as_ref().and_then(|l| l.keys.first()) {
                    writers.insert(r.clone(), key.name.clone());
                }
            }
        }
        Ok(Encryption {
            writers,
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Whether `resource` is written encrypted.
    pub fn encrypts(&self, resource: &str) -> bool {
        self.writers.contains_key(resource)
    }

    /// The bytes to store for `plain` of `resource` under database key `aad`.
    pub(crate) fn seal<'a>(&self, resource: &str, aad: &[u8], plain: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(name) = self.writers.get(resource) else {
            return Cow::Borrowed(plain);
        };
        let Some(key) = self.keys.get(name) else {
            return Cow::Borrowed(plain);
        };
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG does not fail on Linux; should it ever, a zero nonce would be unsafe,
        // so such a value is kept plain rather than sealed badly.
        if self.rng.fill(&mut nonce).is_err() {
            tracing::error!("no randomness for a nonce; storing {resource} unencrypted");
            return Cow::Borrowed(plain);
        }
        let mut body = plain.to_vec();
        if key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .is_err()
        {
            return Cow::Borrowed(plain);
        }
        let mut out = Vec::with_capacity(AESGCM_PREFIX.len() + name.len() + 1 + 12 + body.len());
        out.extend_from_slice(AESGCM_PREFIX);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Cow::Owned(out)
    }

    /// The name of the key `stored` was encrypted with, if it is encrypted.
    pub(crate) fn key_name(stored: &[u8]) -> Option<&str> {
        let rest = stored.strip_prefix(AESGCM_PREFIX)?;
        let end = rest.iter().position(|b| *b == b':')?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// Whether a stored value of `resource` must be rewritten to match this configuration
    /// (encrypted with another key than the writer, or plain while it should be encrypted,
    /// or encrypted while it should be plain).
    pub(crate) fn needs_rewrite(&self, resource: &str, stored: &[u8]) -> bool {
        Encryption::key_name(stored) != self.writers.get(resource).map(String::as_str)
    }
}

/// Decrypts with `encryption`, or fails for encrypted values when there is none.
pub(crate) fn open_with<'a>(
    encryption: Option<&Encryption>,
    what: &dyn Fn() -> String,
    aad: &[u8],
    stored: &'a [u8],
) -> Result<Cow<'a, [u8]>, EncryptionError> {
    let Some(name) = Encryption::key_name(stored) else {
        return Ok(Cow::Borrowed(stored));
    };
    let unknown = || EncryptionError::UnknownKey {
        key: what(),
        name: name.to_string(),
    };
    let key = encryption
        .and_then(|e| e.keys.get(name))
        .ok_or_else(unknown)?;
    let body = &stored[AESGCM_PREFIX.len() + name.len() + 1..];
    let fail = || EncryptionError::Decrypt {
        key: what(),
        name: name.to_string(),
    };
    let (nonce, sealed) = body.split_at_checked(NONCE_LEN).ok_or_else(fail)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| fail())?;
    let n = plain.len();
    buf.truncate(n);
    Ok(Cow::Owned(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: &[&str]) -> EncryptionConfig {
        EncryptionConfig::aesgcm(
            &["secrets"],
            keys.iter()
                .map(|n| NamedKey::generate(*n).unwrap())
                .collect(),
        )
    }

    #[test]
    fn seal_open_round_trip_and_prefix() {
        let e = Encryption::new(&config(&["k1"])).unwrap();
        let sealed = e.seal("secrets", b"aad", br#"{"data":"x"}"#);
        assert!(sealed.starts_with(b"k8s:enc:aesgcm:v1:k1:"));
        assert!(!sealed.windows(8).any(|w| w == b"\"data\":\""));
        let plain = open_with(Some(&e), &|| "s".into(), b"aad", &sealed).unwrap();
        assert_eq!(&*plain, br#"{"data":"x"}"#);
        // Another object's key as AAD does not open it.
        assert!(open_with(Some(&e), &|| "s".into(), b"other", &sealed).is_err());
        // Other resources stay plain.
        assert_eq!(&*e.seal("configmaps", b"aad", b"{}"), b"{}");
        assert!(!e.needs_rewrite("secrets", &sealed));
        assert!(e.needs_rewrite("secrets", b"{}"));
    }

    #[test]
    fn old_keys_decrypt_unknown_keys_fail() {
        let old = config(&["old"]);
        let e_old = Encryption::new(&old).unwrap();
        let sealed = e_old.seal("secrets", b"k", b"{}").into_owned();
        let mut both = config(&["new"]);
        let old_key = old.keys().next().unwrap().clone();
        both.resources[0].providers[0]
            .aesgcm
            .as_mut()
            .unwrap()
            .keys
            .push(old_key);
        let e_both = Encryption::new(&both).unwrap();
        assert_eq!(
            &*open_with(Some(&e_both), &|| "s".into(), b"k", &sealed).unwrap(),
            b"{}"
        );
        assert!(e_both.needs_rewrite("secrets", &sealed));
        let e_new = Encryption::new(&config(&["new"])).unwrap();
        let err = open_with(Some(&e_new), &|| "s".into(), b"k", &sealed).unwrap_err();
        assert!(err.to_string().contains("\"old\""), "{err}");
        assert!(open_with(None, &|| "s".into(), b"k", &sealed).is_err());
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = config(&["k"]);
        c.resources[0].providers[0].aesgcm.as_mut().unwrap().keys[0].secret = "AAAA".into();
        assert!(Encryption::new(&c).unwrap_err().to_string().contains("32"));
        let mut c = config(&["k"]);
        c.resources[0].providers[0].aesgcm.as_mut().unwrap().keys[0].name = "a:b".into();
        assert!(Encryption::new(&c).is_err());
    }
}
