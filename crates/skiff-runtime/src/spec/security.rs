//! Secure defaults as containerd's CRI applies them: capability set, masked and read-only /proc
//! and /sys paths, device allow-list, and the securityContext knobs that change them.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use k8s_openapi::api::core::v1::{
    Capabilities as K8sCapabilities, Container, Pod, SecurityContext,
};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxSeccomp,
};

use crate::error::{Result, RuntimeError};

/// containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability the kernel may know (privileged containers and `add: [ALL]`).
const ALL_CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Masked paths: not readable in the container. containerd's `populateDefaultUnixSpec` list
/// plus `/proc/interrupts`, which moby's current default masks too (under Kubernetes the
/// kubelet passes the CRI its own list, "kept in sync with moby"). One more than containerd on
/// purpose: stricter, and nothing a pod needs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Read-only paths (the kubelet's, moby's and containerd's list).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Parses a Kubernetes capability name (`NET_ADMIN` or `CAP_NET_ADMIN`).
pub fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).ok()
}

fn capability_set(names: &[&str]) -> Capabilities {
    names.iter().filter_map(|n| parse_capability(n)).collect()
}

/// The effective security context of a container: container fields over pod fields.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    /// Privileged container.
    pub privileged: bool,
    /// `runAsNonRoot`.
    pub run_as_non_root: bool,
    /// `runAsUser`.
    pub run_as_user: Option<i64>,
    /// `runAsGroup`.
    pub run_as_group: Option<i64>,
    /// `readOnlyRootFilesystem`.
    pub read_only_root: bool,
    /// `allowPrivilegeEscalation` as given (None = unset).
    pub allow_privilege_escalation: Option<bool>,
    /// `capabilities`.
    pub capabilities: Option<K8sCapabilities>,
    /// `procMount: Unmasked`.
    pub unmasked_proc: bool,
    /// seccomp profile: `(type, localhostProfile)`.
    pub seccomp: Option<(String, Option<String>)>,
}

impl Effective {
    /// Merges the pod's and the container's security contexts.
    pub fn of(pod: &Pod, container: &Container) -> Effective {
        let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let csc: Option<&SecurityContext> = container.security_context.as_ref();
        let seccomp = csc
            .and_then(|c| c.seccomp_profile.as_ref())
            .or(psc.and_then(|p| p.seccomp_profile.as_ref()))
            .map(|p| (p.type_.clone(), p.localhost_profile.clone()));
        Effective {
            privileged: csc.and_then(|c| c.privileged).unwrap_or(false),
            run_as_non_root: csc
                .and_then(|c| c.run_as_non_root)
                .or(psc.and_then(|p| p.run_as_non_root))
                .unwrap_or(false),
            run_as_user: csc
                .and_then(|c| c.run_as_user)
                .or(psc.and_then(|p| p.run_as_user)),
            run_as_group: csc
                .and_then(|c| c.run_as_group)
                .or(psc.and_then(|p| p.run_as_group)),
            read_only_root: csc
                .and_then(|c| c.read_only_root_filesystem)
                .unwrap_or(false),
            allow_privilege_escalation: csc.and_then(|c| c.allow_privilege_escalation),
            capabilities: csc.and_then(|c| c.capabilities.clone()),
            unmasked_proc: csc.and_then(|c| c.proc_mount.as_deref()) == Some("Unmasked"),
            seccomp,
        }
    }
}

/// The container's capability sets. Non-root processes keep only the bounding set (as moby
/// does): a setuid-root binary could not regain more than that.
pub fn capabilities(
    sc: &Effective,
    uid: u32,
    field: &str,
) -> Result<(LinuxCapabilities, Capabilities)> {
    let mut set = if sc.privileged {
        capability_set(ALL_CAPABILITIES)
    } else {
        capability_set(DEFAULT_CAPABILITIES)
    };
    if let Some(caps) = &sc.capabilities {
        let drops = caps.drop.iter().flatten();
        let adds = caps.add.iter().flatten();
        for d in drops {
            if d.eq_ignore_ascii_case("ALL") {
                set.clear();
            } else {
                let cap = parse_capability(d).ok_or_else(|| {
                    RuntimeError::invalid(
                        format!("{field}.securityContext.capabilities.drop"),
                        format!("unknown capability {d:?}"),
                    )
                })?;
                set.remove(&cap);
            }
        }
        for a in adds {
            if a.eq_ignore_ascii_case("ALL") {
                set.extend(capability_set(ALL_CAPABILITIES));
            } else {
                let cap = parse_capability(a).ok_or_else(|| {
                    RuntimeError::invalid(
                        format!("{field}.securityContext.capabilities.add"),
                        format!("unknown capability {a:?}"),
                    )
                })?;
                set.insert(cap);
            }
        }
    }
    let process_sets = if uid == 0 {
        set.clone()
    } else {
        Capabilities::new()
    };
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(process_sets.clone())
        .permitted(process_sets)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(|source| RuntimeError::Spec {
            container: field.to_owned(),
            source,
        })?;
    Ok((caps, set))
}

/// Whether `no_new_privileges` is set: on unless the container explicitly allows escalation or
/// is privileged or holds CAP_SYS_ADMIN (which make it meaningless).
pub fn no_new_privileges(sc: &Effective, caps: &Capabilities, default_on: bool) -> bool {
    if sc.privileged || caps.contains(&Capability::SysAdmin) {
        return false;
    }
    match sc.allow_privilege_escalation {
        Some(allow) => !allow,
        None => default_on,
    }
}

/// The seccomp filter to install, if any.
pub fn seccomp_profile(
    sc: &Effective,
    caps: &Capabilities,
    default_on: bool,
    localhost_root: &Path,
    field: &str,
) -> Result<Option<LinuxSeccomp>> {
    if sc.privileged {
        return Ok(None);
    }
    match sc.seccomp.as_ref().map(|(t, p)| (t.as_str(), p.as_deref())) {
        None if default_on => Ok(Some(super::seccomp::default_profile(caps))),
        None | Some(("Unconfined", _)) => Ok(None),
        Some(("RuntimeDefault", _)) => Ok(Some(super::seccomp::default_profile(caps))),
        Some(("Localhost", Some(rel))) => {
            let rel_path = Path::new(rel);
            if rel_path.is_absolute()
                || rel_path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(RuntimeError::invalid(
                    format!("{field}.securityContext.seccompProfile.localhostProfile"),
                    "must be a relative path without '..'",
                ));
            }
            let path = localhost_root.join(rel_path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| RuntimeError::io("read seccomp profile", &path, e))?;
            let profile: LinuxSeccomp = serde_json::from_str(&text)
                .map_err(|source| RuntimeError::State { path, source })?;
            Ok(Some(profile))
        }
        Some(("Localhost", None)) => Err(RuntimeError::invalid(
            format!("{field}.securityContext.seccompProfile.localhostProfile"),
            "required for type Localhost",
        )),
        Some((other, _)) => Err(RuntimeError::invalid(
            format!("{field}.securityContext.seccompProfile.type"),
            format!("unknown type {other:?}"),
        )),
    }
}

fn allow(typ: &str, major: Option<i64>, minor: Option<i64>) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .access("rwm")
        .typ(if typ == "b" {
            LinuxDeviceType::B
        } else if typ == "a" {
            LinuxDeviceType::A
        } else {
            LinuxDeviceType::C
        });
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().expect("static device rule is valid")
}

/// The device cgroup rules: deny everything but the standard pseudo devices, terminals and
/// tun (containerd's list); privileged containers may use every device.
pub fn device_rules(privileged: bool) -> Vec<LinuxDeviceCgroup> {
    if privileged {
        return vec![allow("a", None, None)];
    }
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .expect("static device rule is valid")];
    // mknod of any device is allowed (using it is not).
    for typ in [LinuxDeviceType::C, LinuxDeviceType::B] {
        rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .access("m")
                .build()
                .expect("static device rule is valid"),
        );
    }
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        rules.push(allow("c", Some(major), minor));
    }
    rules
}

/// The host's devices, for privileged containers (top level of /dev and one directory down).
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/dev")];
    let mut depth = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir()
                && depth == 0
                && !matches!(
                    path.file_name().and_then(|n| n.to_str()),
                    Some("pts" | "shm" | "mqueue")
                )
            {
                dirs.insert(0, path);
                continue;
            }
            let typ = if ft.is_char_device() {
                LinuxDeviceType::C
            } else if ft.is_block_device() {
                LinuxDeviceType::B
            } else {
                continue;
            };
            // /dev/console and the controlling terminals are set up by the runtime itself.
            if matches!(
                path.to_str(),
                Some("/dev/console" | "/dev/tty" | "/dev/ptmx")
            ) {
                continue;
            }
            let rdev = meta.rdev();
            if let Ok(dev) = LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(libc::major(rdev) as i64)
                .minor(libc::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
            {
                out.push(dev);
            }
        }
        depth = 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec};

    fn with_sc(sc: SecurityContext) -> (Pod, Container) {
        let c = Container {
            name: "c".into(),
            security_context: Some(sc),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(1000),
                    run_as_non_root: Some(true),
                    ..Default::default()
                }),
                containers: vec![c.clone()],
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod, c)
    }

    #[test]
    fn container_context_overrides_pod_context() {
        let (pod, c) = with_sc(SecurityContext {
            run_as_user: Some(5),
            ..Default::default()
        });
        let e = Effective::of(&pod, &c);
        assert_eq!(e.run_as_user, Some(5));
        assert!(e.run_as_non_root, "inherited from the pod");
    }

    #[test]
    fn default_caps_and_add_drop() {
        let (pod, c) = with_sc(SecurityContext {
            capabilities: Some(K8sCapabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        });
        let e = Effective::of(&pod, &c);
        let (caps, set) = capabilities(&e, 0, "c").unwrap();
        assert_eq!(set, Capabilities::from([Capability::NetAdmin]));
        assert_eq!(caps.effective().as_ref().unwrap(), &set);

        let (caps, set) = capabilities(&Effective::default(), 0, "c").unwrap();
        assert_eq!(set.len(), DEFAULT_CAPABILITIES.len());
        assert!(!set.contains(&Capability::SysAdmin));
        assert!(caps.inheritable().as_ref().unwrap().is_empty());

        let (caps, _) = capabilities(&Effective::default(), 1000, "c").unwrap();
        assert!(
            caps.effective().as_ref().unwrap().is_empty(),
            "non-root keeps no effective caps"
        );
        assert_eq!(
            caps.bounding().as_ref().unwrap().len(),
            DEFAULT_CAPABILITIES.len()
        );

        let bad = Effective {
            capabilities: Some(K8sCapabilities {
                add: Some(vec!["FLY".into()]),
                drop: None,
            }),
            ..Default::default()
        };
        let err = capabilities(&bad, 0, "spec.containers[0]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("capabilities.add") && err.contains("FLY"),
            "{err}"
        );
    }

    #[test]
    fn privileged_gets_everything_and_no_seccomp() {
        let e = Effective {
            privileged: true,
            ..Default::default()
        };
        let (_, set) = capabilities(&e, 0, "c").unwrap();
        assert!(set.contains(&Capability::SysAdmin));
        assert!(!no_new_privileges(&e, &set, true));
        assert!(seccomp_profile(&e, &set, true, Path::new("/x"), "c")
            .unwrap()
            .is_none());
        assert_eq!(device_rules(true).len(), 1);
    }

    #[test]
    fn no_new_privs_and_seccomp_defaults() {
        let e = Effective::default();
        let set = capability_set(DEFAULT_CAPABILITIES);
        assert!(no_new_privileges(&e, &set, true));
        let allow = Effective {
            allow_privilege_escalation: Some(true),
            ..Default::default()
        };
        assert!(!no_new_privileges(&allow, &set, true));
        assert!(seccomp_profile(&e, &set, true, Path::new("/x"), "c")
            .unwrap()
            .is_some());
        let unconfined = Effective {
            seccomp: Some(("Unconfined".into(), None)),
            ..Default::default()
        };
        assert!(
            seccomp_profile(&unconfined, &set, true, Path::new("/x"), "c")
                .unwrap()
                .is_none()
        );
        let escape = Effective {
            seccomp: Some(("Localhost".into(), Some("../etc/x.json".into()))),
            ..Default::default()
        };
        assert!(seccomp_profile(&escape, &set, true, Path::new("/x"), "c").is_err());
    }
}
