//! The service account controller (upstream `serviceaccounts-controller`): every active
//! namespace has a `default` ServiceAccount. It is created when a namespace appears (and for
//! every namespace on start), and again whenever it is deleted while its namespace is active.
//! Like upstream, this happens shortly after the namespace is created, not as part of that
//! request: the API server's write path never creates objects of its own.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::error::{status_code, ApiContext};
use crate::informer::{object_ref, Change, Informer};
use crate::util::meta::{name_of, namespace_of};
use crate::Error;

/// Component name in logs.
pub const COMPONENT: &str = "serviceaccount-controller";
/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

struct Ctx {
    client: Client,
    accounts: Informer<ServiceAccount>,
}

/// The watch of the `default` ServiceAccounts this controller keeps (a `metadata.name` field
/// selector: other accounts are none of its business).
pub fn accounts_watch() -> kube::runtime::watcher::Config {
    kube::runtime::watcher::Config::default()
        .fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}"))
}

/// Starts the controller. `accounts` must watch the `default` accounts ([`accounts_watch`]).
pub fn start(
    client: Client,
    namespaces: &Informer<Namespace>,
    accounts: &Informer<ServiceAccount>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let store = namespaces.store();
    let own = namespaces.triggers(store.clone(), |change| match change {
        Change::Applied(ns) if is_active(ns) => vec![ObjectRef::from_obj(ns.as_ref())],
        _ => Vec::new(),
    });
    let from_accounts = accounts.triggers(store.clone(), |change| match change {
        Change::Deleted(sa) if name_of(&sa.metadata) == DEFAULT_SERVICE_ACCOUNT => {
            vec![object_ref("", namespace_of(&sa.metadata))]
        }
        _ => Vec::new(),
    });
    let ctx = Arc::new(Ctx {
        client,
        accounts: accounts.clone(),
    });
    tasks.spawn(crate::runner::run(
        COMPONENT,
        store,
        futures::stream::select(own, from_accounts).boxed(),
        reconcile,
        ctx,
        concurrency,
    ));
}

/// Whether creation was refused because the namespace is being deleted (upstream's
/// NamespaceLifecycle admission).
fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

/// Whether a namespace is active (upstream: `status.phase != Terminating`).
fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let namespace = name_of(&ns.metadata);
    if ctx
        .accounts
        .get(namespace, DEFAULT_SERVICE_ACCOUNT)
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => {
            tracing::debug!(namespace, "created the default ServiceAccount");
            Ok(Action::await_change())
        }
        // Already there (the cache is behind), or the namespace began terminating.
        Err(e) if status_code(&e) == Some(409) || namespace_terminating(&e) => {
            Ok(Action::await_change())
        }
        Err(e) => Err(e).context(|| format!("create ServiceAccount {namespace}/default")),
    }
}
