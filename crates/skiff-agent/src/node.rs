//! The Node the agent registers: labels, taints, capacity and allocatable from the machine
//! (minus `--system-reserved` and the hard eviction thresholds, as the kubelet computes them),
//! the pressure conditions, addresses, nodeInfo and the images in the store.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    ContainerImage, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::config::{parse_labels, parse_taints, AgentConfig, SystemReserved, CONTROL_PLANE_LABEL};
use crate::error::AgentError;

/// Hard eviction threshold of available memory (upstream default `memory.available<100Mi`).
pub const EVICTION_MEMORY_BYTES: i64 = 100 << 20;
/// Hard eviction threshold of the node file system (upstream default `nodefs.available<10%`).
pub const EVICTION_NODEFS_PERCENT: u64 = 10;
/// PID pressure when fewer than this share of process ids are free.
pub const PID_PRESSURE_PERCENT: u64 = 5;
/// Images listed in the node status (upstream `--node-status-max-images`).
pub const MAX_IMAGES: usize = 50;

/// What the machine has, read from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: i64,
    /// Total memory, bytes.
    pub memory_total: i64,
    /// Available memory (MemAvailable), bytes.
    pub memory_available: i64,
    /// Size of the data directory's file system, bytes.
    pub storage_total: i64,
    /// Free space of that file system for unprivileged users, bytes.
    pub storage_available: i64,
    /// Highest pid + 1.
    pub pid_max: i64,
    /// Threads running now.
    pub pids_used: i64,
}

fn meminfo_kib(text: &str, key: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<i64>().ok())
}

impl Machine {
    /// Reads the machine's figures; `data_dir` names the file system pods write to.
    pub fn read(data_dir: &Path) -> Result<Machine, AgentError> {
        let meminfo =
            std::fs::read_to_string("/proc/meminfo").map_err(|e| AgentError::Machine {
                what: "/proc/meminfo",
                reason: e.to_string(),
            })?;
        let memory_total = meminfo_kib(&meminfo, "MemTotal").ok_or(AgentError::Machine {
            what: "MemTotal in /proc/meminfo",
            reason: "missing".into(),
        })? * 1024;
        let memory_available = meminfo_kib(&meminfo, "MemAvailable")
            .map(|k| k * 1024)
            .unwrap_or(memory_total);
        // SAFETY: sysconf has no memory-safety preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
        let fs = rustix::fs::statvfs(data_dir).map_err(|e| AgentError::Machine {
            what: "the data directory's file system",
            reason: format!("statvfs {}: {e}", data_dir.display()),
        })?;
        let block = fs.f_frsize.max(1) as i64;
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(32768);
        // The fourth field of /proc/loadavg is "running/total" scheduling entities.
        let pids_used = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| {
                let field = t.split_whitespace().nth(3)?;
                field.split_once('/')?.1.parse::<i64>().ok()
            })
            .unwrap_or(0);
        Ok(Machine {
            cpus,
            memory_total,
            memory_available,
            storage_total: fs.f_blocks as i64 * block,
            storage_available: fs.f_bavail as i64 * block,
            pid_max,
            pids_used,
        })
    }
}

/// The address this machine uses to reach `server` (the source address the kernel picks);
/// for a server on loopback, the address of the default route; else the first global IPv4
/// address of an interface.
pub fn detect_node_ip(server: Option<std::net::SocketAddr>) -> Option<IpAddr> {
    let probe = |target: std::net::SocketAddr| -> Option<IpAddr> {
        let local: std::net::SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let socket = std::net::UdpSocket::bind(local).ok()?;
        socket.connect(target).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    };
    if let Some(ip) = server.and_then(probe) {
        return Some(ip);
    }
    // TEST-NET-3: only a route lookup happens, no packet is sent.
    if let Some(ip) = "203.0.113.1:9".parse().ok().and_then(probe) {
        return Some(ip);
    }
    first_interface_ipv4().map(IpAddr::V4)
}

/// The first IPv4 address of an interface that is up and not loopback.
fn first_interface_ipv4() -> Option<std::net::Ipv4Addr> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cursor = addrs;
    while !cursor.is_null() {
        // SAFETY: cursor walks the list getifaddrs returned; entries stay valid until freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let up = entry.ifa_flags & libc::IFF_UP as u32 != 0;
        let loopback = entry.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
        if !up || loopback || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names.
        let family = unsafe { (*entry.ifa_addr).sa_family } as i32;
        if family != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        if !ip.is_link_local() {
            found = Some(ip);
            break;
        }
    }
    // SAFETY: addrs came from getifaddrs.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

/// Kubernetes' spelling of this machine's architecture.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// CPU quantity from milli-CPUs, as upstream prints it (`2`, `1500m`).
pub fn cpu_quantity(millis: i64) -> Quantity {
    let millis = millis.max(0);
    if millis % 1000 == 0 {
        Quantity((millis / 1000).to_string())
    } else {
        Quantity(format!("{millis}m"))
    }
}

/// Byte quantity as upstream prints node figures (`24553448Ki`).
pub fn bytes_quantity(bytes: i64) -> Quantity {
    let bytes = bytes.max(0);
    if bytes % 1024 == 0 {
        Quantity(format!("{}Ki", bytes / 1024))
    } else {
        Quantity(bytes.to_string())
    }
}

/// Capacity and allocatable of a node.
pub fn resources(
    machine: &Machine,
    reserved: &SystemReserved,
    max_pods: u32,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), cpu_quantity(machine.cpus * 1000));
    capacity.insert("memory".to_string(), bytes_quantity(machine.memory_total));
    capacity.insert(
        "ephemeral-storage".to_string(),
        bytes_quantity(machine.storage_total),
    );
    capacity.insert("pods".to_string(), Quantity(max_pods.to_string()));
    capacity.insert("hugepages-2Mi".to_string(), Quantity("0".into()));
    capacity.insert("hugepages-1Gi".to_string(), Quantity("0".into()));

    let mut allocatable = capacity.clone();
    allocatable.insert(
        "cpu".to_string(),
        cpu_quantity(machine.cpus * 1000 - reserved.cpu_millis),
    );
    allocatable.insert(
        "memory".to_string(),
        bytes_quantity(machine.memory_total - reserved.memory_bytes - EVICTION_MEMORY_BYTES),
    );
    let nodefs_threshold = machine.storage_total / 100 * EVICTION_NODEFS_PERCENT as i64;
    allocatable.insert(
        "ephemeral-storage".to_string(),
        bytes_quantity(machine.storage_total - reserved.ephemeral_storage_bytes - nodefs_threshold),
    );
    (capacity, allocatable)
}

/// One condition as the kubelet words it.
fn condition(
    type_: &str,
    pressure: bool,
    reasons: (&str, &str),
    messages: (&str, &str),
) -> NodeCondition {
    NodeCondition {
        type_: type_.to_string(),
        status: if pressure { "True" } else { "False" }.to_string(),
        reason: Some(if pressure { reasons.1 } else { reasons.0 }.to_string()),
        message: Some(if pressure { messages.1 } else { messages.0 }.to_string()),
        ..Default::default()
    }
}

/// The node conditions: Ready plus the three pressure conditions.
pub fn conditions(
    machine: &Machine,
    reserved: &SystemReserved,
    network_ready: bool,
) -> Vec<NodeCondition> {
    let memory = machine.memory_available < EVICTION_MEMORY_BYTES;
    let disk = machine.storage_total > 0
        && (machine.storage_available as u128 * 100)
            < (machine.storage_total as u128 * EVICTION_NODEFS_PERCENT as u128);
    let pid_limit = (machine.pid_max - reserved.pids).max(1);
    let pid = (pid_limit - machine.pids_used) * 100 < pid_limit * PID_PRESSURE_PERCENT as i64;
    let ready = NodeCondition {
        type_: "Ready".to_string(),
        status: if network_ready { "True" } else { "False" }.to_string(),
        reason: Some(
            if network_ready {
                "KubeletReady"
            } else {
                "KubeletNotReady"
            }
            .to_string(),
        ),
        message: Some(
            if network_ready {
                "skiff agent is posting ready status"
            } else {
                "container runtime network not ready: the node has no pod CIDR yet"
            }
            .to_string(),
        ),
        ..Default::default()
    };
    vec![
        condition(
            "MemoryPressure",
            memory,
            ("KubeletHasSufficientMemory", "KubeletHasInsufficientMemory"),
            (
                "kubelet has sufficient memory available",
                "kubelet has insufficient memory available",
            ),
        ),
        condition(
            "DiskPressure",
            disk,
            ("KubeletHasNoDiskPressure", "KubeletHasDiskPressure"),
            ("kubelet has no disk pressure", "kubelet has disk pressure"),
        ),
        condition(
            "PIDPressure",
            pid,
            ("KubeletHasSufficientPID", "KubeletHasInsufficientPID"),
            (
                "kubelet has sufficient PID available",
                "kubelet has insufficient PID available",
            ),
        ),
        ready,
    ]
}

/// The kubelet's node status event reasons of each pressure condition: (no pressure, pressure).
const PRESSURE_EVENTS: [(&str, &str, &str); 3] = [
    (
        "MemoryPressure",
        "NodeHasSufficientMemory",
        "NodeHasInsufficientMemory",
    ),
    (
        "DiskPressure",
        "NodeHasNoDiskPressure",
        "NodeHasDiskPressure",
    ),
    (
        "PIDPressure",
        "NodeHasSufficientPID",
        "NodeHasInsufficientPID",
    ),
];

/// The reasons of the events the kubelet records (`Node N status is now: REASON`) for the
/// pressure conditions of `after` that differ from `before`; with no `before` (the agent just
/// started), only the conditions under pressure, so a disk filling up is seen before it is full.
pub fn pressure_events(before: Option<&Node>, after: &Node) -> Vec<&'static str> {
    let status = |node: &Node, type_: &str| {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|list| list.iter().find(|c| c.type_ == type_))
            .map(|c| c.status == "True")
    };
    PRESSURE_EVENTS
        .iter()
        .filter_map(|&(type_, relieved, pressed)| {
            let now = status(after, type_)?;
            let was = before.and_then(|b| status(b, type_));
            let changed = match was {
                Some(was) => was != now,
                None => now,
            };
            changed.then_some(if now { pressed } else { relieved })
        })
        .collect()
}

/// Facts for `status.nodeInfo`.
pub fn system_info() -> NodeSystemInfo {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into());
    NodeSystemInfo {
        architecture: go_arch().to_string(),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
        kernel_version: read("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: format!("{}-skiff", skiff_types::KUBERNETES_VERSION),
        machine_id: read("/etc/machine-id"),
        operating_system: "linux".into(),
        os_image,
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
        ..Default::default()
    }
}

/// The node's images for `status.images`, biggest first, at most [`MAX_IMAGES`].
pub fn images(list: &[skiff_image::ImageSummary]) -> Vec<ContainerImage> {
    let mut images: Vec<ContainerImage> = list
        .iter()
        .map(|image| ContainerImage {
            names: Some(
                image
                    .repo_digests
                    .iter()
                    .chain(image.repo_tags.iter())
                    .cloned()
                    .collect(),
            ),
            size_bytes: Some(image.size as i64),
        })
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    images.truncate(MAX_IMAGES);
    images
}

/// Everything the registration carries that changes over time.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// Machine figures.
    pub machine: Machine,
    /// The node address.
    pub node_ip: IpAddr,
    /// Host name.
    pub hostname: String,
    /// Images in the store.
    pub images: Vec<ContainerImage>,
    /// Whether the pod network is up.
    pub network_ready: bool,
}

/// The memory cap of the pods' parent cgroup: capacity minus system-reserved, as the kubelet's
/// `--enforce-node-allocatable=pods` sets on `kubepods` (the eviction threshold is left out of
/// the cgroup limit there too: eviction acts before the cap is reached).
pub fn pods_memory_limit(machine: &Machine, reserved: &SystemReserved) -> u64 {
    u64::try_from(machine.memory_total.saturating_sub(reserved.memory_bytes)).unwrap_or(0)
}

/// The Node to register.
pub fn build(config: &AgentConfig, facts: &NodeFacts) -> Result<Node, AgentError> {
    let reserved = SystemReserved::parse(&config.system_reserved)?;
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".into(), config.node_name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), go_arch().into());
    labels.insert("node.kubernetes.io/instance-type".into(), "skiff".into());
    if config.control_plane {
        labels.insert(CONTROL_PLANE_LABEL.into(), "true".into());
    }
    for (key, value) in parse_labels(&config.node_labels)? {
        labels.insert(key, value);
    }
    let taints: Vec<Taint> = parse_taints(&config.node_taints)?
        .into_iter()
        .map(|t| Taint {
            key: t.key,
            value: t.value,
            effect: t.effect,
            time_added: None,
        })
        .collect();
    let (capacity, allocatable) = resources(&facts.machine, &reserved, config.max_pods);
    let mut addresses = vec![NodeAddress {
        type_: "InternalIP".into(),
        address: facts.node_ip.to_string(),
    }];
    if !facts.hostname.is_empty() {
        addresses.push(NodeAddress {
            type_: "Hostname".into(),
            address: facts.hostname.clone(),
        });
    }
    Ok(Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            conditions: Some(conditions(&facts.machine, &reserved, facts.network_ready)),
            addresses: Some(addresses),
            node_info: Some(system_info()),
            images: Some(facts.images.clone()),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory_total: 8 << 30,
            memory_available: 4 << 30,
            storage_total: 100 << 30,
            storage_available: 50 << 30,
            pid_max: 32768,
            pids_used: 300,
        }
    }

    #[test]
    fn pods_memory_cap_is_capacity_minus_reserved() {
        let reserved = SystemReserved::parse("memory=1Gi").unwrap();
        assert_eq!(pods_memory_limit(&machine(), &reserved), 7 << 30);
        let greedy = SystemReserved::parse("memory=16Gi").unwrap();
        assert_eq!(pods_memory_limit(&machine(), &greedy), 0);
    }

    #[test]
    fn allocatable_subtracts_reserved_and_eviction_thresholds() {
        let reserved = SystemReserved::parse("cpu=500m,memory=1Gi,ephemeral-storage=10Gi").unwrap();
        let (capacity, allocatable) = resources(&machine(), &reserved, 110);
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "8388608Ki");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(allocatable["cpu"].0, "1500m");
        // 8 GiB - 1 GiB - 100 MiB
        assert_eq!(
            allocatable["memory"].0,
            format!("{}Ki", (7 << 20) - 100 * 1024)
        );
        // 100 GiB - 10 GiB - 10 %
        let storage = (100i64 << 30) - (10 << 30) - (100i64 << 30) / 100 * 10;
        assert_eq!(
            allocatable["ephemeral-storage"].0,
            format!("{}Ki", storage / 1024)
        );
    }

    #[test]
    fn pressure_conditions_follow_the_thresholds() {
        let none = SystemReserved::default();
        let healthy = conditions(&machine(), &none, true);
        assert!(healthy
            .iter()
            .filter(|c| c.type_ != "Ready")
            .all(|c| c.status == "False"));
        let mut low = machine();
        low.memory_available = 50 << 20;
        low.storage_available = 5 << 30;
        low.pids_used = 32000;
        let stressed = conditions(&low, &none, false);
        for (t, reason) in [
            ("MemoryPressure", "KubeletHasInsufficientMemory"),
            ("DiskPressure", "KubeletHasDiskPressure"),
            ("PIDPressure", "KubeletHasInsufficientPID"),
        ] {
            let c = stressed.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref()),
                ("True", Some(reason))
            );
        }
        let ready = stressed.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
    }

    #[test]
    fn pressure_events_follow_condition_changes() {
        let none = SystemReserved::default();
        let node_of = |machine: &Machine| Node {
            status: Some(NodeStatus {
                conditions: Some(conditions(machine, &none, true)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let healthy = node_of(&machine());
        let mut low = machine();
        low.storage_available = low.storage_total / 20;
        let full = node_of(&low);
        assert!(pressure_events(None, &healthy).is_empty());
        assert_eq!(pressure_events(None, &full), vec!["NodeHasDiskPressure"]);
        assert!(pressure_events(Some(&healthy), &healthy).is_empty());
        assert_eq!(
            pressure_events(Some(&healthy), &full),
            vec!["NodeHasDiskPressure"]
        );
        assert!(pressure_events(Some(&full), &full).is_empty());
        assert_eq!(
            pressure_events(Some(&full), &healthy),
            vec!["NodeHasNoDiskPressure"]
        );
    }

    #[test]
    fn the_machine_can_be_read() {
        let m = Machine::read(Path::new("/")).unwrap();
        assert!(m.cpus >= 1 && m.memory_total > 0 && m.storage_total > 0);
    }

    #[test]
    fn registration_carries_labels_taints_and_role() {
        let mut config = AgentConfig::new("/tmp/x", "https://127.0.0.1:6443", "edge-1");
        config.control_plane = true;
        config.node_labels = vec!["zone=north".into()];
        config.node_taints = vec!["dedicated=edge:NoSchedule".into()];
        let node = build(
            &config,
            &NodeFacts {
                machine: machine(),
                node_ip: "10.0.0.5".parse().unwrap(),
                hostname: "edge-1".into(),
                images: Vec::new(),
                network_ready: true,
            },
        )
        .unwrap();
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[CONTROL_PLANE_LABEL], "true");
        assert_eq!(labels["zone"], "north");
        assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
        let taint = &node.spec.unwrap().taints.unwrap()[0];
        assert_eq!(
            (taint.key.as_str(), taint.effect.as_str()),
            ("dedicated", "NoSchedule")
        );
        let status = node.status.unwrap();
        assert_eq!(status.addresses.unwrap()[0].address, "10.0.0.5");
        assert_eq!(status.node_info.unwrap().operating_system, "linux");
    }
}
