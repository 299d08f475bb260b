//! The event log in memory: what happened at each revision since the compaction point, per
//! resource, with each event's previous state (for filtered watches and for rebuilding the
//! state at an older revision).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::Object;

/// What an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            EventKind::Added => 1,
            EventKind::Modified => 2,
            EventKind::Deleted => 3,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => EventKind::Added,
            2 => EventKind::Modified,
            3 => EventKind::Deleted,
            _ => return None,
        })
    }
}

/// One committed change. `object` is the new state (for deletes: the last state with the
/// deletion revision); `prev` the state before (None for creates).
#[derive(Debug)]
pub(crate) struct Event {
    pub kind: EventKind,
    pub object: Object,
    pub prev: Option<Object>,
    /// Commit time, milliseconds since the Unix epoch (for age-based compaction).
    pub time_ms: u64,
}

impl Event {
    pub(crate) fn revision(&self) -> u64 {
        self.object.revision()
    }
}

/// The log: per resource, events in revision order; plus a global timeline for compaction.
#[derive(Default)]
pub(crate) struct History {
    logs: HashMap<Arc<str>, VecDeque<Arc<Event>>>,
    /// (revision, time) of every event in the log, in order.
    timeline: VecDeque<(u64, u64)>,
    /// Events at or below this revision are gone.
    pub compacted: u64,
}

impl History {
    pub(crate) fn push(&mut self, resource: &Arc<str>, event: Arc<Event>) {
        self.timeline.push_back((event.revision(), event.time_ms));
        self.logs
            .entry(resource.clone())
            .or_default()
            .push_back(event);
    }

    /// Events of `resource` with revision greater than `after`, oldest first.
    pub(crate) fn since(&self, resource: &str, after: u64) -> impl Iterator<Item = &Arc<Event>> {
        let log = self.logs.get(resource);
        let start = log.map_or(0, |l| l.partition_point(|e| e.revision() <= after));
        log.into_iter().flat_map(move |l| l.range(start..))
    }

    /// Drops events at or below `upto`.
    pub(crate) fn compact(&mut self, upto: u64) {
        if upto <= self.compacted {
            return;
        }
        for log in self.logs.values_mut() {
            while log.front().is_some_and(|e| e.revision() <= upto) {
                log.pop_front();
            }
        }
        self.logs.retain(|_, l| !l.is_empty());
        while self.timeline.front().is_some_and(|(r, _)| *r <= upto) {
            self.timeline.pop_front();
        }
        self.compacted = upto;
    }

    /// The newest revision committed at or before `cutoff_ms` (0 if none).
    pub(crate) fn last_revision_before(&self, cutoff_ms: u64) -> u64 {
        let n = self.timeline.partition_point(|(_, t)| *t <= cutoff_ms);
        if n == 0 {
            0
        } else {
            self.timeline[n - 1].0
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.timeline.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn ev(rev: u64, t: u64) -> Arc<Event> {
        Arc::new(Event {
            kind: EventKind::Added,
            object: Object::new(
                Key::cluster("nodes", format!("n{rev}")),
                rev,
                b"{}".to_vec(),
            ),
            prev: None,
            time_ms: t,
        })
    }

    #[test]
    fn since_and_compact() {
        let mut h = History::default();
        let nodes: Arc<str> = "nodes".into();
        let pods: Arc<str> = "pods".into();
        for r in 1..=10 {
            h.push(if r % 2 == 0 { &nodes } else { &pods }, ev(r, r * 100));
        }
        let revs: Vec<u64> = h.since("nodes", 5).map(|e| e.revision()).collect();
        assert_eq!(revs, [6, 8, 10]);
        assert_eq!(h.last_revision_before(450), 4);
        assert_eq!(h.last_revision_before(50), 0);
        h.compact(6);
        assert_eq!(h.compacted, 6);
        assert_eq!(h.len(), 4);
        let revs: Vec<u64> = h.since("pods", 0).map(|e| e.revision()).collect();
        assert_eq!(revs, [7, 9]);
    }
}
