//! The agent's own database (`DIR/agent/state.redb`): the desired pods the server last sent,
//! the revision to resume the desired-state stream from, the node's network facts, and the
//! config maps and secrets the pods use. With it the node brings its pods back after an agent
//! restart or a reboot while the server cannot be reached.
//!
//! Every change is one durable redb transaction; the pods and the revision they are current at
//! are written together, so a crash never leaves a revision ahead of the pods.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::AgentError;

const PODS: TableDefinition<&str, &[u8]> = TableDefinition::new("pods");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

const REVISION: &str = "revision";

/// Kinds of objects kept for pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Secret.
    Secret,
}

impl ObjectKind {
    fn prefix(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        }
    }
}

/// The agent's local database.
pub struct LocalState {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for LocalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalState")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn object_key(kind: ObjectKind, namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", kind.prefix())
}

impl LocalState {
    /// Opens (or creates) the database at `path`; the file is readable by root only (it holds
    /// secrets).
    pub fn open(path: &Path) -> Result<LocalState, AgentError> {
        if let Some(dir) = path.parent() {
            skiff_pki::secure_dir(dir)?;
        }
        // 0600 before redb writes a byte (not tightened afterwards).
        skiff_pki::secure_file(path)?;
        let db = Database::create(path).map_err(|e| AgentError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let state = LocalState {
            db,
            path: path.to_path_buf(),
        };
        state.write(Durability::Immediate, |tx| {
            tx.open_table(PODS)?;
            tx.open_table(META)?;
            tx.open_table(OBJECTS)?;
            Ok(())
        })?;
        Ok(state)
    }

    fn error(&self, e: impl std::fmt::Display) -> AgentError {
        AgentError::State {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), AgentError> {
        let mut tx = self.db.begin_write().map_err(|e| self.error(e))?;
        tx.set_durability(durability).map_err(|e| self.error(e))?;
        f(&tx).map_err(|e| self.error(e))?;
        tx.commit().map_err(|e| self.error(e))
    }

    /// Every desired pod, as last received.
    pub fn pods(&self) -> Result<Vec<Pod>, AgentError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(PODS).map_err(|e| self.error(e))?;
        let mut pods = Vec::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (uid, bytes) = entry.map_err(|e| self.error(e))?;
            match serde_json::from_slice::<Pod>(bytes.value()) {
                Ok(pod) => pods.push(pod),
                Err(error) => tracing::warn!(
                    uid = uid.value(),
                    %error,
                    "unreadable pod in the local state; skipped"
                ),
            }
        }
        Ok(pods)
    }

    /// Revision of the desired state the pods are current at.
    pub fn revision(&self) -> Result<Option<u64>, AgentError> {
        self.meta(REVISION)
    }

    /// Replaces the whole desired set (a snapshot from the server).
    pub fn replace_pods(&self, pods: &[Pod], revision: u64) -> Result<(), AgentError> {
        let encoded = encode_pods(pods)?;
        let revision = serde_json::to_vec(&revision).map_err(|e| self.error(e))?;
        self.write(Durability::Immediate, |tx| {
            let mut table = tx.open_table(PODS)?;
            table.retain(|_, _| false)?;
            for (uid, bytes) in &encoded {
                table.insert(uid.as_str(), bytes.as_slice())?;
            }
            tx.open_table(META)?.insert(REVISION, revision.as_slice())?;
            Ok(())
        })
    }

    /// Applies changes: `upserts` are stored, `removed` (uids) dropped; the revision moves to
    /// `revision` when given.
    pub fn apply(
        &self,
        upserts: &[Pod],
        removed: &[String],
        revision: Option<u64>,
    ) -> Result<(), AgentError> {
        let encoded = encode_pods(upserts)?;
        let revision = revision
            .map(|r| serde_json::to_vec(&r))
            .transpose()
            .map_err(|e| self.error(e))?;
        self.write(Durability::Immediate, |tx| {
            let mut table = tx.open_table(PODS)?;
            for (uid, bytes) in &encoded {
                table.insert(uid.as_str(), bytes.as_slice())?;
            }
            for uid in removed {
                table.remove(uid.as_str())?;
            }
            if let Some(revision) = &revision {
                tx.open_table(META)?.insert(REVISION, revision.as_slice())?;
            }
            Ok(())
        })
    }

    /// Moves the resume revision (a bookmark: nothing changed for this node). Not flushed at
    /// once: losing it only means resuming from an older revision.
    pub fn set_revision(&self, revision: u64) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(&revision).map_err(|e| self.error(e))?;
        self.write(Durability::None, |tx| {
            tx.open_table(META)?.insert(REVISION, bytes.as_slice())?;
            Ok(())
        })
    }

    /// A value of the meta table.
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AgentError> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(META).map_err(|e| self.error(e))?;
        let Some(value) = table.get(key).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| self.error(format!("meta {key}: {e}")))
    }

    /// Stores a value in the meta table (durably).
    pub fn set_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.error(e))?;
        self.write(Durability::Immediate, |tx| {
            tx.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }

    /// A stored config map or secret.
    pub fn object<T: DeserializeOwned>(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<T>, AgentError> {
        let key = object_key(kind, namespace, name);
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(OBJECTS).map_err(|e| self.error(e))?;
        let Some(value) = table.get(key.as_str()).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| self.error(format!("{key}: {e}")))
    }

    /// Stores config maps and secrets (`None` = it does not exist on the server: forget it).
    pub fn put_objects(
        &self,
        objects: &[(ObjectKind, String, String, Option<serde_json::Value>)],
    ) -> Result<(), AgentError> {
        let encoded: Vec<(String, Option<Vec<u8>>)> = objects
            .iter()
            .map(|(kind, ns, name, value)| {
                let bytes = value.as_ref().map(serde_json::to_vec).transpose();
                bytes.map(|b| (object_key(*kind, ns, name), b))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(e))?;
        self.write(Durability::Immediate, |tx| {
            let mut table = tx.open_table(OBJECTS)?;
            for (key, bytes) in &encoded {
                match bytes {
                    Some(bytes) => {
                        table.insert(key.as_str(), bytes.as_slice())?;
                    }
                    None => {
                        table.remove(key.as_str())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Drops stored objects that `keep` does not want any more.
    pub fn retain_objects(
        &self,
        mut keep: impl FnMut(ObjectKind, &str, &str) -> bool,
    ) -> Result<usize, AgentError> {
        let mut removed = 0;
        self.write(Durability::Immediate, |tx| {
            let mut table = tx.open_table(OBJECTS)?;
            table.retain(|key, _| {
                let mut parts = key.splitn(3, '/');
                let kind = match parts.next() {
                    Some("configmap") => ObjectKind::ConfigMap,
                    Some("secret") => ObjectKind::Secret,
                    _ => return false,
                };
                let (Some(ns), Some(name)) = (parts.next(), parts.next()) else {
                    return false;
                };
                let k = keep(kind, ns, name);
                if !k {
                    removed += 1;
                }
                k
            })?;
            Ok(())
        })?;
        Ok(removed)
    }
}

fn encode_pods(pods: &[Pod]) -> Result<Vec<(String, Vec<u8>)>, AgentError> {
    pods.iter()
        .map(|pod| {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            serde_json::to_vec(pod)
                .map(|bytes| (uid, bytes))
                .map_err(|e| AgentError::State {
                    path: PathBuf::new(),
                    message: format!("cannot encode pod: {e}"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.uid = Some(uid.into());
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some("default".into());
        pod
    }

    #[test]
    fn the_agent_data_directory_and_database_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let paths = crate::agent::AgentPaths::new(&data);
        paths.secure(&data).unwrap();
        for d in [
            &data,
            &paths.root,
            &paths.root.join("tls"),
            &paths.runtime,
            &paths.network,
            &paths.image_archives,
        ] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        assert_eq!(mode(&paths.state), 0o600);
        drop(LocalState::open(&paths.state).unwrap());
        assert_eq!(mode(&paths.state), 0o600);

        // A database left readable by an older version is tightened on open.
        std::fs::set_permissions(&paths.state, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(LocalState::open(&paths.state).unwrap());
        assert_eq!(mode(&paths.state), 0o600);

        // Readable by others: tightened; writable by others: refused, left as found.
        std::fs::set_permissions(&paths.root, std::fs::Permissions::from_mode(0o755)).unwrap();
        paths.secure(&data).unwrap();
        assert_eq!(mode(&paths.root), 0o700);
        std::fs::set_permissions(&paths.root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = paths.secure(&data).unwrap_err().to_string();
        assert!(err.contains(&paths.root.display().to_string()), "{err}");
        assert!(err.contains("0777"), "{err}");
        assert_eq!(mode(&paths.root), 0o777);
        // A fresh database in a fresh directory is private from the start.
        let fresh = tmp.path().join("other/state.redb");
        drop(LocalState::open(&fresh).unwrap());
        assert_eq!(mode(fresh.parent().unwrap()), 0o700);
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn pods_and_revision_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let state = LocalState::open(&path).unwrap();
            assert_eq!(state.revision().unwrap(), None);
            state
                .replace_pods(&[pod("a", "one"), pod("b", "two")], 10)
                .unwrap();
            state
                .apply(&[pod("c", "three")], &["a".into()], Some(12))
                .unwrap();
            state.set_revision(15).unwrap();
            state.set_meta("x", &vec![1, 2]).unwrap();
        }
        let state = LocalState::open(&path).unwrap();
        let mut names: Vec<String> = state
            .pods()
            .unwrap()
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        assert_eq!(names, ["three", "two"]);
        // The bookmark was written without a flush, but a clean close persists it.
        assert!(matches!(state.revision().unwrap(), Some(12 | 15)));
        assert_eq!(state.meta::<Vec<i32>>("x").unwrap(), Some(vec![1, 2]));
        // A snapshot replaces everything.
        state.replace_pods(&[pod("d", "four")], 20).unwrap();
        assert_eq!(state.pods().unwrap().len(), 1);
        assert_eq!(state.revision().unwrap(), Some(20));
    }

    #[test]
    fn objects_are_stored_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::open(&dir.path().join("s.redb")).unwrap();
        state
            .put_objects(&[
                (
                    ObjectKind::ConfigMap,
                    "ns".into(),
                    "cfg".into(),
                    Some(serde_json::json!({"data": {"a": "b"}})),
                ),
                (
                    ObjectKind::Secret,
                    "ns".into(),
                    "sec".into(),
                    Some(serde_json::json!({"data": {}})),
                ),
            ])
            .unwrap();
        let cfg: serde_json::Value = state
            .object(ObjectKind::ConfigMap, "ns", "cfg")
            .unwrap()
            .unwrap();
        assert_eq!(cfg["data"]["a"], "b");
        let removed = state
            .retain_objects(|kind, _, _| kind == ObjectKind::ConfigMap)
            .unwrap();
        assert_eq!(removed, 1);
        assert!(state
            .object::<serde_json::Value>(ObjectKind::Secret, "ns", "sec")
            .unwrap()
            .is_none());
        state
            .put_objects(&[(ObjectKind::ConfigMap, "ns".into(), "cfg".into(), None)])
            .unwrap();
        assert!(state
            .object::<serde_json::Value>(ObjectKind::ConfigMap, "ns", "cfg")
            .unwrap()
            .is_none());
    }
}
