//! The [`Watcher`] stream clients read: initial events (a snapshot or a replay from the
//! history), then the live events the registry routes to it, with bookmarks.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::context::Shared;
use crate::filter::Filter;
use crate::history::Event;
use crate::state::{ItemMap, KeyRange};
use crate::WatchEvent;

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
