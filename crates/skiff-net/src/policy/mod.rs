//! NetworkPolicy enforcement: the node's [`PodPolicy`] list, as the link delivers it
//! (selectors resolved to addresses, named ports to numbers), made into nftables rules in the
//! table `inet skiff-policy` (see [`script`] for where they hook and why, [`plan`] for the
//! per-pod chains).
//!
//! - [`PolicyEnforcer::new`] once after [`PodNetwork::setup`]: makes sure bridged traffic
//!   between two pods of the node reaches the IPv4 hooks (`br_netfilter`,
//!   `net/bridge/bridge-nf-call-iptables` = 1 in the node's network namespace; the setting
//!   is per namespace), the same requirement upstream Kubernetes networking has. Without it
//!   same-node pod-to-pod traffic would pass no filter at all. (A `bridge` family table
//!   would need `nf_conntrack_bridge` for replies, which kernels like this one's lack.)
//!   Touches no rule: the table a previous agent left keeps protecting the pods.
//! - [`PolicyEnforcer::sync`] with the full current list whenever it changes. The first sync
//!   of a process replaces the table atomically (reconciling whatever a previous agent left);
//!   later ones send only the difference (map elements and per-pod chains) in one `nft -f`
//!   transaction. Each sync re-checks the bridge setting. Nothing is removed when the
//!   process ends: pods stay protected while the agent restarts.
//! - [`PodNetwork::cleanup_all`] removes the table.

mod plan;
mod script;

use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use skiff_link_proto::proto::policy::PodPolicy;
use tokio::sync::Mutex;

use crate::netns::NetNs;
use crate::{nft, sysctl, NetError, PodNetwork};

pub use script::TABLE as POLICY_TABLE;

use plan::{Desired, PlanInput};

/// The sysctls that hand bridged frames to the IPv4 (and IPv6) hooks.
const BRIDGE_NF_KEYS: [&str; 2] = [
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
];

/// What one [`PolicyEnforcer::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySyncStats {
    /// Pods isolated in at least one direction.
    pub pods: usize,
    /// Values dropped as invalid or conflicting (each logged with its pod).
    pub skipped: usize,
    /// Per-pod chains in the table after the sync.
    pub chains: usize,
    /// Whether the whole table was replaced (first sync, or recovery) rather than changed.
    pub full: bool,
    /// Lines of the `nft -f` transaction (0 when nothing changed).
    pub commands: usize,
    /// Wall time of the sync, rendering included.
    pub elapsed: Duration,
    /// Of which waiting for `nft`.
    pub nft: Duration,
}

/// The node's NetworkPolicy enforcer. Cheap to share by reference; syncs are serialized.
pub struct PolicyEnforcer {
    ns: NetNs,
    pod_cidr: Ipv4Net,
    base: String,
    /// What the table holds, as far as this process knows (`None` = unknown: rebuild).
    applied: Mutex<Option<Desired>>,
}

impl std::fmt::Debug for PolicyEnforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEnforcer")
            .field("pod_cidr", &self.pod_cidr)
            .finish_non_exhaustive()
    }
}

impl PolicyEnforcer {
    /// The enforcer of `network`'s node. Turns on `br_netfilter` for the node's namespace
    /// (loading the module if needed) and fails if the kernel cannot; the rules come with the
    /// first [`sync`](Self::sync).
    pub async fn new(network: &PodNetwork) -> Result<Self, NetError> {
        let ns = network.netns().clone();
        ensure_bridge_netfilter(&ns).await?;
        Ok(Self {
            ns,
            pod_cidr: network.config().pod_cidr,
            base: script::base(&network.config().bridge),
            applied: Mutex::new(None),
        })
    }

    /// Makes the rules match `pods`, the node's full current list. Idempotent. Invalid
    /// values are dropped (and logged) without failing the others, never widening what a
    /// pod admits.
    pub async fn sync(&self, pods: &[PodPolicy]) -> Result<PolicySyncStats, NetError> {
        let started = Instant::now();
        let mut applied = self.applied.lock().await;
        ensure_bridge_netfilter(&self.ns).await?;
        let desired = plan::build(
            pods,
            &PlanInput {
                pod_cidr: self.pod_cidr,
            },
        );
        let mut stats = PolicySyncStats {
            pods: desired.pods,
            skipped: desired.skipped,
            chains: desired.chains.len(),
            ..Default::default()
        };
        let need_full = match applied.as_ref() {
            Some(old) => {
                let diff = script::diff(old, &desired);
                stats.commands = diff.lines().count();
                if diff.is_empty() {
                    false
                } else if let Err(e) = self
                    .apply(diff, "change NetworkPolicy rules", &mut stats.nft)
                    .await
                {
                    tracing::warn!(error = %e, "incremental NetworkPolicy change failed; rebuilding the policy table");
                    true
                } else {
                    false
                }
            }
            None => true,
        };
        if need_full {
            *applied = None;
            let full = script::full(&self.base, &desired);
            stats.commands = full.lines().count();
            stats.full = true;
            self.apply(full, "replace table inet skiff-policy", &mut stats.nft)
                .await?;
        }
        *applied = Some(desired);
        stats.elapsed = started.elapsed();
        tracing::debug!(?stats, "NetworkPolicy rules synced");
        Ok(stats)
    }

    async fn apply(&self, script: String, op: &str, spent: &mut Duration) -> Result<(), NetError> {
        let started = Instant::now();
        let result = nft::run_nft(&self.ns, &["-f", "-"], script, op).await;
        *spent += started.elapsed();
        result.map(drop)
    }
}

/// Makes bridged traffic between pods pass the IPv4/IPv6 hooks in `ns`.
async fn ensure_bridge_netfilter(ns: &NetNs) -> Result<(), NetError> {
    if sysctl::read(ns, BRIDGE_NF_KEYS[0]).await.is_err() {
        // Not loaded (or not built). modprobe is global, not per namespace.
        let loaded = ns
            .run_async(|| {
                std::process::Command::new("modprobe")
                    .arg("br_netfilter")
                    .output()
            })
            .await?;
        if let Err(e) = sysctl::read(ns, BRIDGE_NF_KEYS[0]).await {
            let detail = match loaded {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            return Err(NetError::BridgeNetfilter(format!(
                "{e}; modprobe br_netfilter: {detail}"
            )));
        }
    }
    for key in BRIDGE_NF_KEYS {
        sysctl::ensure(ns, key, "1").await?;
    }
    Ok(())
}

/// Removes the enforcer's table from a namespace (`skiff agent --cleanup`).
pub(crate) async fn remove_all(ns: &NetNs) -> Result<(), NetError> {
    nft::run_nft(
        ns,
        &["-f", "-"],
        script::delete_table(),
        "delete table inet skiff-policy",
    )
    .await?;
    Ok(())
}
