//! The Deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`,
//! labelled `pod-template-hash`), rolled with `RollingUpdate` (maxSurge, maxUnavailable) or
//! `Recreate`, revisions in `deployment.kubernetes.io/revision` (so `kubectl rollout
//! history/undo` work on the ReplicaSets as upstream), scaling (proportional during a rollout),
//! pause/resume, `revisionHistoryLimit`, and the status `kubectl rollout status` reads:
//! `observedGeneration`, replica counts and the `Progressing` / `Available` conditions
//! (`NewReplicaSetAvailable`, `ReplicaSetUpdated`, `ProgressDeadlineExceeded`).
//!
//! It follows upstream's `pkg/controller/deployment` step by step: each reconcile makes at
//! most one kind of change (create the new set, scale sets, clean up) and the resulting
//! ReplicaSet events trigger the next one.

pub mod plan;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::selector::LabelSelector;

use crate::claim::claim;
use crate::error::{is_conflict, is_not_found, ApiContext};
use crate::events::{EventType, Recorder};
use crate::informer::{object_ref, Change, Informer, BY_CONTROLLER};
use crate::util::hash::{equal_ignoring_hash, template_hash, POD_TEMPLATE_HASH_LABEL};
use crate::util::meta::{
    controller_of, controller_ref, describe, is_controlled_by, is_deleting, key_of, name_of, uid_of,
};
use crate::util::owners::OwnerTrigger;
use crate::util::pods;
use crate::Error;
use plan::{active, all_sets, Step};
use util::*;

/// Component name in events.
pub const COMPONENT: &str = "deployment-controller";

struct Ctx {
    client: Client,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    recorder: Recorder,
}

/// Starts the controller.
pub fn start(
    client: Client,
    deployments: &Informer<Deployment>,
    sets: &Informer<ReplicaSet>,
    pods: &Informer<Pod>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        sets: sets.clone(),
        pods: pods.clone(),
        recorder: Recorder::new(client, COMPONENT),
    });
    let store = deployments.store();
    let own = deployments.triggers(store.clone(), |change| match change {
        Change::Applied(d) => vec![ObjectRef::from_obj(d.as_ref())],
        _ => Vec::new(),
    });
    let from_sets = sets.triggers(
        store.clone(),
        OwnerTrigger::new("Deployment")
            .adopting(store.clone(), |d: &Deployment| {
                d.spec.as_ref().map(|s| &s.selector)
            })
            .into_fn(),
    );
    // Recreate waits for the old pods to be gone: their deletions matter.
    let from_pods = {
        let sets = sets.clone();
        pods.triggers(store.clone(), move |change| {
            let Change::Deleted(pod) = change else {
                return Vec::new();
            };
            let meta = &pod.metadata;
            let Some(owner) = controller_of(meta).filter(|o| o.kind == "ReplicaSet") else {
                return Vec::new();
            };
            let namespace = meta.namespace.as_deref().unwrap_or("");
            sets.get(namespace, &owner.name)
                .and_then(|rs| controller_of(&rs.metadata).cloned())
                .filter(|o| o.kind == "Deployment")
                .map(|o| vec![object_ref(namespace, &o.name)])
                .unwrap_or_default()
        })
    };
    let triggers =
        futures::stream::select(own, futures::stream::select(from_sets, from_pods)).boxed();
    tasks.spawn(crate::runner::run(
        COMPONENT,
        store,
        triggers,
        reconcile,
        ctx,
        concurrency,
    ));
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let meta = &d.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let selector =
        LabelSelector::from_label_selector(&spec.selector).map_err(|e| Error::InvalidObject {
            object: describe(d.as_ref()),
            field: "spec.selector",
            message: e.to_string(),
        })?;
    if selector.is_empty() {
        ctx.recorder.event(
            d.as_ref(),
            EventType::Warning,
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        );
        let mut status = d.status.clone().unwrap_or_default();
        if status.observed_generation != meta.generation {
            status.observed_generation = meta.generation;
            write_status(&ctx.client, &d, &status).await?;
        }
        return Ok(Action::await_change());
    }
    let uid = uid_of(meta);
    let mut candidates = ctx.sets.indexed(BY_CONTROLLER, uid);
    candidates.extend(
        ctx.sets
            .indexed(BY_CONTROLLER, &format!("orphan/{namespace}")),
    );
    let mut sets = claim(
        &ctx.client,
        &controller_ref(d.as_ref()),
        is_deleting(meta),
        &selector,
        candidates,
    )
    .await?;
    sets.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| name_of(&a.metadata).cmp(name_of(&b.metadata)))
    });
    let r = Rollout { d: &d, ctx: &ctx };
    if is_deleting(meta) {
        let (new, old) = r.split(&sets);
        let all = all_sets(&new, &old);
        r.sync_status(&all, new.as_ref(), false).await?;
        return Ok(Action::await_change());
    }
    if spec.paused.unwrap_or(false) {
        return r.sync(sets).await;
    }
    if r.is_scaling_event(&sets) {
        return r.sync(sets).await;
    }
    if is_recreate(&d) {
        r.rollout_recreate(sets).await
    } else {
        r.rollout_rolling(sets).await
    }
}

struct Rollout<'a> {
    d: &'a Arc<Deployment>,
    ctx: &'a Ctx,
}

impl Rollout<'_> {
    fn namespace(&self) -> &str {
        self.d.metadata.namespace.as_deref().unwrap_or_default()
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// The set whose template is the Deployment's (the oldest such), and the others.
    fn split(&self, sets: &[Arc<ReplicaSet>]) -> (Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>) {
        let template = self.template();
        let new = sets
            .iter()
            .find(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignoring_hash(t, &template))
            })
            .cloned();
        let old = sets
            .iter()
            .filter(|rs| {
                new.as_ref()
                    .is_none_or(|n| n.metadata.uid != rs.metadata.uid)
            })
            .cloned()
            .collect();
        (new, old)
    }

    /// Upstream `isScalingEvent`: an active set was last scaled for a different replica count.
    fn is_scaling_event(&self, sets: &[Arc<ReplicaSet>]) -> bool {
        let want = replicas(self.d).to_string();
        let (new, old) = self.split(sets);
        active(&all_sets(&new, &old)).iter().any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .is_some_and(|v| *v != want)
        })
    }

    /// Upstream `getAllReplicaSetsAndSyncRevision`: finds (or creates) the new set and
    /// brings its revision annotations and the Deployment's up to date.
    async fn sets_and_revision(
        &self,
        sets: &[Arc<ReplicaSet>],
        create: bool,
    ) -> Result<(Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>), Error> {
        let (new, old) = self.split(sets);
        let max_old = old
            .iter()
            .map(|rs| revision_of(rs.metadata.annotations.as_ref()))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let new = match new {
            Some(rs) => Some(self.sync_revision(rs, new_revision).await?),
            None if create => self.create_new_set(&old, new_revision).await?,
            None => None,
        };
        if let Some(rs) = &new {
            let revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            let current = self
                .d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION));
            if !revision.is_empty() && current != Some(&revision) {
                let api: Api<Deployment> =
                    Api::namespaced(self.ctx.client.clone(), self.namespace());
                let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
                api.patch(
                    name_of(&self.d.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .context(|| format!("set the revision of {}", describe(self.d.as_ref())))?;
            }
        }
        Ok((new, old))
    }

    /// Gives an existing new set the next revision (after a rollback to it) and the
    /// Deployment's annotations and minReadySeconds.
    async fn sync_revision(
        &self,
        rs: Arc<ReplicaSet>,
        new_revision: i64,
    ) -> Result<Arc<ReplicaSet>, Error> {
        let mut updated = (*rs).clone();
        let annotations = updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for (k, v) in copied_annotations(self.d) {
            if annotations.get(&k) != Some(&v) {
                annotations.insert(k, v);
                changed = true;
            }
        }
        let old_revision = revision_of(Some(annotations));
        if old_revision < new_revision {
            if old_revision > 0 {
                let history = annotations
                    .get(REVISION_HISTORY)
                    .cloned()
                    .unwrap_or_default();
                let history = if history.is_empty() {
                    old_revision.to_string()
                } else {
                    format!("{history},{old_revision}")
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            annotations.insert(REVISION.into(), new_revision.to_string());
            changed = true;
        }
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(spec) = updated.spec.as_mut() {
            if spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
        }
        if !changed {
            return Ok(rs);
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let written = api
            .replace(name_of(&rs.metadata), &PostParams::default(), &updated)
            .await
            .context(|| format!("update the revision of ReplicaSet {}", key_of(&rs.metadata)))?;
        Ok(Arc::new(written))
    }

    /// Creates the ReplicaSet of the current template (upstream `getNewReplicaSet`).
    async fn create_new_set(
        &self,
        old: &[Arc<ReplicaSet>],
        revision: i64,
    ) -> Result<Option<Arc<ReplicaSet>>, Error> {
        let d = self.d;
        let status = d.status.clone().unwrap_or_default();
        let hash = template_hash(&self.template(), status.collision_count);
        let mut template = self.template();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", name_of(&d.metadata));
        let new_replicas = new_rs_new_replicas(d, old, 0);
        let mut annotations = copied_annotations(d);
        annotations.insert(REVISION.into(), revision.to_string());
        annotations.insert(DESIRED_REPLICAS.into(), replicas(d).to_string());
        annotations.insert(
            MAX_REPLICAS.into(),
            (replicas(d) + max_surge(d)).to_string(),
        );
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace().to_string()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(d.as_ref())]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(new_replicas),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if new_replicas > 0 {
                    self.ctx.recorder.event(
                        d.as_ref(),
                        EventType::Normal,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {name} from 0 to {new_replicas}"),
                    );
                }
                if progress_deadline(d).is_some() {
                    let mut status = d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut status,
                        new_condition(
                            "Progressing",
                            "True",
                            reason::NEW_RS,
                            format!("Created new replica set \"{name}\""),
                        ),
                    );
                    write_status(&self.ctx.client, d, &status).await?;
                }
                Ok(Some(Arc::new(created)))
            }
            Err(e) if is_conflict(&e) => {
                // Already there: ours with this template (a stale cache), or a hash collision.
                let existing = api
                    .get(&name)
                    .await
                    .context(|| format!("read ReplicaSet {}/{name}", self.namespace()))?;
                let same = is_controlled_by(&existing.metadata, uid_of(&d.metadata))
                    && existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| equal_ignoring_hash(t, &self.template()));
                if same {
                    return Ok(Some(Arc::new(existing)));
                }
                let mut status = d.status.clone().unwrap_or_default();
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                write_status(&self.ctx.client, d, &status).await?;
                Err(Error::InvalidObject {
                    object: describe(d.as_ref()),
                    field: "status.collisionCount",
                    message: format!(
                        "hash collision for ReplicaSet {name}; retrying with a new collision count"
                    ),
                })
            }
            Err(e) => Err(e).context(|| format!("create ReplicaSet {}/{name}", self.namespace())),
        }
    }

    /// Sets a ReplicaSet's replicas (and the scaling annotations), with an event.
    async fn scale_set(&self, rs: &Arc<ReplicaSet>, to: i32) -> Result<bool, Error> {
        let from = rs_replicas(rs);
        let desired = replicas(self.d).to_string();
        let max = (replicas(self.d) + max_surge(self.d)).to_string();
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        if from == to
            && annotations.get(DESIRED_REPLICAS) == Some(&desired)
            && annotations.get(MAX_REPLICAS) == Some(&max)
        {
            return Ok(false);
        }
        let mut updated = (**rs).clone();
        if let Some(spec) = updated.spec.as_mut() {
            spec.replicas = Some(to);
        }
        let a = updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        a.insert(DESIRED_REPLICAS.into(), desired);
        a.insert(MAX_REPLICAS.into(), max);
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        api.replace(name_of(&rs.metadata), &PostParams::default(), &updated)
            .await
            .context(|| format!("scale ReplicaSet {} to {to}", key_of(&rs.metadata)))?;
        if from != to {
            let op = if to > from { "up" } else { "down" };
            self.ctx.recorder.event(
                self.d.as_ref(),
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {from} to {to}",
                    name_of(&rs.metadata)
                ),
            );
        }
        Ok(from != to)
    }

    /// Scaling and paused Deployments (upstream `sync`).
    async fn sync(&self, sets: Vec<Arc<ReplicaSet>>) -> Result<Action, Error> {
        let (new, old) = self.sets_and_revision(&sets, false).await?;
        let scaled = self.scale(new.as_ref(), &old).await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused && !scaled {
            self.cleanup(&old).await?;
        }
        let all = all_sets(&new, &old);
        self.sync_status(&all, new.as_ref(), paused).await?;
        Ok(Action::await_change())
    }

    /// Upstream `scale`: applies [`plan::plan_scale`].
    async fn scale(
        &self,
        new: Option<&Arc<ReplicaSet>>,
        old: &[Arc<ReplicaSet>],
    ) -> Result<bool, Error> {
        let mut any = false;
        for Step { set, to } in plan::plan_scale(self.d, new, old) {
            any |= self.scale_set(&set, to).await?;
        }
        Ok(any)
    }

    /// Upstream `rolloutRolling`.
    async fn rollout_rolling(&self, sets: Vec<Arc<ReplicaSet>>) -> Result<Action, Error> {
        let (new, old) = self.sets_and_revision(&sets, true).await?;
        let all = all_sets(&new, &old);
        if let Some(new_rs) = &new {
            if self.reconcile_new(&all, new_rs).await? {
                return self.sync_rollout_status(&all, new.as_ref()).await;
            }
        }
        if self
            .reconcile_old(&all, &active(&old), new.as_ref())
            .await?
        {
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        let status = calculate_status(self.d, &all, new.as_ref());
        if is_complete(self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all, new.as_ref()).await
    }

    /// Upstream `reconcileNewReplicaSet`: applies [`plan::plan_new_set`].
    async fn reconcile_new(
        &self,
        all: &[Arc<ReplicaSet>],
        new: &Arc<ReplicaSet>,
    ) -> Result<bool, Error> {
        match plan::plan_new_set(self.d, all, new) {
            Some(to) => self.scale_set(new, to).await,
            None => Ok(false),
        }
    }

    /// Upstream `reconcileOldReplicaSets`: applies [`plan::plan_old_scale_down`].
    async fn reconcile_old(
        &self,
        all: &[Arc<ReplicaSet>],
        old_active: &[Arc<ReplicaSet>],
        new: Option<&Arc<ReplicaSet>>,
    ) -> Result<bool, Error> {
        let steps = plan::plan_old_scale_down(self.d, all, old_active, new);
        for Step { set, to } in &steps {
            self.scale_set(set, *to).await?;
        }
        Ok(!steps.is_empty())
    }

    /// Upstream `rolloutRecreate`: all old pods gone before the new set scales up.
    async fn rollout_recreate(&self, sets: Vec<Arc<ReplicaSet>>) -> Result<Action, Error> {
        let (new, old) = self.sets_and_revision(&sets, false).await?;
        let all = all_sets(&new, &old);
        let mut scaled_down = false;
        for rs in active(&old) {
            scaled_down |= self.scale_set(&rs, 0).await?;
        }
        if scaled_down {
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        if self.old_pods_running(new.as_ref(), &old) {
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        let (new, old) = if new.is_none() {
            self.sets_and_revision(&sets, true).await?
        } else {
            (new, old)
        };
        let all = all_sets(&new, &old);
        if let Some(rs) = &new {
            if self.scale_set(rs, replicas(self.d)).await? {
                return self.sync_rollout_status(&all, new.as_ref()).await;
            }
        }
        let status = calculate_status(self.d, &all, new.as_ref());
        if is_complete(self.d, &status) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(&all, new.as_ref()).await
    }

    /// Whether pods of the old sets still exist and have not finished.
    fn old_pods_running(&self, new: Option<&Arc<ReplicaSet>>, old: &[Arc<ReplicaSet>]) -> bool {
        if actual_replicas_sum(old) > 0 {
            return true;
        }
        old.iter()
            .filter(|rs| new.is_none_or(|n| n.metadata.uid != rs.metadata.uid))
            .any(|rs| {
                self.ctx
                    .pods
                    .indexed(BY_CONTROLLER, uid_of(&rs.metadata))
                    .iter()
                    .any(|p| !pods::is_terminal(p))
            })
    }

    /// Deletes old sets beyond `revisionHistoryLimit` (oldest revisions first).
    async fn cleanup(&self, old: &[Arc<ReplicaSet>]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&Arc<ReplicaSet>> =
            old.iter().filter(|rs| !is_deleting(&rs.metadata)).collect();
        let excess = cleanable.len() as i64 - i64::from(limit.max(0));
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| revision_of(rs.metadata.annotations.as_ref()));
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        for rs in cleanable.into_iter().take(excess as usize) {
            let status = rs.status.clone().unwrap_or_default();
            if status.replicas != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation > status.observed_generation
            {
                continue;
            }
            match api
                .delete(name_of(&rs.metadata), &DeleteParams::default())
                .await
            {
                Ok(_) => tracing::debug!(rs = %key_of(&rs.metadata), "deleted old ReplicaSet"),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(e)
                        .context(|| format!("delete old ReplicaSet {}", key_of(&rs.metadata)))
                }
            }
        }
        Ok(())
    }

    /// Status of a paused, scaling or deleted Deployment (upstream `syncDeploymentStatus` plus
    /// `checkPausedConditions`).
    async fn sync_status(
        &self,
        all: &[Arc<ReplicaSet>],
        new: Option<&Arc<ReplicaSet>>,
        paused: bool,
    ) -> Result<(), Error> {
        let mut status = calculate_status(self.d, all, new);
        self.paused_condition(&mut status, paused);
        if !same_status(&status, self.d.status.as_ref()) {
            write_status(&self.ctx.client, self.d, &status).await?;
        }
        Ok(())
    }

    /// Progressing=Unknown with `DeploymentPaused` / `DeploymentResumed`.
    fn paused_condition(&self, status: &mut DeploymentStatus, paused: bool) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let current = condition(status, "Progressing").and_then(|c| c.reason.clone());
        if paused && current.as_deref() != Some(reason::PAUSED) {
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    reason::PAUSED,
                    "Deployment is paused".into(),
                ),
            );
        } else if !paused && current.as_deref() == Some(reason::PAUSED) {
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    reason::RESUMED,
                    "Deployment is resumed".into(),
                ),
            );
        }
    }

    /// Upstream `syncRolloutStatus`: status plus the Progressing condition; requeues for the
    /// progress deadline.
    async fn sync_rollout_status(
        &self,
        all: &[Arc<ReplicaSet>],
        new: Option<&Arc<ReplicaSet>>,
    ) -> Result<Action, Error> {
        let d = self.d;
        let mut status = calculate_status(d, all, new);
        self.paused_condition(&mut status, false);
        if progress_deadline(d).is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let old_status = d.status.clone().unwrap_or_default();
        let current = condition(&old_status, "Progressing").cloned();
        let complete_already = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
        let new_name = new
            .map(|rs| name_of(&rs.metadata).to_string())
            .unwrap_or_default();
        if progress_deadline(d).is_some() && !complete_already {
            if is_complete(d, &status) {
                if new.is_some() {
                    set_condition(
                        &mut status,
                        new_condition(
                            "Progressing",
                            "True",
                            reason::NEW_RS_AVAILABLE,
                            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                        ),
                    );
                }
            } else if is_progressing(d, &status) {
                if new.is_some() {
                    let mut c = new_condition(
                        "Progressing",
                        "True",
                        reason::RS_UPDATED,
                        format!("ReplicaSet \"{new_name}\" is progressing."),
                    );
                    if let Some(cur) = condition(&status, "Progressing") {
                        if cur.status == "True" {
                            c.last_transition_time = cur.last_transition_time.clone();
                        }
                    }
                    remove_condition(&mut status, "Progressing");
                    status.conditions.get_or_insert_with(Vec::new).push(c);
                }
            } else if is_timed_out(d, &status) && new.is_some() {
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "False",
                        reason::TIMED_OUT,
                        format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    ),
                );
            }
        }
        // A ReplicaSet that cannot create pods makes the Deployment report it.
        let failure = new
            .into_iter()
            .chain(all.iter())
            .filter_map(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                    .cloned()
            })
            .next();
        match failure {
            Some(f) => set_condition(
                &mut status,
                k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: f.reason.clone(),
                    message: f.message.clone(),
                    last_update_time: Some(crate::util::meta::now()),
                    last_transition_time: f.last_transition_time.clone(),
                },
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        if !same_status(&status, d.status.as_ref()) {
            write_status(&self.ctx.client, d, &status).await?;
        }
        // Requeue for the deadline of a rollout still in progress.
        Ok(match seconds_to_deadline(d, &status) {
            Some(s) if !is_complete(d, &status) => {
                Action::requeue(Duration::from_secs_f64(s.max(0.0) + 1.0))
            }
            _ => Action::await_change(),
        })
    }
}

/// Whether a computed status equals the stored one (absent counts are zero).
fn same_status(new: &DeploymentStatus, old: Option<&DeploymentStatus>) -> bool {
    let empty = DeploymentStatus::default();
    let old = old.unwrap_or(&empty);
    let n = |v: Option<i32>| v.unwrap_or(0);
    new.observed_generation == old.observed_generation
        && n(new.replicas) == n(old.replicas)
        && n(new.updated_replicas) == n(old.updated_replicas)
        && n(new.ready_replicas) == n(old.ready_replicas)
        && n(new.available_replicas) == n(old.available_replicas)
        && n(new.unavailable_replicas) == n(old.unavailable_replicas)
        && new.collision_count == old.collision_count
        && new.conditions.clone().unwrap_or_default() == old.conditions.clone().unwrap_or_default()
}

async fn write_status(
    client: &Client,
    d: &Deployment,
    status: &DeploymentStatus,
) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(
        client.clone(),
        d.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = json!({ "status": {
        "observedGeneration": status.observed_generation,
        "replicas": status.replicas.unwrap_or(0),
        "updatedReplicas": status.updated_replicas.unwrap_or(0),
        "readyReplicas": status.ready_replicas.unwrap_or(0),
        "availableReplicas": status.available_replicas.unwrap_or(0),
        "unavailableReplicas": status.unavailable_replicas.unwrap_or(0),
        "collisionCount": status.collision_count,
        "conditions": status.conditions.clone().unwrap_or_default(),
    }});
    match api
        .patch_status(
            name_of(&d.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).context(|| format!("update status of {}", describe(d))),
    }
}
