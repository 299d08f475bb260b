//! The agent-facing API: [`Runtime`] opens the runtime and holds the pod table; the operations
//! live in `pod_create`, `pod_stop`, `pod_adopt` and `pod_logs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::{broadcast, mpsc, Semaphore};

use crate::cgroups::CgroupSetup;
use crate::config::RuntimeConfig;
use crate::context::{Inner, PodEntry, PodEvent, PodMsg, SandboxNetwork};
use crate::error::{Result, RuntimeError};
use crate::exits::ExitMonitor;
use crate::inputs::PodInputs;
use crate::logs::pump::{LogPump, LogSink};
use crate::pod_checks::validate_pod;
use crate::state::PodRecord;
use crate::worker::{Live, PodWorker};

/// Runs pods as containers through libcontainer. Cheap to clone; every method is safe to call
/// from async code (blocking work runs on blocking threads). Must be created inside a tokio
/// runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
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
        if let Some(limit) = config.pods_memory_limit {
            crate::cgroups::limit_pods_parent(&cgroups, &config.cgroup_parent, limit)?;
        }
        let exits = ExitMonitor::start_in(config.connector_netns.as_deref())?;
        let pump = LogPump::start()?;
        let (events, _) = broadcast::channel(1024);
        Ok(Runtime {
            inner: Arc::new(Inner {
                dns: std::sync::RwLock::new(config.dns.clone()),
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

    /// Sets the cluster DNS given to pods created from now on (kubelet's `clusterDNS` and
    /// `clusterDomain`; the agent learns them from the server when its session opens).
    pub fn set_cluster_dns(&self, dns: crate::dns::ClusterDns) {
        *self.inner.dns.write().unwrap_or_else(|p| p.into_inner()) = dns;
    }

    /// The cluster DNS given to new pods.
    pub fn cluster_dns(&self) -> crate::dns::ClusterDns {
        self.inner.cluster_dns()
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

    pub(crate) fn spawn_worker(
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

    pub(crate) fn entry<T>(&self, uid: &str, f: impl FnOnce(&PodEntry) -> T) -> Result<T> {
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

    /// The pod's status as upstream reports it (`ready` = running; probes are the agent's).
    pub fn pod_status(&self, uid: &str) -> Option<PodStatus> {
        self.entry(uid, |e| {
            crate::status::pod_status(&e.state.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .ok()
    }

    /// Every pod the runtime holds, with the status it observes (the kubelet's `/pods`).
    pub fn pod_objects(&self) -> Vec<Pod> {
        // Never wait for a pod's state while holding the table: copy the handles out first.
        let states: Vec<_> = {
            let table = self.inner.pods.lock().unwrap_or_else(|p| p.into_inner());
            table.values().map(|e| e.state.clone()).collect()
        };
        let mut pods: Vec<Pod> = states
            .iter()
            .map(|state| {
                let record = state.lock().unwrap_or_else(|p| p.into_inner());
                let mut pod = record.pod.clone();
                pod.status = Some(crate::status::pod_status(&record));
                pod
            })
            .collect();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
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

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}
