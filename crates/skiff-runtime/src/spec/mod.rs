//! OCI runtime specs from a PodSpec container and its image config.

pub mod env;
pub mod fieldref;
pub mod resources;
pub mod seccomp;
pub mod security;
pub mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use crate::error::{Result, RuntimeError};
use crate::inputs::ContainerImage;
use env::EnvList;
use resources::{cpu_quota, cpu_shares, ContainerResources, QUOTA_PERIOD};
use security::Effective;
pub use user::Identity;

/// Paths of the sandbox namespaces a container joins; `None` = the host's namespace.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NamespacePaths {
    /// Network namespace file.
    pub net: Option<PathBuf>,
    /// IPC namespace file.
    pub ipc: Option<PathBuf>,
    /// UTS namespace file.
    pub uts: Option<PathBuf>,
}

/// Node-wide security defaults.
#[derive(Debug, Clone)]
pub struct SecurityDefaults {
    /// Apply the RuntimeDefault seccomp profile when a pod sets none.
    pub seccomp_default: bool,
    /// Set no_new_privileges unless `allowPrivilegeEscalation: true`.
    pub no_new_privileges_default: bool,
    /// Directory holding `Localhost` seccomp profiles.
    pub seccomp_root: PathBuf,
}

/// Everything needed to build one container's spec.
pub(crate) struct SpecContext<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// JSON path of the container, e.g. `spec.containers[0]`.
    pub field: &'a str,
    pub image: &'a ContainerImage,
    /// The mounted root file system (identity lookup, working directory creation).
    pub rootfs: &'a Path,
    pub namespaces: &'a NamespacePaths,
    pub host_pid: bool,
    /// Sandbox files and volumes, as OCI mounts.
    pub mounts: Vec<Mount>,
    pub cgroups_path: PathBuf,
    pub cgroup_v2: bool,
    /// Whether the v1 memory controller has memsw (swap accounting).
    pub swap_accounting: bool,
    pub own_env: &'a EnvList,
    pub hostname: &'a str,
    pub defaults: &'a SecurityDefaults,
    pub memory_capacity: i64,
}

/// A generated spec and facts derived on the way.
#[derive(Debug, Clone)]
pub(crate) struct BuiltSpec {
    pub spec: Spec,
    pub stop_signal: i32,
}

fn spec_err(container: &str) -> impl Fn(oci_spec::OciSpecError) -> RuntimeError + '_ {
    move |source| RuntimeError::Spec {
        container: container.to_owned(),
        source,
    }
}

/// Parses an image `StopSignal` (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|sig| sig as i32)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("static mount is valid")
}

/// The file systems every container gets: containerd's defaults (`oci.populateDefaultUnixSpec`)
/// without `/run` (its CRI drops it) and `/dev/shm` (the pod's, from the sandbox), plus the
/// CRI's `/sys/fs/cgroup`; writable sysfs and cgroupfs for privileged containers.
fn default_mounts(privileged: bool, cgroup_v2: bool) -> Vec<Mount> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
    ];
    // On v2 the container has its own cgroup namespace, so it sees only its own subtree.
    let _ = cgroup_v2;
    mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", sys_mode],
    ));
    mounts
}

fn namespace(typ: LinuxNamespaceType, path: Option<&PathBuf>) -> LinuxNamespace {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p.clone());
    }
    b.build().expect("static namespace is valid")
}

/// Builds the OCI spec of a container.
pub(crate) fn build(ctx: SpecContext<'_>) -> Result<BuiltSpec> {
    let c = ctx.container;
    let field = ctx.field;
    let err = spec_err(&c.name);
    let image_config = ctx.image.config.config().as_ref();
    let sc = Effective::of(ctx.pod, c);

    // Identity.
    let psc = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let mut extra_groups: Vec<i64> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs_group) = psc.and_then(|p| p.fs_group) {
        extra_groups.push(fs_group);
    }
    let identity = user::resolve(
        ctx.rootfs,
        &c.name,
        &user::UserRequest {
            image_user: image_config.and_then(|ic| ic.user().as_deref()),
            run_as_user: sc.run_as_user,
            run_as_group: sc.run_as_group,
            extra_groups,
        },
    )?;
    if sc.run_as_non_root && identity.uid == 0 {
        return Err(RuntimeError::Security {
            container: c.name.clone(),
            message: "container has runAsNonRoot and image will run as root".into(),
        });
    }

    // Command, environment, working directory.
    let args = env::command_line(c, field, image_config, ctx.own_env)?;
    let process_env = env::process_env(image_config, ctx.hostname, ctx.own_env);
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            image_config
                .and_then(|ic| ic.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(RuntimeError::invalid(
            format!("{field}.workingDir"),
            format!("{cwd:?} must be an absolute path"),
        ));
    }
    crate::fsutil::mkdir_all_in_root(ctx.rootfs, Path::new(&cwd), 0o755)?;

    // Security.
    let (caps, cap_set) = security::capabilities(&sc, identity.uid, field)?;
    let nnp = security::no_new_privileges(&sc, &cap_set, ctx.defaults.no_new_privileges_default);
    let seccomp = security::seccomp_profile(
        &sc,
        &cap_set,
        ctx.defaults.seccomp_default,
        &ctx.defaults.seccomp_root,
        field,
    )?;

    let res = ContainerResources::of(c, field)?;
    let qos = resources::qos_class(ctx.pod);
    let oom_adj = resources::oom_score_adj(qos, res.memory_request, ctx.memory_capacity);

    let user = UserBuilder::default()
        .uid(identity.uid)
        .gid(identity.gid)
        .additional_gids(identity.additional_gids.clone())
        .build()
        .map_err(&err)?;
    let mut process = ProcessBuilder::default()
        // No terminal for containers: their output goes to the log files (no attach).
        .terminal(false)
        .user(user)
        .args(args)
        .env(process_env.to_oci())
        .cwd(cwd)
        .capabilities(caps)
        .oom_score_adj(oom_adj)
        .build()
        .map_err(&err)?;
    // libcontainer loads seccomp before dropping privileges only when the flag is absent, so
    // "escalation allowed" must be None rather than Some(false).
    process.set_no_new_privileges(nnp.then_some(true));
    // No rlimits of our own: the container inherits the node's (oci-spec's default is 1024 files).
    process.set_rlimits(None);

    // Resources.
    let mut cpu = LinuxCpuBuilder::default().shares(cpu_shares(res.cpu_request_millis));
    if let Some(quota) = cpu_quota(res.cpu_limit_millis) {
        cpu = cpu.quota(quota).period(QUOTA_PERIOD);
    }
    let mut resources = LinuxResourcesBuilder::default()
        .cpu(cpu.build().map_err(&err)?)
        .devices(security::device_rules(sc.privileged));
    if let Some(limit) = res.memory_limit {
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if ctx.cgroup_v2 || ctx.swap_accounting {
            memory = memory.swap(limit);
        }
        resources = resources.memory(memory.build().map_err(&err)?);
    }
    if ctx.cgroup_v2 {
        resources = resources.unified(HashMap::from([(
            "memory.oom.group".to_string(),
            "1".to_string(),
        )]));
    }

    // Namespaces: new pid and mount; the sandbox's net, ipc, uts; cgroup namespace on v2
    // (unprivileged containers only).
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)];
    if !ctx.host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None));
    }
    if let Some(p) = &ctx.namespaces.net {
        namespaces.push(namespace(LinuxNamespaceType::Network, Some(p)));
    }
    if let Some(p) = &ctx.namespaces.ipc {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, Some(p)));
    }
    if let Some(p) = &ctx.namespaces.uts {
        namespaces.push(namespace(LinuxNamespaceType::Uts, Some(p)));
    }
    // As containerd: privileged containers keep the host's cgroup namespace (they see and may
    // manage the whole hierarchy, as on v1).
    if ctx.cgroup_v2 && !sc.privileged {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(ctx.cgroups_path.clone())
        .resources(resources.build().map_err(&err)?);
    let protect_proc = !(sc.privileged || sc.unmasked_proc);
    if protect_proc {
        linux = linux
            .masked_paths(
                security::MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                security::READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }
    if sc.privileged {
        linux = linux.devices(security::host_devices());
    }
    if let Some(profile) = seccomp {
        linux = linux.seccomp(profile);
    }
    if let Some(sysctls) = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|p| p.sysctls.as_ref())
    {
        let map: HashMap<String, String> = sysctls
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect();
        if !map.is_empty() {
            linux = linux.sysctl(map);
        }
    }

    let mut mounts = default_mounts(sc.privileged, ctx.cgroup_v2);
    mounts.extend(ctx.mounts);

    let annotations = HashMap::from([
        (
            "io.kubernetes.pod.name".to_string(),
            ctx.pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.namespace".to_string(),
            ctx.pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.uid".to_string(),
            ctx.pod.metadata.uid.clone().unwrap_or_default(),
        ),
        ("io.kubernetes.container.name".to_string(), c.name.clone()),
    ]);

    let mut linux = linux.build().map_err(&err)?;
    if !protect_proc {
        // The builder fills unset fields from oci-spec's defaults, which mask paths.
        linux.set_masked_paths(None).set_readonly_paths(None);
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(ctx.rootfs)
                .readonly(sc.read_only_root)
                .build()
                .map_err(&err)?,
        )
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(&err)?;
    // oci-spec's defaults would set the hostname (the sandbox's UTS namespace has it already).
    spec.set_hostname(None);

    let stop_signal = image_config
        .and_then(|ic| ic.stop_signal().as_deref())
        .and_then(parse_signal)
        .unwrap_or(libc::SIGTERM);

    Ok(BuiltSpec { spec, stop_signal })
}

/// A bind mount of `source` at `dest`.
pub(crate) fn bind_mount(source: &Path, dest: &str, read_only: bool, propagation: &str) -> Mount {
    let mut options = vec!["rbind".to_string(), propagation.to_string()];
    if read_only {
        options.push("ro".to_string());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .expect("bind mount is valid")
}

#[cfg(test)]
mod tests;
