//! The metrics API's numbers: the last two resource-usage reports of every connected node
//! (`AgentMessage::ResourceUsage`, every 15 s), kept in memory only, turned into rates on
//! read as metrics-server does — CPU = Δ cumulative CPU time / Δ time between the two
//! samples (`window`), memory = the later working set. A node's reports are dropped when its
//! session ends; a pod is reported only while the node's latest report has it, so nothing
//! outlives its pod or node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_apiserver::metrics_api::{NodeUsage, PodUsage, Usage, Window};
use skiff_apiserver::MetricsSource;
use skiff_link::proto::usage::{
    UsageReport, UsageSample, FRESH_CONTAINER_MIN_AGE, REPORT_INTERVAL,
};

/// A node's last two reports, with an index of the later one's pods.
#[derive(Debug)]
struct NodeReports {
    previous: Option<Indexed>,
    latest: Indexed,
}

#[derive(Debug)]
struct Indexed {
    report: UsageReport,
    /// `(namespace, name)` → position in `report.pods`.
    pods: HashMap<(String, String), usize>,
}

impl Indexed {
    fn new(report: UsageReport) -> Self {
        let pods = report
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.pod.namespace.clone(), p.pod.name.clone()), i))
            .collect();
        Self { report, pods }
    }

    fn pod(&self, namespace: &str, name: &str) -> Option<&skiff_link::proto::usage::PodUsage> {
        let i = self.pods.get(&(namespace.to_string(), name.to_string()))?;
        self.report.pods.get(*i)
    }
}

/// Every connected node's recent reports (cheap to clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct UsageStore {
    nodes: Arc<Mutex<HashMap<String, NodeReports>>>,
    /// `(namespace, name)` → node whose latest report has the pod.
    pods: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl UsageStore {
    /// Records `node`'s newest report (the one before it becomes the previous sample).
    pub(crate) fn record(&self, node: &str, report: UsageReport) {
        let latest = Indexed::new(report);
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let previous = nodes.remove(node).map(|r| r.latest);
        if let Some(previous) = &previous {
            for key in previous.pods.keys() {
                if pods.get(key).map(String::as_str) == Some(node) {
                    pods.remove(key);
                }
            }
        }
        for key in latest.pods.keys() {
            pods.insert(key.clone(), node.to_string());
        }
        nodes.insert(node.to_string(), NodeReports { previous, latest });
    }

    /// Forgets `node` (its session ended).
    pub(crate) fn forget(&self, node: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        nodes.remove(node);
        pods.retain(|_, n| n != node);
    }

    /// How many nodes have reports (for tests and the log).
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A CPU rate between two cumulative samples, as metrics-server's `resourceUsage`: `None`
/// when time did not advance or the counter went backwards (a restarted container).
pub(crate) fn rate(
    previous: (i64, UsageSample),
    latest: (i64, UsageSample),
) -> Option<(Usage, Window)> {
    let (t0, s0) = previous;
    let (t1, s1) = latest;
    if t1 <= t0 || s1.cpu_ns < s0.cpu_ns {
        return None;
    }
    let window = Duration::from_millis(u64::try_from(t1 - t0).ok()?);
    let delta = u128::from(s1.cpu_ns - s0.cpu_ns);
    let nanocores = delta * 1_000_000_000 / window.as_nanos();
    Some((
        Usage {
            cpu_nanocores: u64::try_from(nanocores).unwrap_or(u64::MAX),
            memory_bytes: s1.memory_bytes,
        },
        Window {
            timestamp: jiff::Timestamp::from_millisecond(t1).ok()?,
            window,
        },
    ))
}

/// The earlier point of a container that has no previous sample: its start with no CPU
/// used, when it started at least [`FRESH_CONTAINER_MIN_AGE`] and less than
/// [`REPORT_INTERVAL`] before the sample (metrics-server's fresh-container rule).
fn fresh_start(started_ms: Option<i64>, sampled_ms: i64) -> Option<(i64, UsageSample)> {
    let started = started_ms?;
    let age = Duration::from_millis(u64::try_from(sampled_ms - started).ok()?);
    (FRESH_CONTAINER_MIN_AGE..REPORT_INTERVAL)
        .contains(&age)
        .then_some((started, UsageSample::default()))
}

impl MetricsSource for UsageStore {
    fn node(&self, name: &str) -> Option<NodeUsage> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let reports = nodes.get(name)?;
        let previous = reports.previous.as_ref()?;
        let (usage, window) = rate(
            (previous.report.timestamp_ms, previous.report.node?),
            (
                reports.latest.report.timestamp_ms,
                reports.latest.report.node?,
            ),
        )?;
        Some(NodeUsage { window, usage })
    }

    fn pod(&self, namespace: &str, name: &str, uid: &str) -> Option<PodUsage> {
        let node = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), name.to_string()))?
            .clone();
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let reports = nodes.get(&node)?;
        let latest = reports.latest.pod(namespace, name)?;
        if !uid.is_empty() && latest.pod.uid != uid {
            return None;
        }
        let t1 = reports.latest.report.timestamp_ms;
        let previous = reports
            .previous
            .as_ref()
            .and_then(|p| Some((p.report.timestamp_ms, p.pod(namespace, name)?)))
            .filter(|(_, p)| p.pod.uid == latest.pod.uid);
        let mut containers = Vec::new();
        let mut earliest: Option<Window> = None;
        for container in &latest.containers {
            let before = previous
                .and_then(|(t0, p)| {
                    let c = p.containers.iter().find(|c| c.name == container.name)?;
                    // A different instance (restarted) is not the same counter.
                    (c.started_ms == container.started_ms || c.started_ms.is_none())
                        .then_some((t0, c.usage))
                })
                .or_else(|| fresh_start(container.started_ms, t1));
            // Every container needs an earlier point, or the pod is not reported yet.
            let before = before?;
            let Some((usage, window)) = rate(before, (t1, container.usage)) else {
                continue;
            };
            if earliest.is_none_or(|w| w.timestamp > window.timestamp) {
                earliest = Some(window);
            }
            containers.push((container.name.clone(), usage));
        }
        containers.sort_by(|a, b| a.0.cmp(&b.0));
        Some(PodUsage {
            window: earliest?,
            containers,
        })
    }
}

#[cfg(test)]
mod tests {
    use skiff_link::proto::usage::{ContainerUsage, PodUsage as LinkPod};
    use skiff_link::proto::PodRef;

    use super::*;

    /// `(name, started_ms, cpu_ns)`.
    type TestContainer<'a> = (&'a str, i64, u64);

    fn sample(cpu_ns: u64, memory_bytes: u64) -> UsageSample {
        UsageSample {
            cpu_ns,
            memory_bytes,
        }
    }

    fn report(
        t: i64,
        node_cpu: u64,
        pods: Vec<(&str, &str, Vec<TestContainer<'_>>)>,
    ) -> UsageReport {
        UsageReport {
            timestamp_ms: t,
            node: Some(sample(node_cpu, 1 << 30)),
            pods: pods
                .into_iter()
                .map(|(name, uid, containers)| LinkPod {
                    pod: PodRef {
                        namespace: "default".into(),
                        name: name.into(),
                        uid: uid.into(),
                    },
                    containers: containers
                        .into_iter()
                        .map(|(c, started, cpu)| ContainerUsage {
                            name: c.into(),
                            started_ms: Some(started),
                            usage: sample(cpu, 4096 * 10),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn rate_is_delta_cpu_over_delta_time() {
        let (usage, window) = rate(
            (1_000_000, sample(1_000_000_000, 1)),
            (1_015_000, sample(2_500_000_000, 7)),
        )
        .unwrap();
        // 1.5 s of CPU in 15 s: a tenth of a core.
        assert_eq!(usage.cpu_nanocores, 100_000_000);
        assert_eq!(usage.memory_bytes, 7);
        assert_eq!(window.window, Duration::from_secs(15));
        assert_eq!(window.timestamp.as_millisecond(), 1_015_000);
        // Time standing still or going back, or a counter that went back: no rate.
        assert_eq!(rate((5, sample(1, 0)), (5, sample(2, 0))), None);
        assert_eq!(rate((6, sample(1, 0)), (5, sample(2, 0))), None);
        assert_eq!(rate((5, sample(9, 0)), (6, sample(2, 0))), None);
    }

    #[test]
    fn one_sample_is_not_reported_two_are() {
        let store = UsageStore::default();
        let t0 = 1_700_000_000_000;
        // The container started long before the first report: no fresh-start point.
        store.record(
            "n1",
            report(
                t0,
                10_000_000_000,
                vec![("p", "u1", vec![("c", t0 - 600_000, 1_000_000_000)])],
            ),
        );
        assert_eq!(store.node("n1"), None);
        assert_eq!(store.pod("default", "p", "u1"), None);
        store.record(
            "n1",
            report(
                t0 + 15_000,
                40_000_000_000,
                vec![("p", "u1", vec![("c", t0 - 600_000, 4_000_000_000)])],
            ),
        );
        let node = store.node("n1").unwrap();
        assert_eq!(node.usage.cpu_nanocores, 2_000_000_000);
        let pod = store.pod("default", "p", "u1").unwrap();
        assert_eq!(
            pod.containers,
            vec![(
                "c".to_string(),
                Usage {
                    cpu_nanocores: 200_000_000,
                    memory_bytes: 40960
                }
            )]
        );
        assert_eq!(pod.window.window, Duration::from_secs(15));
        // A same-named successor (another uid) is not this pod.
        assert_eq!(store.pod("default", "p", "u2"), None);
    }

    #[test]
    fn a_fresh_container_is_rated_from_its_start() {
        let store = UsageStore::default();
        let t0 = 1_700_000_000_000;
        // Started 12 s before its first sample, 1.2 s of CPU since: 100m (the agent sends at
        // 5 s of age; any first sample within [5 s, 15 s) of the start counts).
        store.record(
            "n1",
            report(
                t0,
                0,
                vec![("p", "u1", vec![("c", t0 - 12_000, 1_200_000_000)])],
            ),
        );
        let pod = store.pod("default", "p", "u1").unwrap();
        assert_eq!(pod.containers[0].1.cpu_nanocores, 100_000_000);
        assert_eq!(pod.window.window, Duration::from_secs(12));
        // Started 2 s before: too short a window.
        store.record(
            "n2",
            report(t0, 0, vec![("q", "u2", vec![("c", t0 - 2_000, 1)])]),
        );
        assert_eq!(store.pod("default", "q", "u2"), None);
    }

    #[test]
    fn a_restarted_container_or_a_new_one_waits_and_gone_pods_and_nodes_are_dropped() {
        let store = UsageStore::default();
        let t0 = 1_700_000_000_000;
        let old = t0 - 600_000;
        store.record("n1", report(t0, 0, vec![("p", "u1", vec![("a", old, 5)])]));
        // A second container appeared (no earlier point): the pod waits, as upstream.
        store.record(
            "n1",
            report(
                t0 + 15_000,
                0,
                vec![("p", "u1", vec![("a", old, 9), ("b", old, 1)])],
            ),
        );
        assert_eq!(store.pod("default", "p", "u1"), None);
        // Restarted (new start time): no rate for it either.
        store.record(
            "n1",
            report(
                t0 + 30_000,
                0,
                vec![("p", "u1", vec![("a", old, 12), ("b", t0 + 1, 1)])],
            ),
        );
        assert_eq!(store.pod("default", "p", "u1"), None);
        // The pod is gone from the latest report: gone from the API.
        store.record("n1", report(t0 + 45_000, 0, vec![]));
        assert_eq!(store.pod("default", "p", "u1"), None);
        assert!(store.pods.lock().unwrap().is_empty());
        store.forget("n1");
        assert_eq!(store.node_count(), 0);
        assert_eq!(store.node("n1"), None);
    }
}
