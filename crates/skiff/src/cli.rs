//! The command line: every flag of the contract in DESIGN.md, each also readable from the
//! environment (`SKIFF_<NAME>`) and, for `server` and `agent`, from the YAML config file.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default data directory of every subcommand.
pub(crate) const DEFAULT_DATA_DIR: &str = "/var/lib/skiff";
/// Config file read when `--config` is not given and the file exists.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "/etc/skiff/config.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes-style cluster for small edge machines, in one binary"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the control plane (API, datastore, scheduler, controllers) and, unless disabled, a local node.
    Server(ServerArgs),
    /// Join this machine to a cluster as a worker node.
    Agent(AgentArgs),
    /// Manage the node's image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the skiff version, its commit and the Kubernetes API version it serves.
    Version,
    /// Manage join tokens (bootstrap-token Secrets in kube-system).
    Token(TokenArgs),
    /// Secrets encryption at rest: show its status, rotate its key.
    SecretsEncrypt(SecretsEncryptArgs),
    /// Developer and benchmark tools.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Check the config file, the kernel and the system for what skiff needs; prints what is
    /// missing and how to fix it (exit status 1 when something required is missing).
    CheckConfig(CheckConfigArgs),
}

/// Which command `check-config` checks the machine for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CheckRole {
    /// `skiff server` (also checks that the API port is free).
    Server,
    /// `skiff agent`.
    Agent,
}

#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// Config file to check (default: /etc/skiff/config.yaml when it exists).
    #[arg(long, env = "SKIFF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check for this command (default: `agent` when the config file names a server, else
    /// `server`).
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Option<CheckRole>,
    /// API (TCP) and node link (UDP) port that must be free (default: the config file's, else
    /// 6443).
    #[arg(long, value_name = "PORT")]
    pub https_listen_port: Option<u16>,
    /// Data directory to check (default: the config file's, else /var/lib/skiff).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Read the kernel's files (`proc/`, `sys/`, `boot/`, `lib/modules/`) under this directory
    /// instead of `/`: checks a mounted image of another machine, or a test tree.
    #[arg(long, default_value = "/", value_name = "DIR")]
    pub host_root: PathBuf,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags shared by the long-running commands.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Directory holding all state of this machine.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// YAML config file; keys are flag names without the leading dashes.
    #[arg(long, env = "SKIFF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log level or filter (`info`, `debug`, `skiff_store=trace,info`); RUST_LOG wins when set.
    #[arg(
        long,
        env = "SKIFF_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
    /// Log format.
    #[arg(
        long,
        env = "SKIFF_LOG_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

/// Flags describing the node this process runs (the server's own node, or an agent).
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Node name (default: the host name).
    #[arg(long, env = "SKIFF_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// Label to put on the node, `KEY=VALUE`; repeatable.
    #[arg(
        long = "node-label",
        env = "SKIFF_NODE_LABEL",
        value_delimiter = ',',
        value_name = "K=V"
    )]
    pub node_labels: Vec<String>,
    /// Taint to put on the node, `KEY=VALUE:EFFECT`; repeatable.
    #[arg(
        long = "node-taint",
        env = "SKIFF_NODE_TAINT",
        value_delimiter = ',',
        value_name = "K=V:EFFECT"
    )]
    pub node_taints: Vec<String>,
    /// Maximum number of pods on this node.
    #[arg(long, env = "SKIFF_MAX_PODS", default_value_t = 110, value_name = "N")]
    pub max_pods: u32,
    /// The node's address (its InternalIP); default: the address the route to the server uses.
    #[arg(long, env = "SKIFF_NODE_IP", value_name = "ADDR")]
    pub node_ip: Option<IpAddr>,
    /// Resources kept for the system, subtracted from the node's allocatable
    /// (`cpu=500m,memory=512Mi,ephemeral-storage=1Gi,pid=1000`).
    #[arg(
        long,
        env = "SKIFF_SYSTEM_RESERVED",
        default_value = "",
        value_name = "LIST"
    )]
    pub system_reserved: String,
    /// Parent cgroup of every pod of this node.
    #[arg(
        long,
        env = "SKIFF_CGROUP_PARENT",
        default_value = "/skiff",
        value_name = "PATH"
    )]
    pub cgroup_parent: PathBuf,
    /// Registry mirrors, credentials and TLS settings for image pulls (k3s registries.yaml
    /// format); read when it exists.
    #[arg(
        long = "registry-config",
        env = "SKIFF_REGISTRY_CONFIG",
        default_value = skiff_image::DEFAULT_REGISTRY_CONFIG,
        value_name = "FILE"
    )]
    pub node_registry_config: PathBuf,
    /// Run this node inside the network namespace at this path (e.g. `/var/run/netns/n1`):
    /// several nodes on one machine, for development and tests.
    #[arg(long, env = "SKIFF_NETNS", value_name = "PATH")]
    pub netns: Option<PathBuf>,
    /// How this node's pods reach the `kubernetes` Service (the API): `auto` through the node
    /// link when a TCP connect to the API's advertised address fails (probed at start, on
    /// every reconnect and every 30 s), `always` through the link, `never` directly.
    #[arg(
        long,
        env = "SKIFF_API_VIA_LINK",
        value_enum,
        default_value = "auto",
        value_name = "MODE"
    )]
    pub api_via_link: ApiViaLinkArg,
}

/// `--api-via-link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ApiViaLinkArg {
    /// Through the link when the API's address does not answer.
    Auto,
    /// Always through the link.
    Always,
    /// Never through the link.
    Never,
}

impl From<ApiViaLinkArg> for skiff_agent::ApiViaLink {
    fn from(arg: ApiViaLinkArg) -> Self {
        match arg {
            ApiViaLinkArg::Auto => skiff_agent::ApiViaLink::Auto,
            ApiViaLinkArg::Always => skiff_agent::ApiViaLink::Always,
            ApiViaLinkArg::Never => skiff_agent::ApiViaLink::Never,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// TCP port of the HTTPS API; the node link listens on the same UDP port.
    #[arg(
        long,
        env = "SKIFF_HTTPS_LISTEN_PORT",
        default_value_t = 6443,
        value_name = "PORT"
    )]
    pub https_listen_port: u16,
    /// Address the API and the node link listen on.
    #[arg(
        long,
        env = "SKIFF_BIND_ADDRESS",
        default_value = "0.0.0.0",
        value_name = "ADDR"
    )]
    pub bind_address: IpAddr,
    /// Address other machines reach this server at (added to the serving certificate).
    #[arg(long, env = "SKIFF_ADVERTISE_ADDRESS", value_name = "ADDR")]
    pub advertise_address: Option<IpAddr>,
    /// Do not run a node agent inside the server.
    #[arg(long, env = "SKIFF_DISABLE_AGENT")]
    pub disable_agent: bool,
    /// Pod network of the whole cluster, split into one range per node.
    #[arg(
        long,
        env = "SKIFF_CLUSTER_CIDR",
        default_value = "10.42.0.0/16",
        value_name = "CIDR"
    )]
    pub cluster_cidr: String,
    /// Range Service ClusterIPs are allocated from; its first address is the `kubernetes`
    /// Service's. (Traffic to Service addresses is not routed yet: no kube-proxy.)
    #[arg(
        long,
        env = "SKIFF_SERVICE_CIDR",
        default_value = "10.43.0.0/16",
        value_name = "CIDR"
    )]
    pub service_cidr: skiff_server::ServiceCidr,
    /// DNS domain of the cluster: Services resolve as NAME.NAMESPACE.svc.DOMAIN.
    #[arg(
        long,
        env = "SKIFF_CLUSTER_DOMAIN",
        default_value = "cluster.local",
        value_name = "DOMAIN",
        value_parser = parse_cluster_domain
    )]
    pub cluster_domain: String,
    /// Ports NodePort and LoadBalancer Services get their node ports from.
    #[arg(
        long,
        env = "SKIFF_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767",
        value_name = "FIRST-LAST"
    )]
    pub service_node_port_range: skiff_server::NodePortRange,
    /// Delete what a manifest of DIR/server/manifests created when the file is removed (or
    /// the object is removed from it); `false` leaves such objects in place.
    #[arg(
        long,
        env = "SKIFF_MANIFESTS_PRUNE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub manifests_prune: bool,
    /// Join token secret to use instead of a generated one.
    #[arg(long, env = "SKIFF_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
    /// How nodes reach each other's pods: `vxlan` (works across routed networks) or `host-gw`
    /// (plain routes; all nodes on one L2 segment).
    #[arg(
        long,
        env = "SKIFF_FLANNEL_BACKEND",
        default_value = "vxlan",
        value_name = "BACKEND"
    )]
    pub flannel_backend: String,
    /// How often agents send heartbeats (each renews the node's Lease); keep it well below
    /// --node-monitor-grace-period.
    #[arg(long, env = "SKIFF_NODE_HEARTBEAT_INTERVAL", default_value = "10s",
        value_parser = skiff_server::parse_duration, value_name = "DURATION")]
    pub node_heartbeat_interval: std::time::Duration,
    /// Encrypt Secrets at rest (AES-GCM; keys in DIR/server/cred/encryption-config.json).
    #[arg(long, env = "SKIFF_SECRETS_ENCRYPTION")]
    pub secrets_encryption: bool,
    /// How long Events are kept after their last activity.
    #[arg(long, env = "SKIFF_EVENT_TTL", default_value = "1h",
        value_parser = skiff_server::parse_duration, value_name = "DURATION")]
    pub event_ttl: std::time::Duration,
    #[command(flatten)]
    pub controllers: ControllerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// URL of the server to join, `https://HOST:PORT`.
    #[arg(
        long,
        env = "SKIFF_SERVER",
        value_name = "URL",
        required_unless_present = "cleanup"
    )]
    pub server: Option<String>,
    /// Join token printed by the server (`DIR/server/node-token`); needed until the node has
    /// its certificate.
    #[arg(long, env = "SKIFF_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
    /// Stop and remove every pod of this node and everything skiff created in its network,
    /// then exit.
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Import OCI or docker-save archives (optionally gzip/zstd compressed) into the image store.
    Import {
        /// Archive files to import.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// List the images in the store.
    Ls {
        #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
        data_dir: PathBuf,
        /// Print image ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove image names (a name, or an id to remove all names of an image), then delete the
    /// content no image needs any more. Layers mounted by running containers are kept.
    Rm {
        /// Image names or ids.
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
        #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Pull an image from a registry into the store.
    Pull {
        /// Image reference, e.g. `busybox` or `registry.example.com:5000/app:1.2`.
        #[arg(value_name = "REF")]
        reference: String,
        #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
        data_dir: PathBuf,
        /// Registry mirrors, credentials and TLS settings (k3s registries.yaml format).
        #[arg(
            long,
            env = "SKIFF_REGISTRY_CONFIG",
            default_value = skiff_image::DEFAULT_REGISTRY_CONFIG,
            value_name = "FILE"
        )]
        registry_config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    /// Data directory of the server (its admin kubeconfig is used).
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR", global = true)]
    pub data_dir: PathBuf,
    /// Kubeconfig to use instead of `DIR/server/admin.kubeconfig`.
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a join token and print it.
    Create {
        /// Lifetime (`30m`, `24h`, `7d`; `0` = never expires).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        ttl: String,
        /// Free text shown by `skiff token list`.
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
    },
    /// List join tokens.
    List,
    /// Revoke a join token: joins with it are refused from now on.
    Revoke {
        /// Token id (the 6 characters before the dot) or the whole token.
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SecretsEncryptArgs {
    #[command(subcommand)]
    pub command: SecretsEncryptCommand,
    /// Data directory of the server.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = DEFAULT_DATA_DIR, value_name = "DIR", global = true)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsEncryptCommand {
    /// Print whether Secrets are encrypted, the rotation stage and the keys.
    Status,
    /// Make a new key the primary one, re-encrypt every stored Secret with it and drop the old
    /// keys (the running server does it without downtime; with no server running, this
    /// command does).
    RotateKeys {
        /// How long to wait for a running server to finish.
        #[arg(long, default_value = "2m", value_parser = skiff_server::parse_duration, value_name = "DURATION")]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DebugCommand {
    /// Run many hollow nodes (real link sessions, no containers) from this process.
    HollowNodes(HollowNodesArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HollowNodesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// URL of the server, `https://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Join token (only needed for nodes that have no certificate in the data dir yet).
    #[arg(long, env = "SKIFF_TOKEN", value_name = "TOKEN")]
    pub token: Option<String>,
    /// Number of nodes.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub count: usize,
    /// Prefix of the node names.
    #[arg(long, default_value = "hollow-", value_name = "PREFIX")]
    pub prefix: String,
    /// Nodes sharing one UDP socket.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub nodes_per_socket: usize,
    /// Nodes joining or connecting at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub start_concurrency: usize,
}

/// Timings and limits of the scheduler and controllers (names as kube-controller-manager's
/// flags; durations as Go writes them: `40s`, `5m`, `1m30s`).
#[derive(Debug, Args)]
pub(crate) struct ControllerArgs {
    /// How often the node lifecycle controller checks node health.
    #[arg(long, env = "SKIFF_NODE_MONITOR_PERIOD", default_value = "5s",
        value_parser = skiff_server::parse_duration, value_name = "DURATION")]
    pub node_monitor_period: std::time::Duration,
    /// How long a node may go without renewing its lease before it is marked unreachable
    /// (its pods are then evicted after their toleration of the unreachable taint).
    #[arg(long, env = "SKIFF_NODE_MONITOR_GRACE_PERIOD", default_value = "40s",
        value_parser = skiff_server::parse_duration, value_name = "DURATION")]
    pub node_monitor_grace_period: std::time::Duration,
    /// How long a new node may take to report Ready before it is marked unreachable.
    #[arg(long, env = "SKIFF_NODE_STARTUP_GRACE_PERIOD", default_value = "60s",
        value_parser = skiff_server::parse_duration, value_name = "DURATION")]
    pub node_startup_grace_period: std::time::Duration,
    /// Finished pods kept before the oldest are deleted (0 disables).
    #[arg(
        long,
        env = "SKIFF_TERMINATED_POD_GC_THRESHOLD",
        default_value_t = 12500,
        value_name = "N"
    )]
    pub terminated_pod_gc_threshold: usize,
    /// Prefix length of each node's pod CIDR within --cluster-cidr.
    #[arg(long, env = "SKIFF_NODE_CIDR_MASK_SIZE", default_value_t = 24,
        value_parser = clap::value_parser!(u8).range(8..=30), value_name = "BITS")]
    pub node_cidr_mask_size: u8,
}

impl ControllerArgs {
    /// The settings the server takes.
    pub(crate) fn settings(&self) -> skiff_server::ControllerSettings {
        skiff_server::ControllerSettings {
            node_monitor_period: self.node_monitor_period,
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_startup_grace_period: self.node_startup_grace_period,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            node_cidr_mask_size: self.node_cidr_mask_size,
        }
    }
}

/// A cluster domain: a DNS subdomain (`cluster.local`), without a trailing dot.
fn parse_cluster_domain(text: &str) -> Result<String, String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!(
            "invalid cluster domain {text:?}: must be a DNS name of lower-case letters, digits, '-' and '.'"
        ));
    }
    Ok(domain)
}
