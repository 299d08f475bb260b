//! Options and results of the public operations.

use std::sync::Arc;
use std::time::Duration;

use skiff_types::selector::{FieldSelector, LabelSelector};

use crate::{Encryption, Object};

/// How the store runs. `Default` suits a server; tests shorten the intervals.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How often old history is compacted away.
    pub compaction_interval: Duration,
    /// Keep at least this much history (by age) for watches and `continue` tokens.
    pub compaction_retain: Duration,
    /// Never keep more than this many revisions of history, whatever their age (bounds memory
    /// and disk under heavy churn). `None`: no cap.
    pub compaction_retain_revisions: Option<u64>,
    /// Most write requests committed in one transaction (group commit).
    pub max_batch: usize,
    /// Events buffered per watcher; a watcher further behind than this is ended (its client
    /// re-lists, as upstream clients do when a watch closes).
    pub watch_queue_capacity: usize,
    /// Interval of bookmark events for watchers that asked for them.
    pub bookmark_interval: Duration,
    /// Page cache of the database (redb's default is 1 GiB; the store keeps current state in
    /// memory itself, so a small cache suffices).
    pub db_cache_bytes: usize,
    /// Encryption at rest of chosen resources (None: everything plain; encrypted records
    /// then fail the open).
    pub encryption: Option<Arc<Encryption>>,
    /// Below this much free space on the database's filesystem, the store logs a warning.
    pub low_disk_warning_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compaction_interval: Duration::from_secs(60),
            compaction_retain: Duration::from_secs(5 * 60),
            compaction_retain_revisions: Some(500_000),
            max_batch: 1024,
            watch_queue_capacity: 10_000,
            bookmark_interval: Duration::from_secs(5),
            db_cache_bytes: 16 * 1024 * 1024,
            encryption: None,
            low_disk_warning_bytes: 256 * 1024 * 1024,
        }
    }
}

/// How a list interprets `resource_version` (upstream `resourceVersionMatch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    /// The state at a revision at least `resource_version` (the store always serves its latest
    /// state, which qualifies).
    #[default]
    NotOlderThan,
    /// The state exactly at `resource_version` (410 Gone when compacted away).
    Exact,
}

/// Options of [`Store::list`](crate::Store::list).
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only objects whose labels match.
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose fields match.
    pub field_selector: Option<FieldSelector>,
    /// At most this many items (`None` or 0: all).
    pub limit: Option<usize>,
    /// Continue a previous paginated list (token from [`ListPage::continue_token`]).
    pub continue_token: Option<String>,
    /// Upstream `resourceVersion` (0 or None: any, i.e. the latest).
    pub resource_version: Option<u64>,
    /// Upstream `resourceVersionMatch`.
    pub resource_version_match: ResourceVersionMatch,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The objects, ordered by namespace/name.
    pub items: Vec<Object>,
    /// The revision this list is consistent at (the list's `metadata.resourceVersion`).
    pub revision: u64,
    /// Token for the next page, if there may be more items.
    pub continue_token: Option<String>,
    /// How many more items follow (only without selectors, as upstream).
    pub remaining_item_count: Option<i64>,
}

/// Options of [`Store::watch`](crate::Store::watch).
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Start after this revision (replaying what happened since). None or 0: start now,
    /// with synthetic `Added` events for the objects that exist (upstream rv "" / "0").
    pub from_revision: Option<u64>,
    /// Only objects whose labels match (objects moving in/out become Added/Deleted).
    pub label_selector: Option<LabelSelector>,
    /// Only objects whose fields match (same moving in/out semantics).
    pub field_selector: Option<FieldSelector>,
    /// Send [`WatchEvent::Bookmark`] periodically.
    pub bookmarks: bool,
    /// After the synthetic `Added` events of a watch started "now", send one bookmark
    /// (upstream `sendInitialEvents`; the API server marks it `k8s.io/initial-events-end`).
    pub initial_events_end_bookmark: bool,
}

/// Conditions a delete checks against the stored object (409 Conflict when unmet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object's `metadata.uid` must be this.
    pub uid: Option<String>,
    /// The object's resourceVersion must be this.
    pub resource_version: Option<u64>,
}

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The object was created, or (filtered watches) now matches the selector.
    Added(Object),
    /// The object changed.
    Modified(Object),
    /// The object was deleted (its last state, with the deletion revision), or (filtered
    /// watches) no longer matches the selector.
    Deleted(Object),
    /// Every event up to this revision has been delivered.
    Bookmark(u64),
}

impl WatchEvent {
    /// The revision this event brings the watcher to.
    pub fn revision(&self) -> u64 {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o.revision(),
            WatchEvent::Bookmark(r) => *r,
        }
    }

    /// The object, unless this is a bookmark.
    pub fn object(&self) -> Option<&Object> {
        match self {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => Some(o),
            WatchEvent::Bookmark(_) => None,
        }
    }

    /// Upstream's event type name: ADDED, MODIFIED, DELETED, BOOKMARK.
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
        }
    }
}
