//! Auto-deploy: the manifests in `DIR/server/manifests/` are applied at start and whenever
//! they change, through the in-process API as `kubectl apply --server-side` would (so every
//! object is validated and authorised like any other write).
//!
//! Each applied object carries the label `skiff.dev/managed-by=deploy` and the annotation
//! `skiff.dev/manifest=<file name>`, which mark what auto-deploy owns. When a file changes,
//! objects it no longer holds are deleted; when a file is removed, all of its objects are
//! deleted (unless pruning is off, `--manifests-prune=false`). A `<name>.skip` file beside a
//! manifest disables it (as with k3s): it is neither applied nor pruned. A file that does not
//! parse or fails to apply changes nothing else, is logged with the reason, and is retried.
//!
//! The directory is polled (a `stat` per file every [`DeploySettings::interval`]; files are
//! read only when their size or modification time changed), which needs no inotify support
//! and sees files written by any tool.

mod manifest;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use skiff_types::registry::{self, ResourceInfo};
use tokio::sync::watch;
use tokio::time::Instant;

pub use manifest::{list_files, parse, ManifestError, ManifestObject};

/// Label on every object auto-deploy applied.
pub const MANAGED_LABEL: &str = "skiff.dev/managed-by";
/// Value of [`MANAGED_LABEL`].
pub const MANAGED_VALUE: &str = "deploy";
/// Annotation naming the manifest file an object came from.
pub const MANIFEST_ANNOTATION: &str = "skiff.dev/manifest";
/// Field manager of the applies.
const FIELD_MANAGER: &str = "skiff-deploy";
/// User auto-deploy acts as.
pub const DEPLOY_USER: &str = "system:skiff-deploy";
/// Wait before retrying a file that failed.
const RETRY: Duration = Duration::from_secs(15);

/// Settings of auto-deploy.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// `DIR/server/manifests`.
    pub dir: PathBuf,
    /// Delete the objects of removed files (and objects removed from a file).
    pub prune: bool,
    /// How often the directory is looked at.
    pub interval: Duration,
}

/// The running auto-deploy task.
#[derive(Debug)]
pub struct Deployer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Deployer {
    /// Starts watching `settings.dir` (created if missing), applying through `client`.
    pub fn start(client: Client, settings: DeploySettings) -> std::io::Result<Deployer> {
        std::fs::create_dir_all(&settings.dir)?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(client, settings, stopped));
        Ok(Deployer { stop, task })
    }

    /// Stops watching.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What is known about one file.
struct FileState {
    /// Size and modification time when last read.
    stamp: (u64, Option<SystemTime>),
    /// Hash of the content last applied successfully (None: never, or it failed).
    applied: Option<[u8; 32]>,
    /// When to try a failed file again.
    retry_at: Option<Instant>,
}

async fn run(client: Client, settings: DeploySettings, mut stopped: watch::Receiver<bool>) {
    let mut files: BTreeMap<String, FileState> = BTreeMap::new();
    let mut first = true;
    loop {
        pass(&client, &settings, &mut files, first).await;
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// One look at the directory.
async fn pass(
    client: &Client,
    settings: &DeploySettings,
    files: &mut BTreeMap<String, FileState>,
    first: bool,
) {
    let (paths, skipped) = match list_files(&settings.dir) {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(dir = %settings.dir.display(), %error, "cannot list the manifests");
            return;
        }
    };
    let mut present: HashSet<String> = skipped.iter().cloned().collect();
    for path in &paths {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        present.insert(name.clone());
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let stamp = (meta.len(), meta.modified().ok());
        let state = files.get(&name);
        let due = state.is_none_or(|s| {
            s.stamp != stamp
                || s.applied.is_none() && s.retry_at.is_none_or(|t| t <= Instant::now())
        });
        if !due {
            continue;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot read the manifest");
                continue;
            }
        };
        let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if let Some(state) = files.get_mut(&name) {
            if state.applied == Some(hash) {
                state.stamp = stamp; // touched, not changed
                continue;
            }
        }
        let applied = match sync_file(client, settings, &name, &text).await {
            Ok(()) => Some(hash),
            Err(error) => {
                tracing::warn!(file = %name, %error, "manifest not applied; retrying in {}s or when it changes", RETRY.as_secs());
                None
            }
        };
        files.insert(
            name,
            FileState {
                stamp,
                applied,
                retry_at: applied.is_none().then(|| Instant::now() + RETRY),
            },
        );
    }
    // Files that are gone (a skipped file keeps its objects).
    let gone: Vec<String> = files
        .keys()
        .filter(|name| !present.contains(*name))
        .cloned()
        .collect();
    for name in gone {
        files.remove(&name);
        if settings.prune {
            tracing::info!(file = %name, "manifest removed; deleting its objects");
            if let Err(error) = prune(client, Some(&name), &HashSet::new(), &present).await {
                tracing::warn!(file = %name, %error, "cannot delete the objects of a removed manifest");
            }
        }
    }
    // At start: objects of files removed while the server was down.
    if first && settings.prune {
        if let Err(error) = prune(client, None, &HashSet::new(), &present).await {
            tracing::warn!(%error, "cannot delete the objects of manifests removed while stopped");
        }
    }
}

/// Why a file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The file does not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The API refused an object or failed.
    #[error("{object}: {source}")]
    Api {
        /// Which object.
        object: String,
        /// The API's answer.
        source: kube::Error,
    },
}

/// Applies every object of `file` and deletes the objects it no longer holds.
async fn sync_file(
    client: &Client,
    settings: &DeploySettings,
    file: &str,
    text: &str,
) -> Result<(), DeployError> {
    let objects = parse(file, text)?;
    let mut desired = HashSet::new();
    for object in &objects {
        apply(client, file, object).await?;
        desired.insert(object.key());
    }
    tracing::info!(file, objects = objects.len(), "manifest applied");
    if settings.prune {
        prune(client, Some(file), &desired, &HashSet::new())
            .await
            .map_err(|source| DeployError::Api {
                object: format!("pruning objects of {file}"),
                source,
            })?;
    }
    Ok(())
}

/// The kube resource of a registry entry.
fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    }
}

fn api_for(client: &Client, info: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource(info);
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side apply of one object, marked as owned by `file`.
async fn apply(client: &Client, file: &str, object: &ManifestObject) -> Result<(), DeployError> {
    let mut body = object.object.clone();
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({"name": object.name});
    }
    let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[MANAGED_LABEL] = json!(MANAGED_VALUE);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[MANIFEST_ANNOTATION] = json!(file);
    let api = api_for(client, object.info, object.namespace.as_deref());
    api.patch(
        &object.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| DeployError::Api {
        object: object.describe(),
        source,
    })?;
    Ok(())
}

/// Deletes objects auto-deploy applied that are not `desired`: those of `file`, or (`None`)
/// those of every file not in `present`.
async fn prune(
    client: &Client,
    file: Option<&str>,
    desired: &HashSet<(String, Option<String>, String)>,
    present: &HashSet<String>,
) -> Result<(), kube::Error> {
    let selector = format!("{MANAGED_LABEL}={MANAGED_VALUE}");
    for info in registry::resources()
        .iter()
        .filter(|i| i.has_verb("list") && i.has_verb("delete") && i.kind != "Event")
    {
        let list = api_for(client, info, None)
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        for item in list.items {
            let owner = item
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MANIFEST_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let doomed = match file {
                Some(file) => owner == file,
                None => !present.contains(&owner),
            };
            let name = item.metadata.name.clone().unwrap_or_default();
            let namespace = item.metadata.namespace.clone();
            if !doomed || desired.contains(&(info.storage_name(), namespace.clone(), name.clone()))
            {
                continue;
            }
            let api = api_for(client, info, namespace.as_deref());
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(
                    file = %owner,
                    object = %format!("{} {}{name}", info.kind, namespace.map(|n| n + "/").unwrap_or_default()),
                    "deleted an object its manifest no longer holds"
                ),
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Where auto-deploy reads from, below the data directory.
pub fn manifests_dir(server_dir: &Path) -> PathBuf {
    server_dir.join("manifests")
}
