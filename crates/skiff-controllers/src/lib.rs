//! The scheduler and the control loops (deployment, replicaset, daemonset, job, node
//! lifecycle, garbage collection), driven through kube-runtime.
//!
//! Everything here talks to the API server through a [`kube::Client`] — in `skiff server`
//! one bound in-process to the API router — so the controllers use exactly the API kubectl
//! uses, with the same validation and authorization. [`start`] starts the scheduler and the
//! controller manager on their clients; the returned [`Running`] stops them.
//!
//! - [`scheduler`]: filters, scores, an incremental cache with assumed pods, the scheduling
//!   queue, bindings, preemption, upstream's unschedulable messages.
//! - [`replicaset`], [`deployment`], [`daemonset`], [`job`]: the workload controllers.
//! - [`garbage_collector`], [`namespace`], [`pod_gc`]: cleanup.
//! - [`service_account`]: the `default` ServiceAccount of every namespace.
//! - [`endpointslice`], [`endpoints`]: the endpoints of Services with selectors.
//! - [`endpointslicemirroring`]: slices mirroring the hand-written Endpoints of Services
//!   without selectors.
//! - [`servicelb`]: LoadBalancer Services' ingress addresses: the Ready nodes' (k3s ServiceLB).
//! - [`node_lifecycle`], [`node_ipam`]: node health, taints and evictions; pod CIDRs.
//! - [`informer`]: one shared watch and cache per resource for all controllers.

pub mod claim;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslicemirroring;
pub mod error;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod garbage_collector;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod podcontrol;
pub mod replicaset;
pub mod runner;
pub mod scheduler;
pub mod service_account;
pub mod servicelb;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::task::JoinSet;

pub use error::Error;
pub use scheduler::{Scheduler, SchedulerConfig};

use informer::{
    controller_index, namespace_index, node_index, Informer, BY_CONTROLLER, BY_NAMESPACE, BY_NODE,
};

/// Settings of the controllers (names as kube-controller-manager's flags where one exists).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The scheduler's settings.
    pub scheduler: SchedulerConfig,
    /// How often node health is checked (`--node-monitor-period`, upstream 5 s).
    pub node_monitor_period: Duration,
    /// How long a node may go without renewing its lease before it is marked unreachable
    /// (`--node-monitor-grace-period`, upstream 40 s).
    pub node_monitor_grace_period: Duration,
    /// Grace for a node that never reported (`--node-startup-grace-period`, upstream 60 s).
    pub node_startup_grace_period: Duration,
    /// Finished pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`,
    /// upstream 12500; 0 disables).
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs (upstream 20 s).
    pub pod_gc_period: Duration,
    /// How long a node must be gone before the pod garbage collector deletes its pods
    /// (upstream 40 s).
    pub pod_gc_quarantine: Duration,
    /// Pod network to split into node pod CIDRs (`--cluster-cidr`); `None` disables node IPAM.
    pub cluster_cidr: Option<String>,
    /// Prefix length of each node's pod CIDR (`--node-cidr-mask-size`, 24).
    pub node_cidr_mask_size: u8,
    /// Concurrent reconciles per workload controller (`--concurrent-*-syncs`, upstream 5).
    pub concurrent_syncs: u16,
    /// Addresses of one Endpoints subset mirrored into slices at most
    /// (`--mirroring-max-endpoints-per-subset`, upstream 1000).
    pub mirroring_max_endpoints_per_subset: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            scheduler: SchedulerConfig::default(),
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            terminated_pod_gc_threshold: 12_500,
            pod_gc_period: Duration::from_secs(20),
            pod_gc_quarantine: Duration::from_secs(40),
            cluster_cidr: Some(skiff_types::podcidr::DEFAULT_CLUSTER_CIDR.to_string()),
            node_cidr_mask_size: skiff_types::podcidr::DEFAULT_NODE_PREFIX_LEN,
            concurrent_syncs: 5,
            mirroring_max_endpoints_per_subset: endpointslicemirroring::MAX_ENDPOINTS_PER_SUBSET,
        }
    }
}

/// The API clients of the control loops: the scheduler's and the controller manager's, so
/// each acts under its own identity.
#[derive(Clone)]
pub struct Clients {
    /// Used by the scheduler (`system:kube-scheduler`).
    pub scheduler: Client,
    /// Used by every other controller (`system:kube-controller-manager`).
    pub controller_manager: Client,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

/// The running scheduler and controllers.
#[derive(Debug)]
pub struct Running {
    tasks: JoinSet<()>,
    scheduler_stats: Arc<scheduler::Stats>,
}

impl Running {
    /// The scheduler's counters.
    pub fn scheduler_stats(&self) -> Arc<scheduler::Stats> {
        self.scheduler_stats.clone()
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts only the scheduler (for benchmarks that measure it alone).
pub fn start_scheduler_only(clients: Clients, config: SchedulerConfig) -> Running {
    let mut tasks = JoinSet::new();
    let scheduler = Scheduler::new(clients.scheduler, config);
    let scheduler_stats = scheduler.stats();
    tasks.spawn(scheduler.run());
    Running {
        tasks,
        scheduler_stats,
    }
}

/// Starts the scheduler and all controllers. Fails only on unusable settings.
pub fn start(clients: Clients, config: ControllerConfig) -> Result<Running, Error> {
    let ipam = match &config.cluster_cidr {
        Some(cidr) => Some(node_ipam::Allocator::new(cidr, config.node_cidr_mask_size)?),
        None => None,
    };
    let mut tasks = JoinSet::new();

    let scheduler = Scheduler::new(clients.scheduler.clone(), config.scheduler.clone());
    let scheduler_stats = scheduler.stats();
    tasks.spawn(scheduler.run());

    let client = clients.controller_manager;
    let pods = Informer::start_indexed(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        vec![
            (
                BY_CONTROLLER,
                controller_index::<Pod> as informer::IndexFn<Pod>,
            ),
            (BY_NODE, node_index),
            (BY_NAMESPACE, namespace_index::<Pod>),
        ],
        &mut tasks,
    );
    let nodes = Informer::start(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        &mut tasks,
    );
    let sets = Informer::start_indexed(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
        vec![(
            BY_CONTROLLER,
            controller_index::<ReplicaSet> as informer::IndexFn<ReplicaSet>,
        )],
        &mut tasks,
    );
    let deployments = Informer::start(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
        &mut tasks,
    );
    let daemon_sets = Informer::start(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
        &mut tasks,
    );
    let revisions = Informer::start_indexed(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
        vec![(
            BY_CONTROLLER,
            controller_index::<ControllerRevision> as informer::IndexFn<ControllerRevision>,
        )],
        &mut tasks,
    );
    let jobs = Informer::start(
        Api::<Job>::all(client.clone()),
        watcher::Config::default(),
        &mut tasks,
    );
    let namespaces = Informer::start(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
        &mut tasks,
    );
    let accounts = Informer::start(
        Api::<ServiceAccount>::all(client.clone()),
        service_account::accounts_watch(),
        &mut tasks,
    );
    let leases = Informer::start(
        Api::<Lease>::namespaced(client.clone(), node_lifecycle::LEASE_NAMESPACE),
        watcher::Config::default(),
        &mut tasks,
    );

    let services = Informer::start_indexed(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        vec![(BY_NAMESPACE, namespace_index::<Service>)],
        &mut tasks,
    );
    let endpoints = Informer::start_indexed(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default(),
        vec![(BY_NAMESPACE, namespace_index::<Endpoints>)],
        &mut tasks,
    );
    let slices = Informer::start_indexed(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
        vec![
            (
                BY_NAMESPACE,
                namespace_index::<EndpointSlice> as informer::IndexFn<EndpointSlice>,
            ),
            (endpointslice::BY_SERVICE, endpointslice::service_index),
        ],
        &mut tasks,
    );

    let n = config.concurrent_syncs.max(1);
    endpointslice::start(client.clone(), &services, &pods, &slices, n, &mut tasks);
    endpoints::start(client.clone(), &services, &pods, &endpoints, n, &mut tasks);
    endpointslicemirroring::start(
        client.clone(),
        &endpoints,
        &services,
        &slices,
        config.mirroring_max_endpoints_per_subset,
        n,
        &mut tasks,
    );
    servicelb::start(client.clone(), &services, &nodes, &mut tasks);
    replicaset::start(client.clone(), &pods, &sets, n, &mut tasks);
    deployment::start(client.clone(), &deployments, &sets, &pods, n, &mut tasks);
    daemonset::start(
        client.clone(),
        &daemon_sets,
        &pods,
        &nodes,
        &revisions,
        n,
        &mut tasks,
    );
    job::start(client.clone(), &jobs, &pods, n, &mut tasks);
    namespace::start(client.clone(), &namespaces, n, &mut tasks);
    service_account::start(client.clone(), &namespaces, &accounts, n, &mut tasks);
    garbage_collector::start(client.clone(), &mut tasks);
    node_lifecycle::start(
        client.clone(),
        &nodes,
        &leases,
        &pods,
        node_lifecycle::Timings {
            monitor_period: config.node_monitor_period,
            grace_period: config.node_monitor_grace_period,
            startup_grace_period: config.node_startup_grace_period,
        },
        &mut tasks,
    );
    pod_gc::start(
        client.clone(),
        &pods,
        &nodes,
        pod_gc::Settings {
            threshold: config.terminated_pod_gc_threshold,
            period: config.pod_gc_period,
            quarantine: config.pod_gc_quarantine,
        },
        &mut tasks,
    );
    if let Some(allocator) = ipam {
        node_ipam::start(client, &nodes, allocator, &mut tasks);
    }
    Ok(Running {
        tasks,
        scheduler_stats,
    })
}
