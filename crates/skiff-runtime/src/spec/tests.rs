//! Unit tests of spec generation (v1 and v2 code paths, without running anything).

use super::*;
use k8s_openapi::api::core::v1::{
    PodSecurityContext, PodSpec, ResourceRequirements, SecurityContext, Sysctl,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
use oci_spec::runtime::Capability;
use std::collections::BTreeMap;

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
    dir
}

fn image(user: Option<&str>) -> ContainerImage {
    let mut config = serde_json::json!({
        "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "IMG=1"],
        "WorkingDir": "/srv", "StopSignal": "SIGQUIT"
    });
    if let Some(u) = user {
        config["User"] = serde_json::json!(u);
    }
    ContainerImage {
        reference: "docker.io/library/app:1".into(),
        id: "sha256:abc".into(),
        config: serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config
        }))
        .unwrap(),
        layers: vec![],
        repo_digest: None,
    }
}

fn pod(container: Container) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("web".into());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some("uid-1".into());
    pod.spec = Some(PodSpec {
        containers: vec![container],
        ..Default::default()
    });
    pod
}

#[derive(Debug)]
struct Built {
    spec: Spec,
    stop_signal: i32,
}

fn build_with(pod: &Pod, image: &ContainerImage, v2: bool) -> Result<Built> {
    let root = rootfs();
    let c = pod.spec.as_ref().unwrap().containers[0].clone();
    let ns = NamespacePaths {
        net: Some("/run/pods/x/ns/net".into()),
        ipc: Some("/run/pods/x/ns/ipc".into()),
        uts: Some("/run/pods/x/ns/uts".into()),
    };
    let mut own = EnvList::default();
    own.set("GREETING", "hi");
    let defaults = SecurityDefaults {
        seccomp_default: true,
        no_new_privileges_default: true,
        seccomp_root: "/nonexistent".into(),
    };
    let b = build(SpecContext {
        pod,
        container: &c,
        field: "spec.containers[0]",
        image,
        rootfs: root.path(),
        namespaces: &ns,
        host_pid: false,
        mounts: vec![bind_mount(
            Path::new("/run/pods/x/hosts"),
            "/etc/hosts",
            false,
            "rprivate",
        )],
        cgroups_path: "/skiff/poduid-1/abc".into(),
        cgroup_v2: v2,
        swap_accounting: true,
        own_env: &own,
        hostname: "web",
        defaults: &defaults,
        memory_capacity: 1 << 30,
    })?;
    let cwd = b.spec.process().as_ref().unwrap().cwd().clone();
    assert!(
        root.path().join(cwd.strip_prefix("/").unwrap()).is_dir(),
        "working dir created"
    );
    Ok(Built {
        spec: b.spec,
        stop_signal: b.stop_signal,
    })
}

fn limited(cpu: &str, mem: &str) -> Container {
    Container {
        name: "app".into(),
        args: Some(vec!["--port=$(GREETING)".into()]),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".into(), Q(cpu.into())),
                ("memory".into(), Q(mem.into())),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn process_follows_pod_and_image() {
    let p = pod(limited("500m", "64Mi"));
    let b = build_with(&p, &image(Some("app")), false).unwrap();
    let process = b.spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &["/bin/app", "--port=hi"]);
    let env = process.env().as_ref().unwrap();
    assert!(env.contains(&"PATH=/bin".to_string()) && env.contains(&"GREETING=hi".to_string()));
    assert!(env.contains(&"HOSTNAME=web".to_string()));
    assert_eq!(process.cwd(), Path::new("/srv"));
    assert_eq!((process.user().uid(), process.user().gid()), (1000, 1000));
    assert_eq!(process.no_new_privileges(), Some(true));
    assert_eq!(b.stop_signal, libc::SIGQUIT);
    assert_eq!(
        process.oom_score_adj(),
        Some(-997),
        "limits only = Guaranteed"
    );
    assert!(b.spec.hostname().is_none(), "the sandbox owns the hostname");
    assert!(process.rlimits().is_none());
}

#[test]
fn linux_section_joins_the_sandbox_and_limits_v1() {
    let p = pod(limited("500m", "64Mi"));
    let b = build_with(&p, &image(None), false).unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    let ns = linux.namespaces().as_ref().unwrap();
    let find = |t| ns.iter().find(|n| n.typ() == t);
    assert_eq!(
        find(LinuxNamespaceType::Network).unwrap().path().as_deref(),
        Some(Path::new("/run/pods/x/ns/net"))
    );
    assert!(find(LinuxNamespaceType::Pid).unwrap().path().is_none());
    assert!(
        find(LinuxNamespaceType::Cgroup).is_none(),
        "v1: host cgroup namespace"
    );
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/skiff/poduid-1/abc"))
    );
    let res = linux.resources().as_ref().unwrap();
    let cpu = res.cpu().as_ref().unwrap();
    assert_eq!(cpu.shares(), Some(512));
    assert_eq!(cpu.quota(), Some(50_000));
    assert_eq!(cpu.period(), Some(100_000));
    let mem = res.memory().as_ref().unwrap();
    assert_eq!(mem.limit(), Some(64 << 20));
    assert_eq!(mem.swap(), Some(64 << 20), "no swap beyond the limit");
    assert!(res.unified().is_none());
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    assert!(linux
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sys".to_string()));
    assert!(linux.seccomp().is_some());
    let devices = res.devices().as_ref().unwrap();
    assert!(!devices[0].allow(), "deny all first");
    let mounts = b.spec.mounts().as_ref().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.destination() == Path::new("/etc/hosts")));
    assert!(mounts.iter().any(|m| m.destination() == Path::new("/proc")));
}

#[test]
fn v2_gets_cgroup_namespace_and_oom_group() {
    let p = pod(limited("2", "1Gi"));
    let b = build_with(&p, &image(None), true).unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    assert!(linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none()));
    let res = linux.resources().as_ref().unwrap();
    assert_eq!(
        res.unified()
            .as_ref()
            .unwrap()
            .get("memory.oom.group")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(200_000));
}

/// An unprivileged container's defaults, field by field against containerd's CRI: the mounts
/// of `oci.populateDefaultUnixSpec` without `/run` (`WithoutRunMount`) and `/dev/shm` (the
/// sandbox's), plus `/sys/fs/cgroup` from `WithMounts`; `defaultUnixCaps`; the masked and
/// read-only paths; a deny-all device cgroup with runc's default allow-list.
#[test]
fn unprivileged_defaults_match_containerd() {
    let b = build_with(&pod(limited("1", "1Gi")), &image(None), true).unwrap();
    let mounts = b.spec.mounts().as_ref().unwrap();
    let containerd: &[(&str, &str, &str, &[&str])] = &[
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
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
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for (dest, typ, source, options) in containerd {
        let m = mounts
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap_or_else(|| panic!("no {dest} mount"));
        assert_eq!(m.typ().as_deref(), Some(*typ), "{dest}");
        assert_eq!(m.source().as_deref(), Some(Path::new(source)), "{dest}");
        let got: Vec<&str> = m.options().iter().flatten().map(String::as_str).collect();
        assert_eq!(&got, options, "{dest}");
    }
    assert!(
        !mounts.iter().any(|m| m.destination() == Path::new("/run")),
        "the CRI drops containerd's /run tmpfs"
    );

    let caps = b
        .spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    let expected: oci_spec::runtime::Capabilities = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
    .into();
    assert_eq!(caps.bounding().as_ref(), Some(&expected));
    assert_eq!(caps.effective().as_ref(), Some(&expected));
    assert_eq!(caps.permitted().as_ref(), Some(&expected));
    assert!(caps.inheritable().as_ref().is_none_or(|c| c.is_empty()));
    assert!(caps.ambient().as_ref().is_none_or(|c| c.is_empty()));

    let linux = b.spec.linux().as_ref().unwrap();
    let mut masked = linux.masked_paths().clone().unwrap();
    masked.sort();
    let mut expected_masked = vec![
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
        "/proc/scsi",
        // moby's (and so the kubelet's) addition, masked here too.
        "/proc/interrupts",
    ];
    expected_masked.sort();
    assert_eq!(masked, expected_masked);
    assert_eq!(
        linux.readonly_paths().as_deref(),
        Some(
            &[
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
            .map(String::from)[..]
        )
    );

    let devices = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    let rules: Vec<String> = devices
        .iter()
        .map(|d| {
            let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
            format!(
                "{} {:?} {}:{} {}",
                if d.allow() { "allow" } else { "deny" },
                d.typ(),
                num(d.major()),
                num(d.minor()),
                d.access().as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            "deny None *:* rwm",
            "allow Some(C) *:* m",
            "allow Some(B) *:* m",
            "allow Some(C) 1:3 rwm",
            "allow Some(C) 1:5 rwm",
            "allow Some(C) 1:7 rwm",
            "allow Some(C) 1:8 rwm",
            "allow Some(C) 1:9 rwm",
            "allow Some(C) 5:0 rwm",
            "allow Some(C) 5:1 rwm",
            "allow Some(C) 5:2 rwm",
            "allow Some(C) 136:* rwm",
            "allow Some(C) 10:200 rwm",
        ]
    );
}

/// containerd gives a privileged container no cgroup namespace on v2 (it sees the host's
/// hierarchy, as on v1) and writable sysfs and cgroupfs.
#[test]
fn privileged_keeps_the_host_cgroup_namespace_on_v2() {
    let mut c = limited("1", "1Gi");
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    let b = build_with(&pod(c), &image(None), true).unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    assert!(!linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    let mounts = b.spec.mounts().as_ref().unwrap();
    for dest in ["/sys", "/sys/fs/cgroup"] {
        let m = mounts
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap();
        let options = m.options().as_ref().unwrap();
        assert!(options.contains(&"rw".to_string()), "{dest}: {options:?}");
        assert!(
            options.contains(&"nodev".to_string()),
            "{dest}: {options:?}"
        );
    }
}

#[test]
fn run_as_non_root_refuses_root() {
    let mut c = limited("1", "1Gi");
    c.security_context = Some(SecurityContext {
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let err = build_with(&pod(c.clone()), &image(None), false).unwrap_err();
    assert!(err.to_string().contains("runAsNonRoot"), "{err}");
    assert!(err.is_config_error());
    // The same container as a named non-root user from the image is fine.
    assert!(build_with(&pod(c), &image(Some("app")), false).is_ok());
}

#[test]
fn privileged_and_security_context_knobs() {
    let mut c = limited("1", "1Gi");
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        read_only_root_filesystem: Some(true),
        ..Default::default()
    });
    let mut p = pod(c);
    p.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
        sysctls: Some(vec![Sysctl {
            name: "net.ipv4.ip_unprivileged_port_start".into(),
            value: "0".into(),
        }]),
        ..Default::default()
    });
    let b = build_with(&p, &image(None), false).unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
    assert!(linux.seccomp().is_none());
    assert_eq!(b.spec.root().as_ref().unwrap().readonly(), Some(true));
    let caps = b
        .spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    assert!(caps
        .bounding()
        .as_ref()
        .unwrap()
        .contains(&Capability::SysAdmin));
    assert_eq!(
        linux
            .sysctl()
            .as_ref()
            .unwrap()
            .get("net.ipv4.ip_unprivileged_port_start")
            .map(String::as_str),
        Some("0")
    );
    assert_eq!(b.spec.process().as_ref().unwrap().no_new_privileges(), None);
}

#[test]
fn relative_working_dir_is_an_error_naming_the_field() {
    let mut c = limited("1", "1Gi");
    c.working_dir = Some("srv".into());
    let err = build_with(&pod(c), &image(None), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.containers[0].workingDir"), "{err}");
}

#[test]
fn signals_parse() {
    assert_eq!(parse_signal("SIGKILL"), Some(9));
    assert_eq!(parse_signal("term"), Some(15));
    assert_eq!(parse_signal("2"), Some(2));
    assert_eq!(parse_signal("SIGNOPE"), None);
    assert_eq!(parse_signal("99"), None);
}
