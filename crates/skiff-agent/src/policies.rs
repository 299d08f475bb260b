//! The NetworkPolicy set of this node's pods as the server compiled it, kept in the local
//! state so that an agent restarted while the server is out of reach still isolates its pods
//! as it last knew (a restart must not open what a policy closed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_link::proto::policy::PodPolicy;
use skiff_net::{PodNetwork, PolicyEnforcer};
use tokio::sync::watch;

use crate::error::AgentError;
use crate::persist::Debounced;
use crate::state::LocalState;

/// Meta key of the last known policy set.
const META_POLICIES: &str = "networkPolicies";

/// The node's NetworkPolicy set.
#[derive(Debug, Default)]
pub(crate) struct NodePolicies {
    set: Vec<PodPolicy>,
    /// Whether any set is known (from the server or the local state): without one the node
    /// leaves the kernel's policy rules alone.
    known: bool,
    /// When to write the set (peers change with every pod a selector picks).
    schedule: Debounced,
}

impl NodePolicies {
    /// What the local state remembers.
    pub(crate) fn load(state: &LocalState) -> Result<Self, AgentError> {
        let stored = state.meta::<Vec<PodPolicy>>(META_POLICIES)?;
        Ok(NodePolicies {
            known: stored.is_some(),
            set: stored.unwrap_or_default(),
            ..NodePolicies::default()
        })
    }

    /// Takes the set the server sent; true when it changed.
    pub(crate) fn apply(&mut self, set: Vec<PodPolicy>) -> bool {
        let changed = !self.known || set != self.set;
        self.known = true;
        if changed {
            self.set = set;
            self.schedule.changed();
        }
        changed
    }

    /// The set, when one is known.
    pub(crate) fn set(&self) -> Option<&[PodPolicy]> {
        self.known.then_some(self.set.as_slice())
    }

    /// When the set should next be written, if it changed.
    pub(crate) fn persist_at(&self) -> Option<Instant> {
        self.schedule.persist_at()
    }

    /// Writes the set if it changed and [`Self::persist_at`] has come (or `force`).
    pub(crate) fn persist(&mut self, state: &LocalState, force: bool) {
        if !self.schedule.due(force) {
            return;
        }
        match state.set_meta(META_POLICIES, &self.set) {
            Ok(()) => self.schedule.persisted(),
            Err(error) => tracing::warn!(%error, "cannot store the node's network policies"),
        }
    }
}

/// The node's policy rules: skiff-net's enforcer fed by one task from the latest set, so a
/// slow `nft` transaction never holds up the agent's loop and a burst of sets becomes one
/// sync.
pub(crate) struct PolicyDataPath {
    set: watch::Sender<Arc<Vec<PodPolicy>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PolicyDataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyDataPath").finish_non_exhaustive()
    }
}

impl Drop for PolicyDataPath {
    fn drop(&mut self) {
        // The rules stay in the kernel: the pods stay isolated.
        self.task.abort();
    }
}

impl PolicyDataPath {
    /// Starts the enforcer on the pod network and syncs it with `set`.
    pub(crate) async fn start(
        pod_network: &PodNetwork,
        set: Vec<PodPolicy>,
    ) -> Result<PolicyDataPath, String> {
        let enforcer = PolicyEnforcer::new(pod_network)
            .await
            .map_err(|e| format!("network policy enforcer: {e}"))?;
        let (sender, mut latest) = watch::channel(Arc::new(set));
        latest.mark_changed();
        let task = tokio::spawn(async move {
            while latest.changed().await.is_ok() {
                let set = latest.borrow_and_update().clone();
                // A failed sync is retried with the next set, or after a second.
                loop {
                    match enforcer.sync(&set).await {
                        Ok(stats) => {
                            tracing::debug!(?stats, "network policy rules synced");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot sync the network policy rules; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                changed = latest.changed() => {
                                    if changed.is_err() {
                                        return;
                                    }
                                    latest.mark_changed();
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(PolicyDataPath { set: sender, task })
    }

    /// Hands the current set over.
    pub(crate) fn update(&self, set: Vec<PodPolicy>) {
        self.set.send_replace(Arc::new(set));
    }
}

#[cfg(test)]
mod tests {
    use skiff_link::proto::policy::PolicyRule;

    use super::*;

    fn pod(name: &str, ingress: Option<Vec<PolicyRule>>) -> PodPolicy {
        PodPolicy {
            namespace: "default".into(),
            name: name.into(),
            ip: "10.42.0.9".parse().unwrap(),
            ingress,
            egress: None,
        }
    }

    #[test]
    fn the_set_survives_a_restart_and_an_empty_set_is_a_known_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let state = LocalState::open(&path).unwrap();
            let mut policies = NodePolicies::load(&state).unwrap();
            assert_eq!(policies.set(), None, "nothing known yet");
            assert!(policies.apply(vec![pod("web", Some(vec![]))]));
            assert!(!policies.apply(vec![pod("web", Some(vec![]))]), "unchanged");
            policies.persist(&state, true);
        }
        let state = LocalState::open(&path).unwrap();
        let mut policies = NodePolicies::load(&state).unwrap();
        assert_eq!(policies.set(), Some(&[pod("web", Some(vec![]))][..]));
        // The last policy deleted: an empty set, stored as such (not "unknown").
        assert!(policies.apply(Vec::new()));
        policies.persist(&state, true);
        drop(state);
        let state = LocalState::open(&path).unwrap();
        assert_eq!(NodePolicies::load(&state).unwrap().set(), Some(&[][..]));
    }
}
