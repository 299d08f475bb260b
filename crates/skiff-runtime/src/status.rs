//! Upstream `PodStatus` from the runtime's records: container states, phase (kubelet's
//! `getPhase`), conditions, addresses, QoS class.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::state::{is_sidecar, ContainerRecord, PodRecord, Terminated};

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(time),
        finished_at: Some(time(t.finished_at)),
        container_id: Some(t.container_id.clone()),
    }
}

fn container_status(
    record: &PodRecord,
    name: &str,
    rec: Option<&ContainerRecord>,
    default_waiting: &str,
) -> ContainerStatus {
    let image = record.images.get(name);
    let rec = rec.cloned().unwrap_or_default();
    let running = rec.is_running();
    // An instance stopped to be replaced (new image) is not finished: the container waits
    // for its new instance, and the stopped one becomes its last state.
    let replacing = rec.replace_by.is_some() && !running;
    let state = if replacing {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        }
    } else if let Some(w) = &rec.waiting {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(w.reason.clone()),
                message: w.message.clone(),
            }),
            ..Default::default()
        }
    } else if let Some(inst) = rec.instance.as_ref() {
        match (&inst.terminated, inst.started_at) {
            (Some(t), _) => ContainerState {
                terminated: Some(terminated_state(t)),
                ..Default::default()
            },
            (None, Some(started)) => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(started)),
                }),
                ..Default::default()
            },
            (None, None) => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            },
        }
    } else {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(default_waiting.into()),
                message: None,
            }),
            ..Default::default()
        }
    };
    let last_termination = if replacing {
        rec.terminated().or(rec.last_termination.as_ref())
    } else {
        rec.last_termination.as_ref()
    };
    let last_state = last_termination.map(|t| ContainerState {
        terminated: Some(terminated_state(t)),
        ..Default::default()
    });
    ContainerStatus {
        name: name.to_owned(),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ready: running,
        started: Some(running),
        restart_count: rec.restart_count as i32,
        image: image.map(|i| i.reference.clone()).unwrap_or_default(),
        image_id: image.map(|i| i.image_id().to_owned()).unwrap_or_default(),
        container_id: rec.instance.as_ref().map(|i| format!("skiff://{}", i.id)),
        ..Default::default()
    }
}

/// Upstream `getPhase` on the container statuses.
fn phase(record: &PodRecord, init: &[ContainerStatus], apps: &[ContainerStatus]) -> &'static str {
    let policy = record.restart_policy();
    let mut pending_init = 0;
    let mut failed_init = 0;
    for (c, s) in record.init_containers().iter().zip(init) {
        if is_sidecar(c) {
            continue;
        }
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            pending_init += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.and_then(|st| st.waiting.as_ref()).is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                _ => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    // Regular init containers that completed are fine; one still to run blocks the pod.
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    let sidecar_statuses = record
        .init_containers()
        .iter()
        .zip(init)
        .filter(|(c, _)| is_sidecar(c))
        .map(|(_, s)| s);
    for s in apps.iter().chain(sidecar_statuses) {
        let state = s.state.as_ref();
        if state.and_then(|st| st.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if record.failed || (failed_init > 0 && policy == "Never") {
        return "Failed";
    }
    if record.terminal {
        let apps_ok = apps.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .map(|t| t.exit_code == 0)
                .unwrap_or(false)
        });
        return if apps_ok { "Succeeded" } else { "Failed" };
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        let app_succeeded = apps.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .map(|t| t.exit_code == 0)
                .unwrap_or(false)
        });
        if app_succeeded || stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, at: Timestamp) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(str::to_owned) },
        last_transition_time: Some(time(at)),
        ..Default::default()
    }
}

/// The pod's status as the kubelet would report it (readiness = running: probes are the
/// agent's business and may override `ready` and the Ready conditions).
pub(crate) fn pod_status(record: &PodRecord) -> PodStatus {
    let init: Vec<ContainerStatus> = record
        .init_containers()
        .iter()
        .map(|c| {
            container_status(
                record,
                &c.name,
                record.containers.get(&c.name),
                "PodInitializing",
            )
        })
        .collect();
    let initialized = record.init_containers().iter().all(|c| {
        let r = record.containers.get(&c.name);
        if is_sidecar(c) {
            r.and_then(|r| r.instance.as_ref())
                .map(|i| i.started_at.is_some())
                .unwrap_or(false)
        } else {
            r.and_then(ContainerRecord::terminated)
                .map(|t| t.exit_code == 0)
                .unwrap_or(false)
        }
    });
    let app_default = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let apps: Vec<ContainerStatus> = record
        .app_containers()
        .iter()
        .map(|c| container_status(record, &c.name, record.containers.get(&c.name), app_default))
        .collect();
    let phase = phase(record, &init, &apps);
    let containers_ready = !apps.is_empty() && apps.iter().all(|s| s.ready);
    let at = record.start_time.unwrap_or(record.created_at);
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            record.start_time.is_some(),
            None,
            at,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            at,
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some("ContainersNotReady"),
            at,
        ),
        condition("Ready", containers_ready, Some("ContainersNotReady"), at),
    ];
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: record.host_ips.first().cloned(),
        host_ips: Some(
            record
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        ),
        pod_ip: record.pod_ips.first().cloned(),
        pod_ips: Some(
            record
                .pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect(),
        ),
        start_time: record.start_time.map(time),
        qos_class: Some(
            crate::spec::resources::qos_class(&record.pod)
                .as_str()
                .into(),
        ),
        init_container_statuses: if init.is_empty() { None } else { Some(init) },
        container_statuses: Some(apps),
        ..Default::default()
    }
}
