//! Which controller objects a change to one of their dependents concerns (upstream
//! `resolveControllerRef` plus `getPodReplicaSets` / `getPodDaemonSets` / ...): the
//! dependent's controller if it is of the controller's kind, otherwise — for an orphan — every
//! object of that kind in its namespace whose selector matches it, since one of them may adopt
//! it. Deleted dependents are also reported to the controller's [`Expectations`]. One helper
//! for the ReplicaSet, Deployment, DaemonSet and Job controllers' pod (or ReplicaSet) triggers.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use skiff_types::selector::LabelSelector;

use crate::informer::{object_ref, Change};
use crate::util::expectations::Expectations;
use crate::util::meta::{controller_of, name_of};

/// The selector of an owner object (`spec.selector`), if it has a spec.
pub type SelectorOf<K> = fn(&K) -> Option<&ApiLabelSelector>;

/// Maps dependent changes to owners of kind `K`.
#[derive(Debug)]
pub struct OwnerTrigger<K: Resource<DynamicType = ()> + 'static> {
    kind: &'static str,
    expectations: Option<Arc<Expectations>>,
    adopters: Option<(Store<K>, SelectorOf<K>)>,
}

impl<K> OwnerTrigger<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// Dependents controlled by an object of `kind` (e.g. `"ReplicaSet"`).
    pub fn new(kind: &'static str) -> Self {
        OwnerTrigger {
            kind,
            expectations: None,
            adopters: None,
        }
    }

    /// Reports deleted dependents to `expectations` (deletion observed).
    pub fn expecting(mut self, expectations: Arc<Expectations>) -> Self {
        self.expectations = Some(expectations);
        self
    }

    /// Orphans trigger every owner in `owners` (same namespace) whose non-empty selector
    /// matches their labels.
    pub fn adopting(mut self, owners: Store<K>, selector: SelectorOf<K>) -> Self {
        self.adopters = Some((owners, selector));
        self
    }

    /// The owners `change` concerns.
    pub fn owners<D: Resource>(&self, change: &Change<D>) -> Vec<ObjectRef<K>> {
        let Some(dependent) = change.object() else {
            return Vec::new();
        };
        let meta = dependent.meta();
        if let Some(owner) = controller_of(meta) {
            if owner.kind != self.kind {
                return Vec::new();
            }
            if let (Some(expectations), Change::Deleted(_)) = (&self.expectations, change) {
                expectations.deletion_observed(&owner.uid, name_of(meta));
            }
            return vec![object_ref(
                meta.namespace.as_deref().unwrap_or(""),
                &owner.name,
            )];
        }
        let Some((owners, selector_of)) = &self.adopters else {
            return Vec::new();
        };
        let labels = meta.labels.clone().unwrap_or_default();
        owners
            .state()
            .iter()
            .filter(|o| o.meta().namespace == meta.namespace)
            .filter(|o| {
                selector_of(o)
                    .and_then(|s| LabelSelector::from_label_selector(s).ok())
                    .is_some_and(|sel| !sel.is_empty() && sel.matches(&labels))
            })
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect()
    }

    /// The mapping as a closure for [`crate::informer::Informer::triggers`].
    pub fn into_fn<D: Resource>(self) -> impl Fn(&Change<D>) -> Vec<ObjectRef<K>> + Send + 'static {
        move |change| self.owners(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kube::runtime::watcher;

    use crate::util::expectations::Seen;

    fn set(namespace: &str, name: &str, app: &str) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                selector: ApiLabelSelector {
                    match_labels: (!app.is_empty())
                        .then(|| [("app".to_string(), app.to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(namespace: &str, app: &str, owner: Option<(&str, &str)>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some(namespace.into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                owner_references: owner.map(|(kind, name)| {
                    vec![OwnerReference {
                        kind: kind.into(),
                        name: name.into(),
                        uid: format!("uid-{name}"),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn names(refs: Vec<ObjectRef<ReplicaSet>>) -> Vec<String> {
        let mut names: Vec<String> = refs
            .iter()
            .map(|r| format!("{}/{}", r.namespace.clone().unwrap_or_default(), r.name))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn controlled_dependents_go_to_their_controller_and_orphans_to_matching_owners() {
        let (store, mut writer) = kube::runtime::reflector::store::<ReplicaSet>();
        writer.apply_watcher_event(&watcher::Event::InitApply(set("a", "web", "web")));
        writer.apply_watcher_event(&watcher::Event::InitApply(set("a", "web2", "web")));
        writer.apply_watcher_event(&watcher::Event::InitApply(set("a", "db", "db")));
        writer.apply_watcher_event(&watcher::Event::InitApply(set("a", "all", "")));
        writer.apply_watcher_event(&watcher::Event::InitApply(set("b", "web", "web")));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let expectations = Arc::new(Expectations::default());
        expectations.expect_delete("uid-web", "p", "pod-uid");
        let trigger = OwnerTrigger::<ReplicaSet>::new("ReplicaSet")
            .expecting(expectations.clone())
            .adopting(store, |rs| rs.spec.as_ref().map(|s| &s.selector));

        let owned = pod("a", "web", Some(("ReplicaSet", "web")));
        assert_eq!(
            names(trigger.owners(&Change::Applied(owned.clone()))),
            vec!["a/web"]
        );
        // A controller of another kind: none of ours.
        let foreign = pod("a", "web", Some(("StatefulSet", "web")));
        assert!(trigger.owners(&Change::Applied(foreign)).is_empty());
        // Orphans: every matching set of the namespace, never an empty selector.
        let orphan = pod("a", "web", None);
        assert_eq!(
            names(trigger.owners(&Change::Applied(orphan))),
            vec!["a/web", "a/web2"]
        );
        assert!(trigger.owners::<Pod>(&Change::Resync).is_empty());
        // A deletion is observed by the expectations of its controller (even while the
        // cache still shows the pod).
        let still_cached = |_: &str| {
            Some(Seen {
                uid: "pod-uid".into(),
                deleting: false,
            })
        };
        assert!(!expectations.satisfied("uid-web", still_cached));
        assert_eq!(
            names(trigger.owners(&Change::Deleted(owned))),
            vec!["a/web"]
        );
        assert!(expectations.satisfied("uid-web", still_cached));
    }

    #[test]
    fn without_adopters_orphans_trigger_nothing() {
        let trigger = OwnerTrigger::<ReplicaSet>::new("ReplicaSet");
        assert!(trigger
            .owners(&Change::Applied(pod("a", "web", None)))
            .is_empty());
    }
}
