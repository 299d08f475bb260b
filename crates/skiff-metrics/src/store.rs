//! The store: commit latency and group-commit batch sizes (recorded by the writer thread),
//! and per-store gauges read at scrape time ([`StoreGauges`]).

use std::time::Duration;

use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::exponential;

/// The store's families.
#[derive(Debug)]
pub struct StoreMetrics {
    commit_duration: Histogram,
    batch_size: Histogram,
}

impl StoreMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        // 100 µs .. ~3.3 s.
        let commit_duration = Histogram::new(exponential(0.0001, 2.0, 16));
        // 1 .. 4096 writes per transaction.
        let batch_size = Histogram::new(exponential(1.0, 2.0, 13));
        registry.register(
            "skiff_store_commit_duration_seconds",
            "Latency of durable store transactions (one per group-commit batch), in seconds",
            commit_duration.clone(),
        );
        registry.register(
            "skiff_store_commit_batch_size",
            "Write requests answered per store transaction (group commit)",
            batch_size.clone(),
        );
        StoreMetrics {
            commit_duration,
            batch_size,
        }
    }

    /// Records one committed transaction of `writes` write requests that took `elapsed`.
    pub fn commit(&self, elapsed: Duration, writes: usize) {
        self.commit_duration.observe(elapsed.as_secs_f64());
        self.batch_size.observe(writes as f64);
    }
}

/// One store's current figures, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// The last committed revision.
    pub revision: u64,
    /// Revisions at or below this one are compacted away.
    pub compacted_revision: u64,
    /// Size of the database file in bytes.
    pub db_size_bytes: u64,
    /// Registered watchers.
    pub watchers: u64,
    /// Free bytes of the filesystem holding the database (checked every 30 s).
    pub fs_free_bytes: u64,
}

impl StoreGauges {
    pub(crate) fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        registry.register(
            "skiff_store_revision",
            "The store's last committed revision",
            gauge(self.revision),
        );
        registry.register(
            "skiff_store_compacted_revision",
            "Revisions at or below this one are compacted away",
            gauge(self.compacted_revision),
        );
        registry.register(
            "skiff_store_db_size_bytes",
            "Size of the store's database file in bytes",
            gauge(self.db_size_bytes),
        );
        registry.register(
            "skiff_store_fs_free_bytes",
            "Free bytes of the filesystem holding the store's database",
            gauge(self.fs_free_bytes),
        );
        registry.register(
            "skiff_store_watchers",
            "Watchers registered with the store",
            gauge(self.watchers),
        );
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;

    #[test]
    fn commits_are_timed_with_their_batch_size() {
        let metrics = Metrics::new();
        metrics.store.commit(Duration::from_micros(150), 1);
        metrics.store.commit(Duration::from_millis(2), 40);
        let text = metrics.encode(None);
        assert!(
            text.contains("skiff_store_commit_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_store_commit_batch_size_sum 41.0\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_store_commit_duration_seconds_bucket{le=\"0.0002\"} 1\n"),
            "{text}"
        );
    }
}
