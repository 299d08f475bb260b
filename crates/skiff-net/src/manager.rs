//! [`PodNetwork`]: the node's network manager the agent drives.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rtnetlink::packet_route::link::InfoKind;
use tokio::sync::{watch, Mutex};

use crate::config::{
    host_ips_overlap, Backend, NetworkConfig, Peer, PodNetRequest, PodNetStatus, DEFAULT_BRIDGE,
    VXLAN_OVERHEAD,
};
use crate::devices::{self, VxlanParams};
use crate::ipam::Ipam;
use crate::netlink::Netlink;
use crate::netns::NetNs;
use crate::nft::{self, HostPortRule, RulesetInput};
use crate::pod::{host_veth_name, PodPlumbing, VETH_PREFIX};
use crate::state::{self, NodeState, PodRecord};
use crate::{peers, policy, proxy, sysctl, NetError};

/// The node's pod network: bridge, per-pod veth pairs and addresses, peer routes, NAT rules.
///
/// Cheap to clone (shared inside). Dropping it leaves the network as it is: pods keep their
/// connectivity while the agent restarts, and the next [`setup`](Self::setup) adopts it.
#[derive(Clone)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork").finish_non_exhaustive()
    }
}

struct Inner {
    config: NetworkConfig,
    ns: NetNs,
    nl: Netlink,
    bridge_index: u32,
    vxlan_index: Option<u32>,
    mtu: u32,
    ipam: Ipam,
    state_path: PathBuf,
    state: Mutex<NodeState>,
    /// Wakes the background task that fsyncs the state file.
    flush: watch::Sender<u64>,
    nft_lock: Mutex<()>,
}

/// A pod the network manager has an address for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedPod {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

/// Where [`PodNetwork::cleanup_all`] looks for what skiff created.
#[derive(Debug, Clone)]
pub struct CleanupConfig {
    /// The state directory used by the node's [`NetworkConfig`].
    pub state_dir: PathBuf,
    /// Bridge name, if no state file says otherwise (default `skiff0`).
    pub bridge: String,
    /// Network namespace to clean; `None` = the calling thread's (the host's).
    pub netns: Option<PathBuf>,
}

impl CleanupConfig {
    /// Cleanup of the default bridge in the calling thread's namespace.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            bridge: DEFAULT_BRIDGE.to_string(),
            netns: None,
        }
    }
}

/// What [`PodNetwork::cleanup_all`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Interfaces deleted (bridge, VXLAN device, pod veths).
    pub links: Vec<String>,
    /// Number of peer routes deleted.
    pub routes: usize,
    /// Number of the service proxy's local Service addresses removed from `lo`.
    pub service_addresses: usize,
    /// Whether the state file existed and was removed.
    pub state_removed: bool,
}

fn open_ns(path: &Option<PathBuf>) -> Result<NetNs, NetError> {
    match path {
        Some(p) => NetNs::open(p),
        None => NetNs::current_thread(),
    }
}

impl PodNetwork {
    /// Sets up (or adopts, after a restart) the node's network: forwarding, the bridge with
    /// the gateway address, the VXLAN device for that backend, the NAT table, and the peer
    /// routes remembered from before. Idempotent.
    pub async fn setup(config: NetworkConfig) -> Result<Self, NetError> {
        config.validate()?;
        let ns = open_ns(&config.netns)?;
        let nl = Netlink::connect(&ns).await?;
        let state_path = state::state_path(&config.state_dir);
        let vxlan_device = config.backend.vxlan_device();

        let loaded = match state::load(&state_path) {
            Err(NetError::CorruptState { reason, .. })
                if state::written_before_this_boot(&state_path) =>
            {
                // Half-written by a power loss: the pods it described died with that boot.
                let aside = state::set_aside(&state_path)?;
                tracing::warn!(
                    file = %aside.display(),
                    %reason,
                    "the network state of a previous boot is unreadable; starting afresh"
                );
                None
            }
            other => other?,
        };
        let mut node_state = match loaded {
            Some(existing) => {
                if existing.pod_cidr != config.pod_cidr {
                    return Err(NetError::PodCidrChanged {
                        path: state_path,
                        persisted: existing.pod_cidr,
                        configured: config.pod_cidr,
                    });
                }
                if existing.bridge != config.bridge {
                    return Err(NetError::InvalidConfig {
                        field: "bridge",
                        reason: format!(
                            "this node's pods are on bridge {:?} (state {}), not {:?}; run \
                             `skiff agent --cleanup` first to change it",
                            existing.bridge,
                            state_path.display(),
                            config.bridge
                        ),
                    });
                }
                let ipam = Ipam::new(config.pod_cidr);
                if let Some((uid, pod)) = existing.pods.iter().find(|(_, p)| !ipam.contains(p.ip)) {
                    return Err(NetError::CorruptState {
                        path: state_path,
                        reason: format!(
                            "pod {uid} has address {} outside the assignable range of {}",
                            pod.ip, config.pod_cidr
                        ),
                    });
                }
                existing
            }
            None => NodeState::new(
                config.pod_cidr,
                config.cluster_cidr,
                config.node_ip,
                &config.bridge,
                vxlan_device.clone(),
            ),
        };
        // A backend change leaves the old VXLAN device behind; remove it.
        if let Some(old) = &node_state.vxlan_device {
            if Some(old) != vxlan_device.as_ref() {
                nl.delete_link_by_name(old).await?;
            }
        }
        let boot_id = state::current_boot_id();
        if node_state.boot_id != boot_id {
            // Pod namespaces do not survive a reboot: their addresses are free again.
            if !node_state.pods.is_empty() {
                tracing::info!(
                    pods = node_state.pods.len(),
                    "forgetting the pod addresses of a previous boot"
                );
            }
            node_state.pods.clear();
            node_state.boot_id = boot_id;
        }
        node_state.cluster_cidr = config.cluster_cidr;
        node_state.node_ip = config.node_ip;
        node_state.vxlan_device = vxlan_device.clone();

        let uplink = devices::find_uplink(&nl, config.node_ip).await?;
        let overhead = match config.backend {
            Backend::HostGw => 0,
            Backend::Vxlan { .. } => VXLAN_OVERHEAD,
        };
        let mtu = config
            .mtu
            .unwrap_or(uplink.mtu.saturating_sub(overhead).max(576));

        sysctl::ensure(&ns, "net/ipv4/ip_forward", "1").await?;
        let gateway = config.gateway();
        let bridge_index = devices::ensure_bridge(
            &nl,
            &config.bridge,
            gateway,
            config.pod_cidr.prefix_len(),
            mtu,
        )
        .await?;
        // hostPort through 127.0.0.1 is DNATed onto the bridge with a loopback source.
        sysctl::ensure(
            &ns,
            &format!("net/ipv4/conf/{}/route_localnet", config.bridge),
            "1",
        )
        .await?;

        let vxlan_index = match (config.backend, &vxlan_device) {
            (Backend::Vxlan { vni, port }, Some(name)) => {
                let params = VxlanParams {
                    vni,
                    port,
                    local: config.node_ip,
                    uplink: uplink.index,
                };
                Some(
                    devices::ensure_vxlan(&nl, name, params, mtu, config.pod_cidr.network())
                        .await?,
                )
            }
            _ => None,
        };
        warn_about_rp_filter(&ns, &uplink.name, config.backend).await;

        state::save_durably(&state_path, &node_state)?;
        let flush = spawn_state_flusher(state_path.clone());
        let network = PodNetwork {
            inner: Arc::new(Inner {
                ipam: Ipam::new(config.pod_cidr),
                config,
                ns,
                nl,
                bridge_index,
                vxlan_index,
                mtu,
                state_path,
                state: Mutex::new(node_state),
                flush,
                nft_lock: Mutex::new(()),
            }),
        };
        network.remove_stray_veths().await?;
        network.replace_rules().await?;
        let remembered = network.inner.state.lock().await.peers.clone();
        peers::sync(
            &network.inner.nl,
            network.inner.config.backend,
            vxlan_index,
            &remembered,
        )
        .await?;
        tracing::info!(
            bridge = %network.inner.config.bridge,
            pod_cidr = %network.inner.config.pod_cidr,
            backend = %network.inner.config.backend,
            mtu,
            uplink = %uplink.name,
            "pod network ready"
        );
        Ok(network)
    }

    /// The configuration it was set up with.
    pub fn config(&self) -> &NetworkConfig {
        &self.inner.config
    }

    /// The node's network namespace.
    pub(crate) fn netns(&self) -> &NetNs {
        &self.inner.ns
    }

    /// MTU of the bridge and pod interfaces.
    pub fn mtu(&self) -> u32 {
        self.inner.mtu
    }

    /// Pods that currently hold an address (e.g. to detach the ones that no longer exist
    /// after an agent restart).
    pub async fn attached(&self) -> Vec<AttachedPod> {
        let state = self.inner.state.lock().await;
        state
            .pods
            .iter()
            .map(|(uid, p)| AttachedPod {
                uid: uid.clone(),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                ip: p.ip,
            })
            .collect()
    }

    /// Wires a pod into the network: an address from the pod CIDR (the same one again for a
    /// pod that already has one), its veth pair, and its host ports. Idempotent.
    pub async fn attach(&self, pod: &PodNetRequest) -> Result<PodNetStatus, NetError> {
        pod.validate()?;
        let what = pod.display_name();
        let pod_ns = NetNs::open(&pod.netns).map_err(|e| NetError::InvalidPod {
            pod: what.clone(),
            field: "netns".into(),
            reason: e.to_string(),
        })?;
        if pod_ns.same_as(&self.inner.ns)? {
            return Err(NetError::InvalidPod {
                pod: what,
                field: "netns".into(),
                reason: format!(
                    "{} is the node's own network namespace (hostNetwork pods need no attach)",
                    pod.netns.display()
                ),
            });
        }
        let veth = host_veth_name(&pod.uid);
        let (ip, existed, ports_changed) = self.reserve(pod, &what, &veth).await?;

        let plumbing = PodPlumbing {
            host: &self.inner.nl,
            bridge_index: self.inner.bridge_index,
            mtu: self.inner.mtu,
            gateway: self.inner.config.gateway(),
            prefix_len: self.inner.config.pod_cidr.prefix_len(),
        };
        let mut result = Ok(());
        if !(existed && plumbing.is_plumbed(&pod_ns, &veth, ip).await?) {
            result = plumbing.plumb(&pod_ns, &veth, ip, &what).await;
        }
        if result.is_ok() && ports_changed {
            result = self.refresh_host_ports(&pod.uid, &veth, existed).await;
        }
        if let Err(e) = result {
            if !existed {
                // Give the address back so a failed attach leaks nothing.
                if let Err(undo) = self.detach(&pod.uid).await {
                    tracing::warn!(pod = %what, error = %undo, "rolling back a failed attach");
                }
            }
            return Err(e);
        }
        tracing::debug!(pod = %what, %ip, veth = %veth, "pod attached");
        Ok(PodNetStatus {
            ip,
            prefix_len: self.inner.config.pod_cidr.prefix_len(),
            gateway: self.inner.config.gateway(),
            host_interface: veth,
            mtu: self.inner.mtu,
        })
    }

    /// Records the pod's address and host ports (allocating an address for a new pod) and
    /// persists them before any interface exists. Returns (address, was already recorded,
    /// host ports changed).
    async fn reserve(
        &self,
        pod: &PodNetRequest,
        what: &str,
        veth: &str,
    ) -> Result<(Ipv4Addr, bool, bool), NetError> {
        let mut state = self.inner.state.lock().await;
        for (uid, other) in &state.pods {
            if uid == &pod.uid {
                continue;
            }
            for mine in &pod.host_ports {
                let clash = other.host_ports.iter().any(|theirs| {
                    theirs.host_port == mine.host_port
                        && theirs.protocol == mine.protocol
                        && host_ips_overlap(theirs.host_ip, mine.host_ip)
                });
                if clash {
                    return Err(NetError::HostPortConflict {
                        pod: what.to_string(),
                        host_port: mine.host_port,
                        protocol: mine.protocol.to_string(),
                        owner: format!("{}/{} ({uid})", other.namespace, other.name),
                    });
                }
            }
            if other.host_veth == veth {
                return Err(NetError::InvalidPod {
                    pod: what.to_string(),
                    field: "uid".into(),
                    reason: format!("its interface name {veth} collides with pod {uid}"),
                });
            }
        }
        let (ip, existed, ports_changed) = match state.pods.get_mut(&pod.uid) {
            Some(record) => {
                let changed = record.host_ports != pod.host_ports;
                if !changed && record.netns == pod.netns {
                    return Ok((record.ip, true, false));
                }
                record.host_ports = pod.host_ports.clone();
                record.netns = pod.netns.clone();
                (record.ip, true, changed)
            }
            None => {
                let used = state.used_ips();
                let ip = self
                    .inner
                    .ipam
                    .next_free(&used, state.last_allocated)
                    .ok_or_else(|| NetError::IpamExhausted {
                        pod: what.to_string(),
                        pod_cidr: self.inner.config.pod_cidr,
                        in_use: used.len(),
                    })?;
                state.last_allocated = Some(ip);
                state.pods.insert(
                    pod.uid.clone(),
                    PodRecord {
                        ip,
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        netns: pod.netns.clone(),
                        host_veth: veth.to_string(),
                        host_ports: pod.host_ports.clone(),
                    },
                );
                (ip, false, !pod.host_ports.is_empty())
            }
        };
        self.save(&state)?;
        Ok((ip, existed, ports_changed))
    }

    /// Unwires a pod: deletes its veth pair (and with it the pod's `eth0`), returns its address
    /// and removes its host-port rules. Idempotent; an unknown uid is not an error.
    pub async fn detach(&self, uid: &str) -> Result<(), NetError> {
        let veth = {
            let state = self.inner.state.lock().await;
            state
                .pods
                .get(uid)
                .map(|r| r.host_veth.clone())
                .unwrap_or_else(|| host_veth_name(uid))
        };
        self.inner.nl.delete_link_by_name(&veth).await?;
        let removed = {
            let mut state = self.inner.state.lock().await;
            let removed = state.pods.remove(uid);
            if removed.is_some() {
                self.save(&state)?;
            }
            removed
        };
        if let Some(record) = removed {
            if !record.host_ports.is_empty() {
                self.refresh_host_ports(uid, &record.host_veth, true)
                    .await?;
            }
            tracing::debug!(uid, ip = %record.ip, "pod detached");
        }
        Ok(())
    }

    /// Makes routes (and VXLAN entries) to other nodes' pod CIDRs match `peers` — the full
    /// current list, e.g. from the Node objects; this node itself may be in it. Peers that
    /// are no longer listed lose their routes.
    pub async fn sync_peers(&self, peers: &[Peer]) -> Result<(), NetError> {
        let peers = peers::validate(&self.inner.config, peers);
        peers::sync(
            &self.inner.nl,
            self.inner.config.backend,
            self.inner.vxlan_index,
            &peers,
        )
        .await?;
        let changed = {
            let mut state = self.inner.state.lock().await;
            if state.peers != peers {
                state.peers = peers;
                self.save(&state)?;
                true
            } else {
                false
            }
        };
        if changed {
            let nodes: std::collections::BTreeSet<Ipv4Addr> = {
                let state = self.inner.state.lock().await;
                state.peers.iter().map(|p| p.node_ip).collect()
            };
            self.change_rules(|ns| async move { nft::set_peer_nodes(&ns, &nodes).await })
                .await?;
        }
        Ok(())
    }

    /// Writes the state (atomically) and has it flushed to disk in the background.
    fn save(&self, state: &NodeState) -> Result<(), NetError> {
        state::save(&self.inner.state_path, state)?;
        self.inner.flush.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Replaces the whole nftables table with the rules for the current state.
    async fn replace_rules(&self) -> Result<(), NetError> {
        let _serial = self.inner.nft_lock.lock().await;
        self.replace_rules_locked().await
    }

    async fn replace_rules_locked(&self) -> Result<(), NetError> {
        let input = {
            let state = self.inner.state.lock().await;
            RulesetInput {
                bridge: self.inner.config.bridge.clone(),
                pod_cidr: self.inner.config.pod_cidr,
                cluster_cidr: self.inner.config.cluster_cidr,
                peer_nodes: state.peers.iter().map(|p| p.node_ip).collect(),
                host_ports: state
                    .pods
                    .values()
                    .flat_map(|p| {
                        p.host_ports.iter().map(move |hp| HostPortRule {
                            tag: p.host_veth.clone(),
                            pod_ip: p.ip,
                            port: *hp,
                        })
                    })
                    .collect(),
            }
        };
        nft::replace_table(&self.inner.ns, &input).await
    }

    /// Runs an incremental nftables change; if it fails (the table was changed behind
    /// skiff's back), rebuilds the whole table from the state instead.
    async fn change_rules<F, Fut>(&self, change: F) -> Result<(), NetError>
    where
        F: FnOnce(NetNs) -> Fut,
        Fut: std::future::Future<Output = Result<(), NetError>>,
    {
        let _serial = self.inner.nft_lock.lock().await;
        if let Err(e) = change(self.inner.ns.clone()).await {
            tracing::warn!(error = %e, "incremental nftables change failed; rebuilding the table");
            return self.replace_rules_locked().await;
        }
        Ok(())
    }

    /// Makes the pod's DNAT rules match its recorded host ports.
    async fn refresh_host_ports(
        &self,
        uid: &str,
        veth: &str,
        had_rules: bool,
    ) -> Result<(), NetError> {
        let rules: Vec<HostPortRule> = {
            let state = self.inner.state.lock().await;
            state
                .pods
                .get(uid)
                .map(|p| {
                    p.host_ports
                        .iter()
                        .map(|hp| HostPortRule {
                            tag: veth.to_string(),
                            pod_ip: p.ip,
                            port: *hp,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let tag = veth.to_string();
        self.change_rules(|ns| async move {
            if had_rules {
                nft::remove_host_ports(&ns, &tag).await?;
            }
            nft::add_host_ports(&ns, &rules).await
        })
        .await
    }

    /// Deletes pod veths on the bridge that belong to no recorded pod (left by a crash).
    async fn remove_stray_veths(&self) -> Result<(), NetError> {
        let known: Vec<String> = {
            let state = self.inner.state.lock().await;
            state.pods.values().map(|p| p.host_veth.clone()).collect()
        };
        for link in self.inner.nl.links().await? {
            let ours = link.name.starts_with(VETH_PREFIX)
                && link.kind == Some(InfoKind::Veth)
                && link.controller == Some(self.inner.bridge_index);
            if ours && !known.contains(&link.name) {
                tracing::info!(veth = %link.name, "removing a pod interface no pod owns");
                self.inner.nl.delete_link(link.index, &link.name).await?;
            }
        }
        Ok(())
    }

    /// Removes everything skiff's networking created in a namespace (`skiff agent --cleanup`):
    /// the nftables table, peer routes, pod veths, the VXLAN device, the bridge and the state
    /// file. Works without a state file too. Pods lose their network. Leaves
    /// `net.ipv4.ip_forward` as it is, since other software may rely on it.
    pub async fn cleanup_all(cleanup: &CleanupConfig) -> Result<CleanupReport, NetError> {
        let ns = open_ns(&cleanup.netns)?;
        let nl = Netlink::connect(&ns).await?;
        let path = state::state_path(&cleanup.state_dir);
        let recorded = match state::load(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable state file during cleanup");
                None
            }
        };
        let mut report = CleanupReport::default();

        nft::delete_table(&ns).await?;
        report.service_addresses = proxy::remove_all(&ns, &nl).await?;
        policy::remove_all(&ns).await?;
        for route in nl.skiff_routes().await? {
            nl.delete_route(route).await?;
            report.routes += 1;
        }

        let bridge = recorded
            .as_ref()
            .map(|s| s.bridge.clone())
            .unwrap_or_else(|| cleanup.bridge.clone());
        let mut names: Vec<String> = recorded
            .as_ref()
            .map(|s| s.pods.values().map(|p| p.host_veth.clone()).collect())
            .unwrap_or_default();
        names.extend(recorded.as_ref().and_then(|s| s.vxlan_device.clone()));
        for link in nl.links().await? {
            let pod_veth = link.name.starts_with(VETH_PREFIX) && link.kind == Some(InfoKind::Veth);
            let vxlan = link.name.starts_with("skiff.") && link.kind == Some(InfoKind::Vxlan);
            if (pod_veth || vxlan) && !names.contains(&link.name) {
                names.push(link.name.clone());
            }
        }
        for name in names {
            if let Some(link) = nl.link_by_name(&name).await? {
                nl.delete_link(link.index, &name).await?;
                report.links.push(name);
            }
        }
        if let Some(link) = nl.link_by_name(&bridge).await? {
            if link.kind == Some(InfoKind::Bridge) {
                nl.delete_link(link.index, &bridge).await?;
                report.links.push(bridge);
            }
        }
        report.state_removed = path.exists();
        state::remove(&path)?;
        tracing::info!(links = ?report.links, routes = report.routes, "pod network removed");
        Ok(report)
    }

    /// Path of the persisted state file.
    pub fn state_file(&self) -> &Path {
        &self.inner.state_path
    }
}

/// A task that fsyncs the state file whenever it was rewritten (coalescing bursts); it ends
/// when the network manager is dropped.
fn spawn_state_flusher(path: PathBuf) -> watch::Sender<u64> {
    let (tx, mut rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            rx.borrow_and_update();
            let file = path.clone();
            match tokio::task::spawn_blocking(move || state::sync(&file)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "flushing the network state"),
                Err(e) => tracing::warn!(error = %e, "flushing the network state"),
            }
        }
    });
    tx
}

/// Strict reverse-path filtering on the uplink drops the answers of other nodes to pod
/// traffic that is not masqueraded when it arrives by another path (VXLAN); say so.
async fn warn_about_rp_filter(ns: &NetNs, uplink: &str, backend: Backend) {
    if backend == Backend::HostGw {
        return;
    }
    let all = sysctl::read(ns, "net/ipv4/conf/all/rp_filter").await.ok();
    let dev = sysctl::read(ns, &format!("net/ipv4/conf/{uplink}/rp_filter"))
        .await
        .ok();
    if all.as_deref() == Some("1") || dev.as_deref() == Some("1") {
        tracing::warn!(
            uplink,
            "strict rp_filter is on; pod-to-node traffic across VXLAN may be dropped. \
             Set net.ipv4.conf.all.rp_filter and net.ipv4.conf.{uplink}.rp_filter to 2 (loose)"
        );
    }
}
