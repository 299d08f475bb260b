//! Pod status as the kubelet's status manager reports it: the runtime's view (phase, container
//! states, restart counts, IPs, QoS) with the agent's own knowledge on top — waiting reasons of
//! containers that could not be created yet (`ErrImagePull`, `ImagePullBackOff`,
//! `CreateContainerConfigError`, ...), probe results (`ready`, `started`), the pod conditions
//! with stable transition times, and the conditions other components own (`PodScheduled`,
//! readiness gates) kept as the server has them. A status goes upstream only when it changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Event, EventSource, HostIP,
    ObjectReference, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use skiff_link::proto::{PodRef, PodStatusUpdate};
use skiff_runtime::Runtime;
use tokio::sync::mpsc;

use crate::probes::{self, ProbeManager};

/// Conditions the node owns; every other condition type belongs to someone else.
const KUBELET_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

/// What the agent sends to the server (through the link, which queues it while offline).
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    /// A pod's status.
    Status(Box<PodStatusUpdate>),
    /// Pods marked for deletion that are now stopped and removed.
    Terminated(PodRef),
    /// An event to record.
    Event(Box<Event>),
}

/// Why a container cannot run yet, as the agent knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The waiting reason.
    pub reason: String,
    /// Its message.
    pub message: Option<String>,
}

struct Entry {
    pod: Pod,
    waiting: BTreeMap<String, Waiting>,
    first_seen: Timestamp,
    transitions: HashMap<String, (String, Time)>,
    last_sent: Option<PodStatus>,
}

/// Computes and reports pod statuses.
pub struct StatusManager {
    runtime: Runtime,
    probes: Arc<ProbeManager>,
    upstream: mpsc::UnboundedSender<Upstream>,
    node_name: String,
    host_ips: Mutex<Vec<String>>,
    pods: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for StatusManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusManager")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// `namespace/name/uid` of a pod.
pub fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// An event about `pod` (or one of its containers), as the kubelet records them.
pub fn pod_event(
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
    node: &str,
) -> Event {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let field_path = container.map(|c| {
        let init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|list| list.iter().any(|i| i.name == c));
        if init {
            format!("spec.initContainers{{{c}}}")
        } else {
            format!("spec.containers{{{c}}}")
        }
    });
    let involved = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.clone()),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        field_path,
        ..Default::default()
    };
    kubelet_event(&namespace, involved, warning, reason, message, node)
}

/// An event about node `node` itself (in `default`, involving the Node by a reference whose uid
/// is the node's name, as the kubelet's `nodeRef`).
pub fn node_event(node: &str, warning: bool, reason: &str, message: &str) -> Event {
    let involved = ObjectReference {
        kind: Some("Node".into()),
        name: Some(node.into()),
        uid: Some(node.into()),
        ..Default::default()
    };
    kubelet_event("default", involved, warning, reason, message, node)
}

/// An event recorded by the kubelet of `node` about `involved`.
fn kubelet_event(
    namespace: &str,
    involved: ObjectReference,
    warning: bool,
    reason: &str,
    message: &str,
    node: &str,
) -> Event {
    let now = Time(Timestamp::now());
    Event {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            // As the kubelet names them: `<object>.<unix nanoseconds in hex>`.
            name: Some(format!(
                "{}.{:x}",
                involved.name.as_deref().unwrap_or("object"),
                now.0.as_nanosecond()
            )),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.into()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    }
}

fn waiting_state(w: &Waiting) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(w.reason.clone()),
            message: w.message.clone(),
        }),
        ..Default::default()
    }
}

fn is_running(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.running.is_some())
}

impl StatusManager {
    /// A manager for node `node_name` reporting through `upstream`.
    pub fn new(
        runtime: Runtime,
        probes: Arc<ProbeManager>,
        upstream: mpsc::UnboundedSender<Upstream>,
        node_name: &str,
    ) -> StatusManager {
        StatusManager {
            runtime,
            probes,
            upstream,
            node_name: node_name.to_string(),
            host_ips: Mutex::new(Vec::new()),
            pods: Mutex::new(HashMap::new()),
        }
    }

    /// The node's addresses (for `hostIP(s)` of pods not yet in the runtime).
    pub fn set_host_ips(&self, ips: Vec<String>) {
        *self.host_ips.lock().unwrap_or_else(|p| p.into_inner()) = ips;
    }

    /// Sends something upstream.
    pub fn send(&self, message: Upstream) {
        let _ = self.upstream.send(message);
    }

    /// Records an event about a pod.
    pub fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        self.send(Upstream::Event(Box::new(pod_event(
            pod,
            container,
            warning,
            reason,
            message,
            &self.node_name,
        ))));
    }

    /// Records an event about the tracked pod `uid`.
    pub fn event_for(
        &self,
        uid: &str,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        let pod = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .map(|e| e.pod.clone());
        if let Some(pod) = pod {
            self.event(&pod, container, warning, reason, message);
        }
    }

    /// The pod's `terminationGracePeriodSeconds`.
    pub fn grace_seconds(&self, uid: &str) -> Option<i64> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .and_then(|e| e.pod.spec.as_ref()?.termination_grace_period_seconds)
    }

    /// Starts or updates tracking of a desired pod.
    pub fn track(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        match pods.get_mut(&uid) {
            Some(entry) => entry.pod = pod.clone(),
            None => {
                pods.insert(
                    uid,
                    Entry {
                        pod: pod.clone(),
                        waiting: BTreeMap::new(),
                        first_seen: Timestamp::now(),
                        transitions: HashMap::new(),
                        last_sent: None,
                    },
                );
            }
        }
    }

    /// Sets (or clears, with `None`) the agent's waiting reason for a container.
    pub fn set_waiting(&self, uid: &str, container: &str, waiting: Option<Waiting>) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = pods.get_mut(uid) {
            match waiting {
                Some(w) => {
                    entry.waiting.insert(container.to_string(), w);
                }
                None => {
                    entry.waiting.remove(container);
                }
            }
        }
    }

    /// Clears every waiting reason of a pod.
    pub fn clear_waiting(&self, uid: &str) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = pods.get_mut(uid) {
            entry.waiting.clear();
        }
    }

    /// Stops tracking a pod.
    pub fn forget(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
        self.probes.forget(uid);
    }

    /// The status last computed for a pod.
    pub fn last(&self, uid: &str) -> Option<PodStatus> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .and_then(|e| e.last_sent.clone())
    }

    /// Recomputes a pod's status; sends it upstream if it changed.
    pub fn refresh(&self, uid: &str) {
        let runtime_status = self.runtime.pod_status(uid);
        let host_ips = self
            .host_ips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = pods.get_mut(uid) else {
            return;
        };
        let mut status = match runtime_status {
            Some(status) => {
                self.probes.sync(&entry.pod, &status);
                status
            }
            None => {
                let phase = entry.pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if matches!(phase, Some("Succeeded" | "Failed")) {
                    // Finished before (e.g. before a reboot): the server's status stands.
                    return;
                }
                synthetic(&entry.pod, &host_ips, entry.first_seen)
            }
        };
        // The agent's waiting reasons for containers that do not run.
        for cs in status
            .container_statuses
            .iter_mut()
            .flatten()
            .chain(status.init_container_statuses.iter_mut().flatten())
        {
            if is_running(cs) {
                continue;
            }
            if let Some(w) = entry.waiting.get(&cs.name) {
                cs.state = Some(waiting_state(w));
            }
        }
        probes::apply(&self.probes, uid, &entry.pod, &mut status);
        // Keep the first start time the server has (stable across agent restarts).
        if let Some(start) = entry.pod.status.as_ref().and_then(|s| s.start_time.clone()) {
            status.start_time = Some(start);
        }
        status.conditions = Some(conditions(entry, &status));
        if entry.last_sent.as_ref() == Some(&status) {
            return;
        }
        if let Some(before) = &entry.last_sent {
            skiff_metrics::global()
                .agent
                .containers_restarted(restarts(&status).saturating_sub(restarts(before)));
        }
        let failures = start_failures(entry.last_sent.as_ref(), &status);
        let pod = (!failures.is_empty()).then(|| entry.pod.clone());
        entry.last_sent = Some(status.clone());
        let update = PodStatusUpdate {
            pod: pod_ref(&entry.pod),
            status,
        };
        drop(pods);
        let _ = self.upstream.send(Upstream::Status(Box::new(update)));
        if let Some(pod) = pod {
            for (container, message) in failures {
                self.event(
                    &pod,
                    Some(&container),
                    true,
                    "Failed",
                    &format!("Error: {message}"),
                );
            }
        }
    }

    /// Recomputes every tracked pod.
    pub fn refresh_all(&self) {
        let uids: Vec<String> = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for uid in uids {
            self.refresh(&uid);
        }
    }
}

/// Container start failures that are new in `now` against `before`, as (container, message):
/// an instance that ended with `StartError` (the runtime could not start it), or a container
/// waiting with `CreateContainerError`/`RunContainerError` and a new message. The kubelet
/// reports each as a `Failed` warning event with the message `Error: <underlying error>`.
fn start_failures(before: Option<&PodStatus>, now: &PodStatus) -> Vec<(String, String)> {
    fn all(status: &PodStatus) -> impl Iterator<Item = &ContainerStatus> {
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
    }
    fn start_errors(cs: &ContainerStatus) -> impl Iterator<Item = (&str, &str)> {
        [cs.state.as_ref(), cs.last_state.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|st| st.terminated.as_ref())
            .filter(|t| t.reason.as_deref() == Some("StartError"))
            .map(|t| {
                (
                    t.container_id.as_deref().unwrap_or(""),
                    t.message.as_deref().unwrap_or("cannot start the container"),
                )
            })
    }
    fn create_error(cs: &ContainerStatus) -> Option<(&str, &str)> {
        let w = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.as_deref()?;
        matches!(reason, "CreateContainerError" | "RunContainerError")
            .then(|| (reason, w.message.as_deref().unwrap_or(reason)))
    }
    let mut out = Vec::new();
    for cs in all(now) {
        let old = before.and_then(|b| all(b).find(|o| o.name == cs.name));
        for (id, message) in start_errors(cs) {
            if !old.is_some_and(|o| start_errors(o).any(|(old_id, _)| old_id == id)) {
                out.push((cs.name.clone(), message.to_owned()));
            }
        }
        if let Some(now_error) = create_error(cs) {
            if old.and_then(create_error) != Some(now_error) {
                out.push((cs.name.clone(), now_error.1.to_owned()));
            }
        }
    }
    out
}

/// Restarts of all the pod's containers (init and app) in `status`.
fn restarts(status: &PodStatus) -> u64 {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .map(|c| u64::try_from(c.restart_count).unwrap_or(0))
        .sum()
}

/// The status of a pod the runtime does not run yet: Pending, every container waiting.
fn synthetic(pod: &Pod, host_ips: &[String], first_seen: Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let waiting = |c: &k8s_openapi::api::core::v1::Container, reason: &str| ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting_state(&Waiting {
            reason: reason.into(),
            message: None,
        })),
        last_state: Some(ContainerState::default()),
        ..Default::default()
    };
    let inits = spec.init_containers.clone().unwrap_or_default();
    let app_reason = if inits.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses: Vec<ContainerStatus> = inits
        .iter()
        .map(|c| waiting(c, "PodInitializing"))
        .collect();
    PodStatus {
        phase: Some("Pending".into()),
        host_ip: host_ips.first().cloned(),
        host_ips: Some(
            host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        ),
        start_time: Some(Time(first_seen)),
        qos_class: Some(
            skiff_runtime::spec::resources::qos_class(pod)
                .as_str()
                .into(),
        ),
        conditions: Some(vec![
            PodCondition {
                type_: "PodReadyToStartContainers".into(),
                status: "False".into(),
                ..Default::default()
            },
            PodCondition {
                type_: "Initialized".into(),
                status: if inits.is_empty() { "True" } else { "False" }.into(),
                reason: (!inits.is_empty()).then(|| "ContainersNotInitialized".into()),
                ..Default::default()
            },
        ]),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(
            spec.containers
                .iter()
                .map(|c| waiting(c, app_reason))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The pod's conditions: the node's four computed here, everything else as the server has it.
fn conditions(entry: &mut Entry, status: &PodStatus) -> Vec<PodCondition> {
    let base = status.conditions.clone().unwrap_or_default();
    let base_of = |t: &str| base.iter().find(|c| c.type_ == t);
    let server_conditions = entry
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let gates: Vec<String> = entry
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .map(|g| g.iter().map(|g| g.condition_type.clone()).collect())
        .unwrap_or_default();

    let unready: Vec<String> = status
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| !c.ready)
        .map(|c| c.name.clone())
        .collect();
    let app_count = status.container_statuses.as_ref().map_or(0, Vec::len);
    let containers_ready = app_count > 0 && unready.is_empty();
    let missing_gates: Vec<&String> = gates
        .iter()
        .filter(|g| {
            !server_conditions
                .iter()
                .any(|c| &c.type_ == *g && c.status == "True")
        })
        .collect();
    let incomplete: Vec<String> = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| {
            let succeeded = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            !succeeded && !is_running(c)
        })
        .map(|c| c.name.clone())
        .collect();
    let initialized = base_of("Initialized").is_none_or(|c| c.status == "True");
    let sandbox = base_of("PodReadyToStartContainers").is_some_and(|c| c.status == "True");

    let list = |names: &[String]| format!("[{}]", names.join(" "));
    let mut computed = vec![
        ("PodReadyToStartContainers", sandbox, None, None),
        (
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                list(&incomplete)
            )),
        ),
        (
            "ContainersReady",
            containers_ready,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        ),
    ];
    let (ready, ready_reason, ready_message) = if !containers_ready {
        (
            false,
            "ContainersNotReady",
            format!("containers with unready status: {}", list(&unready)),
        )
    } else if !missing_gates.is_empty() {
        (
            false,
            "ReadinessGatesNotReady",
            format!(
                "the status of pod readiness gate {:?} is not \"True\", but False",
                missing_gates[0]
            ),
        )
    } else {
        (true, "", String::new())
    };
    computed.push(("Ready", ready, Some(ready_reason), Some(ready_message)));

    let now = Time(Timestamp::now());
    let mut out = Vec::new();
    for (type_, ok, reason, message) in computed {
        let status_text = if ok { "True" } else { "False" }.to_string();
        let time = match entry.transitions.get(type_) {
            Some((s, t)) if *s == status_text => t.clone(),
            Some(_) => now.clone(),
            None => server_conditions
                .iter()
                .find(|c| c.type_ == type_ && c.status == status_text)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        };
        entry
            .transitions
            .insert(type_.to_string(), (status_text.clone(), time.clone()));
        out.push(PodCondition {
            type_: type_.to_string(),
            status: status_text,
            reason: if ok { None } else { reason.map(str::to_string) },
            message: if ok { None } else { message },
            last_transition_time: Some(time),
            last_probe_time: None,
            ..Default::default()
        });
    }
    for c in server_conditions {
        if !KUBELET_CONDITIONS.contains(&c.type_.as_str()) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_add_up_over_init_and_app_containers() {
        let container = |name: &str, restart_count: i32| ContainerStatus {
            name: name.into(),
            restart_count,
            ..Default::default()
        };
        let status = PodStatus {
            init_container_statuses: Some(vec![container("sidecar", 2)]),
            container_statuses: Some(vec![container("app", 3), container("bad", -1)]),
            ..Default::default()
        };
        assert_eq!(restarts(&status), 5);
        assert_eq!(restarts(&PodStatus::default()), 0);
    }

    #[test]
    fn each_start_failure_becomes_one_failed_event() {
        use k8s_openapi::api::core::v1::ContainerStateTerminated;
        let failed = |id: &str| ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some("StartError".into()),
                exit_code: 128,
                container_id: Some(id.into()),
                message: Some(format!("exec /nope ({id}): no such file or directory")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let backoff = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".into()),
                message: Some("back-off 10s restarting failed container=app pod=p".into()),
            }),
            ..Default::default()
        };
        let status = |state: ContainerState, last: Option<ContainerState>| PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                state: Some(state),
                last_state: last,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let first = status(failed("skiff://a"), None);
        assert_eq!(
            start_failures(None, &first),
            vec![(
                "app".to_string(),
                "exec /nope (skiff://a): no such file or directory".to_string()
            )]
        );
        // The same failure, now in lastState behind the back-off: no second event.
        let waiting = status(backoff.clone(), Some(failed("skiff://a")));
        assert!(start_failures(Some(&first), &waiting).is_empty());
        // The next attempt fails too: one new event.
        let again = status(backoff, Some(failed("skiff://b")));
        assert_eq!(start_failures(Some(&waiting), &again).len(), 1);
        // A create error is reported once per distinct message.
        let create = |message: &str| {
            status(
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CreateContainerError".into()),
                        message: Some(message.into()),
                    }),
                    ..Default::default()
                },
                None,
            )
        };
        assert_eq!(start_failures(None, &create("subPath x")).len(), 1);
        assert!(start_failures(Some(&create("subPath x")), &create("subPath x")).is_empty());
    }
}
