//! Join tokens stored as upstream bootstrap-token Secrets (`kube-system/bootstrap-token-<id>`):
//! the server's default token (`DIR/server/node-token`) and `skiff token create/list/revoke`,
//! which are plain API calls with the admin kubeconfig.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use skiff_pki::{
    BootstrapToken, JoinToken, TOKEN_NAMESPACE, TOKEN_SECRET_PREFIX, TOKEN_SECRET_TYPE,
};

use super::error::{status_code, NodeLinkError};

/// Description of the default token's Secret.
pub const DEFAULT_TOKEN_DESCRIPTION: &str = "default node token (DIR/server/node-token)";

/// Writes a private file (mode 0600) atomically.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), NodeLinkError> {
    let io = |action: &'static str| {
        move |source| NodeLinkError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create"))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("set permissions of"))?;
    file.write_all(contents).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    std::fs::rename(&tmp, path).map_err(io("rename"))
}

fn secrets(client: &kube::Client) -> Api<Secret> {
    Api::namespaced(client.clone(), TOKEN_NAMESPACE)
}

fn to_secret(token: &BootstrapToken) -> Result<Secret, NodeLinkError> {
    serde_json::from_value(token.to_secret())
        .map_err(|e| NodeLinkError::Invalid(format!("cannot build the token Secret: {e}")))
}

/// Makes sure the default token exists: `--token` if given, else the one in `path`, else a new
/// one; writes it to `path` (0600) and creates or updates its Secret (no expiry).
pub(crate) async fn ensure_default(
    admin: &kube::Client,
    ca_hash: &str,
    path: &Path,
    flag: Option<&str>,
) -> Result<JoinToken, NodeLinkError> {
    let token = match flag {
        Some(flag) => JoinToken::from_server_flag(ca_hash, flag)?,
        None => match std::fs::read_to_string(path) {
            Ok(text) => match JoinToken::parse(&text) {
                Ok(token) if token.ca_hash == ca_hash => token,
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "the node token was made for another CA; issuing a new one");
                    JoinToken::generate(ca_hash)
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "unreadable node token; issuing a new one");
                    JoinToken::generate(ca_hash)
                }
            },
            Err(_) => JoinToken::generate(ca_hash),
        },
    };
    let text = format!("{token}\n");
    if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        write_private(path, text.as_bytes())?;
    }
    let wanted = BootstrapToken {
        id: token.id.clone(),
        secret: token.secret.clone(),
        expiration: None,
        description: DEFAULT_TOKEN_DESCRIPTION.to_string(),
    };
    let api = secrets(admin);
    let name = token.secret_name();
    let existing = api
        .get_opt(&name)
        .await
        .map_err(NodeLinkError::api(format!(
            "cannot read Secret {TOKEN_NAMESPACE}/{name}"
        )))?;
    match existing {
        None => {
            api.create(&PostParams::default(), &to_secret(&wanted)?)
                .await
                .map_err(NodeLinkError::api(format!(
                    "cannot create Secret {TOKEN_NAMESPACE}/{name}"
                )))?;
        }
        Some(secret) => {
            let value = serde_json::to_value(&secret).unwrap_or_default();
            if BootstrapToken::from_secret(&value).ok().as_ref() != Some(&wanted) {
                let mut replacement = to_secret(&wanted)?;
                replacement.metadata.resource_version = secret.metadata.resource_version.clone();
                api.replace(&name, &PostParams::default(), &replacement)
                    .await
                    .map_err(NodeLinkError::api(format!(
                        "cannot update Secret {TOKEN_NAMESPACE}/{name}"
                    )))?;
            }
        }
    }
    Ok(token)
}

/// Parses a `--ttl`: `0` (never expires), or a duration such as `30m`, `24h`, `1h30m`, `7d`.
pub fn parse_ttl(text: &str) -> Result<Option<Duration>, NodeLinkError> {
    let text = text.trim();
    if text == "0" || text == "0s" {
        return Ok(None);
    }
    let invalid = |why: &str| {
        NodeLinkError::Invalid(format!(
            "invalid --ttl {text:?}: {why} (examples: 30m, 24h, 1h30m, 7d; 0 = never expires)"
        ))
    };
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid(&format!("unknown unit '{c}'"))),
        };
        let value: u64 = number
            .parse()
            .map_err(|_| invalid("a number must precede each unit"))?;
        number.clear();
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| invalid("too long"))?;
    }
    if !number.is_empty() {
        return Err(invalid("the last number has no unit"));
    }
    if total == 0 {
        return Err(invalid("empty duration"));
    }
    Ok(Some(Duration::from_secs(total)))
}

/// A token as listed by `skiff token list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Expiry, if any.
    pub expiration: Option<jiff::Timestamp>,
    /// Free text.
    pub description: String,
    /// Whether the token has expired.
    pub expired: bool,
}

/// Token administration over the API (the admin kubeconfig).
#[derive(Clone)]
pub struct TokenAdmin {
    client: kube::Client,
    ca_hash: String,
}

impl std::fmt::Debug for TokenAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAdmin")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl TokenAdmin {
    /// Token administration with `client`; `ca_pem` is the cluster CA (for the tokens' pin).
    pub fn new(client: kube::Client, ca_pem: &str) -> Result<Self, NodeLinkError> {
        Ok(Self {
            client,
            ca_hash: skiff_pki::ca_hash(ca_pem)?,
        })
    }

    /// Connects with a kubeconfig file (`DIR/server/admin.kubeconfig`).
    pub async fn from_kubeconfig(path: &Path) -> Result<Self, NodeLinkError> {
        let bad = |message: String| NodeLinkError::Kubeconfig {
            path: path.to_path_buf(),
            message,
        };
        let kubeconfig =
            kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
        let ca_der = config
            .root_cert
            .as_ref()
            .and_then(|certs| certs.first())
            .ok_or_else(|| bad("it has no certificate-authority-data".into()))?;
        let ca_hash = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(ca_der))
        };
        let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        Ok(Self { client, ca_hash })
    }

    /// Creates a token valid for `ttl` (none: forever) and returns it.
    pub async fn create(
        &self,
        ttl: Option<Duration>,
        description: &str,
    ) -> Result<JoinToken, NodeLinkError> {
        let token = JoinToken::generate(&self.ca_hash);
        let expiration = match ttl {
            None => None,
            Some(ttl) => {
                let span = jiff::SignedDuration::try_from(ttl)
                    .map_err(|e| NodeLinkError::Invalid(format!("invalid --ttl: {e}")))?;
                let at = jiff::Timestamp::now()
                    .checked_add(span)
                    .map_err(|e| NodeLinkError::Invalid(format!("invalid --ttl: {e}")))?;
                // Whole seconds, as upstream's bootstrap tokens.
                Some(jiff::Timestamp::from_second(at.as_second()).unwrap_or(at))
            }
        };
        let stored = BootstrapToken {
            id: token.id.clone(),
            secret: token.secret.clone(),
            expiration,
            description: description.to_string(),
        };
        secrets(&self.client)
            .create(&PostParams::default(), &to_secret(&stored)?)
            .await
            .map_err(NodeLinkError::api(format!(
                "cannot create join token {}",
                token.id
            )))?;
        Ok(token)
    }

    /// Lists the bootstrap tokens.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, NodeLinkError> {
        // Secrets of kube-system are few; filter by type here rather than rely on a field
        // selector on `type`.
        let list = secrets(&self.client)
            .list(&ListParams::default())
            .await
            .map_err(NodeLinkError::api("cannot list join tokens"))?
            .items;
        let now = jiff::Timestamp::now();
        let mut tokens: Vec<TokenInfo> = list
            .iter()
            .filter(|s| s.type_.as_deref() == Some(TOKEN_SECRET_TYPE))
            .filter_map(|s| {
                let value = serde_json::to_value(s).ok()?;
                match BootstrapToken::from_secret(&value) {
                    Ok(token) => Some(TokenInfo {
                        expired: token.expiration.is_some_and(|e| e <= now),
                        id: token.id,
                        expiration: token.expiration,
                        description: token.description,
                    }),
                    Err(error) => {
                        tracing::warn!(%error, "skipping an unusable bootstrap token Secret");
                        None
                    }
                }
            })
            .collect();
        tokens.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tokens)
    }

    /// Deletes token `id` (its id, or the whole token); joins with it are refused afterwards.
    pub async fn revoke(&self, id: &str) -> Result<(), NodeLinkError> {
        let id = match JoinToken::parse(id) {
            Ok(token) => token.id,
            Err(_) => id.trim().to_string(),
        };
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(NodeLinkError::Invalid(format!(
                "invalid token id {id:?}: expected the 6 characters before the dot"
            )));
        }
        let name = format!("{TOKEN_SECRET_PREFIX}{id}");
        match secrets(&self.client)
            .delete(&name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if status_code(&error) == Some(404) => Err(NodeLinkError::Invalid(format!(
                "join token {id} does not exist"
            ))),
            Err(error) => Err(NodeLinkError::api(format!("cannot revoke join token {id}"))(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("0").unwrap(), None);
        assert_eq!(parse_ttl("24h").unwrap(), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("1h30m").unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(
            parse_ttl("7d").unwrap(),
            Some(Duration::from_secs(7 * 86_400))
        );
        for bad in ["", "h", "10", "3w", "-1h"] {
            let err = parse_ttl(bad).unwrap_err().to_string();
            assert!(err.contains("--ttl"), "{err}");
        }
    }
}
