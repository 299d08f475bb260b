//! The index that routes each committed event to the watchers interested in it.
//!
//! Watchers are indexed per resource by namespace (or all namespaces) and, when their field
//! selector pins `metadata.name` or `spec.nodeName` to one value, by that value. An event is
//! offered only to the buckets it can concern: the all-namespaces bucket, its namespace's
//! bucket, its name's bucket and the buckets of its old and new `spec.nodeName`. Thousands of
//! node watchers on `spec.nodeName=<node>` therefore cost a write O(1), not O(watchers).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::filter::{Bucket, Filter};
use crate::history::Event;
use crate::WatchEvent;

struct Entry {
    filter: Filter,
    tx: mpsc::Sender<WatchEvent>,
}

#[derive(Default)]
struct ResourceWatchers {
    buckets: HashMap<Bucket, HashMap<u64, Entry>>,
    /// Watchers indexed by `spec.nodeName` (when 0, events skip extracting node names).
    node_watchers: usize,
}

/// All registered watchers.
#[derive(Default)]
pub(crate) struct Registry {
    resources: HashMap<Arc<str>, ResourceWatchers>,
    location: HashMap<u64, (Arc<str>, Bucket)>,
    next_id: u64,
}

impl Registry {
    pub(crate) fn register(
        &mut self,
        resource: Arc<str>,
        filter: Filter,
        tx: mpsc::Sender<WatchEvent>,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let bucket = filter.bucket();
        let rw = self.resources.entry(resource.clone()).or_default();
        if matches!(bucket, Bucket::Field("spec.nodeName", _)) {
            rw.node_watchers += 1;
        }
        rw.buckets
            .entry(bucket.clone())
            .or_default()
            .insert(id, Entry { filter, tx });
        self.location.insert(id, (resource, bucket));
        id
    }

    pub(crate) fn unregister(&mut self, id: u64) {
        let Some((resource, bucket)) = self.location.remove(&id) else {
            return;
        };
        let Some(rw) = self.resources.get_mut(&resource) else {
            return;
        };
        if let Some(b) = rw.buckets.get_mut(&bucket) {
            if b.remove(&id).is_some() && matches!(bucket, Bucket::Field("spec.nodeName", _)) {
                rw.node_watchers -= 1;
            }
            if b.is_empty() {
                rw.buckets.remove(&bucket);
            }
        }
        if rw.buckets.is_empty() {
            self.resources.remove(&resource);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.location.len()
    }

    /// Offers an event to the interested watchers. Watchers whose queue is full (too far
    /// behind) or whose receiver is gone are removed; their stream then ends.
    pub(crate) fn dispatch(&mut self, resource: &str, ev: &Event) {
        let Some(rw) = self.resources.get(resource) else {
            return;
        };
        let key = ev.object.key();
        let mut buckets: Vec<Bucket> = Vec::with_capacity(5);
        buckets.push(Bucket::Namespace(None));
        if let Some(ns) = &key.namespace {
            buckets.push(Bucket::Namespace(Some(ns.as_str().into())));
        }
        buckets.push(Bucket::Field("metadata.name", key.name.as_str().into()));
        if rw.node_watchers > 0 {
            let now = ev.object.field("spec.nodeName").unwrap_or_default();
            let was = ev
                .prev
                .as_ref()
                .and_then(|p| p.field("spec.nodeName"))
                .unwrap_or_default();
            if was != now {
                buckets.push(Bucket::Field("spec.nodeName", was.into()));
            }
            buckets.push(Bucket::Field("spec.nodeName", now.into()));
        }
        let mut dead = Vec::new();
        for b in &buckets {
            let Some(entries) = rw.buckets.get(b) else {
                continue;
            };
            for (id, entry) in entries {
                if let Some(we) = entry.filter.convert(ev) {
                    if entry.tx.try_send(we).is_err() {
                        dead.push(*id);
                    }
                }
            }
        }
        for id in dead {
            tracing::debug!(
                watcher = id,
                resource,
                "ending watcher: too far behind or gone"
            );
            self.unregister(id);
        }
    }
}
