//! core/v1 Events for what the controllers do, so `kubectl describe` and `kubectl get events`
//! show them (upstream `client-go/tools/record`).
//!
//! Events are best effort: they are queued to a background writer and dropped (with a debug
//! log) when the queue is full, so a flood of failures never slows a controller down. Repeats
//! of the same event (same object, type, reason and message) within ten minutes update the
//! existing Event's `count` and `lastTimestamp` instead of creating a new one, as upstream's
//! event correlator does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;

use crate::util::meta::now;

/// Events waiting to be written before new ones are dropped.
const QUEUE: usize = 4096;
/// Event writes in flight.
const CONCURRENT_WRITES: usize = 16;
/// Window in which a repeated event is counted instead of created again.
const AGGREGATION_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Aggregation entries kept.
const MAX_AGGREGATED: usize = 4096;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong or is blocked.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Pending {
    regarding: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct AggregationKey {
    uid: String,
    kind: String,
    name: String,
    type_: EventType,
    reason: String,
    message: String,
}

struct Aggregated {
    namespace: String,
    name: String,
    count: i32,
    last: Instant,
}

/// Records events as one component (`default-scheduler`, `replicaset-controller`, ...).
#[derive(Clone, Debug)]
pub struct Recorder {
    component: Arc<str>,
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// A recorder writing through `client` as `component`; its writer runs until every clone
    /// of the recorder is dropped.
    pub fn new(client: Client, component: &str) -> Recorder {
        Recorder::with_limits(client, component, QUEUE, CONCURRENT_WRITES)
    }

    /// A recorder that queues at most `queue` events and writes `concurrency` at a time;
    /// events beyond the queue are dropped (upstream's broadcaster keeps 1000 and drops the
    /// rest, so a burst of events never slows the component down).
    pub fn with_limits(
        client: Client,
        component: &str,
        queue: usize,
        concurrency: usize,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel::<Pending>(queue.max(1));
        let component: Arc<str> = Arc::from(component);
        let writer_component = component.clone();
        let seen: Arc<Mutex<HashMap<AggregationKey, Aggregated>>> = Arc::default();
        tokio::spawn(async move {
            tokio_stream_from(rx)
                .for_each_concurrent(concurrency.max(1), |pending| {
                    let client = client.clone();
                    let component = writer_component.clone();
                    let seen = seen.clone();
                    async move { write(&client, &component, &seen, pending).await }
                })
                .await;
        });
        Recorder { component, tx }
    }

    /// The component name events are reported under.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Queues an event about `regarding`.
    pub fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let pending = Pending {
            regarding,
            type_,
            reason: reason.to_string(),
            message: message.into(),
        };
        if self.tx.try_send(pending).is_err() {
            tracing::debug!(component = %self.component, reason, "event queue full; event dropped");
        }
    }

    /// Queues an event about `object`.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.publish(reference(object), type_, reason, message);
    }
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// An `ObjectReference` to `object` (kind, apiVersion, namespace, name, uid, resourceVersion).
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

async fn write(
    client: &Client,
    component: &str,
    seen: &Mutex<HashMap<AggregationKey, Aggregated>>,
    pending: Pending,
) {
    // Events of cluster-scoped objects go to `default`, as upstream.
    let namespace = pending
        .regarding
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let key = AggregationKey {
        uid: pending.regarding.uid.clone().unwrap_or_default(),
        kind: pending.regarding.kind.clone().unwrap_or_default(),
        name: pending.regarding.name.clone().unwrap_or_default(),
        type_: pending.type_,
        reason: pending.reason.clone(),
        message: pending.message.clone(),
    };
    let repeat = {
        let mut map = seen.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(&key) {
            Some(a) if a.last.elapsed() < AGGREGATION_WINDOW => {
                a.count += 1;
                a.last = Instant::now();
                Some((a.namespace.clone(), a.name.clone(), a.count))
            }
            _ => None,
        }
    };
    let timestamp = now();
    if let Some((ns, name, count)) = repeat {
        let patch = json!({"count": count, "lastTimestamp": timestamp});
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%error, event = %name, "cannot update event; creating a new one")
            }
        }
    }
    let name = format!(
        "{}.{:x}",
        key.name,
        jiff::Timestamp::now().as_nanosecond() as u128
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: pending.regarding,
        reason: Some(pending.reason),
        message: Some(truncate(pending.message, 1024)),
        type_: Some(pending.type_.as_str().to_string()),
        count: Some(1),
        first_timestamp: Some(timestamp.clone()),
        last_timestamp: Some(timestamp),
        event_time: None::<MicroTime>,
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(component.to_string()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => {
            let mut map = seen.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_AGGREGATED {
                map.retain(|_, a| a.last.elapsed() < AGGREGATION_WINDOW);
                if map.len() >= MAX_AGGREGATED {
                    map.clear();
                }
            }
            map.insert(
                key,
                Aggregated {
                    namespace,
                    name,
                    count: 1,
                    last: Instant::now(),
                },
            );
        }
        Err(error) => tracing::debug!(%error, "cannot write event"),
    }
}

fn truncate(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}
