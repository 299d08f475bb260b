//! Prometheus metrics of every skiff component, served as OpenMetrics text on `/metrics`.
//!
//! One module per component holds its metric families ([`apiserver`], [`store`],
//! [`scheduler`], [`link`], [`agent`]); [`Metrics`] registers them all in one registry.
//! Components record into the process-wide instance, [`global()`]: the server, its store
//! writer thread, scheduler, node sessions and the in-process local agent live in one process
//! and must show up in one `/metrics`, and passing a handle through every crate's constructors
//! would buy nothing but churn. Values that belong to one object rather than to the process
//! (a store's revision and file size) are not kept here: the caller reads them at scrape time
//! and hands them to [`Metrics::encode`].
//!
//! Recording is cheap: label sets are `&'static str`s and integers (no allocation), counters
//! are atomics, a family lookup takes a read lock.

pub mod agent;
pub mod apiserver;
pub mod link;
pub mod scheduler;
pub mod store;

use std::sync::OnceLock;

use prometheus_client::encoding::text;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s output (what Prometheus negotiates first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family of skiff, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// API server requests.
    pub apiserver: apiserver::ApiserverMetrics,
    /// Store commits.
    pub store: store::StoreMetrics,
    /// Scheduling attempts.
    pub scheduler: scheduler::SchedulerMetrics,
    /// Node sessions on the server side of the link.
    pub link: link::LinkMetrics,
    /// Pods, containers and probes of the agent.
    pub agent: agent::AgentMetrics,
}

impl Metrics {
    /// A fresh set of families in their own registry (tests; the process uses [`global()`]).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        Metrics {
            apiserver: apiserver::ApiserverMetrics::register(&mut registry),
            store: store::StoreMetrics::register(&mut registry),
            scheduler: scheduler::SchedulerMetrics::register(&mut registry),
            link: link::LinkMetrics::register(&mut registry),
            agent: agent::AgentMetrics::register(&mut registry),
            registry,
        }
    }

    /// The whole exposition in OpenMetrics text (see [`CONTENT_TYPE`]), with the gauges of
    /// `store` (the store behind the API answering the scrape) when given.
    pub fn encode(&self, store: Option<&store::StoreGauges>) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug in a label value.
        let _ = text::encode_registry(&mut out, &self.registry);
        if let Some(gauges) = store {
            let _ = text::encode_registry(&mut out, &gauges.registry());
        }
        let _ = text::encode_eof(&mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The process-wide metrics every component records into.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

/// Histogram bucket bounds `start, start*factor, ...` (`count` of them).
pub(crate) fn exponential(start: f64, factor: f64, count: u16) -> impl Iterator<Item = f64> {
    (0..count).map(move |i| start * factor.powi(i32::from(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family_and_ends_with_eof() {
        let metrics = Metrics::new();
        // Families without a series yet are left out; the API server's have none at first.
        metrics.apiserver.record(
            &apiserver::RequestLabels::default(),
            200,
            std::time::Duration::ZERO,
        );
        let text = metrics.encode(Some(&store::StoreGauges {
            revision: 42,
            compacted_revision: 7,
            db_size_bytes: 4096,
            watchers: 3,
            fs_free_bytes: 1 << 30,
        }));
        for family in [
            "# TYPE apiserver_request counter",
            "# TYPE apiserver_request_duration_seconds histogram",
            "# TYPE skiff_store_commit_duration_seconds histogram",
            "# TYPE skiff_store_commit_batch_size histogram",
            "skiff_store_fs_free_bytes 1073741824",
            "# TYPE scheduler_schedule_attempts counter",
            "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
            "# TYPE skiff_link_sessions gauge",
            "# TYPE skiff_link_sessions_established counter",
            "# TYPE skiff_agent_pod_starts counter",
            "# TYPE skiff_agent_container_restarts counter",
            "# TYPE skiff_agent_probe_failures counter",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
        assert!(text.contains("skiff_store_revision 42\n"), "{text}");
        assert!(
            text.contains("skiff_store_compacted_revision 7\n"),
            "{text}"
        );
        assert!(text.contains("skiff_store_db_size_bytes 4096\n"), "{text}");
        assert!(text.contains("skiff_store_watchers 3\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn without_a_store_there_are_no_store_gauges() {
        let text = Metrics::new().encode(None);
        assert!(!text.contains("skiff_store_revision"), "{text}");
    }

    #[test]
    fn exponential_buckets() {
        let b: Vec<f64> = exponential(0.001, 2.0, 4).collect();
        assert_eq!(b, vec![0.001, 0.002, 0.004, 0.008]);
    }
}
