//! Scheduling attempts, as upstream kube-scheduler names them:
//! `scheduler_schedule_attempts_total{result,profile}` and
//! `scheduler_scheduling_attempt_duration_seconds{result,profile}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::exponential;

/// The one scheduler profile skiff has (upstream's default profile name).
const PROFILE: &str = "default-scheduler";

/// How a scheduling attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    /// A node was found and the binding written.
    Scheduled,
    /// No node fits the pod.
    Unschedulable,
    /// A node was found but the binding failed.
    Error,
}

impl AttemptResult {
    /// Upstream's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: &'static str,
    profile: &'static str,
}

/// The scheduler's families.
#[derive(Debug)]
pub struct SchedulerMetrics {
    attempts: Family<AttemptLabels, Counter>,
    durations: Family<AttemptLabels, Histogram, fn() -> Histogram>,
}

fn attempt_histogram() -> Histogram {
    // Upstream's buckets: 1 ms .. ~16 s.
    Histogram::new(exponential(0.001, 2.0, 15))
}

impl SchedulerMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let attempts = Family::<AttemptLabels, Counter>::default();
        let durations = Family::new_with_constructor(attempt_histogram as fn() -> Histogram);
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod \
             could not be scheduled, while 'error' means a binding failed",
            attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            durations.clone(),
        );
        let metrics = SchedulerMetrics {
            attempts,
            durations,
        };
        // Every result shows from the start (at 0), so rates work before the first of a kind.
        for result in [
            AttemptResult::Scheduled,
            AttemptResult::Unschedulable,
            AttemptResult::Error,
        ] {
            let labels = AttemptLabels {
                result: result.as_str(),
                profile: PROFILE,
            };
            drop(metrics.attempts.get_or_create(&labels));
            drop(metrics.durations.get_or_create(&labels));
        }
        metrics
    }

    /// Records one attempt that ended with `result` after `elapsed`.
    pub fn attempt(&self, result: AttemptResult, elapsed: Duration) {
        let labels = AttemptLabels {
            result: result.as_str(),
            profile: PROFILE,
        };
        self.attempts.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Attempts counted so far with `result` (for tests).
    pub fn attempts(&self, result: AttemptResult) -> u64 {
        self.attempts
            .get_or_create(&AttemptLabels {
                result: result.as_str(),
                profile: PROFILE,
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;

    #[test]
    fn attempts_by_result() {
        let metrics = Metrics::new();
        let s = &metrics.scheduler;
        s.attempt(AttemptResult::Scheduled, Duration::from_millis(2));
        s.attempt(AttemptResult::Unschedulable, Duration::from_micros(300));
        s.attempt(AttemptResult::Unschedulable, Duration::from_micros(300));
        assert_eq!(s.attempts(AttemptResult::Scheduled), 1);
        assert_eq!(s.attempts(AttemptResult::Unschedulable), 2);
        assert_eq!(s.attempts(AttemptResult::Error), 0);
        let text = metrics.encode(None);
        assert!(
            text.contains(
                "scheduler_schedule_attempts_total{result=\"unschedulable\",\
                 profile=\"default-scheduler\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "scheduler_scheduling_attempt_duration_seconds_count{result=\"scheduled\",\
                 profile=\"default-scheduler\"} 1\n"
            ),
            "{text}"
        );
    }
}
