//! Liveness, readiness and startup probes with the kubelet's timing: one worker per probe of
//! each running container instance, started `initialDelaySeconds` after the container, every
//! `periodSeconds`, each attempt within `timeoutSeconds`, results flipping after
//! `successThreshold` / `failureThreshold` consecutive outcomes. Liveness and readiness wait
//! until the startup probe (if any) has passed. Readiness drives the container's `ready`; a
//! failed liveness or startup probe asks the agent to restart the container.

pub mod check;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Probe};
use skiff_runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use check::{Outcome, Target};

/// The three kinds of probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// Restarts the container when it fails.
    Liveness,
    /// Decides whether the container is ready.
    Readiness,
    /// Holds the other two back until the container has started.
    Startup,
}

impl ProbeKind {
    /// Upstream's capitalised name, as in events (`Liveness probe failed: ...`).
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// What the probe workers tell the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeNotice {
    /// A probe result changed: the pod's status must be recomputed.
    Changed {
        /// Pod uid.
        uid: String,
    },
    /// A probe attempt failed (for an `Unhealthy` event).
    Unhealthy {
        /// Pod uid.
        uid: String,
        /// Container name.
        container: String,
        /// Which probe.
        kind: ProbeKind,
        /// What the attempt found.
        message: String,
    },
    /// A liveness or startup probe failed for good: the container must be restarted.
    Restart {
        /// Pod uid.
        uid: String,
        /// Container name.
        container: String,
        /// The failing instance (`skiff://<id>`); ignore if it is no longer current.
        container_id: String,
        /// Which probe.
        kind: ProbeKind,
        /// The probe's own `terminationGracePeriodSeconds`, if set.
        grace_seconds: Option<i64>,
    },
}

/// Probe results of one container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerProbes {
    /// The instance these results are for.
    pub container_id: String,
    /// Startup probe result: `None` without a startup probe.
    pub started: Option<bool>,
    /// Readiness probe result: `None` without a readiness probe.
    pub ready: Option<bool>,
}

type Key = (String, String);

struct Worker {
    container_id: String,
    handle: AbortHandle,
}

/// Runs the probes of every pod on the node.
pub struct ProbeManager {
    runtime: Runtime,
    notices: mpsc::UnboundedSender<ProbeNotice>,
    workers: Mutex<HashMap<(String, String, ProbeKind), Worker>>,
    results: Arc<Mutex<HashMap<Key, ContainerProbes>>>,
}

impl std::fmt::Debug for ProbeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeManager").finish_non_exhaustive()
    }
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        for worker in self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            worker.handle.abort();
        }
    }
}

struct Timing {
    initial_delay: Duration,
    period: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

fn timing(kind: ProbeKind, probe: &Probe) -> Timing {
    let secs = |v: Option<i32>, default: i32, min: i32| {
        skiff_runtime::durations::spec_seconds(i64::from(v.unwrap_or(default).max(min)))
    };
    Timing {
        initial_delay: secs(probe.initial_delay_seconds, 0, 0),
        period: secs(probe.period_seconds, 10, 1),
        // Liveness and startup probes must use 1 (validation enforces it); readiness may not.
        success_threshold: match kind {
            ProbeKind::Readiness => probe.success_threshold.unwrap_or(1).max(1) as u32,
            _ => 1,
        },
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

impl ProbeManager {
    /// A manager reporting through `notices`.
    pub fn new(runtime: Runtime, notices: mpsc::UnboundedSender<ProbeNotice>) -> ProbeManager {
        ProbeManager {
            runtime,
            notices,
            workers: Mutex::new(HashMap::new()),
            results: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The results for container `name` of pod `uid`, if they are for instance `container_id`.
    pub fn results(&self, uid: &str, name: &str, container_id: &str) -> Option<ContainerProbes> {
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(uid.to_string(), name.to_string()))
            .filter(|r| r.container_id == container_id)
            .cloned()
    }

    /// Makes the probe workers match the pod's running containers: new instances get fresh
    /// workers (readiness starts as not ready, startup as not started), ended ones lose theirs.
    pub fn sync(&self, pod: &Pod, status: &PodStatus) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let pod_ip: Option<IpAddr> = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
        let statuses = status.container_statuses.iter().flatten();
        let mut wanted: HashMap<(String, ProbeKind), (String, jiff::Timestamp)> = HashMap::new();
        for cs in statuses {
            let Some(container) = spec.containers.iter().find(|c| c.name == cs.name) else {
                continue;
            };
            let running = cs.state.as_ref().and_then(|s| s.running.as_ref());
            let (Some(running), Some(id)) = (running, cs.container_id.as_ref()) else {
                continue;
            };
            let started_at = running
                .started_at
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(jiff::Timestamp::now);
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                if kind.of(container).is_some() {
                    wanted.insert((cs.name.clone(), kind), (id.clone(), started_at));
                }
            }
        }
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        // Stop workers of instances that are gone.
        workers.retain(|(u, name, kind), worker| {
            if u != &uid {
                return true;
            }
            let keep = wanted
                .get(&(name.clone(), *kind))
                .is_some_and(|(id, _)| *id == worker.container_id);
            if !keep {
                worker.handle.abort();
            }
            keep
        });
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        results.retain(|(u, name), r| {
            u != &uid
                || wanted
                    .iter()
                    .any(|((n, _), (id, _))| n == name && *id == r.container_id)
        });
        for ((name, kind), (id, started_at)) in wanted {
            let key = (uid.clone(), name.clone(), kind);
            if workers.contains_key(&key) {
                continue;
            }
            let Some(container) = spec.containers.iter().find(|c| c.name == name).cloned() else {
                continue;
            };
            let entry = results
                .entry((uid.clone(), name.clone()))
                .or_insert_with(|| ContainerProbes {
                    container_id: id.clone(),
                    started: container.startup_probe.as_ref().map(|_| false),
                    ready: container.readiness_probe.as_ref().map(|_| false),
                });
            if entry.container_id != id {
                *entry = ContainerProbes {
                    container_id: id.clone(),
                    started: container.startup_probe.as_ref().map(|_| false),
                    ready: container.readiness_probe.as_ref().map(|_| false),
                };
            }
            let job = ProbeJob {
                runtime: self.runtime.clone(),
                notices: self.notices.clone(),
                results: Arc::clone(&self.results),
                uid: uid.clone(),
                container,
                container_id: id.clone(),
                kind,
                pod_ip,
                started_at,
            };
            let handle = tokio::spawn(job.run()).abort_handle();
            workers.insert(
                key,
                Worker {
                    container_id: id,
                    handle,
                },
            );
        }
    }

    /// Stops everything of a pod.
    pub fn forget(&self, uid: &str) {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(u, _, _), w| {
                if u == uid {
                    w.handle.abort();
                }
                u != uid
            });
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(u, _), _| u != uid);
    }

    /// Number of probe workers running (for tests and metrics).
    pub fn worker_count(&self) -> usize {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

struct ProbeJob {
    runtime: Runtime,
    notices: mpsc::UnboundedSender<ProbeNotice>,
    results: Arc<Mutex<HashMap<Key, ContainerProbes>>>,
    uid: String,
    container: Container,
    container_id: String,
    kind: ProbeKind,
    pod_ip: Option<IpAddr>,
    started_at: jiff::Timestamp,
}

impl ProbeJob {
    fn key(&self) -> Key {
        (self.uid.clone(), self.container.name.clone())
    }

    /// Whether the startup probe (if any) let the other probes run.
    fn started(&self) -> bool {
        if self.kind == ProbeKind::Startup {
            return true;
        }
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.key())
            .filter(|r| r.container_id == self.container_id)
            .map(|r| r.started != Some(false))
            .unwrap_or(true)
    }

    /// Records a result; true when it changed.
    fn record(&self, ok: bool) -> bool {
        let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = results
            .get_mut(&self.key())
            .filter(|r| r.container_id == self.container_id)
        else {
            return false;
        };
        let slot = match self.kind {
            ProbeKind::Startup => &mut r.started,
            ProbeKind::Readiness => &mut r.ready,
            ProbeKind::Liveness => return false,
        };
        let changed = *slot != Some(ok);
        *slot = Some(ok);
        changed
    }

    async fn run(self) {
        let Some(probe) = self.kind.of(&self.container).cloned() else {
            return;
        };
        let timing = timing(self.kind, &probe);
        // The initial delay counts from the container's start.
        let elapsed = jiff::Timestamp::now()
            .duration_since(self.started_at)
            .try_into()
            .unwrap_or(Duration::ZERO);
        if timing.initial_delay > elapsed {
            tokio::time::sleep(timing.initial_delay - elapsed).await;
        }
        let mut interval = tokio::time::interval(timing.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            interval.tick().await;
            if !self.started() {
                continue;
            }
            let target = Target {
                runtime: Some(&self.runtime),
                uid: &self.uid,
                container: &self.container,
                pod_ip: self.pod_ip,
            };
            let outcome = check::run(&probe, &target).await;
            match outcome {
                Outcome::Success => {
                    failures = 0;
                    successes = successes.saturating_add(1);
                    if successes >= timing.success_threshold {
                        if self.record(true) {
                            let _ = self.notices.send(ProbeNotice::Changed {
                                uid: self.uid.clone(),
                            });
                        }
                        if self.kind == ProbeKind::Startup {
                            tracing::debug!(pod = %self.uid, container = %self.container.name, "startup probe passed");
                            return;
                        }
                    }
                }
                Outcome::Failure(message) => {
                    successes = 0;
                    failures = failures.saturating_add(1);
                    tracing::debug!(pod = %self.uid, container = %self.container.name, kind = self.kind.name(), %message, "probe failed");
                    skiff_metrics::global().agent.probe_failed(self.kind.name());
                    let _ = self.notices.send(ProbeNotice::Unhealthy {
                        uid: self.uid.clone(),
                        container: self.container.name.clone(),
                        kind: self.kind,
                        message,
                    });
                    if failures >= timing.failure_threshold {
                        match self.kind {
                            ProbeKind::Readiness => {
                                if self.record(false) {
                                    let _ = self.notices.send(ProbeNotice::Changed {
                                        uid: self.uid.clone(),
                                    });
                                }
                            }
                            ProbeKind::Liveness | ProbeKind::Startup => {
                                let _ = self.notices.send(ProbeNotice::Restart {
                                    uid: self.uid.clone(),
                                    container: self.container.name.clone(),
                                    container_id: self.container_id.clone(),
                                    kind: self.kind,
                                    grace_seconds: probe.termination_grace_period_seconds,
                                });
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Applies probe results to a status: `started` and `ready` of each container, as the
/// kubelet's prober manager does.
pub fn apply(manager: &ProbeManager, uid: &str, pod: &Pod, status: &mut PodStatus) {
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    for cs in status.container_statuses.iter_mut().flatten() {
        let running = cs.state.as_ref().is_some_and(|s| s.running.is_some());
        let container = spec.containers.iter().find(|c| c.name == cs.name);
        let results = cs
            .container_id
            .as_deref()
            .and_then(|id| manager.results(uid, &cs.name, id));
        let has_startup = container.is_some_and(|c| c.startup_probe.is_some());
        let has_readiness = container.is_some_and(|c| c.readiness_probe.is_some());
        let started =
            running && (!has_startup || results.as_ref().and_then(|r| r.started) == Some(true));
        let ready =
            started && (!has_readiness || results.as_ref().and_then(|r| r.ready) == Some(true));
        cs.started = Some(started);
        cs.ready = ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_defaults_are_upstream() {
        let t = timing(ProbeKind::Readiness, &Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let custom = Probe {
            period_seconds: Some(2),
            initial_delay_seconds: Some(5),
            success_threshold: Some(3),
            failure_threshold: Some(1),
            ..Default::default()
        };
        let t = timing(ProbeKind::Readiness, &custom);
        assert_eq!(
            (t.period, t.initial_delay),
            (Duration::from_secs(2), Duration::from_secs(5))
        );
        assert_eq!((t.success_threshold, t.failure_threshold), (3, 1));
        // Liveness always needs one success.
        assert_eq!(timing(ProbeKind::Liveness, &custom).success_threshold, 1);
    }
}
