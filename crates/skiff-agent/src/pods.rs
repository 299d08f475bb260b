//! Pod workers: one task per pod bound to the node, reconciling what the server wants with
//! what the runtime runs — resolve images and config, run the pod, apply allowed updates
//! (a changed container image restarts that container), and on deletion stop it gracefully
//! (stop signal, grace period, SIGKILL), remove it and confirm the deletion to the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use skiff_image::Reference;
use skiff_runtime::supervise::{supervise, Restarts};
use skiff_runtime::{ContainerImage, Runtime, RuntimeError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::images::ImagePuller;
use crate::inputs::InputResolver;
use crate::status::{pod_ref, StatusManager, Upstream, Waiting};
use crate::streams::PodIndex;

/// Smallest grace period the kubelet gives a container (`minimumGracePeriodInSeconds`).
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How often a pod whose configuration is incomplete (missing config map, secret, ...) is
/// looked at again.
const CONFIG_RETRY: Duration = Duration::from_secs(10);
/// First retry of a sandbox that could not be created (doubling up to [`SANDBOX_RETRY_MAX`]).
const SANDBOX_RETRY: Duration = Duration::from_secs(1);
const SANDBOX_RETRY_MAX: Duration = Duration::from_secs(30);

/// What a worker is told about its pod.
#[derive(Debug, Clone)]
pub enum Desired {
    /// Run this pod (a `deletionTimestamp` means: stop it and confirm).
    Run(Box<Pod>),
    /// The server no longer lists the pod for this node: stop and remove it, no confirmation.
    Gone,
}

/// What every worker shares.
#[derive(Debug)]
pub struct WorkerContext {
    /// The container runtime.
    pub runtime: Runtime,
    /// Input resolution.
    pub resolver: Arc<InputResolver>,
    /// Images (pull back-off bookkeeping).
    pub images: Arc<ImagePuller>,
    /// Status reporting.
    pub status: Arc<StatusManager>,
    /// Names to uids, for logs and exec.
    pub index: Arc<PodIndex>,
}

struct Handle {
    desired: watch::Sender<Desired>,
    task: JoinHandle<()>,
}

/// The set of pod workers.
pub struct PodWorkers {
    ctx: Arc<WorkerContext>,
    workers: HashMap<String, Handle>,
}

impl std::fmt::Debug for PodWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWorkers")
            .field("pods", &self.workers.len())
            .finish()
    }
}

impl PodWorkers {
    /// No workers yet.
    pub fn new(ctx: Arc<WorkerContext>) -> PodWorkers {
        PodWorkers {
            ctx,
            workers: HashMap::new(),
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<WorkerContext> {
        &self.ctx
    }

    /// Gives pod `pod` to its worker (starting one if needed).
    pub fn upsert(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            tracing::warn!(pod = ?pod.metadata.name, "ignoring a pod without a uid");
            return;
        };
        self.reap();
        if let Some(handle) = self.workers.get(&uid) {
            handle.desired.send_replace(Desired::Run(Box::new(pod)));
            return;
        }
        self.ctx.status.track(&pod);
        self.ctx.index.insert(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            &uid,
        );
        let (tx, rx) = watch::channel(Desired::Run(Box::new(pod)));
        let task = tokio::spawn(supervised(Arc::clone(&self.ctx), uid.clone(), rx));
        self.workers.insert(uid, Handle { desired: tx, task });
    }

    /// Tells the worker of `uid` that its pod is no longer wanted here.
    pub fn remove(&mut self, uid: &str) {
        if let Some(handle) = self.workers.get(uid) {
            handle.desired.send_replace(Desired::Gone);
        }
    }

    /// Starts a worker for a pod the runtime holds that nobody wants: it is removed.
    pub fn remove_orphan(&mut self, uid: &str) {
        if self.workers.contains_key(uid) {
            return self.remove(uid);
        }
        let (tx, rx) = watch::channel(Desired::Gone);
        let task = tokio::spawn(supervised(Arc::clone(&self.ctx), uid.to_string(), rx));
        self.workers
            .insert(uid.to_string(), Handle { desired: tx, task });
    }

    /// UIDs with a worker.
    pub fn uids(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// Drops the handles of workers that finished.
    pub fn reap(&mut self) {
        self.workers.retain(|_, h| !h.task.is_finished());
    }

    /// Number of live workers.
    pub fn len(&mut self) -> usize {
        self.reap();
        self.workers.len()
    }

    /// Whether no worker runs.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Ends every worker without touching containers (agent shutdown).
    pub fn abort_all(&mut self) {
        for handle in self.workers.values() {
            handle.task.abort();
        }
        self.workers.clear();
    }
}

/// The normalised image reference (so `busybox` equals `docker.io/library/busybox:latest`).
pub fn normalize_image(image: &str) -> String {
    Reference::parse(image)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| image.to_string())
}

/// Containers whose image in `pod` differs from the one the runtime runs (`status`).
pub fn changed_images(pod: &Pod, status: &PodStatus) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let running: BTreeMap<&str, &str> = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .map(|cs| (cs.name.as_str(), cs.image.as_str()))
        .collect();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter(|c| {
            let wanted = normalize_image(c.image.as_deref().unwrap_or_default());
            running
                .get(c.name.as_str())
                .is_some_and(|current| !current.is_empty() && normalize_image(current) != wanted)
        })
        .map(|c| c.name.clone())
        .collect()
}

fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    skiff_runtime::durations::spec_seconds(seconds).max(MIN_GRACE)
}

/// The outcome of trying to start a pod.
enum Attempt {
    Started,
    RetryIn(Duration),
    SandboxFailed,
}

/// [`work`] inside the panic boundary: a panic while handling this pod is logged, shown as a
/// `FailedSync` Warning Event on the pod, and the worker starts again (after a back-off) from
/// the latest desired state and what the runtime holds; other pods' workers never notice.
async fn supervised(ctx: Arc<WorkerContext>, uid: String, desired: watch::Receiver<Desired>) {
    let what = format!("pod {uid}");
    let report = Arc::clone(&ctx);
    let id = uid.clone();
    supervise(
        &what,
        Restarts::default(),
        || work(Arc::clone(&ctx), uid.clone(), desired.clone()),
        |message| {
            report.status.event_for(
                &id,
                None,
                true,
                "FailedSync",
                &format!("error syncing pod: the pod worker panicked: {message}; restarting it"),
            )
        },
    )
    .await
}

/// The life of one pod on the node.
async fn work(ctx: Arc<WorkerContext>, uid: String, mut desired: watch::Receiver<Desired>) {
    let mut started = ctx.runtime.pod_status(&uid).is_some();
    let mut inputs_given = false;
    let mut sandbox_retry = SANDBOX_RETRY;
    let mut last_pod: Option<Pod> = None;
    loop {
        let wanted = desired.borrow_and_update().clone();
        let pod = match wanted {
            Desired::Gone => {
                terminate(&ctx, &uid, last_pod.as_ref(), false).await;
                return;
            }
            Desired::Run(pod) => *pod,
        };
        ctx.status.track(&pod);
        last_pod = Some(pod.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            terminate(&ctx, &uid, Some(&pod), true).await;
            return;
        }
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let wait = if !started && finished {
            // It ran to its end before (e.g. before a reboot): never run it again.
            None
        } else if !started {
            match start(&ctx, &uid, &pod).await {
                Attempt::Started => {
                    started = true;
                    inputs_given = true;
                    sandbox_retry = SANDBOX_RETRY;
                    None
                }
                Attempt::RetryIn(delay) => Some(delay),
                Attempt::SandboxFailed => {
                    let d = sandbox_retry;
                    sandbox_retry = (sandbox_retry * 2).min(SANDBOX_RETRY_MAX);
                    Some(d)
                }
            }
        } else {
            if !inputs_given {
                // Re-adopted after an agent restart: give the runtime what later restarts need.
                adopt(&ctx, &uid, &pod).await;
                inputs_given = true;
            }
            update(&ctx, &uid, &pod).await
        };
        ctx.status.refresh(&uid);
        let retry = wait.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    // The agent is shutting down: leave the pod as it is.
                    return;
                }
            }
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// Resolves everything and runs the pod.
async fn start(ctx: &WorkerContext, uid: &str, pod: &Pod) -> Attempt {
    // A pull can take a while: show the pod as ContainerCreating meanwhile.
    for (container, image, policy) in crate::inputs::container_images(pod) {
        if ctx.images.needs_pull(&image, policy.as_deref()).await {
            ctx.status.refresh(uid);
            ctx.status.event(
                pod,
                Some(&container),
                false,
                "Pulling",
                &format!("Pulling image {image:?}"),
            );
            break;
        }
    }
    let images = match ctx.resolver.images(pod).await {
        Ok((images, pulled)) => {
            for p in pulled {
                ctx.status.event(
                    pod,
                    Some(&p.container),
                    false,
                    "Pulled",
                    &format!(
                        "Successfully pulled image {:?} in {:.3}s",
                        p.image,
                        p.resolved.pull_time.as_secs_f64()
                    ),
                );
            }
            ctx.status.clear_waiting(uid);
            images
        }
        Err(failure) => {
            let mut retry: Option<Duration> = None;
            for (container, f) in &failure.images {
                ctx.status.set_waiting(
                    uid,
                    container,
                    Some(Waiting {
                        reason: f.reason.to_string(),
                        message: Some(f.message.clone()),
                    }),
                );
                let (reason, message) = match f.reason {
                    "ImagePullBackOff" => {
                        ("BackOff", format!("Back-off pulling image: {}", f.message))
                    }
                    "ErrImagePull" => ("Failed", f.message.clone()),
                    _ => ("Failed", f.message.clone()),
                };
                if f.reason != "ImagePullBackOff" {
                    ctx.status
                        .event(pod, Some(container), true, reason, &message);
                }
                if let Some(after) = f.retry_after {
                    retry = Some(retry.map_or(after, |r| r.min(after)));
                }
            }
            // Without a back-off (Never policy, bad name) look again now and then: the image
            // may be imported meanwhile.
            return Attempt::RetryIn(retry.unwrap_or(CONFIG_RETRY));
        }
    };
    let inputs = ctx.resolver.inputs(pod, images).await;
    match ctx.runtime.run_pod(pod.clone(), inputs).await {
        Ok(()) => {
            skiff_metrics::global().agent.pod_started();
            Attempt::Started
        }
        Err(RuntimeError::PodExists(_)) if ctx.runtime.pod_status(uid).is_some() => {
            Attempt::Started
        }
        Err(error) if error.is_config_error() => {
            tracing::warn!(pod = %pod_ref(pod), %error, "pod cannot run as specified");
            let message = error.to_string();
            for c in pod.spec.iter().flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            }) {
                ctx.status.set_waiting(
                    uid,
                    &c.name,
                    Some(Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(message.clone()),
                    }),
                );
            }
            ctx.status
                .event(pod, None, true, "Failed", &format!("Error: {message}"));
            Attempt::RetryIn(CONFIG_RETRY)
        }
        Err(error) => {
            tracing::warn!(pod = %pod_ref(pod), %error, "cannot create the pod sandbox");
            ctx.status.event(
                pod,
                None,
                true,
                "FailedCreatePodSandBox",
                &format!("Failed to create pod sandbox: {error}"),
            );
            Attempt::SandboxFailed
        }
    }
}

/// Gives a re-adopted pod its inputs back (images already in the store, config from the
/// server or the local state); nothing is pulled or restarted.
async fn adopt(ctx: &WorkerContext, uid: &str, pod: &Pod) {
    let mut images = BTreeMap::new();
    for (container, image, _) in crate::inputs::container_images(pod) {
        if let Some(info) = ctx.images.resolve_local(&image).await {
            images.insert(container, ContainerImage::from(&info));
        }
    }
    let inputs = ctx.resolver.inputs(pod, images).await;
    if let Err(error) = ctx.runtime.update_inputs(uid, inputs) {
        tracing::warn!(pod = %pod_ref(pod), %error, "cannot hand the re-adopted pod its inputs");
    }
}

/// Applies what Kubernetes lets change in a running pod: container images.
async fn update(ctx: &WorkerContext, uid: &str, pod: &Pod) -> Option<Duration> {
    let status = ctx.runtime.pod_status(uid)?;
    let changed = changed_images(pod, &status);
    if changed.is_empty() {
        return None;
    }
    let images = match ctx.resolver.images(pod).await {
        Ok((images, _)) => images,
        Err(failure) => {
            for (container, f) in &failure.images {
                ctx.status.set_waiting(
                    uid,
                    container,
                    Some(Waiting {
                        reason: f.reason.to_string(),
                        message: Some(f.message.clone()),
                    }),
                );
            }
            return failure
                .images
                .values()
                .filter_map(|f| f.retry_after)
                .min()
                .or(Some(CONFIG_RETRY));
        }
    };
    ctx.status.clear_waiting(uid);
    let inputs = ctx.resolver.inputs(pod, images).await;
    for container in &changed {
        ctx.status.event(
            pod,
            Some(container),
            false,
            "Killing",
            &format!("Container {container} definition changed, will be restarted"),
        );
    }
    match ctx.runtime.update_pod(pod.clone(), inputs).await {
        Ok(()) => None,
        Err(error) => {
            tracing::warn!(pod = %pod_ref(pod), %error, "cannot apply the new container images");
            Some(CONFIG_RETRY)
        }
    }
}

/// Stops one running container instance (its stop signal, SIGKILL after `grace`) so the
/// runtime restarts it per the pod's restart policy — what the kubelet does when a liveness
/// or startup probe fails. Nothing happens if `container_id` is no longer the running one.
pub async fn restart_container(
    runtime: &Runtime,
    uid: &str,
    name: &str,
    container_id: &str,
    grace: Duration,
) -> Result<(), String> {
    let current = runtime.pod_status(uid).and_then(|s| {
        s.container_statuses
            .into_iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.container_id)
    });
    if current.as_deref() != Some(container_id) {
        return Ok(());
    }
    let Some(pid) = runtime.container_pid(uid, name) else {
        return Ok(());
    };
    let pidfd = skiff_runtime::exits::pidfd_open(pid)
        .map_err(|e| format!("cannot open the container's process {pid}: {e}"))?;
    // The container may have been replaced between the two looks: check once more.
    if runtime.container_pid(uid, name) != Some(pid) {
        return Ok(());
    }
    let signal = |sig: i32| {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal on a pidfd we own, without siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    };
    signal(libc::SIGTERM);
    let grace = grace.min(skiff_runtime::durations::MAX_SPEC_DURATION);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if skiff_runtime::exits::pidfd_exited(&pidfd) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The container's init ends its PID namespace: every process in it goes.
    signal(libc::SIGKILL);
    Ok(())
}

/// Stops and removes the pod; confirms the deletion when `confirm`.
async fn terminate(ctx: &WorkerContext, uid: &str, pod: Option<&Pod>, confirm: bool) {
    let known = ctx.runtime.pod_status(uid).is_some();
    if known {
        let grace = pod.map(grace_period);
        if let Some(pod) = pod {
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                ctx.status.event(
                    pod,
                    Some(&c.name),
                    false,
                    "Killing",
                    &format!("Stopping container {}", c.name),
                );
            }
        }
        if let Err(error) = ctx.runtime.stop_pod(uid, grace).await {
            tracing::warn!(pod = uid, %error, "stopping the pod failed");
        }
        // The final phase goes up before the pod disappears.
        ctx.status.refresh(uid);
        if let Err(error) = ctx.runtime.remove_pod(uid).await {
            tracing::warn!(pod = uid, %error, "removing the pod failed");
        }
    }
    ctx.images.forget_pod(uid);
    if let Some(pod) = pod {
        ctx.index.remove(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            uid,
        );
    }
    ctx.status.forget(uid);
    if confirm {
        if let Some(pod) = pod {
            tracing::info!(pod = %pod_ref(pod), "pod stopped and removed; confirming the deletion");
            ctx.status.send(Upstream::Terminated(pod_ref(pod)));
        }
    } else {
        tracing::info!(
            pod = uid,
            "pod no longer bound to this node; stopped and removed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerStatus;

    fn pod(image: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": image}, {"name": "side", "image": "busybox:1"}]}
        }))
        .unwrap()
    }

    fn status(image: &str) -> PodStatus {
        PodStatus {
            container_statuses: Some(vec![
                ContainerStatus {
                    name: "c".into(),
                    image: image.into(),
                    ..Default::default()
                },
                ContainerStatus {
                    name: "side".into(),
                    image: "docker.io/library/busybox:1".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn image_changes_compare_normalised_names() {
        let running = status("docker.io/library/busybox:latest");
        assert!(changed_images(&pod("busybox"), &running).is_empty());
        assert!(changed_images(&pod("docker.io/library/busybox:latest"), &running).is_empty());
        assert_eq!(changed_images(&pod("busybox:1.36"), &running), ["c"]);
    }

    #[test]
    fn grace_period_prefers_the_deletion_and_has_a_floor() {
        let mut p = pod("busybox");
        assert_eq!(grace_period(&p), Duration::from_secs(30));
        p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(5);
        assert_eq!(grace_period(&p), Duration::from_secs(5));
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&p), MIN_GRACE);
        // A huge grace period is clamped: a deadline computed from it does not overflow.
        p.metadata.deletion_grace_period_seconds = Some(i64::MAX);
        let grace = grace_period(&p);
        assert_eq!(grace, skiff_runtime::durations::MAX_SPEC_DURATION);
        let _ = tokio::time::Instant::now() + grace;
    }
}
