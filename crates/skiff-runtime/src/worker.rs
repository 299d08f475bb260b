//! The pod worker: one tokio task per pod that drives its containers — init containers in
//! order, app containers, restarts with back-off, graceful stop, removal. Level-triggered: every
//! wake-up recomputes what to do from the records, so a worker resumed after a runtime restart
//! simply carries on.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, oneshot};

use crate::context::{Inner, PodEvent, PodMsg};
use crate::error::{Result, RuntimeError};
use crate::exits::ExitStatus;
use crate::inputs::PodInputs;
use crate::instance::{self, StartFailure, StartRequest};
use crate::logs::pump::LogSink;
use crate::state::{
    is_sidecar, Backoff, ContainerRecord, Instance, PodPaths, PodRecord, Termination, Waiting,
};
use crate::supervise::{catch_panic, Restarts};

/// A running instance's live handles.
pub(crate) struct Live {
    pub id: String,
    /// None for an instance found dead at re-adoption (being finished).
    pub pidfd: Option<OwnedFd>,
    pub sink: Option<Arc<LogSink>>,
}

/// What the back-off gate says.
enum Gate {
    Ready,
    Wait(Timestamp),
}

pub(crate) struct PodWorker {
    pub inner: Arc<Inner>,
    pub uid: String,
    pub paths: PodPaths,
    pub state: Arc<Mutex<PodRecord>>,
    /// Log sinks of running instances (shared with the runtime for following logs).
    pub sinks: Arc<Mutex<HashMap<String, Arc<LogSink>>>>,
    pub rx: mpsc::UnboundedReceiver<PodMsg>,
    pub tx: mpsc::UnboundedSender<PodMsg>,
    pub inputs: PodInputs,
    pub live: HashMap<String, Live>,
    pub regenerate: HashSet<String>,
    pub signaled: HashSet<String>,
    pub stop_waiters: Vec<oneshot::Sender<()>>,
    pub remove_waiters: Vec<oneshot::Sender<Result<()>>>,
    pub done: bool,
}

/// `t + d`, saturating at the largest timestamp (a huge grace period must mean "much later",
/// never "now").
fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

impl PodWorker {
    fn snapshot(&self) -> PodRecord {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies `change` to the record, saves it, and tells subscribers.
    fn update(&self, change: impl FnOnce(&mut PodRecord)) {
        let mut r = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut r);
        if let Err(e) = r.save(&self.paths) {
            tracing::warn!(pod = %self.uid, error = %e, "pod record not saved");
        }
        drop(r);
        let _ = self.inner.events.send(PodEvent::Changed {
            uid: self.uid.clone(),
        });
    }

    fn update_container(&self, name: &str, change: impl FnOnce(&mut ContainerRecord)) {
        let name = name.to_owned();
        self.update(move |r| change(r.containers.entry(name).or_default()));
    }

    /// Runs the worker until the pod is removed or the runtime shuts down, inside the panic
    /// boundary (`supervise`): a panic while handling this pod is logged, reported as
    /// [`PodEvent::WorkerPanicked`], and the worker carries on from its record after a
    /// back-off — its messages (stop, remove) are still answered, and no other pod notices.
    pub(crate) async fn run(mut self) {
        let mut restarts = Restarts::default();
        loop {
            match catch_panic(self.serve()).await {
                Ok(()) => return,
                Err(message) => {
                    tracing::error!(pod = %self.uid, panic = %message, "pod worker panicked; resuming it from its record");
                    let _ = self.inner.events.send(PodEvent::WorkerPanicked {
                        uid: self.uid.clone(),
                        message,
                    });
                    restarts.wait().await;
                }
            }
        }
    }

    /// The worker's loop: reconcile, then wait for a message or the next deadline.
    async fn serve(&mut self) {
        loop {
            let next = self.reconcile().await;
            if self.finished() {
                return;
            }
            let sleep = match next {
                Some(at) => {
                    let now = Timestamp::now();
                    if at <= now {
                        continue;
                    }
                    since(at, now)
                }
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(PodMsg::Shutdown) | None => return,
                    Some(msg) => {
                        if self.handle(msg).await {
                            return;
                        }
                    }
                },
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn finished(&self) -> bool {
        self.done
    }

    /// Handles one message; true when the worker must end.
    async fn handle(&mut self, msg: PodMsg) -> bool {
        match msg {
            PodMsg::Exited { name, id, status } => self.on_exit(name, id, status).await,
            PodMsg::Stop { grace, done } => {
                self.begin_termination(grace);
                self.stop_waiters.push(done);
            }
            PodMsg::Remove { done } => {
                self.update(|r| r.removing = true);
                self.begin_termination(Duration::ZERO);
                self.remove_waiters.push(done);
            }
            PodMsg::Inputs(inputs) => {
                self.inputs = inputs;
                let snapshot = self.snapshot();
                self.regenerate = snapshot.containers.keys().cloned().collect();
                // A container waiting for a fixed configuration may start now.
                for (name, rec) in &snapshot.containers {
                    if rec
                        .waiting
                        .as_ref()
                        .map(|w| w.reason == "CreateContainerConfigError")
                        .unwrap_or(false)
                    {
                        self.update_container(name, |c| c.not_before = None);
                    }
                }
            }
            PodMsg::Update { pod, inputs } => self.replace_changed(*pod, inputs),
            PodMsg::Shutdown => return true,
        }
        false
    }

    /// Takes a new spec: app containers whose image changed are stopped (stop signal, SIGKILL
    /// after the pod's grace period) and started again with the new image, whatever the
    /// restart policy (upstream restarts a container whose spec changed).
    fn replace_changed(&mut self, pod: Pod, inputs: PodInputs) {
        let snapshot = self.snapshot();
        let apps: HashSet<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect();
        let changed: Vec<String> = inputs
            .images
            .iter()
            .filter(|(name, image)| {
                apps.contains(*name)
                    && snapshot.images.get(*name).is_some_and(|current| {
                        current.id != image.id || current.reference != image.reference
                    })
            })
            .map(|(name, _)| name.clone())
            .collect();
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .map(crate::durations::spec_seconds)
            .unwrap_or(self.inner.config.default_grace);
        let kill_at = add(Timestamp::now(), grace);
        let images = inputs.images.clone();
        self.inputs = inputs;
        let replaced = changed.clone();
        self.update(move |r| {
            r.pod = pod;
            for (name, image) in images {
                r.images.insert(name, image);
            }
            for name in &replaced {
                r.containers.entry(name.clone()).or_default().replace_by = Some(kill_at);
            }
        });
        for name in &changed {
            tracing::info!(pod = %self.uid, container = %name, "container image changed; replacing the container");
            self.regenerate.insert(name.clone());
            self.signal(name, false);
        }
    }

    fn begin_termination(&mut self, grace: Duration) {
        let now = Timestamp::now();
        self.update(|r| {
            let deadline = add(now, grace);
            match &mut r.terminating {
                // A shorter grace period replaces a longer one, never the reverse.
                Some(t) if t.deadline <= deadline => {}
                Some(t) => {
                    t.deadline = deadline;
                    t.grace_ms = grace.as_millis() as u64;
                }
                None => {
                    r.terminating = Some(Termination {
                        grace_ms: grace.as_millis() as u64,
                        deadline,
                        killed: false,
                    })
                }
            }
            // Containers waiting to (re)start will not.
            for c in r.containers.values_mut() {
                c.not_before = None;
                if !c.is_running() {
                    c.waiting = None;
                }
            }
        });
    }

    async fn on_exit(&mut self, name: String, id: String, status: ExitStatus) {
        let is_current = self.live.get(&name).map(|l| l.id == id).unwrap_or(false);
        if !is_current {
            return;
        }
        let live = self.live.remove(&name);
        self.signaled.remove(&name);
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        let snapshot = self.snapshot();
        let Some(instance) = snapshot
            .containers
            .get(&name)
            .and_then(|c| c.instance.clone())
        else {
            return;
        };
        let fallback = snapshot
            .container_spec(&name)
            .map(|(c, _)| c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"))
            .unwrap_or(false);
        let inner = Arc::clone(&self.inner);
        let paths = self.paths.clone();
        let sink = live.and_then(|l| l.sink);
        let n = name.clone();
        let terminated = tokio::task::spawn_blocking(move || {
            instance::finish(
                &inner,
                &paths,
                &n,
                &instance,
                status,
                sink.as_ref(),
                fallback,
            )
        })
        .await;
        let Ok(terminated) = terminated else { return };
        tracing::info!(pod = %self.uid, container = %name, exit_code = terminated.exit_code, reason = %terminated.reason, "container exited");
        self.update_container(&name, |c| {
            if let Some(inst) = c.instance.as_mut() {
                inst.terminated = Some(terminated);
                inst.pid = None;
            }
            c.waiting = None;
        });
    }

    /// The back-off gate of upstream's `doBackOff` for a container that ended.
    fn gate(&self, name: &str, rec: &ContainerRecord, now: Timestamp, pod: &PodRecord) -> Gate {
        if let Some(nb) = rec.not_before {
            if nb > now {
                return Gate::Wait(nb);
            }
        }
        let (Some(t), Some(b)) = (rec.terminated(), rec.backoff) else {
            return Gate::Ready;
        };
        let cfg = self.inner.config.backoff;
        let expired = since(t.finished_at, b.last_update) > cfg.reset_after;
        let delay = Duration::from_millis(b.delay_ms);
        if !expired && since(now, t.finished_at) < delay {
            let until = add(t.finished_at, delay);
            let message = format!(
                "back-off {} restarting failed container={name} pod={}",
                human(delay),
                pod.display_name()
            );
            let waiting = Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(message),
            };
            if rec.waiting.as_ref() != Some(&waiting) {
                self.update_container(name, |c| c.waiting = Some(waiting));
            }
            return Gate::Wait(until);
        }
        Gate::Ready
    }

    /// Advances the back-off for a restart of a container that ended at `finished`.
    fn next_backoff(&self, rec: &ContainerRecord, finished: Timestamp, now: Timestamp) -> Backoff {
        let cfg = self.inner.config.backoff;
        let delay = match rec.backoff {
            Some(b) if since(finished, b.last_update) <= cfg.reset_after => {
                Duration::from_millis(b.delay_ms)
                    .saturating_mul(2)
                    .min(cfg.max)
            }
            _ => cfg.initial,
        };
        Backoff {
            delay_ms: delay.as_millis() as u64,
            last_update: now,
        }
    }

    /// Starts a new instance of `name`; true when it is running.
    async fn start(&mut self, name: &str) -> bool {
        let snapshot = self.snapshot();
        let rec = snapshot.containers.get(name).cloned().unwrap_or_default();
        let now = Timestamp::now();
        let previous = rec.terminated().cloned();
        let number = if rec.instance.is_some() {
            rec.restart_count + 1
        } else {
            rec.restart_count
        };
        let backoff = previous
            .as_ref()
            .map(|t| self.next_backoff(&rec, t.finished_at, now));
        let id = instance::random_id();
        let tx = self.tx.clone();
        let (exit_name, exit_id) = (name.to_owned(), id.clone());
        let on_exit: crate::exits::ExitCallback = Box::new(move |status| {
            let _ = tx.send(PodMsg::Exited {
                name: exit_name,
                id: exit_id,
                status,
            });
        });
        let inner = Arc::clone(&self.inner);
        let paths = self.paths.clone();
        let inputs = self.inputs.clone();
        let regenerate = self.regenerate.remove(name);
        let n = name.to_owned();
        let creating = id.clone();
        self.update_container(name, move |c| c.creating = Some(creating));
        let permit = self.inner.launches.clone().acquire_owned().await;
        let outcome = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            instance::start(StartRequest {
                inner: &inner,
                paths: &paths,
                record: &snapshot,
                name: &n,
                number,
                inputs: &inputs,
                regenerate,
                id,
                on_exit,
            })
        })
        .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => Err(StartFailure::Create(RuntimeError::Container {
                container: name.to_owned(),
                message: format!("start task failed: {e}"),
            })),
        };
        let retry_at = add(now, self.inner.config.backoff.initial);
        match outcome {
            Ok(started) => {
                tracing::info!(pod = %self.uid, container = %name, id = %started.instance.id, pid = ?started.instance.pid, "container started");
                self.sinks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), Arc::clone(&started.sink));
                self.live.insert(
                    name.to_owned(),
                    Live {
                        id: started.instance.id.clone(),
                        pidfd: Some(started.pidfd),
                        sink: Some(started.sink),
                    },
                );
                let instance = started.instance;
                self.update_container(name, move |c| {
                    c.creating = None;
                    c.replace_by = None;
                    if c.instance.is_some() {
                        c.restart_count += 1;
                        c.last_termination = previous;
                    }
                    if let Some(b) = backoff {
                        c.backoff = Some(b);
                    }
                    c.instance = Some(instance);
                    c.waiting = None;
                    c.not_before = None;
                });
                true
            }
            Err(StartFailure::Start { instance, message }) => {
                let mut instance = *instance;
                tracing::warn!(pod = %self.uid, container = %name, error = %message, "container failed to start");
                instance.terminated = Some(crate::state::Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_at: None,
                    finished_at: Timestamp::now(),
                    container_id: format!("skiff://{}", instance.id),
                });
                self.update_container(name, move |c| {
                    c.creating = None;
                    c.replace_by = None;
                    if c.instance.is_some() {
                        c.restart_count += 1;
                        c.last_termination = previous;
                    }
                    if let Some(b) = backoff {
                        c.backoff = Some(b);
                    }
                    c.instance = Some(instance);
                    c.waiting = None;
                    c.not_before = None;
                });
                false
            }
            Err(StartFailure::Config(e)) | Err(StartFailure::Create(e)) => {
                let reason = if e.is_config_error() {
                    "CreateContainerConfigError"
                } else {
                    "CreateContainerError"
                };
                tracing::warn!(pod = %self.uid, container = %name, error = %e, reason, "container not created");
                let message = e.to_string();
                self.update_container(name, move |c| {
                    c.creating = None;
                    c.replace_by = None;
                    c.waiting = Some(Waiting {
                        reason: reason.into(),
                        message: Some(message),
                    });
                    c.not_before = Some(retry_at);
                });
                false
            }
        }
    }

    /// One pass over the pod; returns when to look again (None: only on messages).
    async fn reconcile(&mut self) -> Option<Timestamp> {
        let snapshot = self.snapshot();
        if snapshot.removing || snapshot.terminating.is_some() {
            return self.drive_termination().await;
        }
        if snapshot.failed || snapshot.terminal {
            return None;
        }
        let now = Timestamp::now();
        let policy = snapshot.restart_policy().to_owned();
        let mut next: Option<Timestamp> = None;
        let mut earliest = |t: Timestamp| {
            next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        };

        // Init containers, in order; sidecars (restartPolicy Always) only need to be running.
        for c in snapshot.init_containers() {
            let rec = snapshot
                .containers
                .get(&c.name)
                .cloned()
                .unwrap_or_default();
            if rec.is_running() {
                if is_sidecar(c) {
                    continue;
                }
                return next;
            }
            if let Some(t) = rec.terminated() {
                if !is_sidecar(c) && t.exit_code == 0 {
                    continue;
                }
                if !is_sidecar(c) && policy == "Never" {
                    self.update(|r| r.failed = true);
                    tracing::info!(pod = %self.uid, container = %c.name, "init container failed; pod failed");
                    return None;
                }
            }
            match self.gate(&c.name, &rec, now, &snapshot) {
                Gate::Wait(t) => {
                    earliest(t);
                    return next;
                }
                Gate::Ready => {
                    let running = self.start(&c.name).await;
                    if running && is_sidecar(c) {
                        continue;
                    }
                    if running {
                        // Wait for the init container to end.
                        return next;
                    }
                    // It did not start: look again now (the gate applies the back-off).
                    return Some(Timestamp::now());
                }
            }
        }

        // App containers.
        let snapshot = self.snapshot();
        let mut done_for_good = 0;
        for c in snapshot.app_containers() {
            let rec = snapshot
                .containers
                .get(&c.name)
                .cloned()
                .unwrap_or_default();
            if rec.is_running() {
                if let Some(kill_at) = rec.replace_by {
                    // Being replaced: stop signal sent; SIGKILL once the grace period is over.
                    if now >= kill_at {
                        self.signal(&c.name, true);
                        earliest(add(now, Duration::from_secs(1)));
                    } else {
                        self.signal(&c.name, false);
                        earliest(kill_at);
                    }
                }
                continue;
            }
            if rec.replace_by.is_some() {
                // Replaced for a new spec: start at once, whatever the policy and back-off.
                self.start(&c.name).await;
                earliest(Timestamp::now());
                continue;
            }
            if let Some(t) = rec.terminated() {
                let restart = match policy.as_str() {
                    "Never" => false,
                    "OnFailure" => t.exit_code != 0,
                    _ => true,
                };
                if !restart {
                    done_for_good += 1;
                    continue;
                }
            }
            match self.gate(&c.name, &rec, now, &snapshot) {
                Gate::Wait(t) => earliest(t),
                Gate::Ready => {
                    self.start(&c.name).await;
                    // Started or not, look again right away: a failed start gets its back-off.
                    earliest(Timestamp::now());
                }
            }
        }
        // Every app container has ended for good: running sidecars are stopped (upstream).
        if done_for_good == snapshot.app_containers().len() && done_for_good > 0 {
            let sidecars_running: Vec<String> = snapshot
                .init_containers()
                .iter()
                .filter(|c| {
                    is_sidecar(c)
                        && snapshot
                            .containers
                            .get(&c.name)
                            .map(ContainerRecord::is_running)
                            .unwrap_or(false)
                })
                .map(|c| c.name.clone())
                .collect();
            if !sidecars_running.is_empty() {
                // Stopped like a pod: stop signal, SIGKILL after the grace period; the pod's
                // phase is then final.
                let grace = snapshot
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .map(crate::durations::spec_seconds)
                    .unwrap_or(self.inner.config.default_grace);
                self.begin_termination(grace);
                return Some(Timestamp::now());
            }
        }
        next
    }

    /// Sends the stop signal (or SIGKILL) to container `name` if it runs.
    fn signal(&mut self, name: &str, kill: bool) {
        let snapshot = self.snapshot();
        let Some(instance) = snapshot
            .containers
            .get(name)
            .and_then(|c| c.instance.clone())
        else {
            return;
        };
        let Some(pidfd) = self.live.get(name).and_then(|l| l.pidfd.as_ref()) else {
            return;
        };
        let sig = if kill {
            libc::SIGKILL
        } else {
            instance.stop_signal
        };
        if !kill && !self.signaled.insert(name.to_owned()) {
            return;
        }
        tracing::debug!(pod = %self.uid, container = %name, signal = sig, "signalling container");
        instance::kill_all(&self.inner, &instance, pidfd, sig);
    }

    /// Stops the containers of a terminating pod; finishes stop and removal requests.
    async fn drive_termination(&mut self) -> Option<Timestamp> {
        let snapshot = self.snapshot();
        let term = snapshot.terminating.clone()?;
        let now = Timestamp::now();
        let running = |r: &PodRecord, names: &mut dyn Iterator<Item = String>| -> Vec<String> {
            names
                .filter(|n| {
                    r.containers
                        .get(n)
                        .map(ContainerRecord::is_running)
                        .unwrap_or(false)
                })
                .collect()
        };
        let apps = running(
            &snapshot,
            &mut snapshot.app_containers().iter().map(|c| c.name.clone()),
        );
        let inits = running(
            &snapshot,
            &mut snapshot
                .init_containers()
                .iter()
                .rev()
                .map(|c| c.name.clone()),
        );
        if now >= term.deadline {
            if !(apps.is_empty() && inits.is_empty()) {
                for name in apps.iter().chain(inits.iter()) {
                    self.signal(name, true);
                }
                if !term.killed {
                    self.update(|r| {
                        if let Some(t) = r.terminating.as_mut() {
                            t.killed = true;
                        }
                    });
                }
                // Look again soon in case a process ignores even SIGKILL (e.g. stuck in D state).
                return Some(add(now, Duration::from_secs(1)));
            }
        } else {
            // App containers first; sidecars and a running init container once they are gone.
            let first = if apps.is_empty() { &inits } else { &apps };
            for name in first.clone() {
                self.signal(&name, false);
            }
        }
        if apps.is_empty() && inits.is_empty() && self.live.is_empty() {
            if !snapshot.terminal {
                self.update(|r| r.terminal = true);
            }
            for w in self.stop_waiters.drain(..) {
                let _ = w.send(());
            }
            if snapshot.removing {
                self.complete_removal().await;
            }
            return None;
        }
        Some(term.deadline)
    }

    /// Removes everything of the pod, answers the remove requests and ends the worker.
    async fn complete_removal(&mut self) {
        let inner = Arc::clone(&self.inner);
        let paths = self.paths.clone();
        let record = self.snapshot();
        let result = tokio::task::spawn_blocking(move || {
            crate::pod_teardown::destroy_pod(&inner, &paths, Some(&record))
        })
        .await
        .unwrap_or_else(|e| {
            Err(RuntimeError::Container {
                container: "pod".into(),
                message: format!("cleanup task failed: {e}"),
            })
        });
        if let Err(e) = &result {
            tracing::warn!(pod = %self.uid, error = %e, "pod cleanup incomplete");
        }
        self.inner.forget(&self.uid);
        let _ = self.inner.events.send(PodEvent::Removed {
            uid: self.uid.clone(),
        });
        for w in self.remove_waiters.drain(..) {
            let _ = w.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(RuntimeError::Container {
                    container: "pod".into(),
                    message: e.to_string(),
                }),
            });
        }
        self.done = true;
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Checks an adopted instance: (alive, pidfd) — alive only if the pid still is the same process.
pub(crate) fn reattach(instance: &Instance) -> Option<OwnedFd> {
    let pid = instance.pid?;
    let want = instance.pid_start_time?;
    // A zombie has exited already (its parent just has not reaped it).
    if crate::exits::process_start_time(pid) != Some(want) || !crate::exits::process_alive(pid) {
        return None;
    }
    let fd = crate::exits::pidfd_open(pid).ok()?;
    // The pid could have been reused between the check and the open: check again.
    (crate::exits::process_start_time(pid) == Some(want)).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_grace_periods_mean_much_later_never_now() {
        let now = Timestamp::now();
        let day = Duration::from_secs(86_400);
        // Overflowing additions saturate instead of falling back to `now` (an immediate kill).
        assert!(add(now, Duration::from_secs(u64::MAX)) > add(now, day));
        let grace = crate::durations::spec_seconds(i64::MAX);
        assert!(add(now, grace) > add(now, day));
        assert_eq!(since(add(now, day), now), day);
    }
}
