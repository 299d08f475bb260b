//! The cluster's Services on this node: the service network the server announces when the
//! session opens and the Services it sends afterwards, kept in the local state so that an
//! agent restarted while the server is out of reach still gives its pods the cluster resolver
//! and keeps routing and answering for the Services it last knew.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use skiff_dns::{ClusterDns, DnsConfig};
use skiff_link::proto::service::{ServiceKey, ServiceNetwork, ServiceSummary};
use skiff_link::quic::ServicesUpdate;
use skiff_net::{PodNetwork, ProxySettings, ServiceProxy};
use tokio::sync::watch;

use crate::error::AgentError;
use crate::persist::Debounced;
use crate::state::LocalState;

/// Meta key of the service network in the local state.
const META_SERVICE_NETWORK: &str = "serviceNetwork";
/// Meta key of the last known Services.
const META_SERVICES: &str = "services";

/// The node's view of the cluster's Services.
#[derive(Debug, Default)]
pub(crate) struct NodeServices {
    network: Option<ServiceNetwork>,
    table: BTreeMap<ServiceKey, ServiceSummary>,
    /// When to write the table (endpoints change with every pod).
    schedule: Debounced,
    /// Whether the server sent the table in this process (else it is the local state's).
    fresh: bool,
}

impl NodeServices {
    /// What the local state remembers.
    pub(crate) fn load(state: &LocalState) -> Result<Self, AgentError> {
        let network = state.meta::<ServiceNetwork>(META_SERVICE_NETWORK)?;
        let table = state
            .meta::<Vec<ServiceSummary>>(META_SERVICES)?
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        Ok(NodeServices {
            network,
            table,
            ..NodeServices::default()
        })
    }

    /// The service network, if known.
    pub(crate) fn network(&self) -> Option<&ServiceNetwork> {
        self.network.as_ref()
    }

    /// Takes the network the server announced; true when it changed (and was stored).
    pub(crate) fn set_network(
        &mut self,
        state: &LocalState,
        network: ServiceNetwork,
    ) -> Result<bool, AgentError> {
        if self.network.as_ref() == Some(&network) {
            return Ok(false);
        }
        state.set_meta(META_SERVICE_NETWORK, &network)?;
        self.network = Some(network);
        Ok(true)
    }

    /// Applies an update from the server; true when the table changed.
    pub(crate) fn apply(&mut self, update: ServicesUpdate) -> bool {
        let mut changed = false;
        if update.full {
            let fresh: BTreeMap<ServiceKey, ServiceSummary> = update
                .services
                .into_iter()
                .map(|s| (s.key.clone(), s))
                .collect();
            if fresh != self.table {
                self.table = fresh;
                changed = true;
            }
        } else {
            for service in update.services {
                if self.table.get(&service.key) != Some(&service) {
                    self.table.insert(service.key.clone(), service);
                    changed = true;
                }
            }
            for key in update.removed {
                changed |= self.table.remove(&key).is_some();
            }
        }
        self.fresh = true;
        if changed {
            self.schedule.changed();
        }
        changed
    }

    /// Whether the table came from the server in this process.
    pub(crate) fn fresh(&self) -> bool {
        self.fresh
    }

    /// When the table should next be written, if it changed.
    pub(crate) fn persist_at(&self) -> Option<Instant> {
        self.schedule.persist_at()
    }

    /// Every Service, in key order.
    pub(crate) fn list(&self) -> Vec<ServiceSummary> {
        self.table.values().cloned().collect()
    }

    /// Writes the table if it changed and [`Self::persist_at`] has come (or `force`).
    pub(crate) fn persist(&mut self, state: &LocalState, force: bool) {
        if !self.schedule.due(force) {
            return;
        }
        match state.set_meta(META_SERVICES, &self.list()) {
            Ok(()) => self.schedule.persisted(),
            Err(error) => tracing::warn!(%error, "cannot store the cluster's services"),
        }
    }
}

/// The Service addresses the node answers itself: the cluster DNS address, and the
/// `kubernetes` cluster IP while pods reach the API through the link.
fn local_ips(dns_ip: Ipv4Addr, api_local: Option<Ipv4Addr>) -> Vec<Ipv4Addr> {
    let mut ips = vec![dns_ip];
    ips.extend(api_local.filter(|ip| *ip != dns_ip));
    ips
}

/// The runtime's cluster DNS settings for a service network.
pub(crate) fn cluster_dns(network: &ServiceNetwork) -> skiff_runtime::dns::ClusterDns {
    skiff_runtime::dns::ClusterDns {
        nameservers: vec![network.cluster_dns.clone()],
        domain: network.cluster_domain.clone(),
        ..skiff_runtime::dns::ClusterDns::default()
    }
}

/// The node's data path for Services: the proxy's rules and the cluster resolver, fed by one
/// task from the latest table, so a slow `nft` transaction never holds up the agent's loop
/// and a burst of updates becomes one sync.
pub(crate) struct ServiceDataPath {
    list: watch::Sender<Arc<Vec<ServiceSummary>>>,
    task: tokio::task::JoinHandle<()>,
    /// What it was started for (a different service network needs a new one).
    network: ServiceNetwork,
}

impl std::fmt::Debug for ServiceDataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDataPath")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Drop for ServiceDataPath {
    fn drop(&mut self) {
        // The rules stay in the kernel (pods keep reaching Services); the resolver stops.
        self.task.abort();
    }
}

impl ServiceDataPath {
    /// Puts the cluster DNS address on the node, starts its resolver there and the proxy,
    /// and syncs both with `services`. Without `sync_proxy` the proxy's rules are left as
    /// the kernel holds them until the next list: after an agent restart (not a reboot)
    /// they are newer than the local state's table, which is written with a delay.
    pub(crate) async fn start(
        pod_network: &PodNetwork,
        network: &ServiceNetwork,
        node_name: &str,
        node_ip: Ipv4Addr,
        services: Vec<ServiceSummary>,
        sync_proxy: bool,
        mut api_local: watch::Receiver<Option<Ipv4Addr>>,
    ) -> Result<ServiceDataPath, String> {
        let service_cidr: Ipv4Net = network.service_cidr.parse().map_err(|_| {
            format!(
                "service CIDR {:?} is not an IPv4 CIDR",
                network.service_cidr
            )
        })?;
        let dns_ip: Ipv4Addr = network.cluster_dns.parse().map_err(|_| {
            format!(
                "cluster DNS {:?} is not an IPv4 address",
                network.cluster_dns
            )
        })?;
        let api_ip = *api_local.borrow_and_update();
        let proxy = ServiceProxy::new(
            pod_network,
            ProxySettings {
                node_name: node_name.to_string(),
                nodeport_addresses: vec![node_ip],
                service_cidr,
                local_ips: local_ips(dns_ip, api_ip),
            },
        )
        .await
        .map_err(|e| format!("service proxy: {e}"))?;
        let dns = ClusterDns::start(DnsConfig {
            cluster_domain: network.cluster_domain.clone(),
            listen: vec![SocketAddr::new(dns_ip.into(), 53)],
            ..DnsConfig::default()
        })
        .await
        .map_err(|e| format!("cluster DNS on {dns_ip}:53: {e}"))?;
        tracing::info!(address = %dns_ip, domain = %network.cluster_domain, "cluster DNS answering");
        let (list, mut latest) = watch::channel(Arc::new(services));
        latest.mark_changed();
        let task = tokio::spawn(async move {
            let mut sync_proxy = sync_proxy;
            let mut api_local_open = true;
            loop {
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    changed = api_local.changed(), if api_local_open => {
                        if changed.is_err() {
                            api_local_open = false;
                            continue;
                        }
                        // The `kubernetes` cluster IP answered by the node (API tunnel) or not.
                        let api_ip = *api_local.borrow_and_update();
                        let ips = local_ips(dns_ip, api_ip);
                        if let Err(error) = proxy.set_local_ips(&ips).await {
                            tracing::warn!(%error, "cannot change the Service addresses the node answers");
                        }
                        if !sync_proxy {
                            continue;
                        }
                        latest.mark_changed();
                        continue;
                    }
                }
                let services = latest.borrow_and_update().clone();
                dns.update(&services);
                if !std::mem::replace(&mut sync_proxy, true) {
                    continue;
                }
                // A failed sync is retried with the next list, or after a second.
                loop {
                    match proxy.sync(&services).await {
                        Ok(stats) => {
                            tracing::debug!(?stats, "service rules synced");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot sync the service rules; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                changed = latest.changed() => {
                                    if changed.is_err() {
                                        return;
                                    }
                                    latest.mark_changed();
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(ServiceDataPath {
            list,
            task,
            network: network.clone(),
        })
    }

    /// Hands the current table over.
    pub(crate) fn update(&self, services: Vec<ServiceSummary>) {
        self.list.send_replace(Arc::new(services));
    }

    /// The service network it runs for.
    pub(crate) fn network(&self) -> &ServiceNetwork {
        &self.network
    }
}
