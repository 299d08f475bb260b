//! The scheduler: places pods on nodes (`default-scheduler`).
//!
//! Two kube-runtime watchers (nodes, and pods that have not finished) feed one loop that owns
//! the [`cache::Cache`] and the [`queue::Queue`]. The loop takes the next pod, runs the
//! [`algorithm`] against the cache (filters, scores), *assumes* the pod onto the chosen node
//! and hands the binding (`POST pods/{name}/binding`) to a task, so many bindings are in
//! flight while the loop goes on with the next pod. A pod that fits nowhere gets the
//! `PodScheduled=False` condition (reason `Unschedulable`, upstream's message) and a
//! `FailedScheduling` event, and waits in the queue until a node or pod change may let it fit.
//!
//! Scheduling is level-based on the watch: a binding that fails is forgotten and retried; a
//! re-list (after a watch error) reconciles the cache with the listed state.

pub mod algorithm;
pub mod cache;
pub mod filters;
pub mod matching;
pub mod podinfo;
pub mod queue;
pub mod resources;
pub mod scores;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use skiff_metrics::scheduler::AttemptResult;
use tokio::sync::{mpsc, Semaphore};

use crate::error::status_code;
use crate::events::{EventType, Recorder};
use algorithm::{Algorithm, Outcome, Preemption};
use cache::Cache;
use podinfo::{bound_node, is_gated, is_terminal, responsible_for, PodInfo, SchedPod};
use queue::{Queue, QueueConfig, QueuedPod};

pub use podinfo::DEFAULT_SCHEDULER_NAME;

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The `spec.schedulerName` this scheduler serves.
    pub scheduler_name: String,
    /// Share of nodes to find feasible before scoring; 0 = upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// Bindings (and status writes) in flight at once.
    pub bind_concurrency: usize,
    /// Queue timings (back-off, longest unschedulable wait).
    pub queue: QueueConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            percentage_of_nodes_to_score: 0,
            bind_concurrency: 512,
            queue: QueueConfig::default(),
        }
    }
}

/// Counters of a running scheduler (for logs and benchmarks).
#[derive(Debug, Default)]
pub struct Stats {
    /// Pods bound.
    pub scheduled: AtomicU64,
    /// Attempts that found no node.
    pub unschedulable_attempts: AtomicU64,
    /// Bindings the API refused or that failed.
    pub bind_failures: AtomicU64,
    /// Pods whose victims were evicted.
    pub preemptions: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl Stats {
    /// Latency quantile (0.0–1.0) from a pod entering the queue to its binding being
    /// written, over the pods bound so far.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut all = self
            .latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        let i = ((all.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
        Some(Duration::from_micros(u64::from(all[i])))
    }

    fn record_latency(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let mut l = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: keep the most recent million samples.
        if l.len() >= 1_000_000 {
            l.clear();
        }
        l.push(us);
    }
}

/// The scheduler. [`Scheduler::run`] runs until the task is dropped.
pub struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

enum Input {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<SchedPod>>),
    Bound {
        pod: Arc<SchedPod>,
        info: Arc<PodInfo>,
        node: Arc<str>,
        queued_at: Instant,
        result: Result<(), kube::Error>,
    },
}

/// Inputs taken per turn before scheduling again.
const INPUT_BATCH: usize = 2048;
/// Pods scheduled per turn before looking at inputs again.
const SCHEDULE_BATCH: usize = 64;
/// Scheduler events queued before new ones are dropped (upstream's broadcaster: 1000).
const EVENT_QUEUE: usize = 1000;
/// Scheduler event writes in flight: events must not compete with bindings for the store.
const EVENT_WRITERS: usize = 4;
/// How often long-waiting unschedulable pods are sent back (upstream: every 30 s).
const LEFTOVER_FLUSH: Duration = Duration::from_secs(30);

impl Scheduler {
    /// A scheduler using `client` (in-process, as `system:kube-scheduler`).
    pub fn new(client: Client, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            client,
            config,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Watches nodes and pods and schedules until dropped.
    pub async fn run(self) {
        let (tx, mut rx) = mpsc::channel::<Input>(16 * 1024);
        let nodes: Api<Node> = Api::all(self.client.clone());
        let pods: Api<SchedPod> = Api::all(self.client.clone());
        let node_tx = tx.clone();
        let node_watch = tokio::spawn(async move {
            let mut events = watcher(nodes, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        if node_tx.send(Input::Node(Box::new(event))).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "scheduler: node watch failed; retrying"),
                }
            }
        });
        let pod_tx = tx.clone();
        let pod_watch = tokio::spawn(async move {
            let config = watcher::Config::default()
                .fields("status.phase!=Succeeded,status.phase!=Failed")
                .page_size(5000);
            let mut events = watcher(pods, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        if pod_tx.send(Input::Pod(Box::new(event))).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "scheduler: pod watch failed; retrying"),
                }
            }
        });
        let _guards = (AbortOnDrop(node_watch), AbortOnDrop(pod_watch));

        let mut state = Loop {
            cache: Cache::new(),
            queue: Queue::new(self.config.queue.clone()),
            algorithm: Algorithm::new(self.config.percentage_of_nodes_to_score),
            recorder: Recorder::with_limits(
                self.client.clone(),
                &self.config.scheduler_name,
                EVENT_QUEUE,
                EVENT_WRITERS,
            ),
            client: self.client.clone(),
            tx,
            permits: Arc::new(Semaphore::new(self.config.bind_concurrency.max(1))),
            name: self.config.scheduler_name.clone(),
            stats: self.stats.clone(),
            nodes_synced: false,
            pods_synced: false,
            node_buffer: Vec::new(),
            pod_buffer: Vec::new(),
            next_leftover_flush: Instant::now() + LEFTOVER_FLUSH,
        };
        tracing::info!(scheduler = %state.name, "scheduler started");
        loop {
            let mut taken = 0;
            while taken < INPUT_BATCH {
                match rx.try_recv() {
                    Ok(input) => {
                        state.handle(input);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            state.queue.flush_backoff(now);
            if now >= state.next_leftover_flush {
                state.queue.flush_unschedulable_leftovers(now);
                state.next_leftover_flush = now + LEFTOVER_FLUSH;
            }
            let mut scheduled = 0;
            if state.nodes_synced && state.pods_synced {
                while scheduled < SCHEDULE_BATCH && state.schedule_one() {
                    scheduled += 1;
                }
            }
            if scheduled > 0 || taken == INPUT_BATCH {
                // More may be waiting; give other tasks a turn, then continue.
                tokio::task::yield_now().await;
                continue;
            }
            let deadline = state
                .queue
                .next_backoff()
                .map_or(state.next_leftover_flush, |b| {
                    b.min(state.next_leftover_flush)
                });
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => state.handle(input),
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Loop {
    cache: Cache,
    queue: Queue,
    algorithm: Algorithm,
    recorder: Recorder,
    client: Client,
    tx: mpsc::Sender<Input>,
    permits: Arc<Semaphore>,
    name: String,
    stats: Arc<Stats>,
    nodes_synced: bool,
    pods_synced: bool,
    node_buffer: Vec<Node>,
    pod_buffer: Vec<SchedPod>,
    next_leftover_flush: Instant,
}

impl Loop {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Node(event) => self.node_event(*event),
            Input::Pod(event) => self.pod_event(*event),
            Input::Bound {
                pod,
                info,
                node,
                queued_at,
                result,
            } => self.bound(pod, info, node, queued_at, result),
        }
    }

    fn node_event(&mut self, event: watcher::Event<Node>) {
        let now = Instant::now();
        match event {
            watcher::Event::Apply(node) => {
                let name = node.metadata.name.as_deref().unwrap_or("");
                let before = self
                    .cache
                    .slot_of(name)
                    .and_then(|s| self.cache.node(s).node.clone());
                let slot = self.cache.upsert_node(&node);
                let changed = match (&before, &self.cache.node(slot).node) {
                    (Some(b), Some(a)) => !same_view(b, a),
                    _ => true,
                };
                if changed {
                    self.queue.move_all_to_active(now);
                }
            }
            watcher::Event::Delete(node) => {
                self.cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or(""));
            }
            watcher::Event::Init => self.node_buffer.clear(),
            watcher::Event::InitApply(node) => self.node_buffer.push(node),
            watcher::Event::InitDone => {
                let nodes = std::mem::take(&mut self.node_buffer);
                let present: HashSet<String> = nodes
                    .iter()
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
                self.cache.retain_nodes(&present);
                for node in &nodes {
                    self.cache.upsert_node(node);
                }
                self.nodes_synced = true;
                self.queue.move_all_to_active(now);
                tracing::info!(nodes = nodes.len(), "scheduler: nodes listed");
            }
        }
    }

    fn pod_event(&mut self, event: watcher::Event<SchedPod>) {
        match event {
            watcher::Event::Apply(pod) => self.pod_applied(pod),
            watcher::Event::Delete(pod) => {
                let uid = pod.metadata.uid.as_deref().unwrap_or("");
                self.queue.remove(uid);
                if self.cache.remove_pod(uid).is_some() {
                    self.queue.move_all_to_active(Instant::now());
                }
            }
            watcher::Event::Init => self.pod_buffer.clear(),
            watcher::Event::InitApply(pod) => self.pod_buffer.push(pod),
            watcher::Event::InitDone => {
                let pods = std::mem::take(&mut self.pod_buffer);
                let mut bound = HashSet::new();
                let mut pending = HashSet::new();
                for pod in &pods {
                    let uid: Arc<str> = Arc::from(pod.metadata.uid.as_deref().unwrap_or(""));
                    if bound_node(pod).is_some() {
                        bound.insert(uid);
                    } else {
                        pending.insert(uid);
                    }
                }
                self.cache.retain_bound(&bound);
                self.queue.retain(&pending);
                let count = pods.len();
                for pod in pods {
                    self.pod_applied(pod);
                }
                self.pods_synced = true;
                self.queue.move_all_to_active(Instant::now());
                tracing::info!(pods = count, "scheduler: pods listed");
            }
        }
    }

    fn pod_applied(&mut self, pod: SchedPod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(node) = bound_node(&pod) {
            self.queue.remove(&uid);
            if is_terminal(&pod) {
                if self.cache.remove_pod(&uid).is_some() {
                    self.queue.move_all_to_active(Instant::now());
                }
                return;
            }
            if self.cache.confirm(&uid, node) {
                return;
            }
            let node = node.to_string();
            self.cache
                .add_bound_pod(Arc::new(PodInfo::new(&pod)), &node);
            return;
        }
        if is_terminal(&pod) || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&uid);
            return;
        }
        if self.cache.pod_state(&uid).is_some() {
            // Assumed: its binding is in flight.
            return;
        }
        if !responsible_for(&pod, &self.name) || is_gated(&pod) {
            self.queue.remove(&uid);
            return;
        }
        let info = Arc::new(PodInfo::new(&pod));
        self.queue
            .add_or_update(Arc::new(pod), info, Instant::now());
    }

    fn bound(
        &mut self,
        pod: Arc<SchedPod>,
        info: Arc<PodInfo>,
        node: Arc<str>,
        queued_at: Instant,
        result: Result<(), kube::Error>,
    ) {
        match result {
            Ok(()) => {
                self.stats.scheduled.fetch_add(1, Ordering::Relaxed);
                self.stats.record_latency(queued_at.elapsed());
                self.recorder.publish(
                    pod_reference(&pod),
                    EventType::Normal,
                    "Scheduled",
                    format!(
                        "Successfully assigned {}/{} to {node}",
                        info.namespace, info.name
                    ),
                );
            }
            Err(error) => {
                self.stats.bind_failures.fetch_add(1, Ordering::Relaxed);
                self.cache.forget(&info.uid);
                match status_code(&error) {
                    // Deleted, or bound by someone else / being deleted: the watch tells.
                    Some(404) | Some(409) => {
                        tracing::debug!(pod = %info.key(), %error, "binding not needed any more");
                    }
                    _ => {
                        tracing::warn!(pod = %info.key(), node = %node, %error, "binding failed; retrying");
                        self.recorder.publish(
                            pod_reference(&pod),
                            EventType::Warning,
                            "FailedScheduling",
                            format!("Binding rejected: {error}"),
                        );
                        self.queue.retry(pod, info, queued_at, Instant::now());
                    }
                }
            }
        }
    }

    /// Takes one pod from the queue and schedules it. Returns false when there is nothing to
    /// do now (no pod ready, or every binding slot busy).
    fn schedule_one(&mut self) -> bool {
        if !self.queue.has_active() {
            return false;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return false;
        };
        let Some(q) = self.queue.pop() else {
            return false;
        };
        let uid = q.info.uid.clone();
        if self.cache.pod_state(&uid).is_some() || q.info.deleting {
            self.queue.done(&uid);
            return true;
        }
        let attempt_started = Instant::now();
        match self.algorithm.schedule(&q.info, &self.cache) {
            Outcome::Fit { slot, .. } => {
                self.cache.assume(q.info.clone(), slot);
                self.queue.done(&uid);
                let node = self.cache.node(slot).name.clone();
                let client = self.client.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = bind(&client, &q.info, &node).await;
                    drop(permit);
                    let outcome = match result {
                        Ok(()) => AttemptResult::Scheduled,
                        Err(_) => AttemptResult::Error,
                    };
                    skiff_metrics::global()
                        .scheduler
                        .attempt(outcome, attempt_started.elapsed());
                    let _ = tx
                        .send(Input::Bound {
                            pod: q.pod,
                            info: q.info,
                            node,
                            queued_at: q.queued_at,
                            result,
                        })
                        .await;
                });
            }
            Outcome::Unfit(error) => {
                self.stats
                    .unschedulable_attempts
                    .fetch_add(1, Ordering::Relaxed);
                skiff_metrics::global()
                    .scheduler
                    .attempt(AttemptResult::Unschedulable, attempt_started.elapsed());
                self.queue.unschedulable(&uid, Instant::now());
                tracing::debug!(pod = %q.info.key(), message = %error.message, "unschedulable");
                let nominated = error
                    .preemption
                    .as_ref()
                    .map(|p| self.cache.node(p.slot).name.to_string());
                if let Some(preemption) = error.preemption {
                    self.preempt(&q, preemption);
                }
                self.report_unschedulable(&q, error.message, nominated, permit);
            }
        }
        true
    }

    /// Evicts the victims of a preemption (upstream DefaultPreemption's `PrepareCandidate`).
    fn preempt(&mut self, q: &QueuedPod, preemption: Preemption) {
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        let node = self.cache.node(preemption.slot).name.clone();
        for victim in preemption.victims {
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(victim.namespace.to_string()),
                name: Some(victim.name.to_string()),
                uid: Some(victim.uid.to_string()),
                ..Default::default()
            };
            self.recorder.publish(
                reference,
                EventType::Normal,
                "Preempted",
                format!("Preempted by pod {} on node {node}", q.info.uid),
            );
            let api: Api<SchedPod> = Api::namespaced(self.client.clone(), &victim.namespace);
            tokio::spawn(async move {
                if let Err(error) = api.delete(&victim.name, &DeleteParams::default()).await {
                    if status_code(&error) != Some(404) {
                        tracing::warn!(pod = %victim.key(), %error, "cannot delete preemption victim");
                    }
                }
            });
        }
    }

    /// Sets `PodScheduled=False` (when it says something else) and records a
    /// `FailedScheduling` event.
    fn report_unschedulable(
        &mut self,
        q: &QueuedPod,
        message: String,
        nominated: Option<String>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        self.recorder.publish(
            pod_reference(&q.pod),
            EventType::Warning,
            "FailedScheduling",
            message.clone(),
        );
        let current = q
            .pod
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodScheduled");
        let same = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message.as_str())
        });
        let same_nomination = nominated.is_none() || q.pod.status.nominated_node_name == nominated;
        if same && same_nomination {
            return;
        }
        let mut status = json!({
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": crate::util::meta::now(),
            }]
        });
        if let Some(node) = nominated {
            status["nominatedNodeName"] = json!(node);
        }
        let patch = json!({ "status": status });
        let api: Api<SchedPod> = Api::namespaced(self.client.clone(), &q.info.namespace);
        let name = q.info.name.clone();
        tokio::spawn(async move {
            let result = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await;
            drop(permit);
            if let Err(error) = result {
                if status_code(&error) != Some(404) {
                    tracing::warn!(pod = %name, %error, "cannot set PodScheduled condition");
                }
            }
        });
    }
}

/// Whether two views of a node schedule the same (heartbeats change nothing here).
fn same_view(a: &cache::NodeView, b: &cache::NodeView) -> bool {
    a.labels == b.labels
        && a.taints == b.taints
        && a.unschedulable == b.unschedulable
        && a.allocatable == b.allocatable
        && a.allowed_pods == b.allowed_pods
}

fn pod_reference(pod: &SchedPod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Writes the binding of `pod` to `node`.
async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
    let api: Api<SchedPod> = Api::namespaced(client.clone(), &pod.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.to_string()),
            namespace: Some(pod.namespace.to_string()),
            uid: Some(pod.uid.to_string()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    api.create_subresource::<Binding, serde_json::Value>(
        "binding",
        &pod.name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
}
