//! Support for the controller end-to-end tests: Node objects created through the API, the
//! fake kubelet that plays those nodes and lease heartbeats that can be stopped per node — all
//! from `skiff_testkit::kubelet`.

#![allow(dead_code)]

use std::time::Duration;

use kube::Client;
use serde_json::Value;

pub(crate) use skiff_testkit::kubelet::Silenced;
pub(crate) use skiff_testkit::wait::wait_for;

/// Creates a Ready node with 4 CPUs and 8 GiB, with `labels` and `taints`.
pub(crate) async fn create_node(client: &Client, name: &str, labels: Value, taints: Value) {
    skiff_testkit::kubelet::create_ready_node(client, name, labels, taints).await;
}

/// Plays the kubelet of every node: pods bound to a node become Running and Ready; pods being
/// deleted are confirmed gone.
pub(crate) fn kubelet(client: Client, silenced: Silenced) -> tokio::task::JoinHandle<()> {
    skiff_testkit::kubelet::spawn_kubelet(
        client,
        Vec::new(),
        skiff_testkit::kubelet::Act::Run,
        silenced,
    )
}

/// Renews the Lease of each of `nodes` every 300 ms unless silenced.
pub(crate) fn heartbeats(
    client: Client,
    nodes: Vec<String>,
    silenced: Silenced,
) -> tokio::task::JoinHandle<()> {
    skiff_testkit::kubelet::spawn_heartbeats(client, nodes, silenced, Duration::from_millis(300))
}
