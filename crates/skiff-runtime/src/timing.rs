//! Phase timings of slow operations, logged at debug level (`RUST_LOG=skiff_runtime=debug`).

use std::time::Instant;

/// Records how long each phase of an operation took.
pub(crate) struct Phases {
    what: &'static str,
    last: Instant,
    first: Instant,
    marks: Vec<(&'static str, u128)>,
}

impl Phases {
    pub(crate) fn new(what: &'static str) -> Phases {
        let now = Instant::now();
        Phases {
            what,
            last: now,
            first: now,
            marks: Vec::new(),
        }
    }

    /// Ends the current phase, naming it.
    pub(crate) fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.marks
            .push((phase, now.duration_since(self.last).as_micros()));
        self.last = now;
    }

    /// Logs the phases.
    pub(crate) fn log(&self, subject: &str) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let phases: Vec<String> = self
                .marks
                .iter()
                .map(|(p, us)| format!("{p}={:.1}ms", *us as f64 / 1000.0))
                .collect();
            tracing::debug!(
                subject,
                total_ms = self.last.duration_since(self.first).as_secs_f64() * 1000.0,
                phases = %phases.join(" "),
                "{} timings",
                self.what
            );
        }
    }
}
