//! The node's service proxy: the cluster's Services, as the link delivers them
//! ([`ServiceSummary`]), made into nftables DNAT rules in the table `inet skiff-proxy`,
//! modelled on upstream's nftables kube-proxy (see [`plan`] for the chain layout).
//!
//! - [`ServiceProxy::new`] once after [`PodNetwork::setup`]: puts the Service addresses the
//!   node answers itself (the cluster DNS address) on `lo` (label [`SERVICE_ADDRESS_LABEL`]).
//! - [`ServiceProxy::sync`] with the full current list whenever it changes. The first sync of
//!   a process replaces the proxy's table atomically (reconciling whatever a previous agent
//!   left); later ones send only the difference (map elements, per-Service chains and sets)
//!   in one `nft -f` transaction. Nothing is removed when the process ends: Services keep
//!   working while the agent restarts.
//! - [`PodNetwork::cleanup_all`] removes the table and those addresses.

mod conntrack;
mod device;
mod plan;
mod script;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use skiff_link_proto::proto::service::ServiceSummary;
use tokio::sync::Mutex;

use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::{nft, NetError, PodNetwork};

pub use device::SERVICE_ADDRESS_LABEL;
pub use script::TABLE as PROXY_TABLE;

use plan::{Desired, PlanInput};

/// What the node's proxy needs to know beyond the Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// This node's name (`EndpointSummary::node_name` of local endpoints).
    pub node_name: String,
    /// Addresses on which node ports are answered (the node IP; more for several uplinks).
    /// Empty = every local address except 127.0.0.0/8. Never localhost, as upstream's
    /// nftables proxy.
    pub nodeport_addresses: Vec<Ipv4Addr>,
    /// `--service-cidr`: cluster IPs outside it are not proxied (a Service cannot take over
    /// traffic to other addresses through its cluster IP).
    pub service_cidr: Ipv4Net,
    /// Service addresses the node answers itself (the cluster DNS address): put on
    /// `lo` (label [`SERVICE_ADDRESS_LABEL`]) and never DNATed.
    pub local_ips: Vec<Ipv4Addr>,
}

/// What one [`ServiceProxy::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySyncStats {
    /// Services with at least one proxied (or rejected) destination.
    pub services: usize,
    /// Values skipped as invalid or conflicting (each logged with its Service).
    pub skipped: usize,
    /// Per-Service chains in the table after the sync.
    pub chains: usize,
    /// Whether the whole table was replaced (first sync, or recovery) rather than changed.
    pub full: bool,
    /// Lines of the `nft -f` transaction (0 when nothing changed).
    pub commands: usize,
    /// Wall time of the sync, rendering included.
    pub elapsed: Duration,
    /// Of which waiting for `nft` (which reads the table back from the kernel to resolve
    /// names before it sends a transaction).
    pub nft: Duration,
    /// Stale UDP conntrack entries deleted after the change (see `conntrack.rs`).
    pub conntrack_deleted: usize,
}

/// The node's service proxy. Cheap to share by reference; syncs are serialized.
pub struct ServiceProxy {
    ns: NetNs,
    nl: Netlink,
    cluster_cidr: Ipv4Net,
    settings: ProxySettings,
    base: String,
    state: Mutex<ProxyState>,
}

impl std::fmt::Debug for ServiceProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProxy")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

struct ProxyState {
    local_ips: BTreeSet<Ipv4Addr>,
    /// What the table holds, as far as this process knows (`None` = unknown: rebuild).
    applied: Option<Desired>,
    /// The UDP frontends the conntrack table was last cleaned for (`None` = not yet).
    cleaned: Option<conntrack::UdpFrontends>,
}

impl ServiceProxy {
    /// The proxy of `network`'s node: puts `settings.local_ips` on `lo` (label [`SERVICE_ADDRESS_LABEL`]).
    /// The rules come with the first [`sync`](Self::sync).
    pub async fn new(network: &PodNetwork, settings: ProxySettings) -> Result<Self, NetError> {
        let ns = network.netns().clone();
        let nl = Netlink::connect(&ns).await?;
        device::ensure(&nl, &settings.local_ips).await?;
        Ok(Self {
            ns,
            nl,
            cluster_cidr: network.config().cluster_cidr,
            base: script::base(&settings.nodeport_addresses),
            state: Mutex::new(ProxyState {
                local_ips: settings.local_ips.iter().copied().collect(),
                applied: None,
                cleaned: None,
            }),
            settings,
        })
    }

    /// The settings it was made with (`local_ips` as first given).
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Changes the Service addresses the node answers itself: those on `lo` now, the rules at
    /// the next [`sync`](Self::sync).
    pub async fn set_local_ips(&self, ips: &[Ipv4Addr]) -> Result<(), NetError> {
        let mut state = self.state.lock().await;
        device::ensure(&self.nl, ips).await?;
        state.local_ips = ips.iter().copied().collect();
        Ok(())
    }

    /// Makes the rules match `services`, the full current list. Idempotent. Invalid values
    /// are skipped (and logged) without failing the others.
    pub async fn sync(&self, services: &[ServiceSummary]) -> Result<ProxySyncStats, NetError> {
        let started = Instant::now();
        let mut state = self.state.lock().await;
        let desired = plan::build(
            services,
            &PlanInput {
                node_name: &self.settings.node_name,
                cluster_cidr: self.cluster_cidr,
                service_cidr: self.settings.service_cidr,
                local_ips: &state.local_ips,
            },
        );
        let mut stats = ProxySyncStats {
            services: desired.services,
            skipped: desired.skipped,
            chains: desired.chains.len(),
            ..Default::default()
        };
        let need_full = match &state.applied {
            Some(applied) => {
                let diff = script::diff(applied, &desired);
                stats.commands = diff.lines().count();
                if diff.is_empty() {
                    false
                } else if let Err(e) = self
                    .apply(diff, "change service rules", &mut stats.nft)
                    .await
                {
                    tracing::warn!(error = %e, "incremental service rule change failed; rebuilding the proxy table");
                    true
                } else {
                    false
                }
            }
            None => true,
        };
        if need_full {
            state.applied = None;
            let full = script::full(&self.base, &desired);
            stats.commands = full.lines().count();
            stats.full = true;
            self.apply(full, "replace table inet skiff-proxy", &mut stats.nft)
                .await?;
        }
        state.applied = Some(desired);
        let frontends = conntrack::udp_frontends(services, &state.local_ips);
        if state.cleaned.as_ref() != Some(&frontends) {
            stats.conntrack_deleted = self.clean_conntrack(&frontends).await;
            state.cleaned = Some(frontends);
        }
        stats.elapsed = started.elapsed();
        tracing::debug!(?stats, "service rules synced");
        Ok(stats)
    }

    /// Deletes the UDP conntrack entries the new rules would not have made (a failure is
    /// logged: the entries then only live until they time out). Returns how many went.
    async fn clean_conntrack(&self, frontends: &conntrack::UdpFrontends) -> usize {
        if frontends.is_empty() {
            return 0;
        }
        let wanted = frontends.clone();
        match self.ns.run_async(move || conntrack::clean(&wanted)).await {
            Ok(Ok(stats)) => {
                if stats.deleted > 0 {
                    tracing::debug!(?stats, "stale UDP conntrack entries deleted");
                }
                stats.deleted
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not delete stale UDP conntrack entries");
                0
            }
            Err(error) => {
                tracing::warn!(%error, "could not delete stale UDP conntrack entries");
                0
            }
        }
    }

    async fn apply(&self, script: String, op: &str, spent: &mut Duration) -> Result<(), NetError> {
        let started = Instant::now();
        let result = nft::run_nft(&self.ns, &["-f", "-"], script, op).await;
        *spent += started.elapsed();
        result.map(drop)
    }
}

/// Removes the proxy's table and local Service addresses from a namespace (`skiff agent
/// --cleanup`); returns how many addresses there were.
pub(crate) async fn remove_all(ns: &NetNs, nl: &Netlink) -> Result<usize, NetError> {
    nft::run_nft(
        ns,
        &["-f", "-"],
        script::delete_table(),
        "delete table inet skiff-proxy",
    )
    .await?;
    device::remove(nl).await
}
