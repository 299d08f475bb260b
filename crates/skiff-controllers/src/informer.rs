//! One watch per resource, shared by every controller that needs it.
//!
//! An [`Informer`] runs a kube-runtime [`watcher`] into a kube-runtime reflector [`Store`]
//! and broadcasts each change — including deletions, which kube-runtime's shared streams do
//! not pass on — to its subscribers. Controllers read the store (it is the cache upstream's
//! informers keep) and turn the changes of the resources they care about into reconcile
//! requests (`Controller::reconcile_on`). A subscriber that falls behind the broadcast gets a
//! [`Change::Resync`] and reconciles everything, which is correct because every reconciler
//! is level-based.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

/// Changes buffered per subscriber before it is told to resync.
const BROADCAST_CAPACITY: usize = 16 * 1024;

/// A change seen by an [`Informer`].
#[derive(Debug)]
pub enum Change<K> {
    /// An object was added or modified; this is its new state.
    Applied(Arc<K>),
    /// An object was deleted; this is its last state.
    Deleted(Arc<K>),
    /// The cache was (re)filled or the subscriber fell behind: everything may have changed.
    Resync,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
            Change::Resync => Change::Resync,
        }
    }
}

impl<K> Change<K> {
    /// The object of an `Applied` or `Deleted` change.
    pub fn object(&self) -> Option<&Arc<K>> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => Some(o),
            Change::Resync => None,
        }
    }
}

/// Computes the index values of an object (e.g. its controller's uid, its node).
pub type IndexFn<K> = fn(&K) -> Vec<String>;

/// Secondary indexes of a cache: for each named index, value → objects.
struct Indexes<K: Resource<DynamicType = ()> + 'static> {
    functions: Vec<(&'static str, IndexFn<K>)>,
    /// index name → value → objects.
    maps: HashMap<&'static str, HashMap<String, HashSet<ObjectRef<K>>>>,
    /// object → its values per index (to remove them on change).
    values: HashMap<ObjectRef<K>, Vec<Vec<String>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Indexes<K> {
    fn new(functions: Vec<(&'static str, IndexFn<K>)>) -> Self {
        Indexes {
            maps: functions
                .iter()
                .map(|(n, _)| (*n, HashMap::new()))
                .collect(),
            functions,
            values: HashMap::new(),
        }
    }

    fn remove(&mut self, r: &ObjectRef<K>) {
        let Some(old) = self.values.remove(r) else {
            return;
        };
        for ((name, _), values) in self.functions.iter().zip(old) {
            let Some(map) = self.maps.get_mut(name) else {
                continue;
            };
            for v in values {
                if let Some(set) = map.get_mut(&v) {
                    set.remove(r);
                    if set.is_empty() {
                        map.remove(&v);
                    }
                }
            }
        }
    }

    fn insert(&mut self, object: &K) {
        if self.functions.is_empty() {
            return;
        }
        let r = ObjectRef::from_obj(object);
        self.remove(&r);
        let mut all = Vec::with_capacity(self.functions.len());
        for (name, f) in &self.functions {
            let values = f(object);
            if let Some(map) = self.maps.get_mut(name) {
                for v in &values {
                    map.entry(v.clone()).or_default().insert(r.clone());
                }
            }
            all.push(values);
        }
        self.values.insert(r, all);
    }

    fn rebuild<'a>(&mut self, objects: impl Iterator<Item = &'a K>)
    where
        K: 'a,
    {
        for map in self.maps.values_mut() {
            map.clear();
        }
        self.values.clear();
        for o in objects {
            self.insert(o);
        }
    }
}

/// A watched, cached resource whose changes can be subscribed to. Cheap to clone.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    tx: broadcast::Sender<Change<K>>,
    indexes: Arc<RwLock<Indexes<K>>>,
}

impl<K> std::fmt::Debug for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field("kind", &K::kind(&()))
            .finish_non_exhaustive()
    }
}

impl<K> Clone for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            tx: self.tx.clone(),
            indexes: self.indexes.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` (with `config`'s selectors) on a task in `tasks`.
    pub fn start(api: Api<K>, config: watcher::Config, tasks: &mut JoinSet<()>) -> Self {
        Self::start_indexed(api, config, Vec::new(), tasks)
    }

    /// Like [`Informer::start`], keeping the named secondary `indexes` (see
    /// [`Informer::indexed`]).
    pub fn start_indexed(
        api: Api<K>,
        config: watcher::Config,
        indexes: Vec<(&'static str, IndexFn<K>)>,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let (reader, mut writer) = reflector::store::<K>();
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let indexes = Arc::new(RwLock::new(Indexes::new(indexes)));
        let informer = Informer {
            store: reader.clone(),
            tx: tx.clone(),
            indexes: indexes.clone(),
        };
        let kind = K::kind(&()).into_owned();
        tasks.spawn(async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(%kind, %error, "watch failed; retrying with back-off");
                        continue;
                    }
                };
                writer.apply_watcher_event(&event);
                let change = match event {
                    watcher::Event::Apply(object) => {
                        indexes
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(&object);
                        match reader.get(&ObjectRef::from_obj(&object)) {
                            Some(cached) => Change::Applied(cached),
                            None => Change::Applied(Arc::new(object)),
                        }
                    }
                    watcher::Event::Delete(object) => {
                        indexes
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&ObjectRef::from_obj(&object));
                        Change::Deleted(Arc::new(object))
                    }
                    watcher::Event::InitDone => {
                        let all = reader.state();
                        indexes
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .rebuild(all.iter().map(|o| o.as_ref()));
                        Change::Resync
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                };
                // No subscriber is not an error: the cache is still kept.
                let _ = tx.send(change);
            }
        });
        informer
    }

    /// The cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The cached objects whose index `index` has `value`.
    pub fn indexed(&self, index: &str, value: &str) -> Vec<Arc<K>> {
        let refs: Vec<ObjectRef<K>> = {
            let indexes = self.indexes.read().unwrap_or_else(|e| e.into_inner());
            match indexes.maps.get(index).and_then(|m| m.get(value)) {
                Some(set) => set.iter().cloned().collect(),
                None => return Vec::new(),
            }
        };
        refs.iter().filter_map(|r| self.store.get(r)).collect()
    }

    /// The cached object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.store.get(&object_ref(namespace, name))
    }

    /// Waits until the first full list is in the cache.
    pub async fn ready(&self) {
        // The writer lives as long as the watch task; if that ended the store stays empty.
        let _ = self.store.wait_until_ready().await;
    }

    /// The changes from now on, starting with a [`Change::Resync`] once the cache is filled.
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        let rx = self.tx.subscribe();
        let store = self.store.clone();
        let first = futures::stream::once(async move {
            let _ = store.wait_until_ready().await;
            Change::Resync
        });
        let rest = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(change) => Some((change, rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "subscriber fell behind; resyncing");
                    Some((Change::Resync, rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        first.chain(rest)
    }

    /// Reconcile requests for a controller of `K` itself: every added or modified object
    /// (deletions reach no reconcile: the object is gone from the cache). `Resync` maps to
    /// every cached object.
    pub fn own_triggers(&self) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
        self.triggers(self.store(), |change| match change {
            Change::Applied(o) => vec![ObjectRef::from_obj(o.as_ref())],
            _ => Vec::new(),
        })
    }

    /// Reconcile requests for controllers of `P`: every change of `K` is mapped by `map` to the
    /// objects to reconcile. `Resync` maps to every `P` in `parents`.
    pub fn triggers<P, F>(
        &self,
        parents: Store<P>,
        map: F,
    ) -> impl Stream<Item = ObjectRef<P>> + Send + 'static
    where
        P: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
        F: Fn(&Change<K>) -> Vec<ObjectRef<P>> + Send + 'static,
    {
        self.subscribe().flat_map(move |change| {
            let refs = match change {
                Change::Resync => parents
                    .state()
                    .iter()
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect(),
                ref change => map(change),
            };
            futures::stream::iter(refs)
        })
    }
}

/// A reference to an object of `P` by namespace and name.
pub fn object_ref<P: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectRef<P> {
    let r = ObjectRef::new(name);
    if namespace.is_empty() {
        r
    } else {
        r.within(namespace)
    }
}

/// The object of kind `P` with the same namespace and name as the changed one (a Service's
/// Endpoints, an Endpoints' Service).
pub fn same_name<D: Resource, P: Resource<DynamicType = ()>>(
    change: &Change<D>,
) -> Vec<ObjectRef<P>> {
    match change.object() {
        Some(o) => {
            let meta = o.meta();
            vec![object_ref(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            )]
        }
        None => Vec::new(),
    }
}

/// Index name: the uid of an object's controller, or `orphan/<namespace>` without one.
pub const BY_CONTROLLER: &str = "controller";
/// Index name: an object's namespace.
pub const BY_NAMESPACE: &str = "namespace";
/// Index name: a pod's `spec.nodeName`.
pub const BY_NODE: &str = "node";

/// Index function for [`BY_CONTROLLER`].
pub fn controller_index<K: Resource>(object: &K) -> Vec<String> {
    let meta = object.meta();
    match crate::util::meta::controller_of(meta) {
        Some(r) => vec![r.uid.clone()],
        None => vec![format!(
            "orphan/{}",
            meta.namespace.as_deref().unwrap_or_default()
        )],
    }
}

/// Index function for [`BY_NAMESPACE`].
pub fn namespace_index<K: Resource>(object: &K) -> Vec<String> {
    vec![object.meta().namespace.clone().unwrap_or_default()]
}

/// Index function for [`BY_NODE`] of pods.
pub fn node_index(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() => vec![n.to_string()],
        _ => Vec::new(),
    }
}
