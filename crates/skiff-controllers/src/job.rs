//! The Job controller: runs pods until `completions` succeed (`parallelism` at a time), or
//! fails the Job after `backoffLimit` failures or `activeDeadlineSeconds`; sets the
//! `Complete` / `Failed` conditions, `startTime`, `completionTime`, the pod counts, and
//! deletes finished Jobs `ttlSecondsAfterFinished` later. Failed pods are replaced after an
//! exponential back-off (10 s doubling, at most 6 min, as upstream). Finished pods are kept
//! (pod GC removes them past its threshold); `succeeded` and `failed` never go down, so
//! deleting finished pods does not undo progress.
//!
//! Not supported: `completionMode: Indexed`, `podFailurePolicy`, `successPolicy`, the
//! `batch.kubernetes.io/job-tracking` finalizer.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::selector::LabelSelector;

use crate::claim::claim;
use crate::error::{is_not_found, ApiContext};
use crate::events::{reference, EventType, Recorder};
use crate::informer::{Change, Informer, BY_CONTROLLER};
use crate::podcontrol::{plan_replicas, PodControl, ReplicaDiff};
use crate::util::expectations::{Expectations, Seen};
use crate::util::meta::{
    controller_ref, describe, is_deleting, name_of, now, seconds_since, uid_of,
};
use crate::util::owners::OwnerTrigger;
use crate::util::pods;
use crate::Error;

/// Component name in events.
pub const COMPONENT: &str = "job-controller";
/// First back-off after a failed pod (upstream `DefaultJobPodFailureBackOff`).
const BACKOFF_BASE: f64 = 10.0;
/// Longest back-off (upstream `MaxJobPodFailureBackOff`).
const BACKOFF_MAX: f64 = 360.0;

struct Ctx {
    client: Client,
    pods: Informer<Pod>,
    control: PodControl,
}

/// Starts the controller.
pub fn start(
    client: Client,
    jobs: &Informer<Job>,
    pods: &Informer<Pod>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let expectations = Arc::new(Expectations::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.clone(),
        control: PodControl::new(
            client.clone(),
            Recorder::new(client, COMPONENT),
            expectations.clone(),
        ),
    });
    let store = jobs.store();
    let own = {
        let expectations = expectations.clone();
        jobs.triggers(store.clone(), move |change| match change {
            Change::Applied(job) => vec![ObjectRef::from_obj(job.as_ref())],
            Change::Deleted(job) => {
                expectations.forget(uid_of(&job.metadata));
                Vec::new()
            }
            Change::Resync => Vec::new(),
        })
    };
    let from_pods = pods.triggers(
        store.clone(),
        OwnerTrigger::<Job>::new("Job")
            .expecting(expectations)
            .into_fn(),
    );
    let triggers = futures::stream::select(own, from_pods).boxed();
    tasks.spawn(crate::runner::run(
        COMPONENT,
        store,
        triggers,
        reconcile,
        ctx,
        concurrency,
    ));
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has finished (`Complete` or `Failed`).
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition(s, "Complete").is_some() || condition(s, "Failed").is_some())
}

fn new_condition(type_: &str, reason: &str, message: &str) -> JobCondition {
    let t = now();
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(t.clone()),
        last_transition_time: Some(t),
    }
}

/// Back-off before the next pod after `failures` failures (upstream `getBackoff`).
fn backoff(failures: i32) -> f64 {
    if failures <= 0 {
        return 0.0;
    }
    (BACKOFF_BASE * 2f64.powi(failures - 1)).min(BACKOFF_MAX)
}

/// When the latest pod failure happened (its finish or, failing that, creation time).
fn last_failure(pods: &[Arc<Pod>]) -> Option<Time> {
    pods.iter()
        .filter(|p| pods::phase(p) == "Failed")
        .filter_map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_deref())
                .and_then(|cs| {
                    cs.iter()
                        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
                        .max()
                })
                .or_else(|| p.metadata.creation_timestamp.clone())
        })
        .max()
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let meta = &job.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let uid = uid_of(meta);
    let spec = job.spec.clone().unwrap_or_default();
    let old_status = job.status.clone().unwrap_or_default();
    if is_deleting(meta) {
        return Ok(Action::await_change());
    }
    if is_finished(&job) {
        return finished(&job, &ctx).await;
    }
    let selector = spec
        .selector
        .as_ref()
        .map(LabelSelector::from_label_selector)
        .transpose()
        .map_err(|e| Error::InvalidObject {
            object: describe(job.as_ref()),
            field: "spec.selector",
            message: e.to_string(),
        })?
        .unwrap_or_default();
    if selector.is_empty() {
        return Ok(Action::await_change());
    }
    let satisfied = ctx.control.expectations().satisfied(uid, |name| {
        ctx.pods.get(namespace, name).map(|p| Seen {
            uid: p.metadata.uid.clone().unwrap_or_default(),
            deleting: p.metadata.deletion_timestamp.is_some(),
        })
    });
    let mut candidates = ctx.pods.indexed(BY_CONTROLLER, uid);
    candidates.extend(
        ctx.pods
            .indexed(BY_CONTROLLER, &format!("orphan/{namespace}")),
    );
    let owned = claim(
        &ctx.client,
        &controller_ref(job.as_ref()),
        false,
        &selector,
        candidates,
    )
    .await?;
    let active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::is_active(p))
        .cloned()
        .collect();
    let succeeded_pods = owned
        .iter()
        .filter(|p| pods::phase(p) == "Succeeded")
        .count() as i32;
    let failed_pods = owned.iter().filter(|p| pods::phase(p) == "Failed").count() as i32;
    let succeeded = old_status.succeeded.unwrap_or(0).max(succeeded_pods);
    let mut failed = old_status.failed.unwrap_or(0).max(failed_pods);
    let mut status = old_status.clone();
    if status.start_time.is_none() && !spec.suspend.unwrap_or(false) {
        status.start_time = Some(now());
    }
    let owner = reference(job.as_ref());
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let restart_on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if restart_on_failure {
        // Restarts in place count as failures (upstream `pastBackoffLimitOnFailure`).
        failed = failed.max(active.iter().map(|p| pods::restarts(p)).sum::<i32>());
    }

    // Failure by back-off limit or deadline.
    let deadline_passed = spec.active_deadline_seconds.is_some_and(|ads| {
        status
            .start_time
            .as_ref()
            .is_some_and(|t| seconds_since(t) >= ads as f64)
    });
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline_passed {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let complete = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    let mut requeue: Option<f64> = None;
    if let Some((reason, message)) = failure {
        if !active.is_empty() {
            ctx.control.delete(&owner, uid, &active).await?;
        }
        ctx.control
            .recorder()
            .publish(owner.clone(), EventType::Warning, reason, message);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.push(new_condition("FailureTarget", reason, message));
        conditions.push(new_condition("Failed", reason, message));
        status.active = Some(0);
    } else if complete {
        if !active.is_empty() {
            ctx.control.delete(&owner, uid, &active).await?;
        }
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.push(new_condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        conditions.push(new_condition(
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        ));
        status.completion_time = Some(now());
        status.active = Some(0);
        ctx.control.recorder().publish(
            owner.clone(),
            EventType::Normal,
            "Completed",
            "Job completed",
        );
    } else {
        let suspended = spec.suspend.unwrap_or(false);
        let want = if suspended {
            0
        } else {
            match spec.completions {
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
                Some(c) => (c - succeeded).clamp(0, parallelism),
            }
        };
        let have = active.len() as i32;
        if satisfied {
            match plan_replicas(want.max(0) as usize, &active) {
                ReplicaDiff::Keep => {}
                ReplicaDiff::Delete(extra) => ctx.control.delete(&owner, uid, &extra).await?,
                ReplicaDiff::Create(missing) => {
                    let wait = last_failure(&owned)
                        .map(|t| backoff(failed) - seconds_since(&t))
                        .unwrap_or(0.0);
                    if failed > 0 && wait > 0.0 {
                        requeue = Some(wait);
                    } else {
                        let new_pods = (0..missing)
                            .map(|_| {
                                pods::from_template(
                                    &spec.template,
                                    namespace,
                                    pods::generate_name_prefix(name_of(meta)),
                                    controller_ref(job.as_ref()),
                                )
                            })
                            .collect();
                        ctx.control.create(&owner, uid, namespace, new_pods).await?;
                    }
                }
            }
        }
        status.active = Some(have);
        if let Some(ads) = spec.active_deadline_seconds {
            if let Some(start) = &status.start_time {
                let left = ads as f64 - seconds_since(start);
                requeue = Some(requeue.map_or(left, |r| r.min(left)).max(0.0));
            }
        }
    }
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    status.terminating = Some(
        owned
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminal(p))
            .count() as i32,
    );
    if status != old_status {
        write_status(&ctx.client, &job, &status).await?;
    }
    Ok(match requeue {
        Some(s) => Action::requeue(Duration::from_secs_f64(s + 0.1)),
        None => Action::await_change(),
    })
}

/// A finished Job: delete it `ttlSecondsAfterFinished` after it finished (upstream's TTL
/// controller).
async fn finished(job: &Arc<Job>, ctx: &Ctx) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let status = job.status.clone().unwrap_or_default();
    let finished_at = status
        .completion_time
        .clone()
        .or_else(|| condition(&status, "Failed").and_then(|c| c.last_transition_time.clone()))
        .or_else(|| condition(&status, "Complete").and_then(|c| c.last_transition_time.clone()));
    let Some(at) = finished_at else {
        return Ok(Action::await_change());
    };
    let left = f64::from(ttl) - seconds_since(&at);
    if left > 0.0 {
        return Ok(Action::requeue(Duration::from_secs_f64(left + 0.1)));
    }
    let api: Api<Job> = Api::namespaced(
        ctx.client.clone(),
        job.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(kube::api::Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name_of(&job.metadata), &params).await {
        Ok(_) => {
            tracing::info!(job = %describe(job.as_ref()), "deleted finished job after its TTL");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e).context(|| format!("delete finished {}", describe(job.as_ref()))),
    }
}

async fn write_status(client: &Client, job: &Job, status: &JobStatus) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(
        client.clone(),
        job.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = json!({"status": {
        "active": status.active.unwrap_or(0),
        "succeeded": status.succeeded.unwrap_or(0),
        "failed": status.failed.unwrap_or(0),
        "ready": status.ready.unwrap_or(0),
        "terminating": status.terminating.unwrap_or(0),
        "startTime": status.start_time,
        "completionTime": status.completion_time,
        "conditions": status.conditions.clone().unwrap_or_default(),
    }});
    match api
        .patch_status(
            name_of(&job.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).context(|| format!("update status of {}", describe(job))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_six_minutes() {
        assert_eq!(backoff(0), 0.0);
        assert_eq!(backoff(1), 10.0);
        assert_eq!(backoff(2), 20.0);
        assert_eq!(backoff(3), 40.0);
        assert_eq!(backoff(10), 360.0);
    }
}
