//! What `skiff check-config` looks at: the kernel's configuration and what the running system
//! shows of it (`/proc`, `/sys`), cgroups, and the tools and sockets skiff uses.
//!
//! Every check reads the machine through a [`Host`], whose root is `/` in real use and a fake
//! tree in tests (`--host-root`), so a deliberately missing feature can be tested. Checks of
//! live resources (sockets, ports, the `nft` binary) look at the running machine itself.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use skiff_runtime::host::{CgroupFacts, CgroupMode};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    /// Present and usable.
    Ok,
    /// Works, but something is degraded or could not be verified.
    Warn,
    /// skiff cannot work (or a part of it cannot) until this is fixed.
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// Group heading (`kernel`, `cgroups`, `system`).
    pub group: &'static str,
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (for `Warn` and `Missing`).
    pub fix: Option<String>,
}

impl Check {
    fn new(group: &'static str, name: impl Into<String>, status: Status, detail: String) -> Self {
        Check {
            group,
            name: name.into(),
            status,
            detail,
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        if self.status != Status::Ok {
            self.fix = Some(fix.into());
        }
        self
    }
}

/// The machine as the checks read it.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// `/`, or a fake tree holding `proc/`, `sys/`, `boot/`, `lib/modules/`.
    pub root: PathBuf,
    /// `uname -r`.
    pub release: String,
}

/// A kernel configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tristate {
    /// Built in.
    Yes,
    /// Built as a module.
    Module,
    /// Not set.
    No,
}

/// The kernel's build configuration (`CONFIG_*`), where it was read from.
#[derive(Debug, Clone, Default)]
pub(crate) struct KernelConfig {
    /// The file read, if one was found.
    pub source: Option<PathBuf>,
    options: BTreeMap<String, Tristate>,
}

impl KernelConfig {
    /// Parses `CONFIG_X=y|m|...` and `# CONFIG_X is not set` lines.
    pub(crate) fn parse(text: &str, source: Option<PathBuf>) -> KernelConfig {
        let mut options = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    if let Some(name) = name.strip_prefix("CONFIG_") {
                        options.insert(name.to_string(), Tristate::No);
                    }
                }
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let Some(name) = name.strip_prefix("CONFIG_") else {
                continue;
            };
            let state = match value {
                "y" => Tristate::Yes,
                "m" => Tristate::Module,
                "n" => Tristate::No,
                // Strings and numbers: set.
                _ => Tristate::Yes,
            };
            options.insert(name.to_string(), state);
        }
        KernelConfig { source, options }
    }

    /// The value of `CONFIG_<name>`; `None` without a config file. An option missing from a
    /// config file is not set.
    pub(crate) fn get(&self, name: &str) -> Option<Tristate> {
        self.source.as_ref()?;
        Some(self.options.get(name).copied().unwrap_or(Tristate::No))
    }
}

impl Host {
    /// The machine (or fake tree) at `root`; the kernel release comes from
    /// `root/proc/sys/kernel/osrelease`.
    pub(crate) fn at(root: &Path) -> Host {
        let release = std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Host {
            root: root.to_path_buf(),
            release,
        }
    }

    /// Whether this is the real machine (live checks of sockets apply to it).
    pub(crate) fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// A path under the root: `path("proc/filesystems")`.
    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn read(&self, relative: &str) -> Option<String> {
        std::fs::read_to_string(self.path(relative)).ok()
    }

    /// The kernel configuration from `/proc/config.gz` or `/boot/config-<release>`.
    pub(crate) fn kernel_config(&self) -> KernelConfig {
        let gz = self.path("proc/config.gz");
        if let Ok(file) = std::fs::File::open(&gz) {
            let mut text = String::new();
            if flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .is_ok()
            {
                return KernelConfig::parse(&text, Some(gz));
            }
        }
        let boot = self.path(&format!("boot/config-{}", self.release));
        if let Ok(text) = std::fs::read_to_string(&boot) {
            return KernelConfig::parse(&text, Some(boot));
        }
        KernelConfig::default()
    }

    /// Whether kernel module `name` is loaded (`/sys/module/<name>`) or installed for this
    /// kernel (`/lib/modules/<release>/modules.dep` or `modules.builtin`).
    pub(crate) fn module_available(&self, name: &str) -> bool {
        if self.path(&format!("sys/module/{name}")).exists() {
            return true;
        }
        let base = format!("lib/modules/{}", self.release);
        let file = format!("/{name}.ko");
        ["modules.dep", "modules.builtin"].iter().any(|list| {
            self.read(&format!("{base}/{list}")).is_some_and(|text| {
                text.lines().any(|l| {
                    let path = l.split(':').next().unwrap_or("");
                    path.contains(&file) || path.ends_with(&format!("/{name}.ko.xz"))
                })
            })
        })
    }
}

/// A kernel feature: the options it needs, their module names, and what the running system
/// shows when it is there.
struct Feature {
    name: &'static str,
    options: &'static [(&'static str, &'static str)],
    /// `Missing` when absent, or `Warn` for optional features.
    severity: Status,
    fix: &'static str,
}

const FEATURES: &[Feature] = &[
    Feature {
        name: "namespaces (net, pid, ipc, uts, mount)",
        options: &[
            ("NAMESPACES", ""),
            ("NET_NS", ""),
            ("PID_NS", ""),
            ("IPC_NS", ""),
            ("UTS_NS", ""),
        ],
        severity: Status::Missing,
        fix: "use a kernel built with CONFIG_NAMESPACES, CONFIG_NET_NS, CONFIG_PID_NS, \
              CONFIG_IPC_NS and CONFIG_UTS_NS (every distribution kernel has them)",
    },
    Feature {
        name: "overlayfs",
        options: &[("OVERLAY_FS", "overlay")],
        severity: Status::Missing,
        fix: "modprobe overlay (and add `overlay` to /etc/modules-load.d/skiff.conf), or use a \
              kernel with CONFIG_OVERLAY_FS",
    },
    Feature {
        name: "nftables (NAT, masquerade, conntrack, fib)",
        options: &[
            ("NF_TABLES", "nf_tables"),
            ("NF_TABLES_INET", ""),
            ("NF_NAT", "nf_nat"),
            ("NFT_NAT", "nft_nat"),
            ("NFT_MASQ", "nft_masq"),
            ("NFT_CT", "nft_ct"),
            ("NFT_FIB_INET", "nft_fib_inet"),
        ],
        severity: Status::Missing,
        fix:
            "modprobe nf_tables nft_nat nft_masq nft_ct nft_fib_inet, or use a kernel with \
              CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, CONFIG_NFT_CT, CONFIG_NFT_FIB_INET",
    },
    Feature {
        name: "veth pairs and bridges",
        options: &[("VETH", "veth"), ("BRIDGE", "bridge")],
        severity: Status::Missing,
        fix: "modprobe veth bridge, or use a kernel with CONFIG_VETH and CONFIG_BRIDGE",
    },
    Feature {
        name: "vxlan (for --flannel-backend vxlan)",
        options: &[("VXLAN", "vxlan")],
        severity: Status::Warn,
        fix: "modprobe vxlan, or run every node with --flannel-backend host-gw (nodes on one L2 \
              segment)",
    },
    Feature {
        name: "process events connector (container exit codes)",
        options: &[("CONNECTOR", "cn"), ("PROC_EVENTS", "")],
        severity: Status::Missing,
        fix: "use a kernel with CONFIG_CONNECTOR=y and CONFIG_PROC_EVENTS=y",
    },
    Feature {
        name: "seccomp filters",
        options: &[("SECCOMP", ""), ("SECCOMP_FILTER", "")],
        severity: Status::Missing,
        fix: "use a kernel with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER (pods' RuntimeDefault \
              profile needs them)",
    },
    Feature {
        name: "POSIX message queues (IPC namespaces)",
        options: &[("POSIX_MQUEUE", "")],
        severity: Status::Warn,
        fix: "use a kernel with CONFIG_POSIX_MQUEUE (containers cannot use mqueue otherwise)",
    },
];

/// What the running system shows of a feature, when the kernel config cannot be read (or
/// says "module").
fn runtime_evidence(host: &Host, feature: &str) -> Option<bool> {
    Some(match feature {
        f if f.starts_with("namespaces") => ["net", "pid", "ipc", "uts", "mnt"]
            .iter()
            .all(|ns| host.path(&format!("proc/self/ns/{ns}")).exists()),
        "overlayfs" => host.read("proc/filesystems").is_some_and(|t| {
            t.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        }),
        f if f.starts_with("seccomp") => host
            .read("proc/self/status")
            .is_some_and(|t| t.lines().any(|l| l.starts_with("Seccomp:"))),
        f if f.starts_with("POSIX") => host.path("proc/sys/fs/mqueue").exists(),
        _ => return None,
    })
}

/// The kernel checks.
pub(crate) fn kernel_checks(host: &Host, config: &KernelConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(kernel_version(host));
    checks.push(match &config.source {
        Some(source) => Check::new(
            "kernel",
            "kernel configuration",
            Status::Ok,
            format!("read from {}", source.display()),
        ),
        None => Check::new(
            "kernel",
            "kernel configuration",
            Status::Warn,
            "neither /proc/config.gz nor /boot/config-<release> is readable; the checks below \
             rely on what the running system shows"
                .into(),
        )
        .fix(
            "modprobe configs (for /proc/config.gz), or install the kernel's config file in /boot",
        ),
    });
    for feature in FEATURES {
        checks.push(feature_check(host, config, feature));
    }
    checks
}

fn kernel_version(host: &Host) -> Check {
    let parsed: Vec<u32> = host
        .release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    let (major, minor) = match parsed.as_slice() {
        [major, minor] => (*major, *minor),
        _ => {
            return Check::new(
                "kernel",
                "kernel version",
                Status::Warn,
                format!("cannot read the kernel release ({:?})", host.release),
            )
        }
    };
    let version = (major, minor);
    if version < (5, 3) {
        Check::new(
            "kernel",
            "kernel version",
            Status::Missing,
            format!(
                "{} is too old: skiff needs pidfds (5.3 or newer)",
                host.release
            ),
        )
        .fix("upgrade to a 5.10 or newer kernel")
    } else if version < (5, 10) {
        Check::new(
            "kernel",
            "kernel version",
            Status::Warn,
            format!("{} works; 5.10 or newer is recommended", host.release),
        )
        .fix("upgrade the kernel when you can")
    } else {
        Check::new("kernel", "kernel version", Status::Ok, host.release.clone())
    }
}

fn feature_check(host: &Host, config: &KernelConfig, feature: &Feature) -> Check {
    let evidence = runtime_evidence(host, feature.name);
    if evidence == Some(true) {
        return Check::new(
            "kernel",
            feature.name,
            Status::Ok,
            "available in the running kernel".into(),
        );
    }
    if config.source.is_none() {
        // No config: trust what is loaded or installed.
        let modules: Vec<&str> = feature
            .options
            .iter()
            .map(|(_, m)| *m)
            .filter(|m| !m.is_empty())
            .collect();
        let all_modules = !modules.is_empty() && modules.iter().all(|m| host.module_available(m));
        return match (evidence, all_modules) {
            (_, true) => Check::new(
                "kernel",
                feature.name,
                Status::Ok,
                "modules loaded or installed".into(),
            ),
            (Some(false), _) => Check::new(
                "kernel",
                feature.name,
                feature.severity,
                "not available in the running kernel".into(),
            )
            .fix(feature.fix),
            (None | Some(true), false) => Check::new(
                "kernel",
                feature.name,
                Status::Warn,
                "cannot tell without the kernel configuration".into(),
            )
            .fix(feature.fix),
        };
    }
    let mut absent = Vec::new();
    let mut unloadable = Vec::new();
    for (option, module) in feature.options {
        match config.get(option) {
            Some(Tristate::Yes) => {}
            Some(Tristate::Module) => {
                if !module.is_empty() && !host.module_available(module) {
                    unloadable.push(format!("{module} (CONFIG_{option}=m)"));
                }
            }
            Some(Tristate::No) | None => absent.push(format!("CONFIG_{option}")),
        }
    }
    if !absent.is_empty() {
        return Check::new(
            "kernel",
            feature.name,
            feature.severity,
            format!("not enabled in the kernel: {}", absent.join(", ")),
        )
        .fix(feature.fix);
    }
    if !unloadable.is_empty() {
        return Check::new(
            "kernel",
            feature.name,
            feature.severity,
            format!(
                "built as a module but neither loaded nor installed: {}",
                unloadable.join(", ")
            ),
        )
        .fix(feature.fix);
    }
    let modular = feature
        .options
        .iter()
        .any(|(option, _)| config.get(option) == Some(Tristate::Module));
    Check::new(
        "kernel",
        feature.name,
        Status::Ok,
        if modular {
            "built as a module (loaded on first use)".into()
        } else {
            "enabled".into()
        },
    )
}

/// cgroup controllers skiff needs per pod and container.
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "memory", "pids", "cpuset", "devices", "freezer",
];
const V2_CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "cpuset"];

const MEMORY_FIX: &str = "enable the memory controller on the kernel command line: add \
    `cgroup_enable=memory cgroup_memory=1` (Raspberry Pi OS: to /boot/firmware/cmdline.txt), \
    then reboot";

/// The cgroup checks: v1 (legacy or hybrid) or v2, and the controllers skiff uses, from the
/// facts the runtime reads (`skiff_runtime::host`).
pub(crate) fn cgroup_checks(host: &Host) -> Vec<Check> {
    let facts = CgroupFacts::read(&host.root);
    let hybrid = match facts.mode {
        Some(CgroupMode::Unified) => return v2_checks(&facts),
        Some(CgroupMode::Hybrid) => true,
        Some(CgroupMode::Legacy) => false,
        None => {
            return vec![Check::new(
                "cgroups",
                "cgroup version",
                Status::Missing,
                "no cgroup v2 hierarchy at /sys/fs/cgroup and no cgroup v1 controllers in \
                 /proc/cgroups"
                    .into(),
            )
            .fix("mount cgroup2 at /sys/fs/cgroup (systemd does this), or use a kernel with CONFIG_CGROUPS")]
        }
    };
    // v1: /proc/cgroups says what the kernel has, mountinfo where each hierarchy is.
    let mut checks = vec![Check::new(
        "cgroups",
        "cgroup version",
        Status::Ok,
        if hybrid {
            "v1 (hybrid: v1 controllers, systemd's unified tree beside them)".into()
        } else {
            "v1 (legacy)".into()
        },
    )];
    for controller in V1_CONTROLLERS {
        let is_enabled = facts.v1_enabled.get(*controller).copied().unwrap_or(false);
        let is_mounted = facts.v1_mounted.iter().any(|c| c == controller);
        let (status, detail) = match (is_enabled, is_mounted) {
            (true, true) => (Status::Ok, "enabled and mounted".to_string()),
            (false, _) => (
                Status::Missing,
                format!(
                    "not enabled in the kernel ({} in /proc/cgroups)",
                    if facts.v1_enabled.contains_key(*controller) {
                        "disabled"
                    } else {
                        "absent"
                    }
                ),
            ),
            (true, false) => (
                Status::Missing,
                "enabled but no cgroup v1 hierarchy with it is mounted".to_string(),
            ),
        };
        let check = Check::new(
            "cgroups",
            format!("{controller} controller"),
            status,
            detail,
        );
        checks.push(match (*controller, is_enabled) {
            ("memory", false) => check.fix(MEMORY_FIX),
            (_, false) => check.fix(format!(
                "enable the {controller} controller (kernel config or command line)"
            )),
            (_, true) => check.fix(format!(
                "mount it: mkdir -p /sys/fs/cgroup/{controller} && mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller} (systemd does this at boot)"
            )),
        });
    }
    checks
}

/// The v2 checks: the unified hierarchy and the controllers it offers.
fn v2_checks(facts: &CgroupFacts) -> Vec<Check> {
    let mut checks = vec![Check::new(
        "cgroups",
        "cgroup version",
        Status::Ok,
        format!("v2 (unified hierarchy at {})", facts.unified_root.display()),
    )];
    for controller in V2_CONTROLLERS {
        let present = facts.v2_controllers.iter().any(|c| c == controller);
        let check = Check::new(
            "cgroups",
            format!("{controller} controller"),
            if present { Status::Ok } else { Status::Missing },
            if present {
                "available".into()
            } else {
                format!(
                    "not in {}",
                    facts.unified_root.join("cgroup.controllers").display()
                )
            },
        );
        checks.push(if *controller == "memory" {
            check.fix(MEMORY_FIX)
        } else {
            check.fix(format!(
                "enable the {controller} controller (kernel command line or kernel config)"
            ))
        });
    }
    checks
}

/// Which command the machine is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `skiff server` (listens on the API port).
    Server,
    /// `skiff agent` (dials out only).
    Agent,
}

/// Checks of the running machine: privileges, tools, sockets, ports, the data directory.
pub(crate) fn system_checks(role: Role, port: u16, data_dir: &Path) -> Vec<Check> {
    let mut checks = vec![
        root_check(),
        nft_check(),
        netlink_check(),
        proc_connector_check(),
    ];
    if role == Role::Server {
        checks.extend(port_checks(port));
    }
    checks.push(data_dir_check(data_dir));
    checks
}

fn root_check() -> Check {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    Check::new(
        "system",
        "running as root",
        if euid == 0 {
            Status::Ok
        } else {
            Status::Missing
        },
        if euid == 0 {
            "yes".into()
        } else {
            format!("effective uid {euid}: skiff needs root (namespaces, cgroups, mounts, netlink)")
        },
    )
    .fix("run skiff (and this check) as root, e.g. through its systemd unit")
}

/// `nft`, which skiff drives for pod NAT and host ports.
fn nft_check() -> Check {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nft"))
            .find(|candidate| candidate.is_file())
    });
    let Some(nft) = found else {
        return Check::new(
            "system",
            "nft (nftables tool)",
            Status::Missing,
            "not found in PATH".into(),
        )
        .fix("apt-get install nftables (Debian/Ubuntu), apk add nftables (Alpine), dnf install nftables");
    };
    match std::process::Command::new(&nft).arg("--version").output() {
        Ok(out) if out.status.success() => Check::new(
            "system",
            "nft (nftables tool)",
            Status::Ok,
            format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stdout).trim(),
                nft.display()
            ),
        ),
        Ok(out) => Check::new(
            "system",
            "nft (nftables tool)",
            Status::Missing,
            format!(
                "{} --version failed: {}",
                nft.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )
        .fix("reinstall nftables"),
        Err(e) => Check::new(
            "system",
            "nft (nftables tool)",
            Status::Missing,
            format!("cannot run {}: {e}", nft.display()),
        )
        .fix("reinstall nftables"),
    }
}

fn netlink_check() -> Check {
    match skiff_net::route_socket_usable() {
        Ok(()) => Check::new("system", "netlink (routes, links)", Status::Ok, "usable".into()),
        Err(e) => Check::new(
            "system",
            "netlink (routes, links)",
            Status::Missing,
            format!("cannot open a NETLINK_ROUTE socket: {e}"),
        )
        .fix("skiff needs netlink to set up pod networks; run it outside restrictive sandboxes (seccomp/AppArmor profiles of container engines)"),
    }
}

fn proc_connector_check() -> Check {
    match skiff_runtime::host::proc_connector() {
        Ok(()) => Check::new(
            "system",
            "process events (netlink connector)",
            Status::Ok,
            "usable".into(),
        ),
        Err(e) => Check::new(
            "system",
            "process events (netlink connector)",
            Status::Missing,
            format!("cannot subscribe to process events: {e}"),
        )
        .fix("run skiff as root on a kernel with CONFIG_PROC_EVENTS; without it container exit codes are unknown"),
    }
}

fn port_checks(port: u16) -> Vec<Check> {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    let describe = |proto: &str, result: std::io::Result<()>| {
        let name = format!("port {port}/{proto} free");
        match result {
            Ok(()) => Check::new("system", name, Status::Ok, "free".into()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Check::new(
                "system",
                name,
                Status::Missing,
                "in use by another program (a running skiff or k3s server?)".to_string(),
            )
            .fix(format!(
                "stop what listens there (ss -lntup | grep {port}), or choose another port with --https-listen-port"
            )),
            Err(e) => Check::new(
                "system",
                name,
                Status::Warn,
                format!("cannot test: {e}"),
            )
            .fix("run the check as root"),
        }
    };
    vec![
        describe("tcp", std::net::TcpListener::bind(addr).map(drop)),
        describe("udp", std::net::UdpSocket::bind(addr).map(drop)),
    ]
}

/// The data directory (or the nearest existing parent): not on overlayfs, with room to spare.
fn data_dir_check(data_dir: &Path) -> Check {
    const OVERLAYFS_MAGIC: i64 = 0x794c_7630;
    let name = format!("data directory {}", data_dir.display());
    let existing = data_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()) else {
        return Check::new(
            "system",
            name,
            Status::Warn,
            "path contains a NUL byte".into(),
        );
    };
    // SAFETY: statfs fills the zeroed struct; the path is a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Check::new(
            "system",
            name,
            Status::Warn,
            format!(
                "cannot stat {}: {}",
                existing.display(),
                std::io::Error::last_os_error()
            ),
        );
    }
    if stat.f_type as i64 == OVERLAYFS_MAGIC {
        return Check::new(
            "system",
            name,
            Status::Missing,
            format!("{} is on overlayfs, which cannot hold container layers", existing.display()),
        )
        .fix("put the data directory on a real file system (--data-dir), or give the container a volume for it");
    }
    let free = stat.f_bavail as u64 * stat.f_bsize as u64;
    let gib = free as f64 / (1u64 << 30) as f64;
    if free < 2 << 30 {
        Check::new(
            "system",
            name,
            Status::Warn,
            format!("only {gib:.1} GiB free on {}", existing.display()),
        )
        .fix("free some space: images and container layers live there (the node reports DiskPressure below 10%)")
    } else {
        Check::new(
            "system",
            name,
            Status::Ok,
            format!("{gib:.1} GiB free on {}", existing.display()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        dir
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name.starts_with(name))
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    }

    #[test]
    fn kernel_config_lines_parse() {
        let config = KernelConfig::parse(
            "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"x\"\n",
            Some("/x".into()),
        );
        assert_eq!(config.get("A"), Some(Tristate::Yes));
        assert_eq!(config.get("B"), Some(Tristate::Module));
        assert_eq!(config.get("C"), Some(Tristate::No));
        assert_eq!(config.get("D"), Some(Tristate::Yes));
        assert_eq!(config.get("E"), Some(Tristate::No));
        assert_eq!(KernelConfig::default().get("A"), None);
    }

    #[test]
    fn overlay_missing_from_config_and_filesystems_is_reported_with_a_fix() {
        let tree = fake(&[
            ("proc/sys/kernel/osrelease", "6.1.0-test\n"),
            (
                "boot/config-6.1.0-test",
                "# CONFIG_OVERLAY_FS is not set\nCONFIG_VETH=m\nCONFIG_BRIDGE=y\n",
            ),
            ("proc/filesystems", "nodev\tproc\n\text4\n"),
            ("sys/module/veth/refcnt", "0\n"),
        ]);
        let host = Host::at(tree.path());
        let config = host.kernel_config();
        let checks = kernel_checks(&host, &config);
        let overlay = find(&checks, "overlayfs");
        assert_eq!(overlay.status, Status::Missing);
        assert!(overlay.detail.contains("CONFIG_OVERLAY_FS"), "{overlay:?}");
        assert!(overlay.fix.as_deref().unwrap().contains("modprobe overlay"));
        // veth is a loaded module, bridge built in.
        assert_eq!(find(&checks, "veth").status, Status::Ok);
        assert_eq!(find(&checks, "kernel version").status, Status::Ok);
    }

    #[test]
    fn a_module_that_is_neither_loaded_nor_installed_is_missing() {
        let tree = fake(&[
            ("proc/sys/kernel/osrelease", "6.1.0-test\n"),
            ("boot/config-6.1.0-test", "CONFIG_OVERLAY_FS=m\n"),
            ("proc/filesystems", "nodev\tproc\n"),
        ]);
        let host = Host::at(tree.path());
        let checks = kernel_checks(&host, &host.kernel_config());
        let overlay = find(&checks, "overlayfs");
        assert_eq!(overlay.status, Status::Missing, "{overlay:?}");
        assert!(overlay.detail.contains("overlay (CONFIG_OVERLAY_FS=m)"));
        // Installed for this kernel: fine, it loads on use.
        let tree = fake(&[
            ("proc/sys/kernel/osrelease", "6.1.0-test\n"),
            ("boot/config-6.1.0-test", "CONFIG_OVERLAY_FS=m\n"),
            ("proc/filesystems", "nodev\tproc\n"),
            (
                "lib/modules/6.1.0-test/modules.dep",
                "kernel/fs/overlayfs/overlay.ko.xz:\n",
            ),
        ]);
        let host = Host::at(tree.path());
        let checks = kernel_checks(&host, &host.kernel_config());
        assert_eq!(find(&checks, "overlayfs").status, Status::Ok);
    }

    #[test]
    fn old_kernels_are_refused() {
        let tree = fake(&[("proc/sys/kernel/osrelease", "4.19.0-armv7\n")]);
        let host = Host::at(tree.path());
        let checks = kernel_checks(&host, &host.kernel_config());
        assert_eq!(find(&checks, "kernel version").status, Status::Missing);
        // Without a config, unknown features are warnings, not errors.
        assert_eq!(find(&checks, "kernel configuration").status, Status::Warn);
        assert_eq!(find(&checks, "nftables").status, Status::Warn);
    }

    #[test]
    fn cgroup_v1_without_memory_gets_the_raspberry_pi_hint() {
        let tree = fake(&[
            (
                "proc/cgroups",
                "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\ncpuacct\t1\t1\t1\nmemory\t0\t1\t0\npids\t2\t1\t1\ncpuset\t3\t1\t1\ndevices\t4\t1\t1\nfreezer\t5\t1\t1\n",
            ),
            (
                "proc/self/mountinfo",
                "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                 31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                 32 25 0:28 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n\
                 33 25 0:29 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n\
                 34 25 0:30 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
                 35 25 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n",
            ),
        ]);
        let checks = cgroup_checks(&Host::at(tree.path()));
        assert!(find(&checks, "cgroup version").detail.starts_with("v1"));
        let memory = find(&checks, "memory controller");
        assert_eq!(memory.status, Status::Missing);
        assert!(memory
            .fix
            .as_deref()
            .unwrap()
            .contains("cgroup_enable=memory"));
        assert_eq!(find(&checks, "cpu controller").status, Status::Ok);
        assert_eq!(find(&checks, "freezer controller").status, Status::Ok);
    }

    #[test]
    fn cgroup_v2_controllers_come_from_the_root() {
        let tree = fake(&[("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")]);
        let checks = cgroup_checks(&Host::at(tree.path()));
        assert!(find(&checks, "cgroup version").detail.starts_with("v2"));
        assert_eq!(find(&checks, "cpu controller").status, Status::Ok);
        assert_eq!(find(&checks, "memory controller").status, Status::Missing);
    }

    #[test]
    fn this_machine_passes_the_kernel_and_cgroup_checks() {
        let host = Host::at(Path::new("/"));
        let config = host.kernel_config();
        for check in kernel_checks(&host, &config)
            .into_iter()
            .chain(cgroup_checks(&host))
        {
            assert_ne!(check.status, Status::Missing, "{check:?}");
        }
    }
}
