//! The namespace controller: a namespace being deleted (`Terminating`) is emptied — every
//! namespaced resource the API serves is deleted with `deletecollection` — and once nothing
//! is left its `kubernetes` finalizer is removed through `namespaces/{name}/finalize`, which
//! lets the API server delete it. While objects remain (pods still terminating, objects with
//! finalizers) its `NamespaceContentRemaining` condition says which.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::registry::{self, ResourceInfo};

use crate::error::{is_not_found, status_code, ApiContext};
use crate::informer::{Change, Informer};
use crate::util::meta::{name_of, now};
use crate::Error;

/// Component name in logs.
pub const COMPONENT: &str = "namespace-controller";
/// The finalizer the namespace controller owns.
pub const FINALIZER: &str = "kubernetes";
/// How soon a namespace with remaining content is looked at again.
const RECHECK: Duration = Duration::from_secs(2);

struct Ctx {
    client: Client,
}

/// The kube `ApiResource` of a registry entry.
pub fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    }
}

/// Starts the controller.
pub fn start(
    client: Client,
    namespaces: &Informer<Namespace>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let store = namespaces.store();
    let triggers = namespaces
        .triggers(store.clone(), |change| match change {
            Change::Applied(ns) if ns.metadata.deletion_timestamp.is_some() => {
                vec![ObjectRef::from_obj(ns.as_ref())]
            }
            _ => Vec::new(),
        })
        .boxed();
    tasks.spawn(crate::runner::run(
        COMPONENT,
        store,
        triggers,
        reconcile,
        Arc::new(Ctx { client }),
        concurrency,
    ));
}

fn deletable(info: &ResourceInfo) -> bool {
    info.namespaced && info.verbs.contains(&"deletecollection") && info.verbs.contains(&"list")
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = name_of(&ns.metadata).to_string();
    let has_finalizer = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if !has_finalizer {
        return Ok(Action::await_change());
    }
    let mut remaining: Vec<(String, usize)> = Vec::new();
    for info in registry::resources().iter().filter(|i| deletable(i)) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &name, &api_resource(info));
        match api
            .delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || status_code(&e) == Some(405) => continue,
            Err(e) => {
                return Err(e).context(|| format!("delete {} in namespace {name}", info.plural))
            }
        }
        let left = api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .context(|| format!("list {} in namespace {name}", info.plural))?;
        if !left.items.is_empty() {
            let count = left.metadata.remaining_item_count.unwrap_or(0) as usize + left.items.len();
            remaining.push((info.storage_name(), count));
        }
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    if !remaining.is_empty() {
        let message = format!(
            "Some resources are remaining: {}",
            remaining
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        set_condition(&api, &ns, &message).await?;
        return Ok(Action::requeue(RECHECK));
    }
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        if let Some(f) = spec.finalizers.as_mut() {
            f.retain(|f| f != FINALIZER);
        }
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace emptied and finalized");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e).context(|| format!("finalize namespace {name}")),
    }
}

async fn set_condition(api: &Api<Namespace>, ns: &Namespace, message: &str) -> Result<(), Error> {
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| c.iter().find(|c| c.type_ == "NamespaceContentRemaining"));
    if current.is_some_and(|c| c.message.as_deref() == Some(message)) {
        return Ok(());
    }
    let mut conditions: Vec<NamespaceCondition> = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "NamespaceContentRemaining")
        .collect();
    conditions.push(NamespaceCondition {
        type_: "NamespaceContentRemaining".into(),
        status: "True".into(),
        reason: Some("SomeResourcesRemain".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(now()),
    });
    let patch = json!({"status": {"conditions": conditions}});
    match api
        .patch_status(
            name_of(&ns.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => {
            Err(e).context(|| format!("set conditions of namespace {}", name_of(&ns.metadata)))
        }
    }
}
