//! Running a reconciler with kube-runtime's `Controller`: reconcile requests come from the
//! shared informers (see [`crate::informer`]), kube-runtime deduplicates them, runs up to
//! `concurrency` reconciles at once (never two for the same object) and requeues on errors.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::informer::Informer;
use crate::Error;

/// Retry delay after a conflict (someone else wrote the object first).
const CONFLICT_RETRY: Duration = Duration::from_millis(500);
/// Retry delay after other errors.
const ERROR_RETRY: Duration = Duration::from_secs(5);

/// Runs `reconcile` for the objects of `store` named by `triggers`, until the task ends.
pub async fn run<K, Ctx, F, Fut>(
    name: &'static str,
    store: Store<K>,
    triggers: impl Stream<Item = ObjectRef<K>> + Send + 'static,
    reconcile: F,
    context: Arc<Ctx>,
    concurrency: u16,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let error_policy = move |object: Arc<K>, error: &Error, _: Arc<Ctx>| {
        let object = crate::util::meta::key_of(object.meta());
        if error.status_code() == Some(409) {
            tracing::debug!(controller = name, %object, %error, "conflict; retrying");
            Action::requeue(CONFLICT_RETRY)
        } else {
            tracing::warn!(controller = name, %object, %error, "reconcile failed; retrying");
            Action::requeue(ERROR_RETRY)
        }
    };
    tracing::info!(controller = name, "controller started");
    Controller::for_stream(
        futures::stream::pending::<Result<K, watcher::Error>>(),
        store,
    )
    .reconcile_on(triggers)
    .with_config(Config::default().concurrency(concurrency))
    .run(reconcile, error_policy, context)
    .for_each(|result| {
        if let Err(error) = result {
            tracing::trace!(controller = name, %error, "reconcile request ended with an error");
        }
        std::future::ready(())
    })
    .await;
}

/// Spawns [`run`] on `tasks` for the objects of `primary`: each is reconciled when it is
/// added or modified ([`Informer::own_triggers`]) and whenever one of `triggers` names it.
/// The one start shape of the controllers keyed by one cached kind.
pub fn spawn<K, Ctx, F, Fut>(
    tasks: &mut tokio::task::JoinSet<()>,
    name: &'static str,
    primary: &Informer<K>,
    triggers: Vec<BoxStream<'static, ObjectRef<K>>>,
    reconcile: F,
    context: Arc<Ctx>,
    concurrency: u16,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let mut all = triggers;
    all.push(primary.own_triggers().boxed());
    tasks.spawn(run(
        name,
        primary.store(),
        futures::stream::select_all(all),
        reconcile,
        context,
        concurrency,
    ));
}

/// A stream that yields once every `period` (for periodic resyncs).
pub fn every(period: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some(((), ()))
    })
}
