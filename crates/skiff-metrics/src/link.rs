//! The server side of the node link: connected sessions and sessions established.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EstablishedLabels {
    /// `true` when the agent resumed from a revision (a reconnect).
    resumed: bool,
}

/// The link's families.
#[derive(Debug)]
pub struct LinkMetrics {
    sessions: Gauge,
    established: Family<EstablishedLabels, Counter>,
}

impl LinkMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let sessions = Gauge::default();
        let established = Family::<EstablishedLabels, Counter>::default();
        registry.register(
            "skiff_link_sessions",
            "Node sessions connected to this server",
            sessions.clone(),
        );
        registry.register(
            "skiff_link_sessions_established",
            "Node sessions established; resumed=\"true\" counts reconnects of agents that \
             resumed from a revision",
            established.clone(),
        );
        for resumed in [false, true] {
            drop(established.get_or_create(&EstablishedLabels { resumed }));
        }
        LinkMetrics {
            sessions,
            established,
        }
    }

    /// Counts a session that just opened; it is connected until the guard is dropped.
    pub fn session_opened(&self, resumed: bool) -> SessionGuard<'_> {
        self.established
            .get_or_create(&EstablishedLabels { resumed })
            .inc();
        self.sessions.inc();
        SessionGuard { metrics: self }
    }

    /// Sessions established so far, resumed (reconnects) or fresh.
    pub fn established(&self, resumed: bool) -> u64 {
        self.established
            .get_or_create(&EstablishedLabels { resumed })
            .get()
    }

    /// Sessions connected now.
    pub fn connected(&self) -> i64 {
        self.sessions.get()
    }
}

/// A connected session: lowers the gauge when dropped.
#[derive(Debug)]
pub struct SessionGuard<'a> {
    metrics: &'a LinkMetrics,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.metrics.sessions.dec();
    }
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    #[test]
    fn sessions_gauge_follows_the_guards() {
        let metrics = Metrics::new();
        let first = metrics.link.session_opened(false);
        {
            let _second = metrics.link.session_opened(true);
            assert_eq!(metrics.link.connected(), 2);
        }
        assert_eq!(metrics.link.connected(), 1);
        assert_eq!(
            (
                metrics.link.established(false),
                metrics.link.established(true)
            ),
            (1, 1)
        );
        let text = metrics.encode(None);
        assert!(text.contains("skiff_link_sessions 1\n"), "{text}");
        assert!(
            text.contains("skiff_link_sessions_established_total{resumed=\"true\"} 1\n"),
            "{text}"
        );
        drop(first);
        assert_eq!(metrics.link.connected(), 0);
    }
}
