//! Hollow nodes (like Kubernetes' kubemark): many real link sessions from one process, each a
//! node with its own identity (credentials persisted per node, so restarts do not re-join),
//! registering, heartbeating and acknowledging the pods bound to it as Running — without
//! running any container. The load tool behind `skiff debug hollow-nodes`.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStatus, Node, NodeAddress, NodeStatus,
    NodeSystemInfo, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::{watch, Semaphore};

use crate::proto::{PodChange, PodRef, PodStatusUpdate};
use crate::quic::{AgentLink, AgentLinkConfig, AgentLinkEvent, LinkError, LinkState, NoLogs};
use crate::session::DesiredPods;

/// Settings of a hollow-node fleet.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// `https://HOST:PORT` of the server.
    pub server: String,
    /// Join token (needed for nodes without stored credentials).
    pub token: Option<String>,
    /// Root directory; each node keeps its credentials in `<root>/<name>/`.
    pub data_dir: PathBuf,
    /// Number of nodes.
    pub count: usize,
    /// Node name prefix (`hollow-` gives `hollow-00001`, ...).
    pub prefix: String,
    /// Nodes sharing one UDP socket.
    pub nodes_per_socket: usize,
    /// Nodes starting (joining or connecting) at once.
    pub start_concurrency: usize,
}

impl HollowConfig {
    /// Defaults: 200 nodes per socket, 64 starting at once.
    pub fn new(
        server: &str,
        token: Option<String>,
        data_dir: PathBuf,
        count: usize,
        prefix: &str,
    ) -> Self {
        Self {
            server: server.to_string(),
            token,
            data_dir,
            count,
            prefix: prefix.to_string(),
            nodes_per_socket: 200,
            start_concurrency: 64,
        }
    }

    /// Name of node `index` (0-based).
    pub fn node_name(&self, index: usize) -> String {
        format!("{}{:05}", self.prefix, index + 1)
    }
}

/// What the fleet reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// Every node has an established session for the first time.
    AllConnected {
        /// Seconds since the fleet started.
        seconds: f64,
    },
    /// At least one node lost its session (e.g. the server restarted).
    Outage {
        /// Nodes still connected.
        connected: usize,
    },
    /// Every node is connected again after an outage.
    Recovered {
        /// Seconds from the first disconnect to the last reconnect.
        seconds: f64,
    },
    /// Periodic counts.
    Progress {
        /// Nodes with an established session.
        connected: usize,
        /// Pods acknowledged as Running so far.
        pods_running: usize,
    },
}

/// Counters shared by the fleet's nodes.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicUsize,
    pods_running: AtomicUsize,
}

/// Runs the fleet until `shutdown` resolves; `report` receives progress. Fails only if a node
/// cannot start (e.g. its join is refused).
pub async fn run_fleet(
    config: HollowConfig,
    report: tokio::sync::mpsc::UnboundedSender<FleetEvent>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    let started = Instant::now();
    let server = crate::quic::parse_server_url(&config.server)?;
    let server_addr = server.resolve().await?;
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(config.start_concurrency.max(1)));
    let mut endpoints = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..config.count {
        if index % config.nodes_per_socket.max(1) == 0 {
            let local = match server_addr {
                SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
            };
            endpoints.push(
                quinn::Endpoint::client(local).map_err(|source| LinkError::Bind {
                    addr: local,
                    source,
                })?,
            );
        }
        let endpoint = endpoints[endpoints.len() - 1].clone();
        let node = HollowNode {
            name: config.node_name(index),
            index,
            config: config.clone(),
            counters: counters.clone(),
        };
        let gate = gate.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move { node.run(endpoint, gate, stop).await });
    }
    let monitor = tokio::spawn(monitor(counters.clone(), config.count, started, report));
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            finished = tasks.join_next() => match finished {
                Some(Ok(Err(error))) => break Err(error),
                Some(_) => {}
                None => break Ok(()),
            },
        }
    };
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    monitor.abort();
    result
}

async fn monitor(
    counters: Arc<Counters>,
    count: usize,
    started: Instant,
    report: tokio::sync::mpsc::UnboundedSender<FleetEvent>,
) {
    let mut all_once = false;
    let mut outage_since: Option<Instant> = None;
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tick += 1;
        let connected = counters.connected.load(Ordering::Relaxed);
        if !all_once && connected == count {
            all_once = true;
            let _ = report.send(FleetEvent::AllConnected {
                seconds: started.elapsed().as_secs_f64(),
            });
        } else if all_once && connected < count && outage_since.is_none() {
            outage_since = Some(Instant::now());
            let _ = report.send(FleetEvent::Outage { connected });
        } else if let (Some(since), true) = (outage_since, connected == count) {
            outage_since = None;
            let _ = report.send(FleetEvent::Recovered {
                seconds: since.elapsed().as_secs_f64(),
            });
        }
        if tick % 50 == 0 {
            let _ = report.send(FleetEvent::Progress {
                connected,
                pods_running: counters.pods_running.load(Ordering::Relaxed),
            });
        }
    }
}

struct HollowNode {
    name: String,
    index: usize,
    config: HollowConfig,
    counters: Arc<Counters>,
}

impl HollowNode {
    async fn run(
        self,
        endpoint: quinn::Endpoint,
        gate: Arc<Semaphore>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), LinkError> {
        let permit = gate.acquire_owned().await.ok();
        let link_config = AgentLinkConfig::new(
            &self.config.server,
            self.config.token.clone(),
            self.config.data_dir.join(&self.name),
            registration(&self.name, self.index),
        );
        let (link, mut events) = AgentLink::start(
            link_config,
            Some(endpoint),
            Arc::new(NoLogs("hollow nodes run no containers".into())),
        )
        .await?;
        let mut pods: HashMap<String, PodRef> = HashMap::new();
        let mut connected = false;
        let mut permit = permit;
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(event) = event else { break };
            match event {
                AgentLinkEvent::Connected { .. } => {
                    permit.take();
                    if !connected {
                        connected = true;
                        self.counters.connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                AgentLinkEvent::Disconnected { .. } if connected => {
                    connected = false;
                    self.counters.connected.fetch_sub(1, Ordering::Relaxed);
                }
                AgentLinkEvent::Pods(desired) => self.apply(&link, &mut pods, desired),
                _ => {}
            }
            // A link that reconnected without an event in between still counts as connected.
            if !connected && link.state() == LinkState::Connected {
                connected = true;
                self.counters.connected.fetch_add(1, Ordering::Relaxed);
            }
        }
        if connected {
            self.counters.connected.fetch_sub(1, Ordering::Relaxed);
        }
        link.shutdown().await;
        Ok(())
    }

    /// Acknowledges new pods as Running and confirms deletions at once.
    fn apply(&self, link: &AgentLink, known: &mut HashMap<String, PodRef>, desired: DesiredPods) {
        let upserts: Vec<Pod> = match desired {
            DesiredPods::Snapshot { pods, .. } => {
                let uids: std::collections::HashSet<String> =
                    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                known.retain(|uid, _| uids.contains(uid));
                pods
            }
            DesiredPods::Changes { changes, .. } => {
                let mut upserts = Vec::new();
                for change in changes {
                    match change {
                        PodChange::Upsert { pod } => upserts.push(*pod),
                        PodChange::Removed { pod } => {
                            known.remove(&pod.uid);
                        }
                    }
                }
                upserts
            }
        };
        let mut statuses = Vec::new();
        let mut terminated = Vec::new();
        for pod in upserts {
            let reference = PodRef {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            };
            if pod.metadata.deletion_timestamp.is_some() {
                terminated.push(reference);
                continue;
            }
            if known.contains_key(&reference.uid) {
                continue;
            }
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            known.insert(reference.uid.clone(), reference.clone());
            if !running {
                statuses.push(PodStatusUpdate {
                    status: running_status(&pod, self.index, known.len()),
                    pod: reference,
                });
                self.counters.pods_running.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !statuses.is_empty() {
            link.report_statuses(statuses);
        }
        if !terminated.is_empty() {
            link.report_terminated(terminated);
        }
    }
}

/// A synthetic address in the benchmarking range 198.18.0.0/15.
fn node_ip(index: usize) -> String {
    let n = index as u32 + 1;
    format!("198.18.{}.{}", (n >> 8) & 0xff, n & 0xff)
}

/// The Node a hollow node registers.
pub fn registration(name: &str, index: usize) -> Node {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", "4"),
        ("memory", "8Gi"),
        ("ephemeral-storage", "50Gi"),
        ("pods", "110"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                [
                    ("kubernetes.io/hostname", name),
                    ("kubernetes.io/os", "linux"),
                    ("kubernetes.io/arch", "amd64"),
                    ("skiff.dev/hollow", "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: node_ip(index),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name.to_string(),
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                boot_id: format!("hollow-{index}"),
                container_runtime_version: "hollow://0".into(),
                kernel_version: "hollow".into(),
                kube_proxy_version: String::new(),
                kubelet_version: format!("v1.33.0-skiff-hollow+{}", env!("CARGO_PKG_VERSION")),
                machine_id: format!("hollow-{index}"),
                operating_system: "linux".into(),
                os_image: "skiff hollow node".into(),
                system_uuid: format!("hollow-{index}"),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The status a hollow node reports for a pod: Running and Ready, every container running.
fn running_status(pod: &Pod, node_index: usize, ordinal: usize) -> PodStatus {
    let now = Time(jiff::Timestamp::now());
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let condition = |type_: &str| PodCondition {
        type_: type_.to_string(),
        status: "True".into(),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    };
    PodStatus {
        phase: Some("Running".into()),
        host_ip: Some(node_ip(node_index)),
        pod_ip: Some(format!(
            "10.{}.{}.{}",
            64 + (node_index >> 8) % 64,
            node_index & 0xff,
            (ordinal % 250) + 2
        )),
        start_time: Some(now.clone()),
        conditions: Some(vec![
            condition("PodScheduled"),
            condition("Initialized"),
            condition("ContainersReady"),
            condition("Ready"),
        ]),
        container_statuses: Some(
            containers
                .iter()
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: String::new(),
                    ready: true,
                    started: Some(true),
                    restart_count: 0,
                    container_id: Some(format!("hollow://{}", c.name)),
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(now.clone()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}
