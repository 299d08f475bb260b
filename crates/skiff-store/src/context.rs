//! The state the store handle, the writer thread, lists and watchers share. It depends only on
//! leaf modules (state, history, registry, snapshots, stats), so the modules that use it never
//! form a cycle with the store handle.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock};

use crate::history::History;
use crate::registry::Registry;
use crate::snapshots::SnapshotCache;
use crate::state::Published;
use crate::stats::CommitStats;
use crate::StoreOptions;

/// History and watchers, behind one lock (the writer publishes under it).
#[derive(Default)]
pub(crate) struct Hub {
    pub history: History,
    pub registry: Registry,
}

/// What the store handle, the writer thread and the watchers share.
pub(crate) struct Shared {
    pub state: RwLock<Published>,
    pub hub: Mutex<Hub>,
    /// The newest revision whose events have been handed to watchers.
    pub dispatched: AtomicU64,
    pub compacted: AtomicU64,
    pub closed: AtomicBool,
    pub options: StoreOptions,
    pub snapshots: Mutex<SnapshotCache>,
    pub stats: Mutex<CommitStats>,
    /// Why the last commit failed, until one succeeds (see `Store::health`).
    pub health: Mutex<Option<String>>,
    /// Free bytes of the database's filesystem at the last check.
    pub free_bytes: AtomicU64,
}

impl Shared {
    pub(crate) fn current_revision(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revision
    }
}
