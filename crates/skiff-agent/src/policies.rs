//! The NetworkPolicy set of this node's pods as the server compiled it, kept in the local
//! state so that an agent restarted while the server is out of reach still isolates its pods
//! as it last knew (a restart must not open what a policy closed).

use std::time::Instant;

use skiff_link::proto::policy::PodPolicy;

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
