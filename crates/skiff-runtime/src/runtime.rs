//! The agent-facing API: [`Runtime`] runs pods, reports their status, streams logs, execs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use crate::cgroups::CgroupSetup;
use crate::config::RuntimeConfig;
use crate::error::{Result, RuntimeError};
use crate::exits::{ExitMonitor, ExitStatus};
use crate::inputs::PodInputs;
use crate::logs::pump::{open_fifo_reader, LogPump, LogSink};
use crate::logs::reader::LogOptions;
use crate::logs::{LogRecord, Stream};
use crate::sandbox::NamespaceRequest;
use crate::spec::fieldref::PodFacts;
use crate::spec::resources::pod_cgroup_resources;
use crate::state::{ContainerRecord, PodPaths, PodRecord, SandboxRecord};
use crate::worker::{Live, PodMsg, PodWorker};
use crate::{dns, sandbox, volumes};

/// A boxed future, for [`SandboxNetwork`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Sets up and tears down the network of a pod sandbox (the agent implements it with skiff-net).
pub trait SandboxNetwork: Send + Sync + 'static {
    /// Configures the pod's network namespace (`netns` is its bind-mounted file) before any
    /// container starts; returns the pod's IPs (they go into /etc/hosts and the status).
    fn setup<'a>(
        &'a self,
        pod: &'a Pod,
        netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<Vec<String>, String>>;
    /// Releases what `setup` configured. Called on removal, also after a failed or interrupted
    /// setup, so it must be idempotent.
    fn teardown<'a>(
        &'a self,
        pod: &'a Pod,
        netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// No network besides `lo` (tests, or pods that need no connectivity).
pub struct LoopbackOnly;

impl SandboxNetwork for LoopbackOnly {
    fn setup<'a>(
        &'a self,
        _pod: &'a Pod,
        _netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<Vec<String>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn teardown<'a>(
        &'a self,
        _pod: &'a Pod,
        _netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Notifications for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// Something in the pod's status may have changed: read [`Runtime::pod_status`].
    Changed {
        /// Pod UID.
        uid: String,
    },
    /// The pod was removed.
    Removed {
        /// Pod UID.
        uid: String,
    },
}

pub(crate) struct PodEntry {
    pub tx: mpsc::UnboundedSender<PodMsg>,
    pub state: Arc<Mutex<PodRecord>>,
    pub sinks: Arc<Mutex<HashMap<String, Arc<LogSink>>>>,
}

/// Shared state of the runtime.
pub(crate) struct Inner {
    pub config: RuntimeConfig,
    pub cgroups: CgroupSetup,
    pub swap_accounting: bool,
    pub exits: ExitMonitor,
    pub pump: LogPump,
    pub network: Arc<dyn SandboxNetwork>,
    pub libcontainer_root: PathBuf,
    pub pods: Mutex<HashMap<String, PodEntry>>,
    pub events: broadcast::Sender<PodEvent>,
    /// Bounds concurrent container launches (each forks a launcher).
    pub launches: Arc<Semaphore>,
    /// Compiled seccomp programs.
    pub seccomp: crate::seccomp_filter::Cache,
}

impl Inner {
    /// The pod's cgroup path.
    pub fn pod_cgroup(&self, uid: &str) -> PathBuf {
        self.config.cgroup_parent.join(format!("pod{uid}"))
    }

    /// Drops the pod from the table.
    pub fn forget(&self, uid: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
    }

    fn paths(&self, uid: &str) -> PodPaths {
        PodPaths::new(&self.config.root, uid)
    }
}

/// Runs pods as containers through libcontainer. Cheap to clone; every method is safe to call
/// from async code (blocking work runs on blocking threads). Must be created inside a tokio
/// runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid != "."
        && uid != ".."
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks what the runtime needs from a pod before anything is created.
fn validate_pod(pod: &Pod, inputs: &PodInputs) -> Result<String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !valid_uid(&uid) {
        return Err(RuntimeError::invalid(
            "metadata.uid",
            format!("{uid:?} is not a valid UID"),
        ));
    }
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(RuntimeError::invalid("metadata.name", "required"));
    }
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| RuntimeError::invalid("spec", "required"))?;
    if spec.containers.is_empty() {
        return Err(RuntimeError::invalid(
            "spec.containers",
            "at least one container is required",
        ));
    }
    if spec.share_process_namespace == Some(true) {
        return Err(RuntimeError::unsupported(
            "spec.shareProcessNamespace",
            "a shared PID namespace needs a long-lived pause process, which skiff does not run",
        ));
    }
    if spec.host_users == Some(false) {
        return Err(RuntimeError::unsupported(
            "spec.hostUsers",
            "user namespaces are not supported",
        ));
    }
    if let Some(policy) = spec.restart_policy.as_deref() {
        if !matches!(policy, "Always" | "OnFailure" | "Never") {
            return Err(RuntimeError::invalid(
                "spec.restartPolicy",
                format!("unknown policy {policy:?}"),
            ));
        }
    }
    let mut names = std::collections::HashSet::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (c, format!("spec.initContainers[{i}]")))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (c, format!("spec.containers[{i}]"))),
        );
    for (c, field) in all {
        if !valid_dns_label(&c.name) {
            return Err(RuntimeError::invalid(
                format!("{field}.name"),
                format!("{:?} is not a valid container name (DNS label)", c.name),
            ));
        }
        if !names.insert(c.name.clone()) {
            return Err(RuntimeError::invalid(
                format!("{field}.name"),
                format!("duplicate container name {:?}", c.name),
            ));
        }
        if !inputs.images.contains_key(&c.name) {
            return Err(RuntimeError::MissingInput {
                kind: "image",
                name: c.image.clone().unwrap_or_default(),
                field: format!("{field}.image"),
            });
        }
        if let Some(p) = c.restart_policy.as_deref() {
            if p != "Always" || !field.starts_with("spec.initContainers") {
                return Err(RuntimeError::invalid(
                    format!("{field}.restartPolicy"),
                    "only init containers may set restartPolicy, and only to Always",
                ));
            }
        }
    }
    volumes::validate(pod)?;
    Ok(uid)
}

/// Creates the sandbox of a pod (record, cgroup, namespaces, network, files, volumes).
fn create_pod(inner: &Inner, pod: &Pod, inputs: &PodInputs, paths: &PodPaths) -> Result<PodRecord> {
    let mut phases = crate::timing::Phases::new("sandbox");
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&paths.dir)
            .map_err(|e| RuntimeError::io("create", &paths.dir, e))?;
    }
    let (hostname, _) = dns::hostname(pod, &inner.config.dns.domain);
    let mut record = PodRecord {
        pod: pod.clone(),
        images: inputs.images.clone(),
        created_at: Timestamp::now(),
        start_time: None,
        pod_ips: Vec::new(),
        host_ips: inputs.node.host_ips.clone(),
        sandbox: SandboxRecord {
            hostname: hostname.clone(),
            ..Default::default()
        },
        cgroup: inner.pod_cgroup(&uid),
        containers: pod
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
            })
            .map(|c| (c.name.clone(), ContainerRecord::default()))
            .collect(),
        terminating: None,
        terminal: false,
        removing: false,
        failed: false,
    };
    // Saved first, so an interrupted creation can be undone after a restart.
    record.save(paths)?;
    phases.mark("record");

    let resources = pod_cgroup_resources(pod, inner.config.pod_pids_limit)?;
    crate::cgroups::create_pod(&inner.cgroups, &record.cgroup, &resources)?;
    phases.mark("cgroup");

    record.sandbox.namespaces = sandbox::create_namespaces(
        &paths.dir,
        &hostname,
        NamespaceRequest {
            net: !host_network,
            ipc: !host_ipc,
            uts: !host_network,
        },
    )?;
    phases.mark("namespaces");
    if !host_ipc {
        record.sandbox.shm = Some(sandbox::create_shm(&paths.dir, inner.config.shm_size)?);
    }
    record.save(paths)?;
    phases.mark("shm");

    if let Some(netns) = record.sandbox.namespaces.net.clone() {
        record.sandbox.network_ready = true;
        record.save(paths)?;
        // We run on a blocking thread of the tokio runtime: wait for the async setup here.
        record.pod_ips = tokio::runtime::Handle::current()
            .block_on(inner.network.setup(pod, &netns))
            .map_err(|message| RuntimeError::Network {
                pod: uid.clone(),
                message,
            })?;
    } else {
        record.pod_ips = record.host_ips.clone();
    }

    phases.mark("network");
    // /etc files.
    let etc = paths.dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| RuntimeError::io("create", &etc, e))?;
    let hosts = if host_network {
        dns::host_network_hosts_file(pod)
    } else {
        dns::hosts_file(pod, &record.pod_ips, &inner.config.dns.domain)
    };
    crate::fsutil::write_atomic(&paths.hosts(), hosts.as_bytes(), 0o644)?;
    let resolv = dns::resolv_conf(pod, &inner.config.dns)?;
    crate::fsutil::write_atomic(&paths.resolv(), resolv.as_bytes(), 0o644)?;
    let node_hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = if host_network {
        node_hostname
    } else {
        hostname
    };
    crate::fsutil::write_atomic(&paths.hostname(), format!("{shown}\n").as_bytes(), 0o644)?;

    // Volumes.
    let mut node = inputs.node.clone();
    if node.host_ips.is_empty() {
        node.host_ips = record.host_ips.clone();
    }
    let facts = PodFacts {
        node: Some(&node),
        pod_ips: &record.pod_ips,
    };
    volumes::prepare(&volumes::VolumeContext {
        pod,
        inputs,
        facts: &facts,
        root: &paths.volumes(),
        pod_memory_limit: resources.memory_limit,
    })?;

    phases.mark("files+volumes");
    record.start_time = Some(Timestamp::now());
    record.save(paths)?;
    phases.mark("save");
    phases.log(&uid);
    Ok(record)
}

/// Removes everything of a pod (containers, network, volumes, namespaces, cgroups, files).
/// Works on partial pods; idempotent.
pub(crate) fn destroy_pod(
    inner: &Inner,
    paths: &PodPaths,
    record: Option<&PodRecord>,
) -> Result<()> {
    let uid = paths
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    let loaded;
    let record = match record {
        Some(r) => Some(r),
        None => {
            loaded = PodRecord::load(paths).ok();
            loaded.as_ref()
        }
    };
    let mut first_error: Option<RuntimeError> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!(pod = %uid, error = %e, "cleanup step failed");
            first_error.get_or_insert(e);
        }
    };
    let mut phases = crate::timing::Phases::new("pod removal");
    // Anything still running in the pod's cgroup is killed.
    let pod_cgroup = inner.pod_cgroup(&uid);
    for pid in crate::cgroups::pids(&inner.cgroups, &pod_cgroup) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if let Some(r) = record {
        for c in r.containers.values() {
            let ids = c
                .instance
                .iter()
                .map(|i| i.id.clone())
                .chain(c.creating.clone());
            for id in ids {
                let dir = inner.libcontainer_root.join(&id);
                if dir.exists() {
                    let _ = libcontainer::container::Container::load(dir.clone())
                        .and_then(|mut lc| lc.delete(true));
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        if r.sandbox.network_ready {
            if let Some(netns) = &r.sandbox.namespaces.net {
                let done = match tokio::runtime::Handle::try_current() {
                    Ok(handle) => handle.block_on(inner.network.teardown(&r.pod, netns)),
                    Err(_) => Err("no tokio runtime to run the network teardown on".to_owned()),
                };
                keep(done.map_err(|message| RuntimeError::Network {
                    pod: uid.clone(),
                    message,
                }));
            }
        }
    }
    phases.mark("containers+network");
    // Container root file systems, volumes, shm, namespace files: every mount under the pod.
    keep(crate::fsutil::unmount_all_under(
        &paths.dir.join("containers"),
    ));
    keep(volumes::teardown(&paths.volumes()));
    phases.mark("rootfs+volumes");
    keep(sandbox::destroy_namespaces(&paths.dir));
    keep(crate::fsutil::unmount_all_under(&paths.dir));
    phases.mark("namespaces+shm");
    keep(crate::cgroups::remove(&inner.cgroups, &pod_cgroup));
    phases.mark("cgroups");
    if paths.dir.exists() {
        keep(
            std::fs::remove_dir_all(&paths.dir)
                .map_err(|e| RuntimeError::io("remove", &paths.dir, e)),
        );
    }
    phases.mark("files");
    phases.log(&uid);
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Runtime {
    /// Opens the runtime: creates the state directories, detects cgroups, starts the exit
    /// monitor and the log pump. Pods left by a previous runtime are not touched until
    /// [`Runtime::adopt_existing`].
    pub fn open(config: RuntimeConfig, network: Arc<dyn SandboxNetwork>) -> Result<Runtime> {
        for dir in [
            config.root.clone(),
            config.root.join("pods"),
            config.root.join("libcontainer"),
        ] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| RuntimeError::io("create", &dir, e))?;
        }
        let libcontainer_root = std::fs::canonicalize(config.root.join("libcontainer"))
            .map_err(|e| RuntimeError::io("canonicalize", config.root.join("libcontainer"), e))?;
        let cgroups = CgroupSetup::detect()?;
        let swap_accounting = cgroups.has_swap_accounting();
        let exits = ExitMonitor::start_in(config.connector_netns.as_deref())?;
        let pump = LogPump::start()?;
        let (events, _) = broadcast::channel(1024);
        Ok(Runtime {
            inner: Arc::new(Inner {
                config,
                cgroups,
                swap_accounting,
                exits,
                pump,
                network,
                libcontainer_root,
                pods: Mutex::new(HashMap::new()),
                events,
                launches: Arc::new(Semaphore::new(8)),
                seccomp: Default::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The detected cgroup setup.
    pub fn cgroups(&self) -> &CgroupSetup {
        &self.inner.cgroups
    }

    /// Whether container exit codes can be observed (the kernel proc connector is available).
    pub fn has_exit_codes(&self) -> bool {
        self.inner.exits.has_exit_codes()
    }

    fn spawn_worker(
        &self,
        uid: String,
        record: PodRecord,
        inputs: PodInputs,
        live: HashMap<String, Live>,
        tx: mpsc::UnboundedSender<PodMsg>,
        rx: mpsc::UnboundedReceiver<PodMsg>,
    ) {
        let state = Arc::new(Mutex::new(record));
        let sinks: HashMap<String, Arc<LogSink>> = live
            .iter()
            .filter_map(|(n, l)| l.sink.clone().map(|s| (n.clone(), s)))
            .collect();
        let sinks = Arc::new(Mutex::new(sinks));
        self.inner
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                uid.clone(),
                PodEntry {
                    tx: tx.clone(),
                    state: Arc::clone(&state),
                    sinks: Arc::clone(&sinks),
                },
            );
        let worker = PodWorker {
            inner: Arc::clone(&self.inner),
            paths: self.inner.paths(&uid),
            uid,
            state,
            sinks,
            rx,
            tx,
            inputs,
            live,
            regenerate: Default::default(),
            signaled: Default::default(),
            stop_waiters: Vec::new(),
            remove_waiters: Vec::new(),
            done: false,
        };
        tokio::spawn(worker.run());
    }

    /// Runs a pod: validates it, creates its sandbox (cgroup, namespaces, network, /etc files,
    /// volumes) and returns; its containers are then started in the background (init
    /// containers first). Errors leave nothing behind.
    pub async fn run_pod(&self, pod: Pod, inputs: PodInputs) -> Result<()> {
        let uid = validate_pod(&pod, &inputs)?;
        let paths = self.inner.paths(&uid);
        {
            let pods = self.inner.pods.lock().unwrap_or_else(|p| p.into_inner());
            if pods.contains_key(&uid) || paths.dir.exists() {
                return Err(RuntimeError::PodExists(uid));
            }
        }
        let inner = Arc::clone(&self.inner);
        let (p, i, pa) = (pod.clone(), inputs.clone(), paths.clone());
        let created = tokio::task::spawn_blocking(move || {
            let r = create_pod(&inner, &p, &i, &pa);
            if r.is_err() {
                if let Err(e) = destroy_pod(&inner, &pa, None) {
                    tracing::warn!(error = %e, "cleanup after a failed pod creation");
                }
            }
            r
        })
        .await
        .map_err(|e| RuntimeError::Container {
            container: "sandbox".into(),
            message: format!("task failed: {e}"),
        })??;
        tracing::info!(pod = %uid, name = ?pod.metadata.name, "pod sandbox ready");
        let (tx, rx) = mpsc::unbounded_channel();
        self.spawn_worker(uid.clone(), created, inputs, HashMap::new(), tx, rx);
        let _ = self.inner.events.send(PodEvent::Changed { uid });
        Ok(())
    }

    fn entry<T>(&self, uid: &str, f: impl FnOnce(&PodEntry) -> T) -> Result<T> {
        let pods = self.inner.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.get(uid)
            .map(f)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_owned()))
    }

    /// Gives the pod new inputs (e.g. after re-adoption, or when a referenced config map
    /// appeared); containers started from now on use them.
    pub fn update_inputs(&self, uid: &str, inputs: PodInputs) -> Result<()> {
        let tx = self.entry(uid, |e| e.tx.clone())?;
        tx.send(PodMsg::Inputs(inputs))
            .map_err(|_| RuntimeError::ShutDown)
    }

    /// Takes a new spec of a running pod whose container images changed (the only change
    /// Kubernetes allows to containers): each app container with a new image is stopped (stop
    /// signal, SIGKILL after the grace period) and started again from the new image, whatever
    /// the restart policy; its restart count goes up by one. `inputs` must hold every
    /// container's image, as for [`Runtime::run_pod`].
    pub async fn update_pod(&self, pod: Pod, inputs: PodInputs) -> Result<()> {
        let uid = validate_pod(&pod, &inputs)?;
        let tx = self.entry(&uid, |e| e.tx.clone())?;
        tx.send(PodMsg::Update {
            pod: Box::new(pod),
            inputs,
        })
        .map_err(|_| RuntimeError::ShutDown)
    }

    /// Stops every container of the pod: the stop signal (image StopSignal or SIGTERM), then
    /// SIGKILL after `grace` (default: the pod's terminationGracePeriodSeconds, else the
    /// configured default). Returns when all containers have ended. The pod's phase is final.
    pub async fn stop_pod(&self, uid: &str, grace: Option<Duration>) -> Result<()> {
        let (tx, pod_grace) = self.entry(uid, |e| {
            let r = e.state.lock().unwrap_or_else(|p| p.into_inner());
            let g = r
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .map(|s| Duration::from_secs(s.max(0) as u64));
            (e.tx.clone(), g)
        })?;
        let grace = grace
            .or(pod_grace)
            .unwrap_or(self.inner.config.default_grace);
        let (done, wait) = oneshot::channel();
        tx.send(PodMsg::Stop { grace, done })
            .map_err(|_| RuntimeError::ShutDown)?;
        wait.await.map_err(|_| RuntimeError::ShutDown)
    }

    /// Removes the pod: kills what still runs, then deletes containers, network, volumes,
    /// namespaces, cgroups and files (logs included). Stop it gracefully first with
    /// [`Runtime::stop_pod`].
    pub async fn remove_pod(&self, uid: &str) -> Result<()> {
        let tx = self.entry(uid, |e| e.tx.clone())?;
        let (done, wait) = oneshot::channel();
        tx.send(PodMsg::Remove { done })
            .map_err(|_| RuntimeError::ShutDown)?;
        wait.await.map_err(|_| RuntimeError::ShutDown)?
    }

    /// The pod's status as upstream reports it (`ready` = running; probes are the agent's).
    pub fn pod_status(&self, uid: &str) -> Option<PodStatus> {
        self.entry(uid, |e| {
            crate::status::pod_status(&e.state.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .ok()
    }

    /// UIDs of the pods the runtime holds.
    pub fn pods(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Change notifications.
    pub fn subscribe(&self) -> broadcast::Receiver<PodEvent> {
        self.inner.events.subscribe()
    }

    /// Host pid of a running container's init process.
    pub fn container_pid(&self, uid: &str, container: &str) -> Option<i32> {
        self.entry(uid, |e| {
            let r = e.state.lock().unwrap_or_else(|p| p.into_inner());
            r.containers
                .get(container)
                .and_then(|c| c.instance.as_ref())
                .filter(|i| i.is_running())
                .and_then(|i| i.pid)
        })
        .ok()
        .flatten()
    }

    /// The pod's network namespace file (for skiff-net), if it has its own.
    pub fn netns_path(&self, uid: &str) -> Option<PathBuf> {
        self.entry(uid, |e| {
            e.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sandbox
                .namespaces
                .net
                .clone()
        })
        .ok()
        .flatten()
    }

    /// The pod's cgroup path (inside each hierarchy).
    pub fn pod_cgroup(&self, uid: &str) -> PathBuf {
        self.inner.pod_cgroup(uid)
    }

    /// The pod's state directory.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.inner.paths(uid).dir
    }

    /// Ends the pod workers without touching the containers (they keep running; a new
    /// runtime re-adopts them).
    pub fn shutdown(&self) {
        let pods = self.inner.pods.lock().unwrap_or_else(|p| p.into_inner());
        for e in pods.values() {
            let _ = e.tx.send(PodMsg::Shutdown);
        }
    }

    /// Re-adopts the pods a previous runtime left on disk: running containers are watched
    /// again (same processes, same restart counts, logs continue), containers that ended in
    /// the meantime are reported with an unknown exit status and restarted per policy, and
    /// half-created or half-removed pods are cleaned up. Returns the UIDs now held.
    pub async fn adopt_existing(&self) -> Result<Vec<String>> {
        let dir = self.inner.config.root.join("pods");
        let entries = std::fs::read_dir(&dir).map_err(|e| RuntimeError::io("read dir", &dir, e))?;
        let mut adopted = Vec::new();
        for entry in entries.flatten() {
            let Some(uid) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if self
                .inner
                .pods
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&uid)
            {
                continue;
            }
            let paths = self.inner.paths(&uid);
            let record = match PodRecord::load(&paths) {
                Ok(r) if r.start_time.is_some() => r,
                other => {
                    // Creation never finished (or the record is unreadable): undo it.
                    if let Err(e) = &other {
                        tracing::warn!(pod = %uid, error = %e, "unusable pod record; removing the pod's leftovers");
                    }
                    let inner = Arc::clone(&self.inner);
                    let p = paths.clone();
                    let r = other.ok();
                    let _ =
                        tokio::task::spawn_blocking(move || destroy_pod(&inner, &p, r.as_ref()))
                            .await;
                    continue;
                }
            };
            let mut record = record;
            let interrupted: Vec<(String, String)> = record
                .containers
                .iter()
                .filter_map(|(n, c)| c.creating.clone().map(|id| (n.clone(), id)))
                .collect();
            if !interrupted.is_empty() {
                // The previous runtime died while creating these: remove what exists of them.
                let inner = Arc::clone(&self.inner);
                let cgroup = record.cgroup.clone();
                let ids: Vec<String> = interrupted.iter().map(|(_, id)| id.clone()).collect();
                let _ = tokio::task::spawn_blocking(move || {
                    for id in ids {
                        crate::instance::discard(&inner, &cgroup.join(&id), &id);
                    }
                })
                .await;
                for (name, _) in &interrupted {
                    if let Some(c) = record.containers.get_mut(name) {
                        c.creating = None;
                    }
                }
                record.save(&paths)?;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let mut live = HashMap::new();
            let mut lost = Vec::new();
            for (name, c) in &record.containers {
                let Some(inst) = c.instance.as_ref().filter(|i| i.terminated.is_none()) else {
                    continue;
                };
                match crate::worker::reattach(inst) {
                    Some(pidfd) => {
                        let sink = self.reattach_logs(&paths, name, inst.number);
                        let watch_fd = pidfd
                            .try_clone()
                            .map_err(|e| RuntimeError::io("dup", "pidfd", e))?;
                        let (t, n, id) = (tx.clone(), name.clone(), inst.id.clone());
                        self.inner.exits.watch(
                            inst.pid.unwrap_or(0),
                            watch_fd,
                            Box::new(move |status| {
                                let _ = t.send(PodMsg::Exited {
                                    name: n,
                                    id,
                                    status,
                                });
                            }),
                        )?;
                        live.insert(
                            name.clone(),
                            Live {
                                id: inst.id.clone(),
                                pidfd: Some(pidfd),
                                sink,
                            },
                        );
                    }
                    None => lost.push((name.clone(), inst.id.clone())),
                }
            }
            for (name, id) in lost {
                // Finished through the worker, so cleanup and restart follow the usual path.
                live.insert(
                    name.clone(),
                    Live {
                        id: id.clone(),
                        pidfd: None,
                        sink: None,
                    },
                );
                let _ = tx.send(PodMsg::Exited {
                    name,
                    id,
                    status: ExitStatus::Unknown,
                });
            }
            let running = live.values().filter(|l| l.pidfd.is_some()).count();
            tracing::info!(pod = %uid, running, "re-adopted pod");
            self.spawn_worker(uid.clone(), record, PodInputs::default(), live, tx, rx);
            adopted.push(uid);
        }
        adopted.sort();
        Ok(adopted)
    }

    fn reattach_logs(&self, paths: &PodPaths, name: &str, number: u32) -> Option<Arc<LogSink>> {
        let dir = paths.instance(name, number);
        let sink = LogSink::open(&paths.log(name, number), self.inner.config.logs.rotation).ok()?;
        for (file, stream) in [("stdout", Stream::Stdout), ("stderr", Stream::Stderr)] {
            match open_fifo_reader(&dir.join(file)) {
                Ok(fd) => {
                    if let Err(e) = self.inner.pump.add(fd, stream, &sink) {
                        tracing::warn!(error = %e, "log fifo not re-attached");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "log fifo not re-opened"),
            }
        }
        Some(sink)
    }

    /// Reads a container's logs (the current instance, or the previous one).
    pub async fn logs(&self, uid: &str, container: &str, opts: LogOptions) -> Result<LogStream> {
        let (path, sink) = self.entry(uid, |e| {
            let r = e.state.lock().unwrap_or_else(|p| p.into_inner());
            let c = r
                .containers
                .get(container)
                .ok_or_else(|| RuntimeError::ContainerNotFound {
                    pod: uid.to_owned(),
                    container: container.to_owned(),
                })?;
            let current = c.instance.as_ref().map(|i| i.number);
            let number = match (opts.previous, current) {
                (false, Some(n)) => n,
                (true, Some(n)) if n > 0 => n - 1,
                (true, _) => {
                    return Err(RuntimeError::LogsNotFound {
                        pod: uid.to_owned(),
                        container: container.to_owned(),
                        message: "previous terminated container not found".into(),
                    })
                }
                (false, None) => {
                    return Err(RuntimeError::LogsNotFound {
                        pod: uid.to_owned(),
                        container: container.to_owned(),
                        message: "container has not started".into(),
                    })
                }
            };
            let path = self.inner.paths(uid).log(container, number);
            let sink = if opts.previous {
                None
            } else {
                e.sinks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(container)
                    .cloned()
            };
            Ok((path, sink))
        })??;
        let (tx, rx) = mpsc::channel(256);
        tokio::task::spawn_blocking(move || {
            crate::logs::reader::read(&path, sink, &opts, &mut |rec| tx.blocking_send(rec).is_ok());
        });
        Ok(LogStream { rx })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

/// A stream of log records.
pub struct LogStream {
    rx: mpsc::Receiver<LogRecord>,
}

impl LogStream {
    /// The next record; `None` at the end (or, when following, once the instance ended and
    /// everything was read).
    pub async fn next(&mut self) -> Option<LogRecord> {
        self.rx.recv().await
    }

    /// Reads everything as `kubectl logs` would print it.
    pub async fn collect(mut self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(r) = self.next().await {
            out.extend(r.render(timestamps));
        }
        out
    }
}
