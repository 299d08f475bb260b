//! The garbage collector (upstream `pkg/controller/garbagecollector`): deletes objects whose
//! owners are all gone, and carries out the deletion propagation policies the API server
//! records as finalizers:
//!
//! - background: the owner is deleted at once; its dependents then have no owner left and
//!   are deleted here;
//! - foreground (`foregroundDeletion` finalizer on the owner): dependents that block their
//!   owner's deletion (`blockOwnerDeletion: true`) are deleted first — those with dependents
//!   of their own in the foreground too — and when none is left the finalizer is removed, so
//!   the API server deletes the owner;
//! - orphan (`orphan` finalizer on the owner): the owner's references are removed from its
//!   dependents, then the finalizer.
//!
//! The collector keeps a graph of every object's owner references, built from metadata-only
//! watches of every resource the API serves (events excepted), and decides in one loop; the
//! API calls run on tasks. An owner missing from the graph is looked up once before its
//! dependents are deleted (the graph may lag).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::registry::{self, ResourceInfo};
use tokio::sync::{mpsc, Semaphore};

use crate::error::{is_not_found, status_code};
use crate::namespace::api_resource;

/// Component name in logs.
pub const COMPONENT: &str = "garbage-collector";
/// Finalizer asking for foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer asking for the dependents to be orphaned.
pub const ORPHAN: &str = "orphan";
/// API calls in flight.
const CONCURRENCY: usize = 16;
/// Delay before work whose API call failed is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The resources the collector watches: everything that can be listed, watched and deleted,
/// except events (which nothing owns and which are many).
fn collected(info: &ResourceInfo) -> bool {
    info.kind != "Event"
        && ["list", "watch", "delete"]
            .iter()
            .all(|v| info.verbs.contains(v))
}

#[derive(Debug, Clone)]
struct Item {
    resource: &'static ResourceInfo,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    dependents: HashSet<String>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Item {
    fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Work {
    AttemptToDelete(String),
    Orphan(String),
    DeleteDependents(String),
    /// Being deleted with no finalizer left, yet still stored: delete it again.
    Finish(String),
}

enum Input {
    Event(
        &'static ResourceInfo,
        Box<watcher::Event<PartialObjectMeta<DynamicObject>>>,
    ),
    /// Whether the owner `owner` of `dependent` exists (looked up through the API).
    Verified {
        owner: String,
        exists: bool,
        dependent: String,
    },
    Retry(Work),
}

/// A reference to one object for an API call.
#[derive(Debug, Clone)]
struct Target {
    resource: &'static ResourceInfo,
    namespace: Option<String>,
    name: String,
    uid: String,
}

impl Target {
    fn api(&self, client: &Client) -> Api<DynamicObject> {
        let ar = api_resource(self.resource);
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        }
    }

    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource.kind, self.name),
            None => format!("{} {}", self.resource.kind, self.name),
        }
    }
}

enum Command {
    Delete(Target, PropagationPolicy, Work),
    RemoveOwners {
        target: Target,
        current: Vec<OwnerReference>,
        remove: Vec<String>,
        retry: Work,
    },
    RemoveFinalizer {
        target: Target,
        current: Vec<String>,
        finalizer: &'static str,
        retry: Work,
    },
    Orphan {
        owner: Target,
        owner_finalizers: Vec<String>,
        dependents: Vec<(Target, Vec<OwnerReference>)>,
        retry: Work,
    },
    Verify {
        owner: OwnerReference,
        namespace: Option<String>,
        dependent: String,
    },
}

/// Starts the collector.
pub fn start(client: Client, tasks: &mut tokio::task::JoinSet<()>) {
    let (tx, rx) = mpsc::channel::<Input>(16 * 1024);
    let resources: Vec<&'static ResourceInfo> = registry::resources()
        .iter()
        .filter(|i| collected(i))
        .collect();
    for info in &resources {
        let info: &'static ResourceInfo = info;
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(client.clone(), &api_resource(info));
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        if tx.send(Input::Event(info, Box::new(event))).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(resource = info.plural, %error, "garbage collector: watch failed; retrying")
                    }
                }
            }
        });
    }
    let gc = Collector {
        client,
        tx,
        graph: HashMap::new(),
        absent: HashSet::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        waiting_verification: HashSet::new(),
        synced: HashSet::new(),
        resources: resources.len(),
        buffers: HashMap::new(),
        permits: Arc::new(Semaphore::new(CONCURRENCY)),
    };
    tasks.spawn(gc.run(rx));
}

struct Collector {
    client: Client,
    tx: mpsc::Sender<Input>,
    graph: HashMap<String, Item>,
    /// Owners known not to exist (deleted while watched, or looked up).
    absent: HashSet<String>,
    queue: VecDeque<Work>,
    queued: HashSet<Work>,
    /// Owner lookups in flight.
    waiting_verification: HashSet<String>,
    synced: HashSet<&'static str>,
    resources: usize,
    buffers: HashMap<&'static str, Vec<PartialObjectMeta<DynamicObject>>>,
    permits: Arc<Semaphore>,
}

impl Collector {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        tracing::info!(resources = self.resources, "garbage collector started");
        loop {
            let Some(input) = rx.recv().await else { return };
            self.handle(input);
            while let Ok(input) = rx.try_recv() {
                self.handle(input);
            }
            if self.synced.len() == self.resources {
                self.process_queue();
            }
        }
    }

    fn enqueue(&mut self, work: Work) {
        if self.queued.insert(work.clone()) {
            self.queue.push_back(work);
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Event(info, event) => self.event(info, *event),
            Input::Verified {
                owner,
                exists,
                dependent,
            } => {
                self.waiting_verification.remove(&owner);
                if !exists && !self.graph.contains_key(&owner) {
                    self.absent.insert(owner);
                    if self.absent.len() > 100_000 {
                        self.absent.clear();
                    }
                }
                self.enqueue(Work::AttemptToDelete(dependent));
            }
            Input::Retry(work) => self.enqueue(work),
        }
    }

    fn event(
        &mut self,
        info: &'static ResourceInfo,
        event: watcher::Event<PartialObjectMeta<DynamicObject>>,
    ) {
        match event {
            watcher::Event::Apply(object) => self.upsert(info, object),
            watcher::Event::Delete(object) => {
                self.remove(object.metadata.uid.as_deref().unwrap_or(""))
            }
            watcher::Event::Init => {
                self.buffers.insert(info.plural, Vec::new());
            }
            watcher::Event::InitApply(object) => {
                self.buffers.entry(info.plural).or_default().push(object)
            }
            watcher::Event::InitDone => {
                let objects = self.buffers.remove(info.plural).unwrap_or_default();
                let present: HashSet<String> = objects
                    .iter()
                    .filter_map(|o| o.metadata.uid.clone())
                    .collect();
                let gone: Vec<String> = self
                    .graph
                    .iter()
                    .filter(|(uid, item)| {
                        std::ptr::eq(item.resource, info) && !present.contains(*uid)
                    })
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in gone {
                    self.remove(&uid);
                }
                for object in objects {
                    self.upsert(info, object);
                }
                if self.synced.insert(info.plural) && self.synced.len() == self.resources {
                    tracing::info!(
                        objects = self.graph.len(),
                        "garbage collector: graph synced"
                    );
                    let with_owners: Vec<String> = self
                        .graph
                        .iter()
                        .filter(|(_, i)| !i.owners.is_empty() || i.deleting)
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in with_owners {
                        self.after_change(&uid);
                    }
                }
            }
        }
    }

    fn upsert(&mut self, info: &'static ResourceInfo, object: PartialObjectMeta<DynamicObject>) {
        let meta = object.metadata;
        let Some(uid) = meta.uid.clone() else { return };
        let owners = meta.owner_references.unwrap_or_default();
        let old_owners: Vec<String> = self
            .graph
            .get(&uid)
            .map(|i| i.owners.iter().map(|o| o.uid.clone()).collect())
            .unwrap_or_default();
        for o in &old_owners {
            if let Some(owner) = self.graph.get_mut(o) {
                owner.dependents.remove(&uid);
            }
        }
        for o in &owners {
            if let Some(owner) = self.graph.get_mut(&o.uid) {
                owner.dependents.insert(uid.clone());
            }
        }
        // Dependents that arrived before this object.
        let dependents = self
            .graph
            .get(&uid)
            .map(|i| i.dependents.clone())
            .unwrap_or_else(|| {
                self.graph
                    .iter()
                    .filter(|(_, i)| i.owners.iter().any(|o| o.uid == uid))
                    .map(|(d, _)| d.clone())
                    .collect()
            });
        self.absent.remove(&uid);
        self.graph.insert(
            uid.clone(),
            Item {
                resource: info,
                namespace: meta.namespace.filter(|n| !n.is_empty()),
                name: meta.name.unwrap_or_default(),
                owners,
                dependents,
                deleting: meta.deletion_timestamp.is_some(),
                finalizers: meta.finalizers.unwrap_or_default(),
            },
        );
        if self.synced.len() == self.resources {
            self.after_change(&uid);
        }
    }

    /// Work a change of `uid` may call for.
    fn after_change(&mut self, uid: &str) {
        let Some(item) = self.graph.get(uid) else {
            return;
        };
        let orphaning = item.orphaning();
        let foreground = item.deleting_dependents();
        let needs_check = item.owners.iter().any(|o| match self.graph.get(&o.uid) {
            None => true,
            Some(owner) => owner.deleting_dependents(),
        });
        let owners_deleting: Vec<String> = item
            .owners
            .iter()
            .filter(|o| {
                self.graph
                    .get(&o.uid)
                    .is_some_and(|i| i.deleting_dependents())
            })
            .map(|o| o.uid.clone())
            .collect();
        // An object whose last finalizer is gone is normally removed by the API server in
        // the same update; if that removal lost a race it stays, being deleted, forever.
        if item.deleting && item.finalizers.is_empty() && item.resource.kind != "Pod" {
            self.enqueue(Work::Finish(uid.to_string()));
        }
        if orphaning {
            self.enqueue(Work::Orphan(uid.to_string()));
        }
        if foreground {
            self.enqueue(Work::DeleteDependents(uid.to_string()));
        }
        if needs_check {
            self.enqueue(Work::AttemptToDelete(uid.to_string()));
        }
        // A dependent that changed may unblock an owner's foreground deletion.
        for o in owners_deleting {
            self.enqueue(Work::DeleteDependents(o));
        }
    }

    fn remove(&mut self, uid: &str) {
        let Some(item) = self.graph.remove(uid) else {
            return;
        };
        self.absent.insert(uid.to_string());
        for o in &item.owners {
            if let Some(owner) = self.graph.get_mut(&o.uid) {
                owner.dependents.remove(uid);
                if owner.deleting_dependents() {
                    let o = o.uid.clone();
                    self.enqueue(Work::DeleteDependents(o));
                }
            }
        }
        if self.synced.len() == self.resources {
            for d in item.dependents {
                self.enqueue(Work::AttemptToDelete(d));
            }
        }
    }

    fn target(&self, uid: &str) -> Option<Target> {
        let item = self.graph.get(uid)?;
        Some(Target {
            resource: item.resource,
            namespace: item.namespace.clone(),
            name: item.name.clone(),
            uid: uid.to_string(),
        })
    }

    fn process_queue(&mut self) {
        while let Some(work) = self.queue.pop_front() {
            self.queued.remove(&work);
            let command = match &work {
                Work::AttemptToDelete(uid) => self.attempt_to_delete(uid),
                Work::Orphan(uid) => self.orphan(uid),
                Work::DeleteDependents(uid) => self.delete_dependents(uid),
                Work::Finish(uid) => self
                    .target(uid)
                    .map(|t| Command::Delete(t, PropagationPolicy::Background, work.clone())),
            };
            if let Some(command) = command {
                self.execute(command);
            }
        }
    }

    /// Upstream `attemptToDeleteItem`.
    fn attempt_to_delete(&mut self, uid: &str) -> Option<Command> {
        let item = self.graph.get(uid)?.clone();
        if item.deleting && !item.deleting_dependents() {
            return None;
        }
        if item.owners.is_empty() {
            return None;
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for owner in &item.owners {
            match self.graph.get(&owner.uid) {
                Some(o) if o.deleting_dependents() => waiting.push(owner.uid.clone()),
                Some(_) => solid.push(owner.uid.clone()),
                None if self.absent.contains(&owner.uid) => dangling.push(owner.uid.clone()),
                None => {
                    if registry::find_by_kind(&owner.api_version, &owner.kind).is_none() {
                        // A kind this server does not serve: leave the object alone.
                        solid.push(owner.uid.clone());
                        continue;
                    }
                    if self.waiting_verification.insert(owner.uid.clone()) {
                        return Some(Command::Verify {
                            owner: owner.clone(),
                            namespace: item.namespace.clone(),
                            dependent: uid.to_string(),
                        });
                    }
                    // A lookup is in flight; its answer re-queues this object.
                    return None;
                }
            }
        }
        let target = self.target(uid)?;
        if !solid.is_empty() {
            let remove: Vec<String> = dangling.into_iter().chain(waiting).collect();
            if remove.is_empty() {
                return None;
            }
            return Some(Command::RemoveOwners {
                target,
                current: item.owners.clone(),
                remove,
                retry: Work::AttemptToDelete(uid.to_string()),
            });
        }
        let policy = if !waiting.is_empty() && !item.dependents.is_empty() {
            PropagationPolicy::Foreground
        } else if item.finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if item.finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        if item.deleting {
            return None;
        }
        Some(Command::Delete(
            target,
            policy,
            Work::AttemptToDelete(uid.to_string()),
        ))
    }

    /// Upstream `orphanDependents` + removing the `orphan` finalizer.
    fn orphan(&mut self, uid: &str) -> Option<Command> {
        let item = self.graph.get(uid)?.clone();
        if !item.orphaning() {
            return None;
        }
        let owner = self.target(uid)?;
        let dependents = item
            .dependents
            .iter()
            .filter_map(|d| {
                let t = self.target(d)?;
                let owners = self.graph.get(d)?.owners.clone();
                Some((t, owners))
            })
            .collect();
        Some(Command::Orphan {
            owner,
            owner_finalizers: item.finalizers.clone(),
            dependents,
            retry: Work::Orphan(uid.to_string()),
        })
    }

    /// Upstream `processDeletingDependentsItem`.
    fn delete_dependents(&mut self, uid: &str) -> Option<Command> {
        let item = self.graph.get(uid)?.clone();
        if !item.deleting_dependents() {
            return None;
        }
        let blocking: Vec<String> = item
            .dependents
            .iter()
            .filter(|d| {
                self.graph.get(*d).is_some_and(|dep| {
                    dep.owners
                        .iter()
                        .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                })
            })
            .cloned()
            .collect();
        if blocking.is_empty() {
            return Some(Command::RemoveFinalizer {
                target: self.target(uid)?,
                current: item.finalizers.clone(),
                finalizer: FOREGROUND,
                retry: Work::DeleteDependents(uid.to_string()),
            });
        }
        for d in blocking {
            let busy = self.graph.get(&d).is_some_and(|i| i.deleting_dependents());
            if !busy {
                self.enqueue(Work::AttemptToDelete(d));
            }
        }
        None
    }

    fn execute(&self, command: Command) {
        let client = self.client.clone();
        let tx = self.tx.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let retry = |work: Work| {
                let tx = tx.clone();
                async move {
                    tokio::time::sleep(RETRY).await;
                    let _ = tx.send(Input::Retry(work)).await;
                }
            };
            match command {
                Command::Delete(target, policy, work) => {
                    let params = DeleteParams {
                        propagation_policy: Some(policy.clone()),
                        preconditions: Some(kube::api::Preconditions {
                            uid: Some(target.uid.clone()),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    match target.api(&client).delete(&target.name, &params).await {
                        Ok(_) => {
                            tracing::debug!(object = %target.describe(), ?policy, "garbage collected")
                        }
                        Err(e) if is_not_found(&e) || status_code(&e) == Some(409) => {}
                        Err(e) => {
                            tracing::warn!(object = %target.describe(), error = %e, "cannot delete; retrying");
                            retry(work).await;
                        }
                    }
                }
                Command::RemoveOwners {
                    target,
                    current,
                    remove,
                    retry: work,
                } => {
                    if let Err(e) = remove_owners(&client, &target, &current, &remove).await {
                        tracing::debug!(object = %target.describe(), error = %e, "cannot remove owner references; retrying");
                        retry(work).await;
                    }
                }
                Command::RemoveFinalizer {
                    target,
                    current,
                    finalizer,
                    retry: work,
                } => {
                    if let Err(e) = remove_finalizer(&client, &target, &current, finalizer).await {
                        tracing::debug!(object = %target.describe(), error = %e, "cannot remove finalizer; retrying");
                        retry(work).await;
                    }
                }
                Command::Orphan {
                    owner,
                    owner_finalizers,
                    dependents,
                    retry: work,
                } => {
                    for (dependent, owners) in &dependents {
                        if let Err(e) = remove_owners(
                            &client,
                            dependent,
                            owners,
                            std::slice::from_ref(&owner.uid),
                        )
                        .await
                        {
                            tracing::debug!(object = %dependent.describe(), error = %e, "cannot orphan; retrying");
                            retry(work).await;
                            return;
                        }
                    }
                    if let Err(e) =
                        remove_finalizer(&client, &owner, &owner_finalizers, ORPHAN).await
                    {
                        tracing::debug!(object = %owner.describe(), error = %e, "cannot remove orphan finalizer; retrying");
                        retry(work).await;
                    }
                }
                Command::Verify {
                    owner,
                    namespace,
                    dependent,
                } => {
                    let exists = owner_exists(&client, &owner, namespace.as_deref()).await;
                    match exists {
                        Some(exists) => {
                            let _ = tx
                                .send(Input::Verified {
                                    owner: owner.uid,
                                    exists,
                                    dependent,
                                })
                                .await;
                        }
                        None => {
                            // Try again later; meanwhile the owner counts as existing.
                            tokio::time::sleep(RETRY).await;
                            let _ = tx
                                .send(Input::Verified {
                                    owner: owner.uid,
                                    exists: true,
                                    dependent,
                                })
                                .await;
                        }
                    }
                }
            }
        });
    }
}

/// Whether the owner exists with the referenced uid; `None` if the lookup failed.
async fn owner_exists(
    client: &Client,
    owner: &OwnerReference,
    namespace: Option<&str>,
) -> Option<bool> {
    let info = registry::find_by_kind(&owner.api_version, &owner.kind)?;
    let ar = api_resource(info);
    let api: Api<PartialObjectMeta<DynamicObject>> = match (info.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        (true, None) => return Some(false),
        (false, _) => Api::all_with(client.clone(), &ar),
    };
    match api.get(&owner.name).await {
        Ok(found) => Some(found.metadata.uid.as_deref() == Some(owner.uid.as_str())),
        Err(e) if is_not_found(&e) => Some(false),
        Err(e) => {
            tracing::debug!(owner = %owner.name, error = %e, "cannot look up owner");
            None
        }
    }
}

fn json_patch(ops: serde_json::Value) -> Result<json_patch::Patch, kube::Error> {
    serde_json::from_value(ops).map_err(kube::Error::SerdeError)
}

/// Removes the owner references `remove` from `target` (a JSON patch that tests the current
/// list first, so a concurrent change is not overwritten).
async fn remove_owners(
    client: &Client,
    target: &Target,
    current: &[OwnerReference],
    remove: &[String],
) -> Result<(), kube::Error> {
    let kept: Vec<&OwnerReference> = current
        .iter()
        .filter(|o| !remove.contains(&o.uid))
        .collect();
    if kept.len() == current.len() {
        return Ok(());
    }
    let patch = json_patch(json!([
        {"op": "test", "path": "/metadata/uid", "value": target.uid},
        {"op": "test", "path": "/metadata/ownerReferences", "value": current},
        {"op": "replace", "path": "/metadata/ownerReferences", "value": kept},
    ]))?;
    match target
        .api(client)
        .patch(
            &target.name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `finalizer` from `target`.
async fn remove_finalizer(
    client: &Client,
    target: &Target,
    current: &[String],
    finalizer: &str,
) -> Result<(), kube::Error> {
    if !current.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let kept: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
    let patch = json_patch(json!([
        {"op": "test", "path": "/metadata/uid", "value": target.uid},
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]))?;
    match target
        .api(client)
        .patch(
            &target.name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}
