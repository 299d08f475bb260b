//! Pod garbage collection (upstream `podgc`), every `period`:
//!
//! - finished pods (`Succeeded`/`Failed`) beyond `--terminated-pod-gc-threshold` are deleted,
//!   oldest first;
//! - pods bound to a node that no longer exists (checked against the API once the node has
//!   been missing for the quarantine) are force-deleted;
//! - pods being deleted that never reached a node, or whose node is tainted
//!   `node.kubernetes.io/out-of-service`, are force-deleted (no kubelet will confirm them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DeleteParams;
use kube::{Api, Client};

use crate::error::{is_not_found, status_code};
use crate::informer::Informer;
use crate::util::meta::{key_of, name_of};
use crate::util::pods;

/// Taint marking a node as shut down for good (its pods may be force-deleted).
pub const TAINT_OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Settings of pod GC.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Finished pods kept; 0 disables that part.
    pub threshold: usize,
    /// How often to run.
    pub period: Duration,
    /// How long a node must be missing before its pods are deleted (upstream 40 s).
    pub quarantine: Duration,
}

/// Starts pod GC.
pub fn start(
    client: Client,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    settings: Settings,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let gc = PodGc {
        client,
        pods: pods.clone(),
        nodes: nodes.clone(),
        settings,
        missing_since: HashMap::new(),
    };
    tasks.spawn(gc.run());
}

struct PodGc {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    settings: Settings,
    missing_since: HashMap<String, Instant>,
}

/// Which finished pods to delete to get down to `threshold`: the oldest (upstream orders by
/// creation time).
pub fn excess_terminated(mut finished: Vec<Arc<Pod>>, threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 || finished.len() <= threshold {
        return Vec::new();
    }
    let excess = finished.len() - threshold;
    finished.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| name_of(&a.metadata).cmp(name_of(&b.metadata)))
    });
    finished.truncate(excess);
    finished
}

impl PodGc {
    async fn run(mut self) {
        self.pods.ready().await;
        self.nodes.ready().await;
        tracing::info!(
            threshold = self.settings.threshold,
            "pod garbage collector started"
        );
        let mut tick = tokio::time::interval(self.settings.period.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.collect().await;
        }
    }

    async fn collect(&mut self) {
        let all = self.pods.store().state();
        let nodes: HashMap<String, Arc<Node>> = self
            .nodes
            .store()
            .state()
            .into_iter()
            .map(|n| (name_of(&n.metadata).to_string(), n))
            .collect();
        // Finished pods beyond the threshold.
        let finished: Vec<Arc<Pod>> = all
            .iter()
            .filter(|p| pods::is_terminal(p))
            .cloned()
            .collect();
        for pod in excess_terminated(finished, self.settings.threshold) {
            self.delete(&pod, None, "finished pods over the threshold")
                .await;
        }
        // Pods of nodes that are gone.
        let now_i = Instant::now();
        let mut missing: HashMap<String, Instant> = HashMap::new();
        for pod in &all {
            let node = pods::node_name(pod);
            if node.is_empty() || nodes.contains_key(node) {
                continue;
            }
            let since = *self.missing_since.get(node).unwrap_or(&now_i);
            missing.insert(node.to_string(), since);
        }
        self.missing_since = missing;
        let mut confirmed: HashMap<String, bool> = HashMap::new();
        for pod in &all {
            let node = pods::node_name(pod);
            let Some(since) = self.missing_since.get(node) else {
                continue;
            };
            if now_i.duration_since(*since) < self.settings.quarantine {
                continue;
            }
            let gone = match confirmed.get(node) {
                Some(g) => *g,
                None => {
                    let g = matches!(Api::<Node>::all(self.client.clone()).get(node).await, Err(e) if is_not_found(&e));
                    confirmed.insert(node.to_string(), g);
                    g
                }
            };
            if gone {
                self.delete(pod, Some(0), "its node no longer exists").await;
            }
        }
        // Terminating pods no kubelet will finish.
        for pod in &all {
            if pod.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let node = pods::node_name(pod);
            if node.is_empty() {
                self.delete(pod, Some(0), "it is being deleted and was never scheduled")
                    .await;
                continue;
            }
            let out_of_service = nodes.get(node).is_some_and(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| {
                        t.iter()
                            .any(|t| t.key == TAINT_OUT_OF_SERVICE && t.effect == "NoExecute")
                    })
            });
            if out_of_service && !pods::is_active(pod) {
                self.delete(pod, Some(0), "its node is out of service")
                    .await;
            }
        }
    }

    async fn delete(&self, pod: &Pod, grace: Option<u32>, why: &str) {
        let key = key_of(&pod.metadata);
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let params = DeleteParams {
            grace_period_seconds: grace,
            preconditions: Some(kube::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name_of(&pod.metadata), &params).await {
            Ok(_) => tracing::info!(pod = %key, "pod garbage collected: {why}"),
            Err(e) if is_not_found(&e) || status_code(&e) == Some(409) => {}
            Err(e) => tracing::warn!(pod = %key, error = %e, "cannot garbage collect pod"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(jiff::Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn the_oldest_finished_pods_go_first() {
        let all = vec![pod("c", 30), pod("a", 10), pod("b", 20)];
        let gone = excess_terminated(all.clone(), 1);
        let names: Vec<&str> = gone.iter().map(|p| name_of(&p.metadata)).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(excess_terminated(all.clone(), 3).is_empty());
        assert!(excess_terminated(all, 0).is_empty());
    }
}
