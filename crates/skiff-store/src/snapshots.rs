//! Recently served states at older revisions, kept for the next pages of paginated lists.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state::ItemMap;

/// Snapshots kept for paginated lists.
const SNAPSHOT_CACHE_ENTRIES: usize = 8;
/// How long an unused snapshot is kept.
const SNAPSHOT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Recently served states at older revisions, for the next pages of paginated lists.
#[derive(Default)]
pub(crate) struct SnapshotCache {
    entries: VecDeque<(Arc<str>, u64, ItemMap, Instant)>,
}

impl SnapshotCache {
    pub(crate) fn get(&mut self, resource: &str, revision: u64) -> Option<ItemMap> {
        let now = Instant::now();
        self.entries
            .retain(|(_, _, _, t)| now.duration_since(*t) < SNAPSHOT_CACHE_TTL);
        let e = self
            .entries
            .iter_mut()
            .find(|(r, rev, _, _)| **r == *resource && *rev == revision)?;
        e.3 = now;
        Some(e.2.clone())
    }

    pub(crate) fn put(&mut self, resource: &str, revision: u64, items: ItemMap) {
        if self.get(resource, revision).is_some() {
            return;
        }
        if self.entries.len() >= SNAPSHOT_CACHE_ENTRIES {
            self.entries.pop_front();
        }
        self.entries
            .push_back((Arc::from(resource), revision, items, Instant::now()));
    }

    pub(crate) fn forget_before(&mut self, revision: u64) {
        self.entries.retain(|(_, r, _, _)| *r >= revision);
    }
}
