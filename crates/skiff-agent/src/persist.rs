//! When to write a table the server keeps changing into the local state: once changes pause
//! for a moment, or under steady churn at most every few seconds (the storage of an edge node
//! is often flash). Shared by the Services table and the NetworkPolicy set.

use std::time::{Duration, Instant};

/// The table is written once changes pause for this long…
const PERSIST_QUIET: Duration = Duration::from_secs(1);
/// …or, under steady churn, at most this often.
const PERSIST_EVERY: Duration = Duration::from_secs(10);

/// The write schedule of one table.
#[derive(Debug, Default)]
pub(crate) struct Debounced {
    /// Whether the table changed since it was last written.
    dirty: bool,
    last_persisted: Option<Instant>,
    last_change: Option<Instant>,
}

impl Debounced {
    /// The table changed now.
    pub(crate) fn changed(&mut self) {
        self.dirty = true;
        self.last_change = Some(Instant::now());
    }

    /// When the table should next be written, if it changed.
    pub(crate) fn persist_at(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        let quiet = self.last_change.map(|at| at + PERSIST_QUIET);
        let steady = self.last_persisted.map(|at| at + PERSIST_EVERY);
        match (quiet, steady) {
            (Some(q), Some(s)) => Some(q.min(s)),
            (q, s) => q.or(s).or(Some(Instant::now())),
        }
    }

    /// Whether to write now: it changed, and its time has come (or `force`).
    pub(crate) fn due(&self, force: bool) -> bool {
        self.dirty && (force || self.persist_at().is_some_and(|at| at <= Instant::now()))
    }

    /// The table was written.
    pub(crate) fn persisted(&mut self) {
        self.dirty = false;
        self.last_persisted = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_after_a_pause_or_at_most_every_ten_seconds() {
        let mut d = Debounced::default();
        assert_eq!(d.persist_at(), None);
        assert!(!d.due(true), "nothing changed");
        d.changed();
        let at = d.persist_at().expect("due some time");
        assert!(at > Instant::now() && at <= Instant::now() + PERSIST_QUIET);
        assert!(!d.due(false) && d.due(true));
        d.persisted();
        assert_eq!(d.persist_at(), None);
        d.changed();
        assert!(d.persist_at().expect("due") <= Instant::now() + PERSIST_QUIET);
    }
}
