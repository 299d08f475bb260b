//! The DaemonSet controller: one pod per eligible node. A node is eligible when it matches
//! the template's nodeSelector/required affinity and the pod tolerates its NoSchedule and
//! NoExecute taints (daemon pods get upstream's default tolerations); pods stay on nodes
//! whose only untolerated taints are NoSchedule. Pods are created unbound with a node
//! affinity `matchFields metadata.name In [node]` and placed by the scheduler, as upstream.
//! Template revisions are kept as ControllerRevisions (so `kubectl rollout history/undo
//! daemonset` work) and pods of an old revision are replaced by `RollingUpdate`
//! (`maxUnavailable`) or, with `OnDelete`, when deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use skiff_types::selector::LabelSelector;

use crate::claim::claim;
use crate::deployment::util::scaled;
use crate::error::{is_conflict, is_not_found, ApiContext};
use crate::events::{reference, Recorder};
use crate::informer::{object_ref, Change, Informer, BY_CONTROLLER};
use crate::podcontrol::{PodControl, BURST};
use crate::scheduler::matching::{first_untolerated, tolerated, RequiredTerms};
use crate::util::expectations::{Expectations, Seen};
use crate::util::hash::{template_hash, CONTROLLER_REVISION_HASH_LABEL};
use crate::util::meta::{
    controller_of, controller_ref, describe, is_deleting, key_of, name_of, uid_of,
};
use crate::util::owners::OwnerTrigger;
use crate::util::pods;
use crate::Error;

/// Component name in events.
pub const COMPONENT: &str = "daemonset-controller";

struct Ctx {
    client: Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    control: PodControl,
}

/// Starts the controller.
pub fn start(
    client: Client,
    daemon_sets: &Informer<DaemonSet>,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    revisions: &Informer<ControllerRevision>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let expectations = Arc::new(Expectations::default());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        revisions: revisions.clone(),
        control: PodControl::new(
            client.clone(),
            Recorder::new(client, COMPONENT),
            expectations.clone(),
        ),
    });
    let store = daemon_sets.store();
    let own = {
        let expectations = expectations.clone();
        daemon_sets.triggers(store.clone(), move |change| match change {
            Change::Applied(ds) => vec![ObjectRef::from_obj(ds.as_ref())],
            Change::Deleted(ds) => {
                expectations.forget(uid_of(&ds.metadata));
                Vec::new()
            }
            Change::Resync => Vec::new(),
        })
    };
    let from_pods = pods.triggers(
        store.clone(),
        OwnerTrigger::new("DaemonSet")
            .expecting(expectations)
            .adopting(store.clone(), |ds: &DaemonSet| {
                ds.spec.as_ref().map(|s| &s.selector)
            })
            .into_fn(),
    );
    // Nodes matter when they come, go, or change what decides eligibility (not on heartbeats).
    let from_nodes = {
        let store = store.clone();
        let seen: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
        nodes.triggers(store.clone(), move |change| {
            let Some(node) = change.object() else {
                return Vec::new();
            };
            let name = name_of(&node.metadata).to_string();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let relevant = match change {
                Change::Deleted(_) => {
                    seen.remove(&name);
                    true
                }
                _ => {
                    let signature = node_signature(node);
                    seen.insert(name, signature.clone()) != Some(signature)
                }
            };
            if !relevant {
                return Vec::new();
            }
            store
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect()
        })
    };
    let from_revisions = revisions.triggers(store.clone(), |change| {
        let Some(rev) = change.object() else {
            return Vec::new();
        };
        match controller_of(&rev.metadata) {
            Some(o) if o.kind == "DaemonSet" => {
                vec![object_ref(
                    rev.metadata.namespace.as_deref().unwrap_or(""),
                    &o.name,
                )]
            }
            _ => Vec::new(),
        }
    });
    let triggers = futures::stream::select(
        futures::stream::select(own, from_pods),
        futures::stream::select(from_nodes, from_revisions),
    )
    .boxed();
    tasks.spawn(crate::runner::run(
        COMPONENT,
        store,
        triggers,
        reconcile,
        ctx,
        concurrency,
    ));
}

/// What decides whether a node runs daemon pods: labels, taints, readiness.
fn node_signature(node: &Node) -> String {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    serde_json::to_string(&(
        &node.metadata.labels,
        node.spec.as_ref().map(|s| (&s.taints, s.unschedulable)),
        ready,
    ))
    .unwrap_or_default()
}

/// The tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    };
    let mut list = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list
}

/// The template with the daemon tolerations added (those not already there).
fn template_with_tolerations(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    let spec = t.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for tol in daemon_tolerations(host_network) {
        if !list.contains(&tol) {
            list.push(tol);
        }
    }
    t
}

/// Upstream `NodeShouldRunDaemonPod`: (should run a new pod, should keep a running one).
pub fn should_run(template: &PodTemplateSpec, node: &Node) -> (bool, bool) {
    let template = template_with_tolerations(template);
    let spec = template.spec.unwrap_or_default();
    let name = name_of(&node.metadata);
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|ns| RequiredTerms::parse(&ns.node_selector_terms).matches(name, &labels));
    if !selector_ok || !affinity_ok {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = spec.tolerations.unwrap_or_default();
    if first_untolerated(&taints, &tolerations).is_none() {
        return (true, true);
    }
    let no_execute_ok = taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .all(|t| tolerated(&tolerations, t));
    (false, no_execute_ok)
}

/// The node a daemon pod is for: its `spec.nodeName`, or the node its affinity names.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    RequiredTerms::parse(terms).node_names()?.into_iter().next()
}

/// A pod for `node` from the DaemonSet's template (upstream: affinity replaced by one
/// `matchFields metadata.name In [node]` term).
fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut template = template_with_tolerations(&spec.template);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.to_string());
    let pod_spec = template.spec.get_or_insert_with(Default::default);
    let affinity = pod_spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    });
    pods::from_template(
        &template,
        ds.metadata.namespace.as_deref().unwrap_or_default(),
        pods::generate_name_prefix(name_of(&ds.metadata)),
        controller_ref(ds),
    )
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let meta = &ds.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let uid = uid_of(meta);
    let spec = ds.spec.clone().unwrap_or_default();
    let selector =
        LabelSelector::from_label_selector(&spec.selector).map_err(|e| Error::InvalidObject {
            object: describe(ds.as_ref()),
            field: "spec.selector",
            message: e.to_string(),
        })?;
    if selector.is_empty() {
        return Ok(Action::await_change());
    }
    let hash = sync_history(&ds, &ctx).await?;
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
        &controller_ref(ds.as_ref()),
        is_deleting(meta),
        &selector,
        candidates,
    )
    .await?;
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in &owned {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    for list in by_node.values_mut() {
        list.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
    }
    let nodes = ctx.nodes.store().state();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut requeue: Option<f64> = None;
    if satisfied && !is_deleting(meta) {
        let NodePlan {
            mut create_on,
            mut delete,
        } = plan_nodes(&spec.template, &nodes, &by_node);
        if !is_on_delete(&ds) && delete.is_empty() && create_on.is_empty() {
            let (old_to_delete, wait) = rolling_update(&ds, &nodes, &by_node, &hash, min_ready);
            delete.extend(old_to_delete);
            requeue = wait;
        }
        let owner = reference(ds.as_ref());
        delete.truncate(BURST);
        if !delete.is_empty() {
            ctx.control.delete(&owner, uid, &delete).await?;
        }
        create_on.truncate(BURST);
        if !create_on.is_empty() {
            let new_pods = create_on
                .iter()
                .map(|n| pod_for_node(&ds, n, &hash))
                .collect();
            ctx.control.create(&owner, uid, namespace, new_pods).await?;
        }
    }
    let status = calculate_status(&ds, &nodes, &by_node, &hash, min_ready);
    update_status(&ctx.client, &ds, status).await?;
    let ready_later = by_node
        .values()
        .flatten()
        .filter_map(|p| pods::seconds_until_available(p, min_ready))
        .fold(requeue, |m, s| Some(m.map_or(s, |m: f64| m.min(s))));
    Ok(match ready_later {
        Some(s) => Action::requeue(Duration::from_secs_f64(s + 0.1)),
        None => Action::await_change(),
    })
}

/// What the DaemonSet changes on its nodes besides a rolling update (upstream
/// `podsShouldBeOnNode` over every node): nodes that should run a daemon pod and have none,
/// and pods to delete (failed ones, extras beyond the oldest, pods on nodes that should not
/// run one, unbound pods for nodes that are gone).
#[derive(Debug, Default)]
pub struct NodePlan {
    /// Nodes to create a daemon pod on.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Arc<Pod>>,
}

/// Computes the [`NodePlan`] from the nodes and the set's pods by target node (each list
/// oldest first).
pub fn plan_nodes(
    template: &PodTemplateSpec,
    nodes: &[Arc<Node>],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
) -> NodePlan {
    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<Arc<Pod>> = Vec::new();
    for node in nodes {
        let name = name_of(&node.metadata);
        let (run, keep) = should_run(template, node);
        let pods_here = by_node.get(name).cloned().unwrap_or_default();
        if run && pods_here.is_empty() {
            create_on.push(name.to_string());
        } else if keep {
            // Failed pods are replaced; extra pods go (the oldest stays).
            let mut alive = Vec::new();
            for p in pods_here {
                if pods::phase(&p) == "Failed" {
                    delete.push(p);
                } else {
                    alive.push(p);
                }
            }
            if alive.len() > 1 {
                delete.extend(alive.into_iter().skip(1));
            }
        } else {
            delete.extend(pods_here);
        }
    }
    // Unbound pods for nodes that are gone.
    let existing: std::collections::HashSet<&str> =
        nodes.iter().map(|n| name_of(&n.metadata)).collect();
    for (node, list) in by_node {
        if !existing.contains(node.as_str()) {
            delete.extend(
                list.iter()
                    .filter(|p| pods::node_name(p).is_empty())
                    .cloned(),
            );
        }
    }
    NodePlan { create_on, delete }
}

fn is_on_delete(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

/// Upstream `rollingUpdate` (maxSurge 0): old pods to delete now, within `maxUnavailable`.
fn rolling_update(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    min_ready: i32,
) -> (Vec<Arc<Pod>>, Option<f64>) {
    let spec = ds.spec.clone().unwrap_or_default();
    let desired = nodes
        .iter()
        .filter(|n| should_run(&spec.template, n).0)
        .count() as i32;
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.rolling_update.as_ref());
    let one = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1);
    let mut max_unavailable = scaled(
        Some(
            rolling
                .and_then(|r| r.max_unavailable.as_ref())
                .unwrap_or(&one),
        ),
        desired,
        true,
    );
    if max_unavailable <= 0 {
        max_unavailable = 1;
    }
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for list in by_node.values() {
        let new: Vec<&Arc<Pod>> = list.iter().filter(|p| pod_hash(p) == Some(hash)).collect();
        let old: Vec<&Arc<Pod>> = list.iter().filter(|p| pod_hash(p) != Some(hash)).collect();
        match (new.first(), old.first()) {
            (Some(_), Some(_)) | (None, None) => unavailable += 1,
            (Some(n), None) => {
                if !pods::is_available(n, min_ready) {
                    unavailable += 1;
                }
            }
            (None, Some(o)) => {
                if !pods::is_available(o, min_ready) {
                    replace_now.push((*o).clone());
                } else {
                    candidates.push((*o).clone());
                }
            }
        }
    }
    let room = (max_unavailable - unavailable).max(0) as usize;
    replace_now.extend(candidates.into_iter().take(room));
    (replace_now, None)
}

fn calculate_status(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    min_ready: i32,
) -> DaemonSetStatus {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut available, mut updated) = (0, 0);
    for node in nodes {
        let name = name_of(&node.metadata);
        let (run, _) = should_run(&spec.template, node);
        let pods_here = by_node.get(name);
        let scheduled = pods_here.is_some_and(|l| !l.is_empty());
        if run {
            status.desired_number_scheduled += 1;
            let Some(pod) = pods_here.and_then(|l| l.first()) else {
                continue;
            };
            status.current_number_scheduled += 1;
            if pods::is_ready(pod) {
                status.number_ready += 1;
                if pods::is_available(pod, min_ready) {
                    available += 1;
                }
            }
            if pod_hash(pod) == Some(hash) {
                updated += 1;
            }
        } else if scheduled {
            status.number_misscheduled += 1;
        }
    }
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some(status.desired_number_scheduled - available);
    status
}

async fn update_status(
    client: &Client,
    ds: &DaemonSet,
    status: DaemonSetStatus,
) -> Result<(), Error> {
    let old = ds.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let same = old.observed_generation == status.observed_generation
        && old.desired_number_scheduled == status.desired_number_scheduled
        && old.current_number_scheduled == status.current_number_scheduled
        && old.number_misscheduled == status.number_misscheduled
        && old.number_ready == status.number_ready
        && n(old.number_available) == n(status.number_available)
        && n(old.updated_number_scheduled) == n(status.updated_number_scheduled)
        && n(old.number_unavailable) == n(status.number_unavailable);
    if same {
        return Ok(());
    }
    let api: Api<DaemonSet> = Api::namespaced(
        client.clone(),
        ds.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = json!({"status": {
        "observedGeneration": status.observed_generation,
        "desiredNumberScheduled": status.desired_number_scheduled,
        "currentNumberScheduled": status.current_number_scheduled,
        "numberMisscheduled": status.number_misscheduled,
        "numberReady": status.number_ready,
        "numberAvailable": n(status.number_available),
        "updatedNumberScheduled": n(status.updated_number_scheduled),
        "numberUnavailable": n(status.number_unavailable),
    }});
    match api
        .patch_status(
            name_of(&ds.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e).context(|| format!("update status of {}", describe(ds))),
    }
}

/// The ControllerRevision data upstream stores: a strategic merge patch replacing the
/// template (what `kubectl rollout undo daemonset` applies).
fn revision_data(ds: &DaemonSet) -> serde_json::Value {
    let mut template =
        serde_json::to_value(ds.spec.as_ref().map(|s| &s.template)).unwrap_or_default();
    if let Some(obj) = template.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// Makes sure a ControllerRevision of the current template exists with the highest revision
/// number, deletes revisions beyond `revisionHistoryLimit` that no pod uses, and returns
/// the current hash (upstream `constructHistory` / `cleanupHistory`).
async fn sync_history(ds: &Arc<DaemonSet>, ctx: &Ctx) -> Result<String, Error> {
    let meta = &ds.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let hash = template_hash(&template, collision);
    let mut history = ctx.revisions.indexed(BY_CONTROLLER, uid_of(meta));
    history.sort_by_key(|r| r.revision);
    let max = history.last().map_or(0, |r| r.revision);
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), namespace);
    let data = revision_data(ds);
    let current = history.iter().find(|r| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            == Some(&hash)
    });
    match current {
        Some(cur) if cur.revision < max => {
            // A rollback to an older template: it becomes the newest revision.
            let mut updated = (**cur).clone();
            updated.revision = max + 1;
            api.replace(name_of(&cur.metadata), &PostParams::default(), &updated)
                .await
                .context(|| format!("bump revision {}", key_of(&cur.metadata)))?;
        }
        Some(_) => {}
        None => {
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
            let name = format!("{}-{hash}", name_of(meta));
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_ref(ds.as_ref())]),
                    ..Default::default()
                },
                data: Some(RawExtension(data)),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &revision).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {
                    // Someone (a stale cache of ours) made it already; the watch catches up.
                    tracing::debug!(revision = %name, "controller revision exists");
                }
                Err(e) => {
                    return Err(e)
                        .context(|| format!("create ControllerRevision {namespace}/{name}"))
                }
            }
        }
    }
    // History beyond the limit, oldest first, unless a pod still runs that revision.
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let in_use: std::collections::HashSet<String> = ctx
        .pods
        .indexed(BY_CONTROLLER, uid_of(meta))
        .iter()
        .filter_map(|p| pod_hash(p).map(str::to_string))
        .collect();
    let old: Vec<&Arc<ControllerRevision>> = history
        .iter()
        .filter(|r| {
            let h = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL));
            h != Some(&hash) && !h.is_some_and(|h| in_use.contains(h))
        })
        .collect();
    if old.len() > limit {
        for r in old.iter().take(old.len() - limit) {
            match api
                .delete(name_of(&r.metadata), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(e)
                        .context(|| format!("delete old revision {}", key_of(&r.metadata)))
                }
            }
        }
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Taint};

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some("x".into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn template(spec: PodSpec) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(spec),
        }
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        let t = template(PodSpec::default());
        assert_eq!(should_run(&t, &node("a", &[], vec![])), (true, true));
        // A dedicated node: not a new pod; a running one stays (NoSchedule only).
        assert_eq!(
            should_run(&t, &node("a", &[], vec![taint("dedicated", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            should_run(&t, &node("a", &[], vec![taint("dedicated", "NoExecute")])),
            (false, false)
        );
        // Daemon pods tolerate unreachable/not-ready NoExecute and cordons.
        assert_eq!(
            should_run(
                &t,
                &node(
                    "a",
                    &[],
                    vec![taint("node.kubernetes.io/unreachable", "NoExecute")]
                )
            ),
            (true, true)
        );
        assert_eq!(
            should_run(
                &t,
                &node(
                    "a",
                    &[],
                    vec![taint("node.kubernetes.io/unschedulable", "NoSchedule")]
                )
            ),
            (true, true)
        );
        let tolerant = template(PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(
            should_run(
                &tolerant,
                &node("a", &[], vec![taint("dedicated", "NoSchedule")])
            ),
            (true, true)
        );
        let selective = template(PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..Default::default()
        });
        assert_eq!(
            should_run(&selective, &node("a", &[], vec![])),
            (false, false)
        );
        assert_eq!(
            should_run(&selective, &node("a", &[("disk", "ssd")], vec![])),
            (true, true)
        );
    }

    #[test]
    fn daemon_pods_target_their_node() {
        let ds = DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("ds1".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::DaemonSetSpec {
                template: template(PodSpec::default()),
                ..Default::default()
            }),
            status: None,
        };
        let pod = pod_for_node(&ds, "n7", "abc");
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        assert_eq!(pod_hash(&pod), Some("abc"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert!(tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")));
        let data = revision_data(&ds);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
    }

    /// A daemon pod named `name` for `node` (bound when `bound`), in `phase`.
    fn daemon_pod(name: &str, node: &str, bound: bool, phase: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: bound.then(|| node.to_string()),
                ..Default::default()
            }),
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn node_plan_creates_missing_and_deletes_failed_extra_and_stray_pods() {
        let t = template(PodSpec::default());
        let nodes: Vec<Arc<Node>> = vec![
            Arc::new(node("empty", &[], vec![])),
            Arc::new(node("ok", &[], vec![])),
            Arc::new(node("failed", &[], vec![])),
            Arc::new(node("doubled", &[], vec![])),
            Arc::new(node("evicting", &[], vec![taint("dedicated", "NoExecute")])),
            Arc::new(node(
                "dedicated",
                &[],
                vec![taint("dedicated", "NoSchedule")],
            )),
        ];
        let by_node: HashMap<String, Vec<Arc<Pod>>> = [
            ("ok", vec![daemon_pod("ok-1", "ok", true, "Running")]),
            (
                "failed",
                vec![daemon_pod("failed-1", "failed", true, "Failed")],
            ),
            (
                "doubled",
                vec![
                    daemon_pod("doubled-old", "doubled", true, "Running"),
                    daemon_pod("doubled-new", "doubled", true, "Running"),
                ],
            ),
            (
                "evicting",
                vec![daemon_pod("evicting-1", "evicting", true, "Running")],
            ),
            (
                "dedicated",
                vec![daemon_pod("dedicated-1", "dedicated", true, "Running")],
            ),
            (
                "gone",
                vec![
                    daemon_pod("gone-unbound", "gone", false, "Pending"),
                    daemon_pod("gone-bound", "gone", true, "Running"),
                ],
            ),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect();
        let plan = plan_nodes(&t, &nodes, &by_node);
        assert_eq!(plan.create_on, vec!["empty"]);
        let mut deleted: Vec<String> = plan
            .delete
            .iter()
            .map(|p| name_of(&p.metadata).to_string())
            .collect();
        deleted.sort();
        // A failed pod goes (its node gets a new one on the next sync), the newer of two,
        // the pod on a node whose NoExecute taint it does not tolerate, an unbound pod for
        // a vanished node; a bound one there is the node lifecycle's and pod GC's business,
        // and a NoSchedule node keeps its running pod.
        assert_eq!(
            deleted,
            vec!["doubled-new", "evicting-1", "failed-1", "gone-unbound"]
        );
    }
}
