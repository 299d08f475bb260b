//! The agent's main loop: starts the local state, image store, runtime (re-adopting what a
//! previous agent left running), pod network and link; then reacts to desired pods from the
//! server, runtime changes, probe results and the node's own health, and reports upstream.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use skiff_image::{ImageStore, LogProgress, RegistryConfig};
use skiff_link::proto::service::ServiceNetwork;
use skiff_link::proto::{ClusterNetwork, NodeSummary, ObjectRef, PodChange};
use skiff_link::quic::{AgentLink, AgentLinkConfig, AgentLinkEvent, LinkError, NodesUpdate};
use skiff_link::session::DesiredPods;
use skiff_runtime::{BackoffConfig, PodEvent, Runtime, RuntimeConfig};
use tokio::sync::{broadcast, mpsc, OnceCell};

use crate::api_tunnel::{ApiTunnel, KubernetesService};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::images::ImagePuller;
use crate::inputs::{BoxFuture, InputResolver, ObjectSource};
use crate::network::{AgentNetwork, NodeNetwork};
use crate::node::{self, Machine, NodeFacts};
use crate::pods::{PodWorkers, WorkerContext};
use crate::policies::{NodePolicies, PolicyDataPath};
use crate::probes::{ProbeManager, ProbeNotice};
use crate::services::{NodeServices, ServiceDataPath};
use crate::state::{LocalState, ObjectKind};
use crate::status::{self, StatusManager, Upstream};
use crate::streams::{NodeStreams, PodIndex};

/// Meta key of the node's network facts in the local state.
const META_NETWORK: &str = "network";
/// Meta key of the boot id the pods were last run under.
const META_BOOT_ID: &str = "bootId";
/// Messages kept for the server while the link is not started yet.
const MAX_BUFFERED: usize = 10_000;
/// Time allowed for the server to answer an object request.
const OBJECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the agent keeps its files.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    /// `DIR/agent`.
    pub root: PathBuf,
    /// `DIR/agent/state.redb`: desired pods, revision, network facts, config objects.
    pub state: PathBuf,
    /// `DIR/agent/runtime`: the runtime's pod records, logs, volumes.
    pub runtime: PathBuf,
    /// `DIR/agent/net`: skiff-net's state.
    pub network: PathBuf,
    /// `DIR/agent/images`: archives imported at start.
    pub image_archives: PathBuf,
}

impl AgentPaths {
    /// The layout under `data_dir`.
    pub fn new(data_dir: &std::path::Path) -> Self {
        let root = data_dir.join("agent");
        AgentPaths {
            state: root.join("state.redb"),
            runtime: root.join("runtime"),
            network: root.join("net"),
            image_archives: root.join("images"),
            root,
        }
    }

    /// Creates the layout private to root, or checks it, before anything is written: `DIR`,
    /// `DIR/agent` and its directories 0700 (refused when group or others may write them,
    /// tightened when they may read them: the server's own check, `skiff_pki::secure_dir`),
    /// and `state.redb` (config maps, Secrets) 0600 before the database opens it.
    pub fn secure(&self, data_dir: &std::path::Path) -> Result<(), AgentError> {
        for dir in [
            data_dir,
            &self.root,
            &self.root.join("tls"),
            &self.runtime,
            &self.network,
            &self.image_archives,
        ] {
            skiff_pki::secure_dir(dir)?;
        }
        skiff_pki::secure_file(&self.state)?;
        Ok(())
    }
}

/// Reads config maps and secrets through the link, once it is up.
struct LinkObjects {
    link: Arc<OnceCell<Arc<AgentLink>>>,
}

impl ObjectSource for LinkObjects {
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        refs: &'a [(ObjectKind, String)],
    ) -> BoxFuture<'a, Result<Vec<Option<serde_json::Value>>, String>> {
        Box::pin(async move {
            let link = self
                .link
                .get()
                .ok_or_else(|| "the link is not started".to_string())?;
            let wanted: Vec<ObjectRef> = refs
                .iter()
                .map(|(kind, name)| ObjectRef {
                    kind: match kind {
                        ObjectKind::ConfigMap => skiff_link::proto::ObjectKind::ConfigMap,
                        ObjectKind::Secret => skiff_link::proto::ObjectKind::Secret,
                    },
                    namespace: namespace.to_string(),
                    name: name.clone(),
                })
                .collect();
            let results = link
                .get_objects(wanted, OBJECT_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            results
                .into_iter()
                .map(|r| match r.error {
                    Some(error) => Err(format!(
                        "{} {}: {error}",
                        kind_name(r.reference.kind),
                        r.reference.name
                    )),
                    None => Ok(r.object),
                })
                .collect()
        })
    }
}

fn kind_name(kind: skiff_link::proto::ObjectKind) -> &'static str {
    match kind {
        skiff_link::proto::ObjectKind::ConfigMap => "configmap",
        skiff_link::proto::ObjectKind::Secret => "secret",
    }
}

/// Whether `path` is a namespace file (a live bind mount of a namespace), not a leftover.
fn is_namespace(path: &std::path::Path) -> bool {
    const NSFS_MAGIC: u64 = 0x6e73_6673;
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type as u64 == NSFS_MAGIC)
}

/// The current boot's id.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// Runs the node agent until `shutdown` resolves. Containers keep running afterwards; the
/// next agent re-adopts them.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let mut agent = Agent::start(config).await?;
    let result = agent.run(shutdown).await;
    agent.stop().await;
    result
}

/// A started link and its events.
type StartedLink = (AgentLink, mpsc::Receiver<AgentLinkEvent>);

struct Agent {
    config: AgentConfig,
    state: Arc<LocalState>,
    runtime: Runtime,
    network: Arc<AgentNetwork>,
    images: Arc<ImagePuller>,
    status: Arc<StatusManager>,
    resolver: Arc<InputResolver>,
    workers: PodWorkers,
    index: Arc<PodIndex>,
    link: Arc<OnceCell<Arc<AgentLink>>>,
    link_start: Option<tokio::task::JoinHandle<Result<StartedLink, LinkError>>>,
    link_events: Option<mpsc::Receiver<AgentLinkEvent>>,
    upstream: mpsc::UnboundedReceiver<Upstream>,
    buffered: Vec<Upstream>,
    probe_notices: mpsc::UnboundedReceiver<ProbeNotice>,
    runtime_events: broadcast::Receiver<PodEvent>,
    node_ip: IpAddr,
    hostname: String,
    registered: Option<Node>,
    nodes: BTreeMap<String, NodeSummary>,
    cluster: Option<ClusterNetwork>,
    /// The cluster's Services and service network.
    services: NodeServices,
    /// The proxy and resolver, once the pod and service networks are both known.
    service_path: Option<ServiceDataPath>,
    /// The `kubernetes` Service through the link when the API is not reachable directly.
    api_tunnel: ApiTunnel,
    /// The cluster IP the node answers itself for the API tunnel (read by the data path).
    api_local: tokio::sync::watch::Receiver<Option<std::net::Ipv4Addr>>,
    /// The NetworkPolicy set of this node's pods.
    policies: NodePolicies,
    /// The policy enforcer, once the pod network is up and a set is known.
    policy_path: Option<PolicyDataPath>,
    /// Whether the machine rebooted since the last agent ran (the kernel lost the rules).
    rebooted: bool,
    /// Whether the desired state ever came from the server (pods the runtime holds that it
    /// does not list are only removed once it did).
    synced: bool,
    /// Pods the runtime holds that the desired state does not list (kept until synced).
    orphans: HashSet<String>,
}

impl Agent {
    async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        config.validate()?;
        let paths = AgentPaths::new(&config.data_dir);
        paths.secure(&config.data_dir)?;
        let state_path = paths.state.clone();
        let state = Arc::new(
            tokio::task::spawn_blocking(move || LocalState::open(&state_path))
                .await
                .map_err(|e| AgentError::State {
                    path: paths.state.clone(),
                    message: e.to_string(),
                })??,
        );
        let booted = boot_id();
        let previous_boot: Option<String> = state.meta(META_BOOT_ID)?;
        let rebooted = previous_boot.as_ref().is_some_and(|b| *b != booted);

        // Images: the store, and the archives of DIR/agent/images.
        let store = ImageStore::open(&skiff_image::store_root(&config.data_dir))?;
        {
            let store = store.clone();
            let dir = paths.image_archives.clone();
            let imported =
                tokio::task::spawn_blocking(move || store.import_directory(&dir, &LogProgress))
                    .await
                    .map_err(|e| AgentError::Machine {
                        what: "image archives",
                        reason: e.to_string(),
                    })??;
            for (file, result) in imported {
                if let Ok(images) = result {
                    tracing::info!(archive = %file.display(), images = images.len(), "imported image archive");
                }
            }
        }
        let registries = match &config.registry_config {
            Some(path) => RegistryConfig::load(path)?,
            None => RegistryConfig::default(),
        };
        // The link, once started, also brings images the server holds (image hand-over).
        let link = Arc::new(OnceCell::new());
        let images = Arc::new(
            ImagePuller::new(
                store,
                registries,
                config.timings.image_backoff_initial,
                config.timings.image_backoff_max,
            )
            .with_server(Arc::new(crate::image_transfer::LinkImages::new(
                link.clone(),
            ))),
        );

        // The node's address.
        let server_addr = skiff_link::quic::parse_server_url(&config.server)
            .ok()
            .and_then(|u| {
                use std::net::ToSocketAddrs;
                (u.host.as_str(), u.port).to_socket_addrs().ok()?.next()
            });
        let node_ip = match config.node_ip {
            Some(ip) => ip,
            None => node::detect_node_ip(server_addr).ok_or(AgentError::InvalidConfig {
                field: "node-ip",
                reason: "cannot find this machine's address; pass --node-ip".into(),
            })?,
        };
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();

        // Network and runtime.
        let network = AgentNetwork::new(&paths.network);
        let mut runtime_config = RuntimeConfig::new(&paths.runtime);
        runtime_config.cgroup_parent = config.cgroup_parent.clone();
        runtime_config.connector_netns = config.connector_netns.clone();
        // Pods as a whole may use what the node allocates to them, never the system reserve.
        let machine = Machine::read(&config.data_dir)?;
        let reserved = crate::config::SystemReserved::parse(&config.system_reserved)?;
        runtime_config.pods_memory_limit = Some(node::pods_memory_limit(&machine, &reserved));
        runtime_config.backoff = BackoffConfig {
            initial: config.timings.restart_backoff_initial,
            max: config.timings.restart_backoff_max,
            reset_after: config.timings.restart_backoff_max * 2,
        };
        let runtime = Runtime::open(runtime_config, network.clone())?;
        let services = NodeServices::load(&state)?;
        let policies = NodePolicies::load(&state)?;
        if let Some(set) = policies.set() {
            tracing::info!(pods = set.len(), "network policies from the local state");
        }
        if let Some(known) = services.network() {
            // Known from before: pods started before the server is reached get it too.
            runtime.set_cluster_dns(crate::services::cluster_dns(known));
        }
        let runtime_events = runtime.subscribe();
        if let Some(facts) = state.meta::<NodeNetwork>(META_NETWORK)? {
            // Known from before: bring the network up now, also without the server.
            if let Err(error) = network.configure(&facts).await {
                tracing::error!(%error, "cannot set the pod network up from the local state");
            }
        }
        let adopted = runtime.adopt_existing().await?;
        // After a reboot (or anything else that took the sandboxes' namespaces away) the pods
        // cannot continue where they were: remove them; the workers start them afresh.
        let stale: Vec<&String> = adopted
            .iter()
            .filter(|uid| {
                rebooted
                    || runtime
                        .netns_path(uid)
                        .is_some_and(|path| !is_namespace(&path))
            })
            .collect();
        if !stale.is_empty() {
            tracing::warn!(
                pods = stale.len(),
                rebooted,
                "pod sandboxes of a previous boot: starting these pods afresh from the local state"
            );
            for uid in stale {
                if let Err(error) = runtime.remove_pod(uid).await {
                    tracing::warn!(pod = %uid, %error, "cannot clean up a pod of a previous boot");
                }
            }
        } else if !adopted.is_empty() {
            tracing::info!(pods = adopted.len(), "re-adopted running pods");
        }
        state.set_meta(META_BOOT_ID, &booted)?;

        // Status, probes, inputs, workers.
        let (upstream_tx, upstream) = mpsc::unbounded_channel();
        let (probe_tx, probe_notices) = mpsc::unbounded_channel();
        let probes = Arc::new(ProbeManager::new(runtime.clone(), probe_tx));
        let status = Arc::new(StatusManager::new(
            runtime.clone(),
            probes,
            upstream_tx,
            &config.node_name,
        ));
        status.set_host_ips(vec![node_ip.to_string()]);
        let resolver = Arc::new(InputResolver::new(
            images.clone(),
            state.clone(),
            Arc::new(LinkObjects { link: link.clone() }),
            skiff_runtime::NodeFacts {
                node_name: config.node_name.clone(),
                host_ips: vec![node_ip.to_string()],
                allocatable_cpu_millis: 0,
                allocatable_memory_bytes: 0,
            },
        ));
        let index = Arc::new(PodIndex::default());
        let workers = PodWorkers::new(Arc::new(WorkerContext {
            runtime: runtime.clone(),
            resolver: resolver.clone(),
            images: images.clone(),
            status: status.clone(),
            index: index.clone(),
        }));

        let (api_local_tx, api_local) = tokio::sync::watch::channel(None);
        let api_tunnel = ApiTunnel::start(config.api_via_link, link.clone(), api_local_tx);
        api_tunnel.set_service(KubernetesService::from_services(&services.list()));
        let mut agent = Agent {
            synced: state.revision()?.is_some(),
            api_tunnel,
            api_local,
            config,
            state,
            runtime,
            network,
            images,
            status,
            resolver,
            workers,
            index,
            link,
            link_start: None,
            link_events: None,
            upstream,
            buffered: Vec::new(),
            probe_notices,
            runtime_events,
            node_ip,
            hostname,
            registered: None,
            nodes: BTreeMap::new(),
            cluster: None,
            services,
            service_path: None,
            policies,
            policy_path: None,
            rebooted,
            orphans: HashSet::new(),
        };

        // The pods of the local state, whatever the server says later.
        let desired = agent.state.pods()?;
        let wanted: HashSet<String> = desired
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        tracing::info!(pods = desired.len(), revision = ?agent.state.revision()?, "desired pods from the local state");
        for pod in desired {
            agent.workers.upsert(pod);
        }
        for uid in agent.runtime.pods() {
            if !wanted.contains(&uid) {
                if agent.synced {
                    tracing::info!(pod = %uid, "removing a pod the desired state does not list");
                    agent.workers.remove_orphan(&uid);
                } else {
                    agent.orphans.insert(uid);
                }
            }
        }
        // Services keep working from the local state, also without the server.
        agent.ensure_service_path().await;
        // So do the pods' policies (a restart must not open what a policy closed).
        agent.ensure_policy_path().await;
        agent.start_link().await?;
        Ok(agent)
    }

    /// The Node to register, from the machine as it is now.
    async fn node_object(&self) -> Result<Node, AgentError> {
        let data_dir = self.config.data_dir.clone();
        let machine = tokio::task::spawn_blocking(move || Machine::read(&data_dir))
            .await
            .map_err(|e| AgentError::Machine {
                what: "machine facts",
                reason: e.to_string(),
            })??;
        skiff_metrics::global()
            .agent
            .set_fs_free_bytes(u64::try_from(machine.storage_available).unwrap_or(0));
        let store = self.images.store().clone();
        let list = tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|e| AgentError::Machine {
                what: "image list",
                reason: e.to_string(),
            })?
            .unwrap_or_default();
        node::build(
            &self.config,
            &NodeFacts {
                machine,
                node_ip: self.node_ip,
                hostname: self.hostname.clone(),
                images: node::images(&list),
                network_ready: self.network.is_ready(),
            },
        )
    }

    /// Starts the link in the background (joining first if the node has no certificate).
    async fn start_link(&mut self) -> Result<(), AgentError> {
        let registration = self.node_object().await?;
        self.record_pressure_events(None, &registration);
        self.registered = Some(registration.clone());
        self.update_node_facts(&registration);
        let mut link_config = AgentLinkConfig::new(
            &self.config.server,
            self.config.token.clone(),
            AgentPaths::new(&self.config.data_dir).root,
            registration,
        );
        link_config.node_name = self.config.node_name.clone();
        link_config.resume_revision = self.state.revision()?;
        link_config.watch_nodes = true;
        link_config.watch_services = true;
        link_config.watch_policies = true;
        // Usage reports for the metrics API, and the node's endpoints for `nodes/proxy`.
        let last_usage = crate::usage::LastUsage::default();
        crate::usage::spawn_reporter(
            self.runtime.clone(),
            Arc::downgrade(&self.link),
            last_usage.clone(),
        );
        let endpoints = crate::node_http::NodeEndpoints::new(
            self.runtime.clone(),
            self.config.node_name.clone(),
            last_usage,
        );
        let streams = Arc::new(
            NodeStreams::new(self.runtime.clone(), self.index.clone())
                .with_node_http(endpoints.handler()),
        );
        self.link_start = Some(tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                match AgentLink::start(link_config.clone(), None, streams.clone()).await {
                    Ok(started) => return Ok(started),
                    Err(
                        error @ (LinkError::Connect { .. }
                        | LinkError::Resolve { .. }
                        | LinkError::Protocol(_)
                        | LinkError::Bind { .. }),
                    ) => {
                        tracing::warn!(%error, retry_in_s = delay.as_secs(), "cannot reach the server to join; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                    Err(error) => return Err(error),
                }
            }
        }));
        Ok(())
    }

    /// Gives the runtime's downward API the node's allocatable figures.
    fn update_node_facts(&self, node: &Node) {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let parse = |key: &str| {
            allocatable
                .and_then(|a| a.get(key))
                .and_then(|q| skiff_types::quantity::Quantity::parse(&q.0).ok())
        };
        let mut facts = self.resolver.node();
        facts.allocatable_cpu_millis = parse("cpu").map(|q| q.milli_value()).unwrap_or(0);
        facts.allocatable_memory_bytes = parse("memory").map(|q| q.value()).unwrap_or(0);
        self.resolver.set_node(facts);
    }

    async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        let mut node_timer = tokio::time::interval(self.config.timings.node_status_interval);
        node_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let persist_at = match (self.services.persist_at(), self.policies.persist_at()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let persist_tables = tokio::time::sleep_until(
                persist_at
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(tokio::time::Instant::now),
            );
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                started = async { self.link_start.as_mut().expect("guarded").await }, if self.link_start.is_some() => {
                    self.link_start = None;
                    match started {
                        Ok(Ok((link, events))) => {
                            tracing::info!(node = %self.config.node_name, server = %self.config.server, "node link started");
                            let link = Arc::new(link);
                            for message in self.buffered.drain(..) {
                                forward(&link, message);
                            }
                            let _ = self.link.set(link);
                            self.link_events = Some(events);
                        }
                        Ok(Err(error)) => return Err(error.into()),
                        Err(error) => {
                            return Err(AgentError::Machine { what: "the link", reason: error.to_string() })
                        }
                    }
                }
                event = async { self.link_events.as_mut().expect("guarded").recv().await }, if self.link_events.is_some() => {
                    match event {
                        Some(event) => self.on_link_event(event).await,
                        None => self.link_events = None,
                    }
                }
                message = self.upstream.recv() => {
                    if let Some(message) = message {
                        match self.link.get() {
                            Some(link) => forward(link, message),
                            None => {
                                if self.buffered.len() < MAX_BUFFERED {
                                    self.buffered.push(message);
                                }
                            }
                        }
                    }
                }
                event = self.runtime_events.recv() => match event {
                    Ok(PodEvent::Changed { uid }) => self.status.refresh(&uid),
                    Ok(PodEvent::Removed { .. }) => {}
                    Ok(PodEvent::WorkerPanicked { uid, message }) => {
                        self.status.event_for(&uid, None, true, "FailedSync", &format!("error syncing pod: the runtime's pod worker panicked: {message}; resuming"));
                        self.status.refresh(&uid);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.status.refresh_all(),
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                notice = self.probe_notices.recv() => {
                    if let Some(notice) = notice {
                        self.on_probe(notice);
                    }
                }
                _ = node_timer.tick() => {
                    self.refresh_node().await;
                    self.ensure_service_path().await;
                    self.ensure_policy_path().await;
                }
                _ = persist_tables, if persist_at.is_some() => {
                    self.services.persist(&self.state, false);
                    self.policies.persist(&self.state, false);
                }
            }
        }
    }

    async fn stop(&mut self) {
        self.services.persist(&self.state, true);
        self.policies.persist(&self.state, true);
        self.workers.abort_all();
        self.runtime.shutdown();
        if let Some(task) = self.link_start.take() {
            task.abort();
        }
        // Undelivered statuses go now if the link is up.
        while let Ok(message) = self.upstream.try_recv() {
            if let Some(link) = self.link.get() {
                forward(link, message);
            }
        }
        if let Some(link) = self.link.get() {
            link.close(Duration::from_secs(3)).await;
        }
        tracing::info!("agent stopped; containers keep running");
    }

    async fn on_link_event(&mut self, event: AgentLinkEvent) {
        match event {
            AgentLinkEvent::Connected { server, services } => {
                tracing::info!(%server, "connected to the server");
                self.api_tunnel.recheck();
                if let Some(network) = services {
                    self.on_service_network(network);
                    self.ensure_service_path().await;
                }
            }
            AgentLinkEvent::Registered { uid } => {
                tracing::info!(node = %self.config.node_name, %uid, "node registered");
            }
            AgentLinkEvent::Pods(desired) => self.on_desired(desired),
            AgentLinkEvent::Nodes(update) => self.on_nodes(update).await,
            AgentLinkEvent::Services(update) => {
                if self.services.apply(update) {
                    let list = self.services.list();
                    self.api_tunnel
                        .set_service(KubernetesService::from_services(&list));
                    if let Some(path) = &self.service_path {
                        path.update(list);
                    }
                }
            }
            AgentLinkEvent::Policies(set) => {
                let pods = set.len();
                if self.policies.apply(set) {
                    tracing::info!(pods, "network policies changed");
                    match (&self.policy_path, self.policies.set()) {
                        (Some(path), Some(set)) => path.update(set.to_vec()),
                        _ => self.ensure_policy_path().await,
                    }
                }
            }
            AgentLinkEvent::StatusFailures(failures) => {
                for f in failures {
                    tracing::warn!(pod = %f.pod, message = %f.message, "the server refused a pod status");
                }
            }
            AgentLinkEvent::CertificateRenewed => {}
            AgentLinkEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "lost the server; pods keep running");
            }
        }
    }

    fn on_desired(&mut self, desired: DesiredPods) {
        match desired {
            DesiredPods::Snapshot { revision, pods } => {
                if let Err(error) = self.state.replace_pods(&pods, revision) {
                    tracing::error!(%error, "cannot store the desired pods");
                }
                let wanted: HashSet<String> =
                    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                tracing::info!(pods = pods.len(), revision, "desired pods from the server");
                self.resolver.prune_objects(&pods);
                for pod in pods {
                    self.workers.upsert(pod);
                }
                let mut stale: Vec<String> = self.workers.uids();
                stale.extend(self.orphans.drain());
                stale.extend(self.runtime.pods());
                stale.sort();
                stale.dedup();
                for uid in stale {
                    if !wanted.contains(&uid) {
                        self.workers.remove_orphan(&uid);
                    }
                }
                self.synced = true;
            }
            DesiredPods::Changes { revision, changes } => {
                let mut upserts: Vec<Pod> = Vec::new();
                let mut removed: Vec<String> = Vec::new();
                for change in changes {
                    match change {
                        PodChange::Upsert { pod } => upserts.push(*pod),
                        PodChange::Removed { pod } => removed.push(pod.uid),
                    }
                }
                if let Err(error) = self.state.apply(&upserts, &removed, Some(revision)) {
                    tracing::error!(%error, "cannot store the desired pods");
                }
                for pod in upserts {
                    self.workers.upsert(pod);
                }
                for uid in removed {
                    self.workers.remove(&uid);
                }
            }
        }
    }

    /// The service network the server announced: new pods get the cluster resolver.
    fn on_service_network(&mut self, network: ServiceNetwork) {
        match self.services.set_network(&self.state, network.clone()) {
            Ok(true) => {
                tracing::info!(cluster_dns = %network.cluster_dns, domain = %network.cluster_domain, "cluster DNS for pods");
                self.runtime
                    .set_cluster_dns(crate::services::cluster_dns(&network));
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot store the service network"),
        }
    }

    /// Starts the Services data path (proxy rules, cluster DNS) once the pod network and the
    /// service network are both known, or again for a different service network.
    async fn ensure_service_path(&mut self) {
        let Some(network) = self.services.network().cloned() else {
            return;
        };
        if self
            .service_path
            .as_ref()
            .is_some_and(|path| *path.network() == network)
        {
            return;
        }
        let (Some(pod_network), IpAddr::V4(node_ip)) =
            (self.network.pod_network().await, self.node_ip)
        else {
            return;
        };
        // The old one first: it holds the resolver's socket.
        self.service_path = None;
        match ServiceDataPath::start(
            &pod_network,
            &network,
            &self.config.node_name,
            node_ip,
            self.services.list(),
            self.services.fresh() || self.rebooted,
            self.api_local.clone(),
        )
        .await
        {
            Ok(path) => self.service_path = Some(path),
            Err(error) => {
                tracing::error!(%error, "cannot start the service proxy and cluster DNS; retrying")
            }
        }
    }

    /// Starts the policy enforcer once the pod network is up and a set is known (from the
    /// server or, after a restart without it, from the local state).
    async fn ensure_policy_path(&mut self) {
        if self.policy_path.is_some() {
            return;
        }
        let Some(set) = self.policies.set().map(<[_]>::to_vec) else {
            return;
        };
        let Some(pod_network) = self.network.pod_network().await else {
            return;
        };
        match PolicyDataPath::start(&pod_network, set).await {
            Ok(path) => self.policy_path = Some(path),
            Err(error) => {
                tracing::error!(%error, "cannot start the network policy enforcer; retrying")
            }
        }
    }

    async fn on_nodes(&mut self, update: NodesUpdate) {
        if update.full {
            self.nodes.clear();
        }
        if update.network.is_some() {
            self.cluster = update.network;
        }
        for node in update.nodes {
            self.nodes.insert(node.name.clone(), node);
        }
        for name in update.removed {
            self.nodes.remove(&name);
        }
        // This node's network.
        let own = self.nodes.get(&self.config.node_name).cloned();
        if let (Some(own), Some(cluster), IpAddr::V4(node_ip)) = (own, &self.cluster, self.node_ip)
        {
            let pod_cidr = own
                .pod_cidrs
                .iter()
                .find_map(|c| c.parse::<ipnet::Ipv4Net>().ok());
            let cluster_cidr = cluster.cluster_cidr.parse::<ipnet::Ipv4Net>().ok();
            if let (Some(pod_cidr), Some(cluster_cidr)) = (pod_cidr, cluster_cidr) {
                let facts = NodeNetwork {
                    pod_cidr,
                    cluster_cidr,
                    backend: cluster.backend.clone(),
                    node_ip,
                };
                if self.network.current().await.as_ref() != Some(&facts) {
                    match self.network.configure(&facts).await {
                        Ok(()) => {
                            if let Err(error) = self.state.set_meta(META_NETWORK, &facts) {
                                tracing::warn!(%error, "cannot store the network facts");
                            }
                            let live: HashSet<String> = self.runtime.pods().into_iter().collect();
                            self.network.release_except(&live).await;
                            self.refresh_node().await;
                            self.ensure_service_path().await;
                            self.ensure_policy_path().await;
                        }
                        Err(error) => tracing::error!(%error, "cannot set the pod network up"),
                    }
                }
            }
        }
        // Routes to the other nodes' pods.
        let peers: Vec<skiff_net::Peer> = self
            .nodes
            .values()
            .filter(|n| n.name != self.config.node_name)
            .filter_map(|n| {
                Some(skiff_net::Peer {
                    name: n.name.clone(),
                    node_ip: n.internal_ip.as_deref()?.parse().ok()?,
                    pod_cidr: n.pod_cidrs.iter().find_map(|c| c.parse().ok())?,
                })
            })
            .collect();
        if let Err(error) = self.network.sync_peers(&peers).await {
            tracing::warn!(%error, "cannot update the routes to other nodes");
        }
    }

    fn on_probe(&mut self, notice: ProbeNotice) {
        match notice {
            ProbeNotice::Changed { uid } => self.status.refresh(&uid),
            ProbeNotice::Unhealthy {
                uid,
                container,
                kind,
                message,
            } => {
                self.status.event_for(
                    &uid,
                    Some(&container),
                    true,
                    "Unhealthy",
                    &format!("{} probe failed: {message}", kind.name()),
                );
            }
            ProbeNotice::Restart {
                uid,
                container,
                container_id,
                kind,
                grace_seconds,
            } => {
                self.status.event_for(
                    &uid,
                    Some(&container),
                    false,
                    "Killing",
                    &format!(
                        "Container {container} failed {} probe, will be restarted",
                        kind.name().to_lowercase()
                    ),
                );
                let runtime = self.runtime.clone();
                let grace = grace_seconds
                    .or_else(|| self.status.grace_seconds(&uid))
                    .map(skiff_runtime::durations::spec_seconds)
                    .unwrap_or(Duration::from_secs(30))
                    .max(Duration::from_secs(2));
                tokio::spawn(async move {
                    if let Err(error) = crate::pods::restart_container(
                        &runtime,
                        &uid,
                        &container,
                        &container_id,
                        grace,
                    )
                    .await
                    {
                        tracing::warn!(pod = %uid, %container, %error, "cannot restart the container");
                    }
                });
            }
        }
    }

    /// Records the kubelet's `NodeHasDiskPressure`-style events for pressure conditions that
    /// changed between `before` and `after`.
    fn record_pressure_events(&self, before: Option<&Node>, after: &Node) {
        for reason in node::pressure_events(before, after) {
            let message = format!("Node {} status is now: {reason}", self.config.node_name);
            tracing::info!(node = %self.config.node_name, %reason, "node condition changed");
            self.status
                .send(Upstream::Event(Box::new(status::node_event(
                    &self.config.node_name,
                    false,
                    reason,
                    &message,
                ))));
        }
    }

    /// Re-reads the machine and re-registers the node when something changed.
    async fn refresh_node(&mut self) {
        let node = match self.node_object().await {
            Ok(node) => node,
            Err(error) => {
                tracing::warn!(%error, "cannot read the node's state");
                return;
            }
        };
        if self.registered.as_ref() == Some(&node) {
            return;
        }
        self.record_pressure_events(self.registered.as_ref(), &node);
        self.update_node_facts(&node);
        self.registered = Some(node.clone());
        if let Some(link) = self.link.get() {
            link.update_registration(node);
        }
    }
}

fn forward(link: &AgentLink, message: Upstream) {
    match message {
        Upstream::Status(update) => link.report_statuses(vec![*update]),
        Upstream::Terminated(pod) => link.report_terminated(vec![pod]),
        Upstream::Event(event) => link.report_events(vec![*event]),
    }
}

/// What [`cleanup`] removed.
#[derive(Debug, Clone, Default)]
pub struct CleanupSummary {
    /// Pods stopped and removed.
    pub pods: usize,
    /// Network interfaces deleted.
    pub links: Vec<String>,
    /// Peer routes deleted.
    pub routes: usize,
}

/// `skiff agent --cleanup`: stops and removes every pod of the node (containers, mounts,
/// cgroups, namespaces) and everything skiff created in its network. The local state is kept:
/// an agent started later brings the desired pods back.
pub async fn cleanup(config: &AgentConfig) -> Result<CleanupSummary, AgentError> {
    let paths = AgentPaths::new(&config.data_dir);
    let mut summary = CleanupSummary::default();
    if paths.runtime.exists() {
        let mut runtime_config = RuntimeConfig::new(&paths.runtime);
        runtime_config.cgroup_parent = config.cgroup_parent.clone();
        runtime_config.connector_netns = config.connector_netns.clone();
        let runtime = Runtime::open(runtime_config, Arc::new(skiff_runtime::LoopbackOnly))?;
        for uid in runtime.adopt_existing().await? {
            if let Err(error) = runtime.stop_pod(&uid, Some(Duration::from_secs(2))).await {
                tracing::warn!(pod = %uid, %error, "cannot stop a pod");
            }
            match runtime.remove_pod(&uid).await {
                Ok(()) => summary.pods += 1,
                Err(error) => tracing::warn!(pod = %uid, %error, "cannot remove a pod"),
            }
        }
        runtime.shutdown();
    }
    let report =
        skiff_net::PodNetwork::cleanup_all(&skiff_net::CleanupConfig::new(&paths.network)).await?;
    summary.links = report.links;
    summary.routes = report.routes;
    Ok(summary)
}
