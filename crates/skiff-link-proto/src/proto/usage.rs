//! Resource-usage reports for the metrics API (protocol version [`USAGE_PROTOCOL_VERSION`] and
//! later only).
//!
//! Every [`REPORT_INTERVAL`] the agent sends one `AgentMessage::ResourceUsage`: the node's and
//! each running container's *cumulative* CPU time and current working-set memory, read from
//! their cgroups as cadvisor does. The server keeps the last two reports per node in memory and
//! turns them into rates as metrics-server does (delta CPU / delta time). Reports are
//! fire-and-forget: never acknowledged, never queued while disconnected (a missed one only
//! widens the next window).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::PodRef;

/// First protocol version that carries resource-usage reports.
pub const USAGE_PROTOCOL_VERSION: u32 = 5;

/// How often the agent reports (metrics-server's default `--metric-resolution`).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(15);

/// A container that has run at least this long, but less than [`REPORT_INTERVAL`], gets its
/// rate from its start time on its first report (metrics-server's fresh-container rule); the
/// agent sends an extra report when a container reaches this age, so a new pod shows in
/// `kubectl top` seconds after it started. metrics-server waits 10 s
/// (`freshContainerMinMetricsResolution`) because it only learns of a container at its next
/// 15 s scrape; a report over the link comes when the container reaches this age, so 5 s
/// is enough, and clients that look 10 s after a pod became Running (the official Python
/// client's e2e test) see it.
pub const FRESH_CONTAINER_MIN_AGE: Duration = Duration::from_secs(5);

/// One cgroup's usage at the report's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSample {
    /// CPU time used since the cgroup was created, in nanoseconds.
    pub cpu_ns: u64,
    /// Working-set memory, in bytes.
    pub memory_bytes: u64,
}

/// One container's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// When this instance of the container started (milliseconds since the Unix epoch), so
    /// a fresh container gets a rate from its first report, as metrics-server does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    /// Its usage.
    pub usage: UsageSample,
}

/// One pod's containers' usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    /// The pod.
    pub pod: PodRef,
    /// Its running containers.
    pub containers: Vec<ContainerUsage>,
}

/// The node's usage at one moment, with its pods'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// When the cgroups were read, in milliseconds since the Unix epoch (the agent's clock).
    pub timestamp_ms: i64,
    /// The node (root cgroup), if it could be read.
    #[serde(default)]
    pub node: Option<UsageSample>,
    /// Pods with running containers.
    #[serde(default)]
    pub pods: Vec<PodUsage>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{decode, encode, AgentMessage};

    #[test]
    fn report_is_tagged_json() {
        let report = UsageReport {
            timestamp_ms: 1,
            node: Some(UsageSample {
                cpu_ns: 2,
                memory_bytes: 3,
            }),
            pods: vec![PodUsage {
                pod: PodRef {
                    namespace: "ns".into(),
                    name: "p".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerUsage {
                    name: "c".into(),
                    started_ms: None,
                    usage: UsageSample::default(),
                }],
            }],
        };
        let frame = encode(&AgentMessage::ResourceUsage(report.clone()), 4096).unwrap();
        let text = std::str::from_utf8(&frame[4..]).unwrap();
        assert!(
            text.starts_with(
                r#"{"type":"resourceUsage","timestampMs":1,"node":{"cpuNs":2,"memoryBytes":3}"#
            ),
            "{text}"
        );
        assert_eq!(
            decode::<AgentMessage>(&frame[4..]).unwrap(),
            AgentMessage::ResourceUsage(report)
        );
    }
}
