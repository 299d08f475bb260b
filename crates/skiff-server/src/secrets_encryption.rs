//! `--secrets-encryption`: the key file, its rotation and `skiff secrets-encrypt`.
//!
//! Files (both 0600, in the 0700 `DIR/server/cred`, beside the server's TLS material):
//! * `encryption-config.json`: an upstream `EncryptionConfiguration` with one `aesgcm`
//!   provider for Secrets (its first key encrypts, later keys only decrypt) and `identity` for
//!   values written before encryption was enabled.
//! * `encryption-state.json`: `{"stage": ...}`, k3s's rotation stages — `start`,
//!   `reencrypt_request`, `reencrypt_active`, `reencrypt_finished` (or `reencrypt_failed` with
//!   `error`).
//!
//! Rotation (`skiff secrets-encrypt rotate-keys`): a new key is written first in the file with
//! the old ones after it (a crash now leaves every value readable), the store rewrites every
//! encrypted record with the new key (objects and history, writes waiting meanwhile, reads
//! going on), then the file keeps only the new key. With the server running, the command sets
//! the stage to `reencrypt_request` and waits; the server polls the state file and does the
//! work. With no server holding the data directory lock, the command does it itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use skiff_store::{Encryption, EncryptionConfig, NamedKey, Store, StoreOptions};

use crate::data_dir::{DataDirError, DataDirLock};
use crate::ServerPaths;

/// Resources encrypted when encryption is enabled (k3s encrypts Secrets).
pub const ENCRYPTED_RESOURCES: &[&str] = &["secrets"];

/// How often the server looks for a rotation request.
const POLL: Duration = Duration::from_secs(1);

/// Why secrets encryption failed.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionFileError {
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file does not parse or holds an unusable configuration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Rotation asked for without encryption enabled.
    #[error("secrets encryption is not enabled ({0} does not exist; start the server with --secrets-encryption)")]
    NotEnabled(PathBuf),
    /// The store failed to rewrite or open.
    #[error("datastore: {0}")]
    Store(#[from] skiff_store::StoreError),
    /// The data directory is unusable.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// Writing a file failed.
    #[error(transparent)]
    Pki(#[from] skiff_pki::PkiError),
    /// The running server did not finish the rotation in time, or reported a failure.
    #[error("{0}")]
    Rotation(String),
}

/// Where the encryption files are.
#[derive(Debug, Clone)]
pub struct EncryptionFiles {
    /// `DIR/server/cred/encryption-config.json`.
    pub config: PathBuf,
    /// `DIR/server/cred/encryption-state.json`.
    pub state: PathBuf,
}

impl EncryptionFiles {
    /// The files of a server layout.
    pub fn new(paths: &ServerPaths) -> EncryptionFiles {
        EncryptionFiles {
            config: paths.cred.join("encryption-config.json"),
            state: paths.cred.join("encryption-state.json"),
        }
    }

    /// The key configuration, None when encryption was never enabled.
    pub fn read_config(&self) -> Result<Option<EncryptionConfig>, EncryptionFileError> {
        let Some(text) = read_optional(&self.config)? else {
            return Ok(None);
        };
        let config: EncryptionConfig =
            serde_json::from_str(&text).map_err(|e| EncryptionFileError::Invalid {
                path: self.config.clone(),
                message: e.to_string(),
            })?;
        Encryption::new(&config).map_err(|e| EncryptionFileError::Invalid {
            path: self.config.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(config))
    }

    fn write_config(&self, config: &EncryptionConfig) -> Result<(), EncryptionFileError> {
        self.ensure_dir()?;
        let text = serde_json::to_vec_pretty(config).unwrap_or_default();
        skiff_pki::write_atomic(&self.config, &text, skiff_pki::SECRET_MODE)?;
        Ok(())
    }

    /// The rotation stage (`start` when none was recorded).
    pub fn read_state(&self) -> Result<RotationState, EncryptionFileError> {
        match read_optional(&self.state)? {
            None => Ok(RotationState::new(Stage::Start)),
            Some(text) => serde_json::from_str(&text).map_err(|e| EncryptionFileError::Invalid {
                path: self.state.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Records the rotation stage.
    pub fn write_state(&self, state: &RotationState) -> Result<(), EncryptionFileError> {
        self.ensure_dir()?;
        let text = serde_json::to_vec_pretty(state).unwrap_or_default();
        skiff_pki::write_atomic(&self.state, &text, skiff_pki::SECRET_MODE)?;
        Ok(())
    }

    fn ensure_dir(&self) -> Result<(), EncryptionFileError> {
        if let Some(dir) = self.config.parent() {
            crate::data_dir::secure_dir(dir)?;
        }
        Ok(())
    }

    /// At server start: the encryption the store uses. Creates the first key when
    /// `enabled` and none exists. A key file without `enabled` is still used (its values
    /// stay encrypted and readable; disabling encryption is not supported).
    pub fn prepare(&self, enabled: bool) -> Result<Option<Arc<Encryption>>, EncryptionFileError> {
        let config = match self.read_config()? {
            Some(config) => {
                if !enabled {
                    tracing::warn!(path = %self.config.display(), "secrets encryption keys exist: Secrets stay encrypted although --secrets-encryption is not set");
                }
                config
            }
            None if enabled => {
                let config = EncryptionConfig::aesgcm(ENCRYPTED_RESOURCES, vec![new_key(None)?]);
                self.write_config(&config)?;
                self.write_state(&RotationState::new(Stage::Start))?;
                tracing::info!(path = %self.config.display(), "generated the secrets encryption key");
                config
            }
            None => return Ok(None),
        };
        let encryption = Encryption::new(&config).map_err(|e| EncryptionFileError::Invalid {
            path: self.config.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(Arc::new(encryption)))
    }
}

/// k3s's rotation stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Keys as created or after a finished rotation acknowledged.
    Start,
    /// `rotate-keys` asked the server to rotate.
    ReencryptRequest,
    /// The server is rewriting.
    ReencryptActive,
    /// Done: everything is encrypted with the new key, the old ones are gone.
    ReencryptFinished,
    /// The last rotation failed (see `error`); the key file still reads everything.
    ReencryptFailed,
}

/// The content of `encryption-state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationState {
    /// The stage.
    pub stage: Stage,
    /// Why the last rotation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Records the last rotation rewrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<u64>,
}

impl RotationState {
    fn new(stage: Stage) -> Self {
        RotationState {
            stage,
            error: None,
            rewritten: None,
        }
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, EncryptionFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EncryptionFileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A new key named after the time (k3s's `aescbckey-<RFC 3339>` style), distinct from
/// `config`'s keys.
fn new_key(config: Option<&EncryptionConfig>) -> Result<NamedKey, EncryptionFileError> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let taken = |n: &str| config.is_some_and(|c| c.keys().any(|k| k.name == n));
    let mut name = format!("aesgcmkey-{stamp}");
    let mut n = 1;
    while taken(&name) {
        n += 1;
        name = format!("aesgcmkey-{stamp}-{n}");
    }
    NamedKey::generate(name).map_err(|e| EncryptionFileError::Rotation(e.to_string()))
}

/// `config` with `key` first in every `aesgcm` provider, the old keys kept after it.
fn with_new_primary(config: &EncryptionConfig, key: &NamedKey) -> EncryptionConfig {
    let mut c = config.clone();
    for p in c.resources.iter_mut().flat_map(|r| r.providers.iter_mut()) {
        if let Some(list) = p.aesgcm.as_mut() {
            list.keys.insert(0, key.clone());
        }
    }
    c
}

/// `config` with only its primary key in every `aesgcm` provider.
fn only_primary(config: &EncryptionConfig) -> EncryptionConfig {
    let mut c = config.clone();
    for p in c.resources.iter_mut().flat_map(|r| r.providers.iter_mut()) {
        if let Some(list) = p.aesgcm.as_mut() {
            list.keys.truncate(1);
        }
    }
    c
}

fn encryption_of(
    files: &EncryptionFiles,
    config: &EncryptionConfig,
) -> Result<Arc<Encryption>, EncryptionFileError> {
    Encryption::new(config)
        .map(Arc::new)
        .map_err(|e| EncryptionFileError::Invalid {
            path: files.config.clone(),
            message: e.to_string(),
        })
}

/// Rotates to a new key on a running store: new key first in the file, rewrite everything,
/// drop the old keys. Returns how many records were rewritten.
pub async fn rotate(store: &Store, files: &EncryptionFiles) -> Result<u64, EncryptionFileError> {
    let config = files
        .read_config()?
        .ok_or_else(|| EncryptionFileError::NotEnabled(files.config.clone()))?;
    files.write_state(&RotationState::new(Stage::ReencryptActive))?;
    let key = new_key(Some(&config))?;
    let staged = with_new_primary(&config, &key);
    files.write_config(&staged)?;
    let rewritten = store
        .reencrypt(Some(encryption_of(files, &staged)?))
        .await?;
    let done = only_primary(&staged);
    files.write_config(&done)?;
    store.reencrypt(Some(encryption_of(files, &done)?)).await?;
    files.write_state(&RotationState {
        stage: Stage::ReencryptFinished,
        error: None,
        rewritten: Some(rewritten),
    })?;
    tracing::info!(key = %key.name, rewritten, "rotated the secrets encryption key");
    Ok(rewritten)
}

/// Serves rotation requests of `skiff secrets-encrypt rotate-keys` while the server runs
/// (also one interrupted by a crash: `reencrypt_active` at start).
pub fn spawn_rotation_watcher(store: Store, files: EncryptionFiles) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let stage = files.read_state().map(|s| s.stage);
            let wanted = matches!(stage, Ok(Stage::ReencryptRequest))
                || (first && matches!(stage, Ok(Stage::ReencryptActive)));
            first = false;
            if wanted {
                if let Err(error) = rotate(&store, &files).await {
                    tracing::error!(%error, "secrets encryption key rotation failed");
                    let _ = files.write_state(&RotationState {
                        stage: Stage::ReencryptFailed,
                        error: Some(error.to_string()),
                        rewritten: None,
                    });
                }
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

/// What `skiff secrets-encrypt rotate-keys` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotatedBy {
    /// The running server rotated.
    Server,
    /// No server ran; the command rotated the datastore itself.
    ThisProcess {
        /// Records rewritten.
        rewritten: u64,
    },
}

/// `skiff secrets-encrypt rotate-keys`: asks the running server (and waits up to `wait`), or
/// with no server running, rotates the datastore directly under the data directory lock.
pub async fn rotate_keys(
    data_dir: &Path,
    wait: Duration,
) -> Result<RotatedBy, EncryptionFileError> {
    let paths = ServerPaths::new(data_dir);
    let files = EncryptionFiles::new(&paths);
    if files.read_config()?.is_none() {
        return Err(EncryptionFileError::NotEnabled(files.config.clone()));
    }
    match DataDirLock::acquire(&paths.root) {
        Ok(_lock) => {
            let encryption = files.prepare(true)?;
            let database = paths.database.clone();
            let store = tokio::task::spawn_blocking(move || {
                Store::open(
                    &database,
                    StoreOptions {
                        encryption,
                        ..StoreOptions::default()
                    },
                )
            })
            .await
            .map_err(|e| EncryptionFileError::Rotation(e.to_string()))??;
            let result = rotate(&store, &files).await;
            store.close().await;
            Ok(RotatedBy::ThisProcess { rewritten: result? })
        }
        Err(DataDirError::InUse { .. }) => {
            files.write_state(&RotationState::new(Stage::ReencryptRequest))?;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let state = files.read_state()?;
                match state.stage {
                    Stage::ReencryptFinished => return Ok(RotatedBy::Server),
                    Stage::ReencryptFailed => {
                        return Err(EncryptionFileError::Rotation(format!(
                            "the server could not rotate the key: {}",
                            state.error.unwrap_or_default()
                        )))
                    }
                    _ => {}
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(EncryptionFileError::Rotation(format!(
                        "the server did not finish the rotation within {wait:?} (stage {:?}); \
                         it goes on when the server runs — see `skiff secrets-encrypt status`",
                        state.stage
                    )));
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `skiff secrets-encrypt status`, in k3s's shape.
pub fn status_text(data_dir: &Path) -> Result<String, EncryptionFileError> {
    use sha2::Digest;
    let files = EncryptionFiles::new(&ServerPaths::new(data_dir));
    let Some(config) = files.read_config()? else {
        return Ok("Encryption Status: Disabled, no configuration file found\n".into());
    };
    let state = files.read_state()?;
    let stage = serde_json::to_value(state.stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let bytes = std::fs::read(&files.config).map_err(|source| EncryptionFileError::Io {
        action: "read",
        path: files.config.clone(),
        source,
    })?;
    let hash = hex::encode(sha2::Sha256::digest(&bytes));
    let enabled = config.primary().is_some();
    let mut out = format!(
        "Encryption Status: {}\nCurrent Rotation Stage: {stage}\nServer Encryption Hashes: All hashes match\nEncryption Config Hash: {stage}-{hash}\n",
        if enabled { "Enabled" } else { "Disabled" },
    );
    if let Some(error) = &state.error {
        out.push_str(&format!("Last Rotation Error: {error}\n"));
    }
    out.push_str("\nActive  Key Type  Name\n------  --------  ----\n");
    let primary = config.primary().map(|k| k.name.clone());
    for key in config.keys() {
        let active = if Some(&key.name) == primary.as_ref() {
            " *"
        } else {
            "  "
        };
        out.push_str(&format!("{active}      AES-GCM   {}\n", key.name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_configs_keep_then_drop_old_keys() {
        let config = EncryptionConfig::aesgcm(ENCRYPTED_RESOURCES, vec![new_key(None).unwrap()]);
        let old = config.primary().unwrap().name.clone();
        let key = new_key(Some(&config)).unwrap();
        assert_ne!(key.name, old);
        let staged = with_new_primary(&config, &key);
        let names: Vec<_> = staged.keys().map(|k| k.name.clone()).collect();
        assert_eq!(names, [key.name.clone(), old]);
        let done = only_primary(&staged);
        assert_eq!(done.keys().count(), 1);
        assert_eq!(done.primary().unwrap().name, key.name);
    }
}
