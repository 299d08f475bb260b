//! Creating, starting, signalling and cleaning up one container instance. Blocking: runs on
//! blocking threads.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use libcontainer::container::Container as LcContainer;
use oci_spec::runtime::{Mount, Spec};

use crate::context::Inner;
use crate::error::{Result, RuntimeError};
use crate::exits::{process_start_time, ExitCallback, ExitStatus};
use crate::inputs::PodInputs;
use crate::launcher::{launch, Operation, Stdio};
use crate::logs::pump::{create_fifo, LogSink};
use crate::logs::Stream;
use crate::rootfs::Rootfs;
use crate::spec::env::container_env;
use crate::spec::fieldref::PodFacts;
use crate::spec::{self, bind_mount, SpecContext};
use crate::state::{Instance, PodPaths, PodRecord, Terminated};
use crate::volumes;

/// Where the termination message file is mounted when the container does not say.
const DEFAULT_TERMINATION_PATH: &str = "/dev/termination-log";
/// Termination messages are cut to this size (upstream).
const MAX_TERMINATION_MESSAGE: usize = 4096;

/// The spec template of a container: generated once, reused by every instance.
#[derive(serde::Serialize, serde::Deserialize)]
struct Template {
    spec: Spec,
    stop_signal: i32,
    termination_path: Option<String>,
    /// subPaths bound (again) before each instance; the spec's mounts name their targets.
    #[serde(default)]
    subpaths: Vec<crate::subpath::SubpathBind>,
}

/// How starting an instance failed.
pub(crate) enum StartFailure {
    /// The pod or its inputs are wrong (`CreateContainerConfigError`); no instance exists.
    Config(RuntimeError),
    /// The node failed to prepare it (`CreateContainerError`); no instance exists.
    Create(RuntimeError),
    /// libcontainer refused to run it (`StartError`, exit code 128): the instance counts.
    Start {
        instance: Box<Instance>,
        message: String,
    },
}

/// A started instance.
pub(crate) struct Started {
    pub instance: Instance,
    /// A pidfd of the init process (for signals; the exit monitor has its own).
    pub pidfd: OwnedFd,
    pub sink: Arc<LogSink>,
}

/// A new container id: 32 random hex digits.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom into a local buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr() as *mut libc::c_void, bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Fall back to time and pid: uniqueness is all that matters.
        let t = Timestamp::now().as_nanosecond() as u128 ^ (u128::from(std::process::id()) << 64);
        bytes = t.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sandbox files every container of the pod gets.
fn sandbox_mounts(paths: &PodPaths, record: &PodRecord, read_only: bool) -> Vec<Mount> {
    let mut mounts = vec![
        bind_mount(&paths.hosts(), "/etc/hosts", read_only, "rprivate"),
        bind_mount(&paths.resolv(), "/etc/resolv.conf", read_only, "rprivate"),
        bind_mount(&paths.hostname(), "/etc/hostname", read_only, "rprivate"),
    ];
    match &record.sandbox.shm {
        Some(shm) => mounts.push(bind_mount(shm, "/dev/shm", false, "rprivate")),
        None => mounts.push(bind_mount(
            Path::new("/dev/shm"),
            "/dev/shm",
            false,
            "rprivate",
        )),
    }
    mounts
}

fn load_template(path: &Path) -> Option<Template> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Generates the container's spec template (env, identity, mounts, security).
fn generate_template(
    inner: &Inner,
    paths: &PodPaths,
    record: &PodRecord,
    name: &str,
    inputs: &PodInputs,
    rootfs: &Path,
) -> Result<Template> {
    let (container, field) =
        record
            .container_spec(name)
            .ok_or_else(|| RuntimeError::ContainerNotFound {
                pod: record.uid().to_owned(),
                container: name.to_owned(),
            })?;
    let image = record
        .images
        .get(name)
        .ok_or_else(|| RuntimeError::MissingInput {
            kind: "image",
            name: container.image.clone().unwrap_or_default(),
            field: format!("{field}.image"),
        })?;
    let mut node = inputs.node.clone();
    if node.host_ips.is_empty() {
        node.host_ips = record.host_ips.clone();
    }
    let facts = PodFacts {
        node: Some(&node),
        pod_ips: &record.pod_ips,
    };
    let own_env = container_env(&record.pod, container, &field, inputs, &facts)?;
    let security = spec::security::Effective::of(&record.pod, container);
    let prepared = volumes::existing(&record.pod, &paths.volumes());
    let mut mounts = sandbox_mounts(paths, record, security.read_only_root);
    let volume_mounts = volumes::mounts_for(
        container,
        &field,
        &volumes::MountSource {
            volumes: &prepared,
            pod_dir: &paths.dir,
        },
        security.privileged,
        &own_env,
    )?;
    mounts.extend(volume_mounts.mounts);
    let termination_path = match container.termination_message_path.as_deref() {
        Some("") => None,
        Some(p) => Some(p.to_owned()),
        None => Some(DEFAULT_TERMINATION_PATH.to_owned()),
    };
    if let Some(p) = &termination_path {
        if !p.starts_with('/') {
            return Err(RuntimeError::invalid(
                format!("{field}.terminationMessagePath"),
                "must be an absolute path",
            ));
        }
        // The source is replaced per instance.
        mounts.push(bind_mount(Path::new("/dev/null"), p, false, "rprivate"));
    }
    let spec_ns = record.sandbox.namespaces.clone();
    let host_pid = record
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_pid)
        .unwrap_or(false);
    let memory_capacity = if inputs.node.allocatable_memory_bytes > 0 {
        inputs.node.allocatable_memory_bytes
    } else {
        machine_memory()
    };
    let built = spec::build(SpecContext {
        pod: &record.pod,
        container,
        field: &field,
        image,
        rootfs,
        namespaces: &spec_ns,
        host_pid,
        mounts,
        cgroups_path: PathBuf::new(),
        cgroup_v2: inner.cgroups.is_v2(),
        swap_accounting: inner.swap_accounting,
        own_env: &own_env,
        hostname: &record.sandbox.hostname,
        defaults: &inner.config.security,
        memory_capacity,
    })?;
    Ok(Template {
        spec: built.spec,
        stop_signal: built.stop_signal,
        termination_path,
        subpaths: volume_mounts.subpaths,
    })
}

fn machine_memory() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").map(|v| {
                    v.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .unwrap_or(0)
                        * 1024
                })
            })
        })
        .unwrap_or(1 << 30)
}

/// What `start` needs.
pub(crate) struct StartRequest<'a> {
    pub inner: &'a Inner,
    pub paths: &'a PodPaths,
    pub record: &'a PodRecord,
    pub name: &'a str,
    pub number: u32,
    pub inputs: &'a PodInputs,
    pub regenerate: bool,
    /// The libcontainer id of the new instance.
    pub id: String,
    /// Called with the instance's exit status (on the exit monitor's thread).
    pub on_exit: ExitCallback,
}

/// Prepares, creates and starts an instance.
pub(crate) fn start(req: StartRequest<'_>) -> std::result::Result<Started, StartFailure> {
    let StartRequest {
        inner,
        paths,
        record,
        name,
        number,
        inputs,
        regenerate,
        id,
        on_exit,
    } = req;
    let mut phases = crate::timing::Phases::new("container start");
    let dir = paths.instance(name, number);
    // A leftover of a crashed attempt with this number goes first.
    if dir.exists() {
        let _ = Rootfs::at(&dir).unmount();
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(dir.join("bundle"))
        .map_err(|e| StartFailure::Create(RuntimeError::io("create", &dir, e)))?;
    let image = match record.images.get(name) {
        Some(i) => i.clone(),
        None => {
            return Err(StartFailure::Config(RuntimeError::MissingInput {
                kind: "image",
                name: record
                    .container_spec(name)
                    .and_then(|(c, _)| c.image.clone())
                    .unwrap_or_default(),
                field: record
                    .container_spec(name)
                    .map(|(_, f)| format!("{f}.image"))
                    .unwrap_or_default(),
            }))
        }
    };
    let rootfs = Rootfs::at(&dir);
    let cleanup = |rootfs: &Rootfs| {
        let _ = rootfs.unmount();
        let _ = std::fs::remove_dir_all(&dir);
    };
    if let Err(e) = rootfs.mount(&image.layers, &image.reference) {
        cleanup(&rootfs);
        return Err(if e.is_config_error() {
            StartFailure::Config(e)
        } else {
            StartFailure::Create(e)
        });
    }
    phases.mark("rootfs");
    let template_path = paths.spec_template(name);
    let template = match (regenerate, load_template(&template_path)) {
        (false, Some(t)) => {
            // The image's working directory must exist in this fresh upper layer too.
            let cwd = t
                .spec
                .process()
                .as_ref()
                .map(|p| p.cwd().clone())
                .unwrap_or_default();
            if let Err(e) = crate::fsutil::mkdir_all_in_root(&rootfs.merged, &cwd, 0o755) {
                cleanup(&rootfs);
                return Err(StartFailure::Create(e));
            }
            t
        }
        _ => match generate_template(inner, paths, record, name, inputs, &rootfs.merged) {
            Ok(t) => {
                let bytes = serde_json::to_vec(&t).unwrap_or_default();
                if let Err(e) = crate::fsutil::write_atomic(&template_path, &bytes, 0o600) {
                    cleanup(&rootfs);
                    return Err(StartFailure::Create(e));
                }
                t
            }
            Err(e) => {
                cleanup(&rootfs);
                return Err(if e.is_config_error() {
                    StartFailure::Config(e)
                } else {
                    StartFailure::Create(e)
                });
            }
        },
    };
    phases.mark("spec");
    // In the runtime's (host) mount namespace, before libcontainer binds the targets.
    for b in &template.subpaths {
        if let Err(e) = crate::subpath::prepare(b) {
            cleanup(&rootfs);
            return Err(if e.is_config_error() {
                StartFailure::Config(e)
            } else {
                StartFailure::Create(e)
            });
        }
    }
    match create_and_start(
        inner,
        paths,
        name,
        number,
        id,
        &dir,
        &rootfs,
        template,
        on_exit,
        &mut phases,
    ) {
        Ok(started) => Ok(started),
        Err(CreateError::Prepare(e)) => {
            cleanup(&rootfs);
            Err(StartFailure::Create(e))
        }
        Err(CreateError::Run { instance, message }) => {
            cleanup(&rootfs);
            Err(StartFailure::Start { instance, message })
        }
    }
}

enum CreateError {
    Prepare(RuntimeError),
    Run {
        instance: Box<Instance>,
        message: String,
    },
}

#[allow(clippy::too_many_arguments)]
fn create_and_start(
    inner: &Inner,
    paths: &PodPaths,
    name: &str,
    number: u32,
    id: String,
    dir: &Path,
    rootfs: &Rootfs,
    template: Template,
    on_exit: ExitCallback,
    phases: &mut crate::timing::Phases,
) -> std::result::Result<Started, CreateError> {
    let cgroup = paths_cgroup(inner, paths).join(&id);
    let mut spec = template.spec;
    spec.set_root(Some(
        oci_spec::runtime::RootBuilder::default()
            .path(&rootfs.merged)
            .readonly(
                spec.root()
                    .as_ref()
                    .and_then(|r| r.readonly())
                    .unwrap_or(false),
            )
            .build()
            .map_err(|source| {
                CreateError::Prepare(RuntimeError::Spec {
                    container: name.to_owned(),
                    source,
                })
            })?,
    ));
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(cgroup.clone()));
    }
    let termination_file = dir.join("termination-log");
    if let Some(tp) = &template.termination_path {
        std::fs::write(&termination_file, b"")
            .map_err(|e| CreateError::Prepare(RuntimeError::io("create", &termination_file, e)))?;
        let _ = std::fs::set_permissions(
            &termination_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        );
        if let Some(mounts) = spec.mounts_mut() {
            for m in mounts.iter_mut() {
                if m.destination() == Path::new(tp) {
                    m.set_source(Some(termination_file.clone()));
                }
            }
        }
    }
    // Seccomp fast path: a precompiled program instead of libcontainer compiling the profile in
    // the container's init (only with no_new_privs, which lets the init install it unprivileged).
    let nnp = spec.process().as_ref().and_then(|p| p.no_new_privileges()) == Some(true);
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let mut program = None;
    if let (true, Some(profile)) = (nnp, profile) {
        match inner.seccomp.get(&profile) {
            Ok(p) => {
                program = Some(p);
                if let Some(linux) = spec.linux_mut() {
                    linux.set_seccomp(None);
                }
                let path = dir.join("seccomp.json");
                let bytes = serde_json::to_vec(&profile).map_err(|source| {
                    CreateError::Prepare(RuntimeError::State {
                        path: path.clone(),
                        source,
                    })
                })?;
                crate::fsutil::write_atomic(&path, &bytes, 0o600).map_err(CreateError::Prepare)?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "seccomp profile not precompiled; libcontainer compiles it")
            }
        }
    }
    let bundle = dir.join("bundle");
    let config = bundle.join("config.json");
    let bytes = serde_json::to_vec(&spec).map_err(|source| {
        CreateError::Prepare(RuntimeError::State {
            path: config.clone(),
            source,
        })
    })?;
    crate::fsutil::write_atomic(&config, &bytes, 0o600).map_err(CreateError::Prepare)?;

    // Output FIFOs and the log file.
    let (out_rw, out_r) = create_fifo(&dir.join("stdout"), inner.config.logs.pipe_size)
        .map_err(CreateError::Prepare)?;
    let (err_rw, err_r) = create_fifo(&dir.join("stderr"), inner.config.logs.pipe_size)
        .map_err(CreateError::Prepare)?;
    let sink = LogSink::open(&paths.log(name, number), inner.config.logs.rotation)
        .map_err(CreateError::Prepare)?;
    inner
        .pump
        .add(out_r, Stream::Stdout, &sink)
        .map_err(CreateError::Prepare)?;
    inner
        .pump
        .add(err_r, Stream::Stderr, &sink)
        .map_err(CreateError::Prepare)?;
    phases.mark("bundle+logs");
    let stdin = std::fs::File::open("/dev/null")
        .map_err(|e| CreateError::Prepare(RuntimeError::io("open", "/dev/null", e)))?;

    let mut instance = Instance {
        id: id.clone(),
        number,
        pid: None,
        pid_start_time: None,
        started_at: None,
        stop_signal: template.stop_signal,
        cgroup,
        terminated: None,
    };
    let exits = &inner.exits;
    let launched = launch(
        Operation::Create {
            id: id.clone(),
            root: inner.libcontainer_root.clone(),
            bundle: bundle.clone(),
            stdio: Stdio {
                stdin: OwnedFd::from(stdin),
                stdout: out_rw,
                stderr: err_rw,
            },
            seccomp: program,
        },
        move |l| {
            let fd = l
                .pidfd
                .try_clone()
                .map_err(|e| RuntimeError::io("dup", "pidfd", e))?;
            exits.watch(l.pid, fd, on_exit)
        },
    );
    let launched = match launched {
        Ok(l) => l,
        Err(e) => {
            remove_container_state(inner, &instance);
            let message = match e {
                RuntimeError::Container { message, .. } => message,
                other => other.to_string(),
            };
            return Err(CreateError::Run {
                instance: Box::new(instance),
                message,
            });
        }
    };
    phases.mark("launch");
    instance.pid = Some(launched.pid);
    instance.pid_start_time = process_start_time(launched.pid);
    // Start: the init process is waiting on libcontainer's notify socket.
    if let Err(e) = notify_start(&inner.libcontainer_root.join(&id)) {
        kill_all(inner, &instance, &launched.pidfd, libc::SIGKILL);
        remove_container_state(inner, &instance);
        return Err(CreateError::Run {
            instance: Box::new(instance),
            message: format!("start: {e}"),
        });
    }
    instance.started_at = Some(Timestamp::now());
    phases.mark("notify");
    phases.log(name);
    // The container writes into the FIFOs now; our read-write copies are closed (they were
    // moved into the launcher request), so end-of-file comes when the container exits.
    Ok(Started {
        instance,
        pidfd: launched.pidfd,
        sink,
    })
}

fn paths_cgroup(inner: &Inner, paths: &PodPaths) -> PathBuf {
    let uid = paths.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    inner.pod_cgroup(uid)
}

/// Tells a created container to execute its process (libcontainer's `Container::start`, minus
/// its process-wide `chdir`, which would race with every other thread of the runtime): connect to
/// the notify socket through `/proc/self/fd` (short path, no working directory change), then
/// record the state as running.
fn notify_start(container_dir: &Path) -> Result<()> {
    use std::io::Write;
    let dir = crate::fsutil::open_dir(container_dir)
        .map_err(|e| RuntimeError::io("open", container_dir, e))?;
    let socket = format!(
        "/proc/self/fd/{}/{}",
        dir.as_raw_fd(),
        libcontainer::notify_socket::NOTIFY_FILE
    );
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
        RuntimeError::io(
            "connect",
            container_dir.join(libcontainer::notify_socket::NOTIFY_FILE),
            e,
        )
    })?;
    stream.write_all(b"start container").map_err(|e| {
        RuntimeError::io(
            "write",
            container_dir.join(libcontainer::notify_socket::NOTIFY_FILE),
            e,
        )
    })?;
    drop(stream);
    let mut container =
        LcContainer::load(container_dir.to_path_buf()).map_err(|e| RuntimeError::Container {
            container: container_dir.display().to_string(),
            message: e.to_string(),
        })?;
    container
        .set_status(libcontainer::container::ContainerStatus::Running)
        .save()
        .map_err(|e| RuntimeError::Container {
            container: container_dir.display().to_string(),
            message: e.to_string(),
        })
}

/// Sends `signal` to the instance's init; SIGKILL also goes to every process in its cgroup.
pub(crate) fn kill_all(inner: &Inner, instance: &Instance, pidfd: &OwnedFd, signal: i32) {
    // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
    if signal == libc::SIGKILL {
        for pid in crate::cgroups::pids(&inner.cgroups, &instance.cgroup) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Kills and removes an instance known only by id and cgroup (interrupted creation).
pub(crate) fn discard(inner: &Inner, cgroup: &Path, id: &str) {
    for pid in crate::cgroups::pids(&inner.cgroups, cgroup) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let dir = inner.libcontainer_root.join(id);
    if dir.exists() {
        let _ = LcContainer::load(dir.clone()).and_then(|mut c| c.delete(true));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = crate::cgroups::remove(&inner.cgroups, cgroup);
}

/// Deletes libcontainer's state and the cgroup of an instance (idempotent).
fn remove_container_state(inner: &Inner, instance: &Instance) {
    let dir = inner.libcontainer_root.join(&instance.id);
    if dir.exists() {
        if let Err(e) = LcContainer::load(dir.clone()).and_then(|mut c| c.delete(true)) {
            tracing::debug!(id = %instance.id, error = %e, "libcontainer delete failed; removing state by hand");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if let Err(e) = crate::cgroups::remove(&inner.cgroups, &instance.cgroup) {
        tracing::warn!(id = %instance.id, error = %e, "container cgroup not removed");
    }
}

/// Reads the container's termination message (or the log tail when asked to fall back).
fn termination_message(
    dir: &Path,
    log: &Path,
    fallback_to_logs: bool,
    failed: bool,
) -> Option<String> {
    use std::io::Read;
    let mut msg = String::new();
    if let Ok(f) = std::fs::File::open(dir.join("termination-log")) {
        let _ = f
            .take(MAX_TERMINATION_MESSAGE as u64)
            .read_to_string(&mut msg);
    }
    if msg.is_empty() && fallback_to_logs && failed {
        let mut lines = Vec::new();
        crate::logs::reader::read(
            log,
            None,
            &crate::logs::reader::LogOptions {
                tail_lines: Some(80),
                ..Default::default()
            },
            &mut |r| {
                lines.push(String::from_utf8_lossy(&r.render(false)).into_owned());
                true
            },
        );
        let mut text: String = lines.concat();
        if text.len() > 2048 {
            let cut = text.len() - 2048;
            let cut = (cut..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            text = text[cut..].to_owned();
        }
        msg = text;
    }
    (!msg.is_empty()).then_some(msg)
}

/// Cleans up an instance that exited and describes how it ended.
pub(crate) fn finish(
    inner: &Inner,
    paths: &PodPaths,
    name: &str,
    instance: &Instance,
    status: ExitStatus,
    sink: Option<&Arc<LogSink>>,
    fallback_to_logs: bool,
) -> Terminated {
    let mut phases = crate::timing::Phases::new("container cleanup");
    let oom = crate::cgroups::oom_kills(&inner.cgroups, &instance.cgroup) > 0;
    if let Some(sink) = sink {
        // Let the pump write the last output before the message or the tail is read.
        sink.wait_closed(std::time::Duration::from_secs(2));
    }
    phases.mark("logs");
    let dir = paths.instance(name, instance.number);
    let exit_code = status.code();
    let message = termination_message(
        &dir,
        &paths.log(name, instance.number),
        fallback_to_logs,
        exit_code != 0,
    );
    phases.mark("message");
    remove_container_state(inner, instance);
    phases.mark("libcontainer+cgroup");
    let _ = Rootfs::at(&dir).unmount();
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "instance directory not removed");
        }
    }
    phases.mark("rootfs");
    phases.log(name);
    let reason = match status {
        _ if oom => "OOMKilled",
        ExitStatus::Unknown => "ContainerStatusUnknown",
        ExitStatus::Exited(0) => "Completed",
        _ => "Error",
    };
    Terminated {
        exit_code,
        signal: match status {
            ExitStatus::Signaled(s) => Some(s),
            _ => None,
        },
        reason: reason.into(),
        message: if status == ExitStatus::Unknown && message.is_none() {
            Some("the container exited while the runtime was not running; its exit status is unknown".into())
        } else {
            message
        },
        started_at: instance.started_at,
        finished_at: Timestamp::now(),
        container_id: format!("skiff://{}", instance.id),
    }
}
