//! Settings of `skiff server`, filled in by the binary from flags, environment and config file.

use std::net::IpAddr;
use std::path::PathBuf;

/// Everything `skiff server` is told on start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Root of all state (`DIR/server/...`, and `DIR/agent/...` for the local node).
    pub data_dir: PathBuf,
    /// TCP port of the HTTPS API and UDP port of the node link.
    pub https_listen_port: u16,
    /// Address both listeners bind to.
    pub bind_address: IpAddr,
    /// Address other machines use to reach this server, if not the bind address.
    pub advertise_address: Option<IpAddr>,
    /// Name of the server's own node.
    pub node_name: String,
    /// Labels (`K=V`) for the server's own node.
    pub node_labels: Vec<String>,
    /// Taints (`K=V:EFFECT`) for the server's own node.
    pub node_taints: Vec<String>,
    /// Pod capacity of the server's own node.
    pub max_pods: u32,
    /// Run the control plane only, without a local node.
    pub disable_agent: bool,
    /// Pod network of the cluster (`10.42.0.0/16`).
    pub cluster_cidr: String,
    /// Delete the objects of manifests removed from `DIR/server/manifests` (and objects
    /// removed from a manifest).
    pub manifests_prune: bool,
    /// Range of Service ClusterIPs (`10.43.0.0/16`); its first address is the `kubernetes`
    /// Service's.
    pub service_cidr: skiff_apiserver::ServiceCidr,
    /// DNS domain of the cluster (`--cluster-domain`, `cluster.local`): Services are
    /// `NAME.NAMESPACE.svc.DOMAIN`. Told to every node (its resolver answers for it).
    pub cluster_domain: String,
    /// Range of node ports for NodePort and LoadBalancer Services (`30000-32767`).
    pub service_node_port_range: skiff_apiserver::NodePortRange,
    /// Join token secret to use instead of a generated one.
    pub token: Option<String>,
    /// Timings and limits of the scheduler and controllers.
    pub controllers: crate::ControllerSettings,
    /// How nodes reach each other's pods (`vxlan`, `host-gw`), told to every agent.
    pub flannel_backend: String,
    /// How often agents send heartbeats (and renew their Lease).
    pub node_heartbeat_interval: std::time::Duration,
    /// Encrypt Secrets at rest (`DIR/server/cred/encryption-config.json` holds the keys).
    pub secrets_encryption: bool,
    /// How long Events are kept after their last activity.
    pub event_ttl: std::time::Duration,
    /// Images handed over to agents that lack them (the binary gives the server's image store,
    /// the one `skiff image import --data-dir DIR` fills); `None`: agents use registries only.
    pub images: Option<std::sync::Arc<dyn skiff_link::quic::ImageSource>>,
}
