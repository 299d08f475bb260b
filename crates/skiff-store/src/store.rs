//! The public [`Store`] handle.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::context::{Hub, Shared};
use crate::db::Db;
use crate::encryption::Encryption;
use crate::filter::Filter;
use crate::history::History;
use crate::list;
use crate::registry::Registry;
use crate::snapshots::SnapshotCache;
use crate::state::Published;
use crate::stats::CommitStats;
use crate::watch::Watcher;
use crate::writer::{Request, WriteOp, Writer};
use crate::{
    meta, Key, ListOptions, ListPage, Object, Preconditions, StoreError, StoreOptions, WatchOptions,
};

/// The datastore: a handle that is cheap to clone. Reads (`get`, `list`, `count`, `watch`)
/// are served from memory; writes go to one writer thread that commits them durably in
/// groups. Dropping the last handle finishes queued writes and closes the database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    path: PathBuf,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Store {
    /// Opens the database at `path` (creating it and its directory if missing), loads the
    /// current objects and history into memory, and starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        private_file(path)?;
        let started = std::time::Instant::now();
        let corrupt = |e: StoreError| corrupt_file(path, e);
        let encryption = options.encryption.clone();
        // An existing file is read before it is opened for writing, so a damaged one is
        // refused without a byte changed.
        let existing = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        let preloaded = match existing {
            true => Db::load_read_only(path, encryption.as_deref()).map_err(corrupt)?,
            false => None,
        };
        let db = Db::open(path, options.db_cache_bytes).map_err(corrupt)?;
        let loaded = match preloaded {
            Some(loaded) => loaded,
            None => db.load(encryption.as_deref()).map_err(corrupt)?,
        };
        let mut state = Published::default();
        let mut revision = loaded.revision;
        let n_objects = loaded.objects.len();
        for o in loaded.objects {
            revision = revision.max(o.revision());
            let r = state.intern(&o.key().resource);
            state.apply(&r, o.key().map_key(), Some(o));
        }
        let mut history = History::default();
        let n_events = loaded.events.len();
        for (resource, ev) in loaded.events {
            if ev.revision() <= loaded.compacted {
                continue;
            }
            revision = revision.max(ev.revision());
            let r = state.intern(&resource);
            history.push(&r, Arc::new(ev));
        }
        history.compacted = loaded.compacted;
        state.revision = revision;
        tracing::info!(
            path = %path.display(),
            objects = n_objects,
            events = n_events,
            revision,
            compacted = loaded.compacted,
            took = ?started.elapsed(),
            "store opened"
        );
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            hub: Mutex::new(Hub {
                history,
                registry: Registry::default(),
            }),
            dispatched: AtomicU64::new(revision),
            compacted: AtomicU64::new(loaded.compacted),
            closed: AtomicBool::new(false),
            options,
            snapshots: Mutex::new(SnapshotCache::default()),
            stats: Mutex::new(CommitStats::default()),
            health: Mutex::new(None),
            free_bytes: AtomicU64::new(
                crate::writer::free_bytes(path.parent().unwrap_or(Path::new("."))).unwrap_or(0),
            ),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(db, path.to_path_buf(), encryption, shared.clone(), rx);
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                source: Arc::new(e),
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                path: path.to_path_buf(),
                tx: Some(tx),
                writer: Some(handle),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The last committed revision.
    pub fn revision(&self) -> u64 {
        self.shared().current_revision()
    }

    /// Revisions at or below this one are compacted away (watches and exact lists from them
    /// get [`StoreError::Gone`]).
    pub fn compacted_revision(&self) -> u64 {
        self.shared().compacted.load(Ordering::Acquire)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        if self.shared().closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Creates an object. Sets `metadata.uid`, `creationTimestamp`, `generation` = 1 and
    /// `resourceVersion`; name and namespace come from the key (the object's own must agree).
    /// Returns once the write is durable.
    pub async fn create(&self, key: &Key, object: Value) -> Result<Object, StoreError> {
        let value = meta::prepare_create(key, object)?;
        let key = key.clone();
        self.request(|reply| Request::Write(WriteOp::Create { key, value }, reply))
            .await
    }

    /// Replaces an object. A non-empty `metadata.resourceVersion` must equal the stored one
    /// (else [`StoreError::Conflict`]). Keeps uid and creationTimestamp, bumps generation when
    /// anything outside metadata and status changed (or deletion starts). An update that
    /// changes nothing returns the stored object without a new revision, as upstream.
    pub async fn update(&self, key: &Key, object: Value) -> Result<Object, StoreError> {
        let (value, precondition) = meta::check_update(key, object)?;
        let key = key.clone();
        self.request(|reply| {
            Request::Write(
                WriteOp::Update {
                    key,
                    value,
                    precondition,
                },
                reply,
            )
        })
        .await
    }

    /// Deletes an object if the preconditions hold. Returns its last state with the deletion
    /// revision as resourceVersion (what watchers get in DELETED).
    pub async fn delete(
        &self,
        key: &Key,
        preconditions: Preconditions,
    ) -> Result<Object, StoreError> {
        let key = key.clone();
        self.request(|reply| Request::Write(WriteOp::Delete { key, preconditions }, reply))
            .await
    }

    /// The current state of an object.
    pub fn get(&self, key: &Key) -> Option<Object> {
        let state = self
            .shared()
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner());
        state.get(&key.resource, &key.map_key()).cloned()
    }

    /// Lists objects of a resource (in one namespace, or all with None), ordered by
    /// namespace/name, filtered by selectors, paginated with `limit`/`continue` consistently
    /// at the first page's revision.
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListPage, StoreError> {
        list::list(self.shared(), resource, namespace, options)
    }

    /// How many objects a resource has (in one namespace, or all with None).
    pub fn count(&self, resource: &str, namespace: Option<&str>) -> usize {
        self.shared()
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .count(resource, namespace)
    }

    /// Watches a resource (in one namespace, or all with None). From revision R: the events
    /// after R, then live ([`StoreError::Gone`] if R was compacted away). From None/0: synthetic
    /// `Added` events for what exists now, then live.
    pub fn watch(
        &self,
        resource: &str,
        namespace: Option<&str>,
        options: WatchOptions,
    ) -> Result<Watcher, StoreError> {
        let shared = self.inner.shared.clone();
        if shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let filter = Filter::new(namespace, options.label_selector, options.field_selector);
        let (tx, rx) = tokio::sync::mpsc::channel(shared.options.watch_queue_capacity.max(1));
        let interval = options
            .bookmarks
            .then_some(shared.options.bookmark_interval);
        let mut hub = shared.hub.lock().unwrap_or_else(|p| p.into_inner());
        let state = shared.state.read().unwrap_or_else(|p| p.into_inner());
        let current = state.revision;
        let resource_name: Arc<str> = state
            .interned(resource)
            .unwrap_or_else(|| Arc::from(resource));
        match options.from_revision.filter(|r| *r > 0) {
            None => {
                let items = state.items(resource);
                drop(state);
                let id = hub.registry.register(resource_name, filter.clone(), tx);
                drop(hub);
                Ok(Watcher::new_snapshot(
                    shared.clone(),
                    id,
                    filter,
                    items,
                    options.initial_events_end_bookmark.then_some(current),
                    rx,
                    interval,
                ))
            }
            Some(from) => {
                drop(state);
                if from > current {
                    return Err(StoreError::TooLargeResourceVersion {
                        requested: from,
                        current,
                    });
                }
                let compacted = hub.history.compacted;
                if from < compacted {
                    return Err(StoreError::Gone {
                        requested: from,
                        compacted,
                    });
                }
                let events: VecDeque<_> = hub.history.since(resource, from).cloned().collect();
                let id = hub.registry.register(resource_name, filter.clone(), tx);
                drop(hub);
                Ok(Watcher::new_replay(
                    shared.clone(),
                    id,
                    filter,
                    events,
                    rx,
                    interval,
                ))
            }
        }
    }

    /// How many watchers are registered.
    pub fn watcher_count(&self) -> usize {
        self.shared()
            .hub
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registry
            .len()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// This store's figures for `/metrics`: revisions, database file size (0 if it cannot be
    /// read), watchers.
    pub fn gauges(&self) -> skiff_metrics::store::StoreGauges {
        skiff_metrics::store::StoreGauges {
            revision: self.revision(),
            compacted_revision: self.compacted_revision(),
            db_size_bytes: std::fs::metadata(&self.inner.path).map_or(0, |m| m.len()),
            fs_free_bytes: self.shared().free_bytes.load(Ordering::Relaxed),
            watchers: self.watcher_count() as u64,
        }
    }

    /// Group-commit figures since open.
    pub fn commit_stats(&self) -> CommitStats {
        *self
            .shared()
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the store can write: `Err` with the reason while commits fail (disk full, I/O
    /// errors), `Ok` again after the next successful commit. The writer reopens the database
    /// by itself once the cause is gone; nothing acknowledged is lost meanwhile.
    pub fn health(&self) -> Result<(), String> {
        match &*self
            .shared()
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    /// Switches to `encryption` (None: store everything plain) and rewrites every stored
    /// object and history record whose encryption differs — values sealed with a key other
    /// than the new primary, or plain ones of newly covered resources. Writes wait meanwhile;
    /// reads go on. Returns how many records were rewritten. The old keys must still be in
    /// `encryption` (as later keys) to read what they sealed.
    pub async fn reencrypt(&self, encryption: Option<Arc<Encryption>>) -> Result<u64, StoreError> {
        self.request(|reply| Request::Reencrypt(encryption, reply))
            .await
    }

    /// Drops history at or below `revision` (clamped to the current revision) from memory and
    /// disk. Runs on a timer too (see [`StoreOptions`]).
    pub async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.request(|reply| Request::Compact(revision, reply))
            .await
    }

    /// Finishes queued writes and closes the database; other handles then get
    /// [`StoreError::Closed`] for writes. Reads keep serving the last state.
    pub async fn close(self) {
        let (reply, done) = oneshot::channel();
        if let Some(tx) = self.inner.tx.as_ref() {
            if tx.send(Request::Shutdown(reply)).is_ok() {
                let _ = done.await;
            }
        }
    }
}

/// Names the file in errors that mean it is damaged.
fn corrupt_file(path: &Path, e: StoreError) -> StoreError {
    let detail = match &e {
        StoreError::Database(db) => match &**db {
            redb::Error::Corrupted(m) => m.clone(),
            redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => io.to_string(),
            _ => return e,
        },
        StoreError::Corrupt(m) => m.clone(),
        _ => return e,
    };
    StoreError::CorruptFile {
        path: path.display().to_string(),
        detail,
    }
}

/// Creates the database's directory (0700) and file (0600) if missing, and makes an existing
/// file 0600: it holds every Secret, so only the server's user may read it. redb would create
/// the file with the umask's mode (0644), readable by every local user.
fn private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| StoreError::Io {
            path: p,
            source: Arc::new(e),
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io(path))
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("revision", &self.revision())
            .finish()
    }
}
