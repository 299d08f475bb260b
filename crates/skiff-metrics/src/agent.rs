//! The node agent: pods started, container restarts, probe failures. Only the server's
//! in-process local agent reaches a `/metrics` (remote agents count into their own process).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe_type: &'static str,
}

/// The agent's families.
#[derive(Debug)]
pub struct AgentMetrics {
    pod_starts: Counter,
    container_restarts: Counter,
    probe_failures: Family<ProbeLabels, Counter>,
    fs_free_bytes: Gauge,
}

impl AgentMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let pod_starts = Counter::default();
        let container_restarts = Counter::default();
        let probe_failures = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "skiff_agent_pod_starts",
            "Pods handed to the container runtime to start",
            pod_starts.clone(),
        );
        registry.register(
            "skiff_agent_container_restarts",
            "Container restarts seen in pod statuses (restart counts going up)",
            container_restarts.clone(),
        );
        registry.register(
            "skiff_agent_probe_failures",
            "Failed probe attempts by probe type (Liveness, Readiness, Startup)",
            probe_failures.clone(),
        );
        let fs_free_bytes = Gauge::default();
        registry.register(
            "skiff_agent_fs_free_bytes",
            "Bytes available to the agent on the file system of its data directory (DiskPressure below 10 %)",
            fs_free_bytes.clone(),
        );
        for probe_type in ["Liveness", "Readiness", "Startup"] {
            drop(probe_failures.get_or_create(&ProbeLabels { probe_type }));
        }
        AgentMetrics {
            pod_starts,
            container_restarts,
            probe_failures,
            fs_free_bytes,
        }
    }

    /// Free bytes on the data directory's file system, as last read.
    pub fn set_fs_free_bytes(&self, bytes: u64) {
        self.fs_free_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A pod was started.
    pub fn pod_started(&self) {
        self.pod_starts.inc();
    }

    /// Containers restarted `n` more times.
    pub fn containers_restarted(&self, n: u64) {
        if n > 0 {
            self.container_restarts.inc_by(n);
        }
    }

    /// A probe attempt failed; `probe_type` is upstream's capitalised name (`Liveness`).
    pub fn probe_failed(&self, probe_type: &'static str) {
        self.probe_failures
            .get_or_create(&ProbeLabels { probe_type })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    #[test]
    fn agent_counters() {
        let metrics = Metrics::new();
        metrics.agent.pod_started();
        metrics.agent.containers_restarted(0);
        metrics.agent.containers_restarted(2);
        metrics.agent.probe_failed("Liveness");
        metrics.agent.set_fs_free_bytes(4096);
        let text = metrics.encode(None);
        assert!(text.contains("skiff_agent_pod_starts_total 1\n"), "{text}");
        assert!(
            text.contains("skiff_agent_container_restarts_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("skiff_agent_probe_failures_total{probe_type=\"Liveness\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("skiff_agent_fs_free_bytes 4096\n"), "{text}");
    }
}
