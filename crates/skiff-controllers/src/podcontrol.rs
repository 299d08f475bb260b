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

/// Creates and deletes pods for controllers.
#[derive(Clone)]
pub struct PodControl {
    client: Client,
    recorder: Recorder,
    expectations: Arc<Expectations>,
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
        let mut remaining = pods.into_iter();
        let mut batch = 1usize;
        let mut created = 0usize;
        loop {
            let this: Vec<Pod> = remaining.by_ref().take(batch).collect();
            if this.is_empty() {
                return Ok(created);
            }
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
            batch *= 2;
        }
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
