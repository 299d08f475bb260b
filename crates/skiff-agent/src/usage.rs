//! Resource-usage reports for the metrics API: every [`REPORT_INTERVAL`] the node's and its
//! containers' cgroup figures ([`skiff_runtime::usage`]) go to the server over the link
//! (`AgentMessage::ResourceUsage`, only to servers of protocol 5 and later — the link checks).
//! One extra report goes out when a container reaches [`FRESH_CONTAINER_MIN_AGE`] (5 s), so a
//! new pod shows in `kubectl top` seconds after it starts, by metrics-server's fresh-container
//! rule. Nothing is written to disk; the last snapshot stays in memory for the node's own
//! `/stats/summary` rates.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_link::proto::usage::{
    ContainerUsage, PodUsage, UsageReport, UsageSample, FRESH_CONTAINER_MIN_AGE, REPORT_INTERVAL,
};
use skiff_link::proto::PodRef;
use skiff_link::quic::{AgentLink, LinkState};
use skiff_runtime::usage::{CgroupUsage, UsageSnapshot};
use skiff_runtime::Runtime;
use tokio::sync::OnceCell;

/// How often the reporter looks (in memory only) for containers that just became old enough.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A snapshot and when it was taken (milliseconds since the Unix epoch).
#[derive(Debug, Clone, Default)]
pub struct TimedSnapshot {
    /// When the cgroups were read.
    pub at_ms: i64,
    /// What they said.
    pub snapshot: UsageSnapshot,
}

/// The last snapshot the reporter took (shared with the node's HTTP endpoints).
#[derive(Debug, Clone, Default)]
pub struct LastUsage(Arc<Mutex<Option<TimedSnapshot>>>);

impl LastUsage {
    /// The last snapshot, if any.
    pub fn get(&self) -> Option<TimedSnapshot> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, snapshot: TimedSnapshot) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
    }
}

/// Reads the node's and its containers' usage now (blocking file reads on a blocking thread).
pub async fn read(runtime: &Runtime) -> TimedSnapshot {
    let runtime = runtime.clone();
    let snapshot = tokio::task::spawn_blocking(move || runtime.resource_usage())
        .await
        .unwrap_or_default();
    TimedSnapshot {
        at_ms: jiff::Timestamp::now().as_millisecond(),
        snapshot,
    }
}

fn sample(usage: CgroupUsage) -> UsageSample {
    UsageSample {
        cpu_ns: usage.cpu_usage_ns,
        memory_bytes: usage.working_set_bytes,
    }
}

/// The link message for a snapshot.
pub fn report(taken: &TimedSnapshot) -> UsageReport {
    UsageReport {
        timestamp_ms: taken.at_ms,
        node: taken.snapshot.node.map(sample),
        pods: taken
            .snapshot
            .pods
            .iter()
            .map(|p| PodUsage {
                pod: PodRef {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                },
                containers: p
                    .containers
                    .iter()
                    .map(|c| ContainerUsage {
                        name: c.name.clone(),
                        started_ms: c.started_ms,
                        usage: sample(c.usage),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Whether a report is due at `now_ms`: the interval passed since the last one, or a
/// container reached the fresh-container age since then.
fn due(last_sent_ms: Option<i64>, now_ms: i64, starts: &[i64]) -> bool {
    let Some(last) = last_sent_ms else {
        return true;
    };
    let interval = REPORT_INTERVAL.as_millis() as i64;
    let fresh = FRESH_CONTAINER_MIN_AGE.as_millis() as i64;
    now_ms - last >= interval
        || starts.iter().any(|start| {
            let ripe = start + fresh;
            ripe > last && ripe <= now_ms
        })
}

/// Sends reports until the agent is gone (it holds the only strong reference to `link`) or
/// its link stopped.
pub(crate) fn spawn_reporter(
    runtime: Runtime,
    link: std::sync::Weak<OnceCell<Arc<AgentLink>>>,
    last: LastUsage,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sent: Option<i64> = None;
        loop {
            tick.tick().await;
            let Some(cell) = link.upgrade() else { return };
            let Some(link) = cell.get().cloned() else {
                continue;
            };
            drop(cell);
            if link.state() == LinkState::Stopped {
                return;
            }
            let now = jiff::Timestamp::now().as_millisecond();
            if !due(last_sent, now, &runtime.running_container_starts()) {
                continue;
            }
            let taken = read(&runtime).await;
            link.report_usage(report(&taken));
            last_sent = Some(taken.at_ms);
            last.set(taken);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_interval_and_when_a_container_turns_fresh() {
        let t = 1_000_000;
        assert!(due(None, t, &[]), "the first report goes at once");
        assert!(!due(Some(t), t + 14_000, &[]));
        assert!(due(Some(t), t + 15_000, &[]));
        // A container started 3 s before the last report is 5 s old 2 s after it.
        assert_eq!(FRESH_CONTAINER_MIN_AGE, Duration::from_secs(5));
        assert!(!due(Some(t), t + 1_000, &[t - 3_000]));
        assert!(due(Some(t), t + 2_000, &[t - 3_000]));
        // Once reported at that age, not again.
        assert!(!due(Some(t + 2_000), t + 3_000, &[t - 3_000]));
        // A container already older than that at the last report triggers nothing.
        assert!(!due(Some(t), t + 1_000, &[t - 60_000]));
    }
}
