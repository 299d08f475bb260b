//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector,
//! adopting orphans and releasing pods that stop matching, and reports `status.replicas`,
//! `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas` and `observedGeneration`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::selector::LabelSelector;

use crate::claim::claim;
use crate::error::{is_not_found, ApiContext};
use crate::events::{reference, Recorder};
use crate::informer::{Change, Informer, BY_CONTROLLER};
use crate::podcontrol::{plan_replicas, PodControl, ReplicaDiff};
use crate::util::expectations::{Expectations, Seen};
use crate::util::meta::{controller_ref, describe, is_deleting, key_of, now, uid_of};
use crate::util::owners::OwnerTrigger;
use crate::util::pods;
use crate::Error;

/// Component name in events.
pub const COMPONENT: &str = "replicaset-controller";

struct Ctx {
    client: Client,
    pods: Informer<Pod>,
    control: PodControl,
}

/// Starts the controller.
pub fn start(
    client: Client,
    pods: &Informer<Pod>,
    sets: &Informer<ReplicaSet>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let expectations = Arc::new(Expectations::default());
    let recorder = Recorder::new(client.clone(), COMPONENT);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.clone(),
        control: PodControl::new(client, recorder, expectations.clone()),
    });
    let set_store = sets.store();
    let own = {
        let expectations = expectations.clone();
        sets.triggers(set_store.clone(), move |change| match change {
            Change::Applied(rs) => vec![ObjectRef::from_obj(rs.as_ref())],
            Change::Deleted(rs) => {
                expectations.forget(uid_of(&rs.metadata));
                Vec::new()
            }
            Change::Resync => Vec::new(),
        })
    };
    let from_pods = pods.triggers(
        set_store.clone(),
        OwnerTrigger::new("ReplicaSet")
            .expecting(expectations)
            .adopting(set_store.clone(), |rs: &ReplicaSet| {
                rs.spec.as_ref().map(|s| &s.selector)
            })
            .into_fn(),
    );
    let triggers = futures::stream::select(own, from_pods).boxed();
    tasks.spawn(crate::runner::run(
        COMPONENT,
        set_store,
        triggers,
        reconcile,
        ctx,
        concurrency,
    ));
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let meta = &rs.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let uid = uid_of(meta);
    let spec = rs.spec.clone().unwrap_or_default();
    let selector =
        LabelSelector::from_label_selector(&spec.selector).map_err(|e| Error::InvalidObject {
            object: describe(rs.as_ref()),
            field: "spec.selector",
            message: e.to_string(),
        })?;
    let expectations = ctx.control.expectations();
    let satisfied = expectations.satisfied(uid, |name| {
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
        &controller_ref(rs.as_ref()),
        is_deleting(meta),
        &selector,
        candidates,
    )
    .await?;
    let active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::is_active(p))
        .cloned()
        .collect();
    let mut failure = None;
    if satisfied && !is_deleting(meta) {
        if let Err(e) = manage_replicas(&rs, &active, &ctx).await {
            failure = Some(e);
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let status = calculate_status(&rs, &owned, &active, min_ready, failure.as_ref());
    update_status(&ctx.client, &rs, status).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    // Pods that are ready but not yet available become available without any event.
    let next = active
        .iter()
        .filter_map(|p| pods::seconds_until_available(p, min_ready))
        .fold(None::<f64>, |m, s| Some(m.map_or(s, |m| m.min(s))));
    Ok(match next {
        Some(s) => Action::requeue(Duration::from_secs_f64(s + 0.1)),
        None => Action::await_change(),
    })
}

async fn manage_replicas(rs: &ReplicaSet, active: &[Arc<Pod>], ctx: &Ctx) -> Result<(), Error> {
    let meta = &rs.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let spec = rs.spec.as_ref();
    let want = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let owner = reference(rs);
    let uid = uid_of(meta);
    match plan_replicas(want, active) {
        ReplicaDiff::Keep => {}
        ReplicaDiff::Create(missing) => {
            let template = spec.and_then(|s| s.template.clone()).unwrap_or_default();
            let name = meta.name.as_deref().unwrap_or_default();
            let new_pods = (0..missing)
                .map(|_| {
                    pods::from_template(
                        &template,
                        namespace,
                        pods::generate_name_prefix(name),
                        controller_ref(rs),
                    )
                })
                .collect();
            ctx.control.create(&owner, uid, namespace, new_pods).await?;
        }
        ReplicaDiff::Delete(extra) => ctx.control.delete(&owner, uid, &extra).await?,
    }
    Ok(())
}

fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    active: &[Arc<Pod>],
    min_ready: i32,
    failure: Option<&Error>,
) -> ReplicaSetStatus {
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count() as i32;
    let ready = active.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, min_ready))
        .count() as i32;
    let terminating = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_terminal(p))
        .count();
    let _ = terminating;
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    if let Some(error) = failure {
        let previous = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "ReplicaFailure")
            .cloned();
        let message = error.to_string();
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            last_transition_time: previous
                .filter(|p| p.message.as_deref() == Some(message.as_str()))
                .and_then(|p| p.last_transition_time)
                .or_else(|| Some(now())),
            message: Some(message),
        });
    }
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

async fn update_status(
    client: &Client,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), Error> {
    let old = rs.status.clone().unwrap_or_default();
    let same = old.replicas == status.replicas
        && old.fully_labeled_replicas.unwrap_or(0) == status.fully_labeled_replicas.unwrap_or(0)
        && old.ready_replicas.unwrap_or(0) == status.ready_replicas.unwrap_or(0)
        && old.available_replicas.unwrap_or(0) == status.available_replicas.unwrap_or(0)
        && old.observed_generation == status.observed_generation
        && old.conditions.clone().unwrap_or_default()
            == status.conditions.clone().unwrap_or_default();
    if same {
        return Ok(());
    }
    let meta = &rs.metadata;
    let api: Api<ReplicaSet> = Api::namespaced(
        client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    let patch = json!({
        "status": {
            "replicas": status.replicas,
            "fullyLabeledReplicas": status.fully_labeled_replicas,
            "readyReplicas": status.ready_replicas,
            "availableReplicas": status.available_replicas,
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions.unwrap_or_default(),
        }
    });
    match api
        .patch_status(
            meta.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).context(|| format!("update status of ReplicaSet {}", key_of(meta))),
    }
}
