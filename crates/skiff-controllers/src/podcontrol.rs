//! Creating and deleting a controller's pods (upstream `PodControl` and `slowStartBatch`):
//! creations go in batches of 1, 2, 4, ... and stop at the first failure, so a broken template
//! costs one failed request instead of hundreds; every change is recorded in the
//! [`Expectations`] and reported as an event on the owner.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::error::{is_not_found, ApiContext};
use crate::events::{EventType, Recorder};
use crate::util::expectations::Expectations;
use crate::util::meta::{key_of, name_of, uid_of};
use crate::Error;

/// Most pods created or deleted in one sync (upstream `BurstReplicas`).
pub const BURST: usize = 500;

/// Upstream `slowStartBatch`: the sizes of the creation batches for `total` pods, 1, 2, 4, ...
/// and the remainder last.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut left = total;
    let mut size = 1usize;
    while left > 0 {
        let this = size.min(left);
        batches.push(this);
        left -= this;
        size = size.saturating_mul(2);
    }
    batches
}

/// What a controller that keeps a count of pods does next (upstream `manageReplicas`):
/// create some, delete some (the cheapest to lose first, `pods::deletion_cost_order`), at
/// most [`BURST`] per sync.
#[derive(Debug, Clone)]
pub enum ReplicaDiff {
    /// Nothing to do.
    Keep,
    /// Create this many pods.
    Create(usize),
    /// Delete these pods.
    Delete(Vec<Arc<Pod>>),
}

/// The diff between `want` pods and the `active` ones.
pub fn plan_replicas(want: usize, active: &[Arc<Pod>]) -> ReplicaDiff {
    use std::cmp::Ordering;
    match active.len().cmp(&want) {
        Ordering::Equal => ReplicaDiff::Keep,
        Ordering::Less => ReplicaDiff::Create((want - active.len()).min(BURST)),
        Ordering::Greater => {
            let extra = (active.len() - want).min(BURST);
            let mut ranked: Vec<Arc<Pod>> = active.to_vec();
            ranked.sort_by(|a, b| crate::util::pods::deletion_cost_order(a, b));
            ranked.truncate(extra);
            ReplicaDiff::Delete(ranked)
        }
    }
}

/// Creates and deletes pods for controllers.
#[derive(Clone)]
pub struct PodControl {
    client: Client,
    recorder: Recorder,
    expectations: Arc<Expectations>,
}

impl std::fmt::Debug for PodControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodControl").finish_non_exhaustive()
    }
}

/// Whether an error means the namespace is being deleted (creations then stop quietly).
fn namespace_terminating(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 403 && status.message.contains("being terminated")
                || status.reason == "NamespaceTerminating"
        }
        _ => false,
    }
}

impl PodControl {
    /// Pod control writing through `client`, reporting through `recorder`.
    pub fn new(client: Client, recorder: Recorder, expectations: Arc<Expectations>) -> Self {
        PodControl {
            client,
            recorder,
            expectations,
        }
    }

    /// The expectations of the owning controllers.
    pub fn expectations(&self) -> &Arc<Expectations> {
        &self.expectations
    }

    /// The recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Creates `pods` for `owner` (events go to `owner`; expectations under `owner_uid`) in
    /// slow-start batches. Returns how many were created; the first error stops creation.
    pub async fn create(
        &self,
        owner: &ObjectReference,
        owner_uid: &str,
        namespace: &str,
        pods: Vec<Pod>,
    ) -> Result<usize, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let batches = slow_start_batches(pods.len());
        let mut remaining = pods.into_iter();
        let mut created = 0usize;
        for batch in batches {
            let this: Vec<Pod> = remaining.by_ref().take(batch).collect();
            let params = PostParams::default();
            let results = join_all(this.iter().map(|p| api.create(&params, p))).await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created += 1;
                        self.expectations
                            .expect_create(owner_uid, name_of(&pod.metadata));
                        self.recorder.publish(
                            owner.clone(),
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {}", name_of(&pod.metadata)),
                        );
                    }
                    Err(error) if namespace_terminating(&error) => {
                        tracing::debug!(namespace, "namespace is terminating; not creating pods");
                        return Ok(created);
                    }
                    Err(error) => {
                        if failure.is_none() {
                            self.recorder.publish(
                                owner.clone(),
                                EventType::Warning,
                                "FailedCreate",
                                format!("Error creating: {error}"),
                            );
                            failure = Some(error);
                        }
                    }
                }
            }
            if let Some(error) = failure {
                return Err(error).context(|| {
                    format!(
                        "create pod for {} {namespace}/{}",
                        owner.kind.as_deref().unwrap_or(""),
                        owner.name.as_deref().unwrap_or("")
                    )
                });
            }
        }
        Ok(created)
    }

    /// Deletes `pods` of `owner`, all at once.
    pub async fn delete(
        &self,
        owner: &ObjectReference,
        owner_uid: &str,
        pods: &[Arc<Pod>],
    ) -> Result<(), Error> {
        let deletions = pods.iter().map(|pod| {
            let meta = &pod.metadata;
            self.expectations
                .expect_delete(owner_uid, name_of(meta), uid_of(meta));
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                meta.namespace.as_deref().unwrap_or_default(),
            );
            let name = name_of(meta).to_string();
            async move {
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: meta.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                (pod, api.delete(&name, &params).await)
            }
        });
        let mut failure = None;
        for (pod, result) in join_all(deletions).await {
            match result {
                Ok(_) => self.recorder.publish(
                    owner.clone(),
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name_of(&pod.metadata)),
                ),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    // It will not go away: stop waiting for it.
                    self.expectations
                        .deletion_observed(owner_uid, name_of(&pod.metadata));
                    self.recorder.publish(
                        owner.clone(),
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                    if failure.is_none() {
                        failure = Some((key_of(&pod.metadata), e));
                    }
                }
            }
        }
        match failure {
            Some((pod, e)) => Err(e).context(|| format!("delete pod {pod}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ready: bool) -> Arc<Pod> {
        Arc::new(crate::fixtures::pod(name, phase, "", ready))
    }

    #[test]
    fn batches_double_from_one() {
        let cases: &[(usize, &[usize])] = &[
            (0, &[]),
            (1, &[1]),
            (2, &[1, 1]),
            (3, &[1, 2]),
            (10, &[1, 2, 4, 3]),
            (500, &[1, 2, 4, 8, 16, 32, 64, 128, 245]),
        ];
        for (total, want) in cases {
            assert_eq!(slow_start_batches(*total), *want, "{total} pods");
        }
    }

    #[test]
    fn diff_creates_the_missing_and_deletes_the_cheapest() {
        let running = [
            pod("a", "Running", true),
            pod("b", "Pending", false),
            pod("c", "Running", false),
        ];
        let names = |d: ReplicaDiff| match d {
            ReplicaDiff::Delete(p) => p
                .iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>(),
            other => panic!("expected deletions, got {other:?}"),
        };
        assert!(matches!(plan_replicas(3, &running), ReplicaDiff::Keep));
        assert!(matches!(plan_replicas(5, &running), ReplicaDiff::Create(2)));
        assert!(matches!(
            plan_replicas(BURST + 10_000, &running),
            ReplicaDiff::Create(BURST)
        ));
        // Pending before unready before ready (upstream `ActivePods` order).
        assert_eq!(names(plan_replicas(1, &running)), vec!["b", "c"]);
        assert_eq!(names(plan_replicas(0, &running)), vec!["b", "c", "a"]);
    }
}
