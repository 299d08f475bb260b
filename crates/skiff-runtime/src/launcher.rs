//! Runs libcontainer's create/exec in a short-lived, single-threaded launcher process.
//!
//! libcontainer forks with a raw `clone3` (bypassing libc's fork handlers), writes
//! `/proc/self/oom_score_adj`, sets the caller non-dumpable, and changes the working directory
//! of the whole process for console sockets. None of that is safe in the multi-threaded runtime
//! (a lock held by another thread at fork time could deadlock the child; process-wide state
//! would leak into the runtime). So each operation forks a launcher with libc's `fork()` (which
//! resets malloc's locks in the child) from a dedicated thread; the launcher becomes a session
//! leader, silences tracing for itself, runs libcontainer single-threaded, reports the
//! container's pid through a pipe, waits for an acknowledgement and exits. The container's init
//! is the launcher's child and so cannot be reaped, nor its pid reused, before the runtime has
//! opened a pidfd for it. When the launcher exits, the container is reparented away from the
//! runtime (to init or a subreaper): a runtime that is killed takes nothing with it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use crate::error::{Result, RuntimeError};
use crate::exits::pidfd_open;
use crate::workload::SeccompExecutor;

/// How long a launcher may take before it is killed.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Standard streams of the new process.
pub(crate) struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What the launcher should do.
pub(crate) enum Operation {
    /// Create (not start) the init process of container `id` from `bundle/config.json`.
    Create {
        id: String,
        root: PathBuf,
        bundle: PathBuf,
        stdio: Stdio,
        /// Seccomp program installed just before exec (instead of the spec's profile).
        seccomp: Option<crate::seccomp_filter::Program>,
    },
    /// Start a process described by `process_json` in the running container `id`.
    Exec {
        id: String,
        root: PathBuf,
        process_json: PathBuf,
        stdio: Option<Stdio>,
        console_socket: Option<PathBuf>,
        seccomp: Option<crate::seccomp_filter::Program>,
    },
}

impl Operation {
    fn id(&self) -> &str {
        match self {
            Operation::Create { id, .. } | Operation::Exec { id, .. } => id,
        }
    }
}

/// Runs the operation inside the launcher; returns the new process's pid or an error message.
fn perform(op: Operation) -> std::result::Result<i32, String> {
    match op {
        Operation::Create {
            id,
            root,
            bundle,
            stdio,
            seccomp,
        } => {
            let container = ContainerBuilder::new(id, SyscallType::default())
                .with_root_path(root)
                .map_err(|e| e.to_string())?
                .with_executor(SeccompExecutor { program: seccomp })
                .with_stdin(stdio.stdin)
                .with_stdout(stdio.stdout)
                .with_stderr(stdio.stderr)
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| error_chain(&e))?;
            container
                .pid()
                .map(|p| p.as_raw())
                .ok_or_else(|| "container has no pid".to_string())
        }
        Operation::Exec {
            id,
            root,
            process_json,
            stdio,
            console_socket,
            seccomp,
        } => {
            let mut builder = ContainerBuilder::new(id, SyscallType::default())
                .with_root_path(root)
                .map_err(|e| e.to_string())?
                .with_console_socket(console_socket)
                .with_executor(SeccompExecutor { program: seccomp });
            if let Some(stdio) = stdio {
                builder = builder
                    .with_stdin(stdio.stdin)
                    .with_stdout(stdio.stdout)
                    .with_stderr(stdio.stderr);
            }
            let pid = builder
                .as_tenant()
                .with_process(Some(process_json))
                .with_detach(true)
                .build()
                .map_err(|e| error_chain(&e))?;
            Ok(pid.as_raw())
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::sys("pipe2", "launcher", e))
}

/// The launcher's side: never returns.
fn launcher_main(op: Operation, result_w: OwnedFd, ack_r: OwnedFd, trace: bool) -> ! {
    // A session of its own: terminal hangups and process-group signals aimed at the runtime
    // never reach the containers, which inherit this session.
    let _ = nix::unistd::setsid();
    // Only this thread exists; other threads' locks (e.g. a log writer's) may be held forever.
    // Keep libcontainer's tracing away from them.
    // (SKIFF_LAUNCHER_TRACE=1 keeps them, for debugging libcontainer.)
    let _quiet = if trace {
        None
    } else {
        Some(tracing::dispatcher::set_default(&tracing::Dispatch::none()))
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| perform(op)))
        .unwrap_or_else(|_| Err("launcher panicked".to_string()));
    let (tag, body) = match outcome {
        Ok(pid) => (b'O', pid.to_string()),
        Err(msg) => (b'E', msg),
    };
    let mut out = std::fs::File::from(result_w);
    let mut msg = Vec::with_capacity(5 + body.len());
    msg.push(tag);
    msg.extend_from_slice(&(body.len() as u32).to_ne_bytes());
    msg.extend_from_slice(body.as_bytes());
    let _ = out.write_all(&msg);
    // Wait until the runtime holds a pidfd of the new process (or has gone away).
    let mut ack = [0u8; 1];
    let _ = std::fs::File::from(ack_r).read(&mut ack);
    // SAFETY: terminate without running destructors or atexit handlers of the copied runtime.
    unsafe { libc::_exit(0) }
}

fn read_exact_timeout(
    fd: &OwnedFd,
    buf: &mut [u8],
    deadline: std::time::Instant,
) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid descriptor.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        // SAFETY: read into the unfilled part of `buf`.
        let r = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[filled..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - filled,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        filled += r as usize;
    }
    Ok(())
}

/// A process started by a launcher, held by pidfd.
pub(crate) struct Launched {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// Runs `op` in a launcher process. `before_release` runs while the new process cannot be
/// reaped (e.g. to register it with the exit monitor). Blocking: call from a blocking thread.
pub(crate) fn launch(
    op: Operation,
    before_release: impl FnOnce(&Launched) -> Result<()>,
) -> Result<Launched> {
    let id = op.id().to_owned();
    let (result_r, result_w) = pipe()?;
    let (ack_r, ack_w) = pipe()?;
    // Read before forking, and only once: every read takes the environment lock, which a
    // concurrent launch on another thread would copy into its child held.
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let trace = *TRACE.get_or_init(|| std::env::var_os("SKIFF_LAUNCHER_TRACE").is_some());
    // SAFETY: the child only runs single-threaded code that does not depend on locks held by
    // other threads of the parent (glibc resets malloc's locks in fork's child handler; tracing
    // is silenced; the environment lock is never written, see `workload`), and ends with _exit.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(result_r);
            drop(ack_w);
            launcher_main(op, result_w, ack_r, trace)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => return Err(RuntimeError::sys("fork", format!("launcher for {id}"), e)),
    };
    drop(op);
    drop(result_w);
    drop(ack_r);

    let reap = |kill: bool| {
        if kill {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = nix::sys::wait::waitpid(child, None);
    };
    let deadline = std::time::Instant::now() + LAUNCH_TIMEOUT;
    let mut header = [0u8; 5];
    if let Err(e) = read_exact_timeout(&result_r, &mut header, deadline) {
        reap(true);
        return Err(if e.kind() == std::io::ErrorKind::TimedOut {
            RuntimeError::Timeout {
                operation: format!("launching container {id}"),
                seconds: LAUNCH_TIMEOUT.as_secs(),
            }
        } else {
            RuntimeError::Container {
                container: id,
                message: format!("launcher died: {e}"),
            }
        });
    }
    let len = u32::from_ne_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len.min(1 << 20)];
    let read_body = read_exact_timeout(&result_r, &mut body, deadline);
    let body = String::from_utf8_lossy(&body).into_owned();
    let release = |ack_w: OwnedFd| {
        let _ = std::fs::File::from(ack_w).write_all(b"k");
        reap(false);
    };
    if read_body.is_err() || header[0] != b'O' {
        release(ack_w);
        return Err(RuntimeError::Container {
            container: id,
            message: if read_body.is_err() {
                "launcher died mid-report".into()
            } else {
                body
            },
        });
    }
    let pid: i32 = match body.trim().parse() {
        Ok(p) => p,
        Err(_) => {
            release(ack_w);
            return Err(RuntimeError::Container {
                container: id,
                message: format!("launcher reported a bad pid {body:?}"),
            });
        }
    };
    let launched = match pidfd_open(pid) {
        Ok(pidfd) => Launched { pid, pidfd },
        Err(e) => {
            release(ack_w);
            return Err(RuntimeError::io("pidfd_open", format!("/proc/{pid}"), e));
        }
    };
    let hook = before_release(&launched);
    release(ack_w);
    hook.map(|()| launched)
}
