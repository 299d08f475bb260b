//! Watchers: the index that routes each committed event to the watchers interested in it, and
//! the [`Watcher`] stream clients read.
//!
//! Watchers are indexed per resource by namespace (or all namespaces) and, when their field
//! selector pins `metadata.name` or `spec.nodeName` to one value, by that value. An event is
//! offered only to the buckets it can concern: the all-namespaces bucket, its namespace's
//! bucket, its name's bucket and the buckets of its old and new `spec.nodeName`. Thousands of
//! node watchers on `spec.nodeName=<node>` therefore cost a write O(1), not O(watchers).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use skiff_types::selector::{FieldSelector, LabelSelector};
use tokio::sync::mpsc;

use crate::history::{Event, EventKind};
use crate::state::{ItemMap, KeyRange};
use crate::store::Shared;
use crate::{Object, WatchEvent};

/// Field selector paths watchers are indexed by (exact-match terms only).
const INDEXED_FIELDS: [&str; 2] = ["metadata.name", "spec.nodeName"];

/// Which objects a watcher wants.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub namespace: Option<Box<str>>,
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
}

impl Filter {
    pub(crate) fn new(
        namespace: Option<&str>,
        label: Option<LabelSelector>,
        field: Option<FieldSelector>,
    ) -> Self {
        Filter {
            namespace: namespace.map(Into::into),
            label: label.filter(|l| !l.is_empty()),
            field: field.filter(|f| !f.is_empty()),
        }
    }

    pub(crate) fn has_selectors(&self) -> bool {
        self.label.is_some() || self.field.is_some()
    }

    pub(crate) fn matches(&self, o: &Object) -> bool {
        if let Some(ns) = &self.namespace {
            if o.key().namespace.as_deref() != Some(ns.as_ref()) {
                return false;
            }
        }
        if let Some(l) = &self.label {
            if !l.matches_with(|k| o.label(k)) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            if !f.matches(|p| o.field(p)) {
                return false;
            }
        }
        true
    }

    /// What this watcher sees of an event, with upstream's watch-cache semantics for objects
    /// moving into (Added) or out of (Deleted) the selection.
    pub(crate) fn convert(&self, ev: &Event) -> Option<WatchEvent> {
        match ev.kind {
            EventKind::Added => self
                .matches(&ev.object)
                .then(|| WatchEvent::Added(ev.object.clone())),
            EventKind::Deleted => {
                let was = ev.prev.as_ref().unwrap_or(&ev.object);
                self.matches(was)
                    .then(|| WatchEvent::Deleted(ev.object.clone()))
            }
            EventKind::Modified => {
                let now = self.matches(&ev.object);
                let was = ev.prev.as_ref().is_some_and(|p| self.matches(p));
                match (was, now) {
                    (true, true) => Some(WatchEvent::Modified(ev.object.clone())),
                    (false, true) => Some(WatchEvent::Added(ev.object.clone())),
                    (true, false) => ev
                        .prev
                        .as_ref()
                        .map(|p| WatchEvent::Deleted(p.with_revision(ev.revision()))),
                    (false, false) => None,
                }
            }
        }
    }

    /// The bucket this watcher goes into.
    fn bucket(&self) -> Bucket {
        if let Some(f) = &self.field {
            for field in INDEXED_FIELDS {
                if let Some(v) = f.requires_exact_match(field) {
                    return Bucket::Field(field, v.into());
                }
            }
        }
        Bucket::Namespace(self.namespace.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Bucket {
    Namespace(Option<Box<str>>),
    Field(&'static str, Box<str>),
}

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

/// Events a watcher delivers before its live stream.
enum Initial {
    /// Synthetic Added events for the objects that existed at the start.
    Snapshot {
        items: ItemMap,
        range: KeyRange,
        /// Last key delivered.
        cursor: Option<Box<str>>,
    },
    /// Events after the requested revision, from the history.
    Replay(VecDeque<Arc<Event>>),
}

/// A stream of [`WatchEvent`]s for one resource (and namespace and selectors). Implements
/// `futures::Stream`; [`Watcher::next`] is the same as an async method. It ends (`None`) when
/// the watcher fell too far behind or the store closed; clients then re-list, as upstream.
pub struct Watcher {
    shared: Arc<Shared>,
    id: u64,
    filter: Filter,
    initial: Option<Initial>,
    /// Revision to announce after the initial events (initial-events-end bookmark).
    initial_bookmark: Option<u64>,
    rx: mpsc::Receiver<WatchEvent>,
    bookmark_interval: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    bookmark_due: bool,
}

impl Watcher {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_snapshot(
        shared: Arc<Shared>,
        id: u64,
        filter: Filter,
        items: ItemMap,
        initial_bookmark: Option<u64>,
        rx: mpsc::Receiver<WatchEvent>,
        bookmark_interval: Option<Duration>,
    ) -> Self {
        let range = KeyRange::for_namespace(filter.namespace.as_deref());
        Watcher {
            shared,
            id,
            filter,
            initial: Some(Initial::Snapshot {
                items,
                range,
                cursor: None,
            }),
            initial_bookmark,
            rx,
            bookmark_interval,
            sleep: None,
            bookmark_due: false,
        }
    }

    pub(crate) fn new_replay(
        shared: Arc<Shared>,
        id: u64,
        filter: Filter,
        events: VecDeque<Arc<Event>>,
        rx: mpsc::Receiver<WatchEvent>,
        bookmark_interval: Option<Duration>,
    ) -> Self {
        Watcher {
            shared,
            id,
            filter,
            initial: Some(Initial::Replay(events)),
            initial_bookmark: None,
            rx,
            bookmark_interval,
            sleep: None,
            bookmark_due: false,
        }
    }

    /// The next event; None when the watch ended.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn next_initial(&mut self) -> Option<WatchEvent> {
        loop {
            match self.initial.as_mut()? {
                Initial::Snapshot {
                    items,
                    range,
                    cursor,
                } => {
                    let start = cursor.as_ref().map(|c| format!("{c}\0"));
                    let next = range
                        .iter(items, start.as_deref())
                        .find(|(_, o)| self.filter.matches(o))
                        .map(|(k, o)| (k.clone(), o.clone()));
                    match next {
                        Some((k, o)) => {
                            *cursor = Some(k);
                            return Some(WatchEvent::Added(o));
                        }
                        None => {
                            self.initial = None;
                            if let Some(r) = self.initial_bookmark.take() {
                                return Some(WatchEvent::Bookmark(r));
                            }
                        }
                    }
                }
                Initial::Replay(events) => match events.pop_front() {
                    Some(ev) => {
                        if let Some(we) = self.filter.convert(&ev) {
                            return Some(we);
                        }
                    }
                    None => self.initial = None,
                },
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        if self.initial.is_some() {
            if let Some(ev) = self.next_initial() {
                return Poll::Ready(Some(ev));
            }
        }
        loop {
            // Read the delivered revision before looking at the queue: if the queue is then
            // empty, every event up to that revision has been handed out.
            let delivered = self.shared.dispatched.load(Ordering::Acquire);
            match self.rx.poll_recv(cx) {
                Poll::Ready(ev) => return Poll::Ready(ev),
                Poll::Pending => {}
            }
            if self.bookmark_due {
                self.bookmark_due = false;
                return Poll::Ready(Some(WatchEvent::Bookmark(delivered)));
            }
            let Some(interval) = self.bookmark_interval else {
                return Poll::Pending;
            };
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    sleep.as_mut().reset(tokio::time::Instant::now() + interval);
                    self.bookmark_due = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures::Stream for Watcher {
    type Item = WatchEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(mut hub) = self.shared.hub.lock() {
            hub.registry.unregister(self.id);
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("id", &self.id)
            .field("filter", &self.filter)
            .finish()
    }
}
