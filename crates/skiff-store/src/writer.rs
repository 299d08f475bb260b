//! The single writer thread: group commit, revision assignment, publication, fan-out.
//!
//! Requests queue on a channel. The writer takes everything queued (up to `max_batch`),
//! applies the requests in order against the committed state plus the batch's own earlier
//! changes, writes all changes in one durable redb transaction, then publishes them (state,
//! history, watchers) and answers every request. A failed commit fails the whole batch and
//! publishes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::context::Shared;
use crate::db::{Change, Db};
use crate::encryption::Encryption;
use crate::history::{Event, EventKind};
use crate::meta::{self, Merged};
use crate::object::set_resource_version;
use crate::{Key, Object, Preconditions, StoreError};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One change of a batch: resource, map key, event.
type Staged = (Arc<str>, Box<str>, Event);

/// A write, already checked for shape by the caller's task.
pub(crate) enum WriteOp {
    Create {
        key: Key,
        value: Value,
    },
    Update {
        key: Key,
        value: Value,
        precondition: Option<u64>,
    },
    Delete {
        key: Key,
        preconditions: Preconditions,
    },
}

pub(crate) enum Request {
    Write(WriteOp, Reply<Object>),
    Compact(u64, Reply<()>),
    Reencrypt(Option<Arc<Encryption>>, Reply<u64>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) struct Writer {
    /// None after a failed commit: the database is reopened before the next transaction (redb
    /// refuses every write after an I/O error until reopened).
    db: Option<Db>,
    /// The changes of the last batch whose commit failed, with the revision they end at: a
    /// commit can fail after it reached the disk (ENOSPC or EIO while syncing); if the
    /// reopened file is at that revision they are published then.
    unpublished: Option<(Vec<Staged>, u64)>,
    path: PathBuf,
    encryption: Option<Arc<Encryption>>,
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    next_compaction: Instant,
    next_disk_check: Instant,
}

/// How often the free space of the database's filesystem is looked at.
const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Writer {
    pub(crate) fn new(
        db: Db,
        path: PathBuf,
        encryption: Option<Arc<Encryption>>,
        shared: Arc<Shared>,
        rx: Receiver<Request>,
    ) -> Self {
        let next_compaction = Instant::now() + shared.options.compaction_interval;
        Writer {
            db: Some(db),
            unpublished: None,
            path,
            encryption,
            shared,
            rx,
            next_compaction,
            next_disk_check: Instant::now(),
        }
    }

    /// The database, reopened first if the last commit failed. The reopened file must be at
    /// the revision memory is at, or at the end of the failed batch: a commit reported failed
    /// that reached the disk anyway (seen with a full disk) is published now — its requests
    /// were answered with an error, which never promised the write did not happen. Any other
    /// difference cannot be reconciled here and writes stay refused until a restart loads
    /// the file.
    fn db(&mut self) -> Result<&Db, StoreError> {
        if self.db.is_none() {
            let db = Db::open(&self.path, self.shared.options.db_cache_bytes)?;
            let on_disk = db.stored_revision()?;
            let in_memory = self.shared.current_revision();
            match self.unpublished.take() {
                Some((staged, rev)) if rev == on_disk && on_disk > in_memory => {
                    tracing::warn!(
                        revision = rev,
                        changes = staged.len(),
                        "a commit reported failed had reached the database file; published it"
                    );
                    self.publish(staged, rev);
                }
                _ => {}
            }
            let in_memory = self.shared.current_revision();
            if on_disk != in_memory {
                return Err(StoreError::Unavailable(format!(
                    "after a failed commit the database file is at revision {on_disk}, memory \
                     at {in_memory}; restart the server to load the file"
                )));
            }
            tracing::info!(path = %self.path.display(), revision = on_disk, "reopened the database after a failed commit");
            self.db = Some(db);
        }
        self.db.as_ref().ok_or(StoreError::Closed)
    }

    /// Records the outcome of a transaction for [`crate::Store::health`]; a failure closes
    /// the database so the next transaction starts from a fresh handle.
    fn note(&mut self, result: &Result<(), StoreError>) {
        let mut health = self.shared.health.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if health.take().is_some() {
                    tracing::info!("the datastore writes again");
                }
            }
            Err(e) => {
                *health = Some(e.to_string());
                drop(health);
                self.db = None;
            }
        }
    }

    /// Updates the free-space gauge and warns when the database's filesystem runs low.
    fn check_disk(&mut self) {
        if Instant::now() < self.next_disk_check {
            return;
        }
        self.next_disk_check = Instant::now() + DISK_CHECK_INTERVAL;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let Some(free) = free_bytes(dir) else { return };
        self.shared.free_bytes.store(free, Ordering::Relaxed);
        let threshold = self.shared.options.low_disk_warning_bytes;
        if free < threshold {
            tracing::warn!(
                path = %dir.display(),
                free_bytes = free,
                threshold_bytes = threshold,
                "low disk space for the datastore: writes fail once it is full"
            );
        }
    }

    /// Runs until every sender is gone or a shutdown request arrives; the database is closed
    /// before shutdown requests are answered.
    pub(crate) fn run(mut self) {
        let mut shutdown: Vec<oneshot::Sender<()>> = Vec::new();
        let max_batch = self.shared.options.max_batch.max(1);
        'outer: loop {
            let timeout = self
                .next_compaction
                .saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(timeout) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    self.auto_compact();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut writes = Vec::new();
            let mut next = Some(first);
            loop {
                let req = match next.take() {
                    Some(r) => r,
                    None => match self.rx.try_recv() {
                        Ok(r) => r,
                        Err(_) => break,
                    },
                };
                match req {
                    Request::Write(op, reply) => {
                        writes.push((op, reply));
                        if writes.len() >= max_batch {
                            break;
                        }
                    }
                    Request::Compact(rev, reply) => {
                        self.commit_batch(std::mem::take(&mut writes));
                        let _ = reply.send(self.compact(rev));
                    }
                    Request::Reencrypt(encryption, reply) => {
                        self.commit_batch(std::mem::take(&mut writes));
                        let _ = reply.send(self.reencrypt(encryption));
                    }
                    Request::Shutdown(reply) => {
                        self.commit_batch(std::mem::take(&mut writes));
                        shutdown.push(reply);
                        break 'outer;
                    }
                }
            }
            self.commit_batch(writes);
            self.check_disk();
            if Instant::now() >= self.next_compaction {
                self.auto_compact();
            }
        }
        // Requests still queued behind a shutdown are refused (their senders see Closed).
        self.shared.closed.store(true, Ordering::Release);
        let Writer { db, rx, .. } = self;
        drop(rx);
        drop(db);
        for s in shutdown {
            let _ = s.send(());
        }
    }

    fn commit_batch(&mut self, writes: Vec<(WriteOp, Reply<Object>)>) {
        if writes.is_empty() {
            return;
        }
        let time_ms = now_ms();
        let mut overlay: HashMap<(Arc<str>, Box<str>), Option<Object>> = HashMap::new();
        let mut staged: Vec<Staged> = Vec::new();
        let mut outcomes: Vec<(Reply<Object>, Result<Object, StoreError>)> =
            Vec::with_capacity(writes.len());
        let base;
        let mut rev;
        {
            let state = self.shared.state.read().unwrap_or_else(|p| p.into_inner());
            base = state.revision;
            rev = base;
            let intern =
                |r: &str| -> Arc<str> { state.interned(r).unwrap_or_else(|| Arc::from(r)) };
            for (op, reply) in writes {
                let key = match &op {
                    WriteOp::Create { key, .. }
                    | WriteOp::Update { key, .. }
                    | WriteOp::Delete { key, .. } => key,
                };
                let slot = (intern(&key.resource), key.map_key());
                let current = match overlay.get(&slot) {
                    Some(o) => o.clone(),
                    None => state.get(&slot.0, &slot.1).cloned(),
                };
                let result = match op {
                    WriteOp::Create { key, mut value } => match current {
                        Some(_) => Err(StoreError::AlreadyExists { key }),
                        None => {
                            rev += 1;
                            let obj = build(key, rev, &mut value);
                            staged.push((
                                slot.0.clone(),
                                slot.1.clone(),
                                Event {
                                    kind: EventKind::Added,
                                    object: obj.clone(),
                                    prev: None,
                                    time_ms,
                                },
                            ));
                            overlay.insert(slot, Some(obj.clone()));
                            Ok(obj)
                        }
                    },
                    WriteOp::Update {
                        key,
                        value,
                        precondition,
                    } => match current {
                        None => Err(StoreError::NotFound { key }),
                        Some(cur) => match meta::merge_update(&key, &cur, value, precondition) {
                            Err(e) => Err(e),
                            Ok(Merged::Unchanged) => Ok(cur),
                            Ok(Merged::Changed(mut value)) => {
                                rev += 1;
                                let obj = build(key, rev, &mut value);
                                staged.push((
                                    slot.0.clone(),
                                    slot.1.clone(),
                                    Event {
                                        kind: EventKind::Modified,
                                        object: obj.clone(),
                                        prev: Some(cur),
                                        time_ms,
                                    },
                                ));
                                overlay.insert(slot, Some(obj.clone()));
                                Ok(obj)
                            }
                        },
                    },
                    WriteOp::Delete { key, preconditions } => match current {
                        None => Err(StoreError::NotFound { key }),
                        Some(cur) => match meta::check_delete(&key, &cur, &preconditions) {
                            Err(e) => Err(e),
                            Ok(()) => {
                                rev += 1;
                                let obj = cur.with_revision(rev);
                                staged.push((
                                    slot.0.clone(),
                                    slot.1.clone(),
                                    Event {
                                        kind: EventKind::Deleted,
                                        object: obj.clone(),
                                        prev: Some(cur),
                                        time_ms,
                                    },
                                ));
                                overlay.insert(slot, None);
                                Ok(obj)
                            }
                        },
                    },
                };
                outcomes.push((reply, result));
            }
        }

        if !staged.is_empty() {
            let changes: Vec<Change<'_>> = staged
                .iter()
                .map(|(r, k, ev)| Change {
                    resource: r,
                    map_key: k,
                    event: ev,
                })
                .collect();
            let started = Instant::now();
            let encryption = self.encryption.clone();
            // Whether the transaction ran (the database was open): only then can the batch
            // have reached the file.
            let mut attempted = false;
            let committed = self.db().and_then(|db| {
                attempted = true;
                db.commit(&changes, rev, encryption.as_deref())
            });
            self.note(&committed);
            skiff_metrics::global()
                .store
                .commit(started.elapsed(), outcomes.len());
            if let Err(e) = committed {
                tracing::error!(error = %e, batch = outcomes.len(), "commit failed; batch rejected");
                if attempted {
                    self.unpublished = Some((staged, rev));
                }
                for (reply, result) in outcomes {
                    let _ = reply.send(result.and(Err(e.clone())));
                }
                return;
            }
            self.publish(staged, rev);
        }
        {
            let mut stats = self.shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.commits += u64::from(rev > base);
            stats.writes += outcomes.len() as u64;
            stats.max_batch = stats.max_batch.max(outcomes.len() as u64);
        }
        for (reply, result) in outcomes {
            let _ = reply.send(result);
        }
    }

    /// Makes committed changes visible: state, history, watchers — under the hub lock, so a
    /// watch registering concurrently sees either all of a batch in its snapshot or all of it
    /// in its stream.
    fn publish(&mut self, staged: Vec<Staged>, rev: u64) {
        let mut hub = self.shared.hub.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut state = self.shared.state.write().unwrap_or_else(|p| p.into_inner());
            for (r, k, ev) in &staged {
                let value = match ev.kind {
                    EventKind::Deleted => None,
                    _ => Some(ev.object.clone()),
                };
                state.apply(r, k.clone(), value);
            }
            state.revision = rev;
        }
        for (r, _, ev) in staged {
            let ev = Arc::new(ev);
            hub.registry.dispatch(&r, &ev);
            hub.history.push(&r, ev);
        }
        self.shared.dispatched.store(rev, Ordering::Release);
    }

    fn auto_compact(&mut self) {
        let opts = &self.shared.options;
        self.next_compaction = Instant::now() + opts.compaction_interval;
        let current = self.shared.current_revision();
        let target = {
            let hub = self.shared.hub.lock().unwrap_or_else(|p| p.into_inner());
            let retain_ms = u64::try_from(opts.compaction_retain.as_millis()).unwrap_or(u64::MAX);
            let by_age = hub
                .history
                .last_revision_before(now_ms().saturating_sub(retain_ms));
            let by_count = opts
                .compaction_retain_revisions
                .map_or(0, |n| current.saturating_sub(n));
            by_age.max(by_count)
        };
        if target > self.shared.compacted.load(Ordering::Acquire) {
            if let Err(e) = self.compact(target) {
                tracing::warn!(error = %e, target, "compaction failed");
            }
        }
    }

    fn compact(&mut self, upto: u64) -> Result<(), StoreError> {
        let upto = upto.min(self.shared.current_revision());
        let before = self.shared.compacted.load(Ordering::Acquire);
        if upto <= before {
            return Ok(());
        }
        let started = Instant::now();
        let compacted = self.db().and_then(|db| db.compact(upto));
        self.note(&compacted);
        compacted?;
        let remaining = {
            let mut hub = self.shared.hub.lock().unwrap_or_else(|p| p.into_inner());
            hub.history.compact(upto);
            self.shared.compacted.store(upto, Ordering::Release);
            hub.history.len()
        };
        self.shared
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget_before(upto);
        tracing::debug!(
            from = before,
            to = upto,
            events_left = remaining,
            took = ?started.elapsed(),
            "compacted history"
        );
        Ok(())
    }
}

impl Writer {
    fn reencrypt(&mut self, encryption: Option<Arc<Encryption>>) -> Result<u64, StoreError> {
        let started = Instant::now();
        let rewritten = self.db().and_then(|db| db.rekey(encryption.as_deref()));
        self.note(&rewritten.as_ref().map(|_| ()).map_err(Clone::clone));
        let rewritten = rewritten?;
        // From now on new writes use the new primary key.
        self.encryption = encryption;
        tracing::info!(rewritten, took = ?started.elapsed(), "re-encrypted the datastore");
        Ok(rewritten)
    }
}

/// Free bytes (for unprivileged users) of the filesystem holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Sets the revision into the value and serializes it into a stored object.
fn build(key: Key, rev: u64, value: &mut Value) -> Object {
    set_resource_version(value, rev);
    // A serde_json::Value always serializes.
    let json = serde_json::to_vec(&*value).unwrap_or_default();
    Object::with_value(key, rev, json, value)
}
