//! `exec` of a command in a running container (libcontainer's tenant builder), with the
//! process's stdio handed back to the caller as pipes or a pseudo-terminal.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;

use oci_spec::runtime::Spec;
use tokio::sync::oneshot;

use crate::error::{Result, RuntimeError};
use crate::exits::ExitStatus;
use crate::launcher::{launch, Operation, Stdio};
use crate::runtime::Runtime;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// argv; the first word is looked up in the container's PATH.
    pub command: Vec<String>,
    /// Allocate a pseudo-terminal (stdout and stderr are then the terminal).
    pub tty: bool,
    /// Give the process a stdin the caller writes to (otherwise /dev/null).
    pub stdin: bool,
}

/// A process started by [`Runtime::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Host pid.
    pub pid: i32,
    /// Write end of the process's stdin (with `stdin`, without `tty`).
    pub stdin: Option<File>,
    /// Read end of its stdout (without `tty`).
    pub stdout: Option<File>,
    /// Read end of its stderr (without `tty`).
    pub stderr: Option<File>,
    /// The terminal's master side (with `tty`): read output, write input.
    pub terminal: Option<File>,
    exit: oneshot::Receiver<ExitStatus>,
}

impl ExecProcess {
    /// Waits for the process to end.
    pub async fn wait(self) -> ExitStatus {
        self.exit.await.unwrap_or(ExitStatus::Unknown)
    }

    /// Resizes the terminal.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        let Some(term) = &self.terminal else {
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on our pty master.
        if unsafe { libc::ioctl(term.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(RuntimeError::sys(
                "ioctl TIOCSWINSZ",
                "exec terminal",
                nix::Error::last(),
            ));
        }
        Ok(())
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::sys("pipe2", "exec", e))
}

/// Receives the pty master that libcontainer's init sends over the console socket.
fn receive_master(listener: &UnixListener) -> Result<File> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    listener
        .set_nonblocking(true)
        .map_err(|e| RuntimeError::io("console socket", "listener", e))?;
    let (conn, _) = listener
        .accept()
        .map_err(|e| RuntimeError::io("accept", "console socket", e))?;
    conn.set_nonblocking(false)
        .map_err(|e| RuntimeError::io("console socket", "connection", e))?;
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| RuntimeError::sys("recvmsg", "console socket", e))?;
    for cmsg in msg
        .cmsgs()
        .map_err(|e| RuntimeError::sys("recvmsg", "console socket", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { File::from_raw_fd(*fd) });
            }
        }
    }
    Err(RuntimeError::Container {
        container: "exec".into(),
        message: "no terminal received on the console socket".into(),
    })
}

impl Runtime {
    /// Runs `opts.command` in the running container `container` of pod `uid`, as the
    /// container's user, with its environment, capabilities and seccomp filter.
    pub async fn exec(&self, uid: &str, container: &str, opts: ExecOptions) -> Result<ExecProcess> {
        if opts.command.is_empty() || opts.command[0].is_empty() {
            return Err(RuntimeError::invalid("command", "an exec needs a command"));
        }
        let inner = Arc::clone(self.inner());
        let instance = self
            .pod_instance(uid, container)?
            .filter(|i| i.is_running())
            .ok_or_else(|| RuntimeError::ContainerNotRunning {
                pod: uid.to_owned(),
                container: container.to_owned(),
            })?;
        let dir = self
            .pod_dir(uid)
            .join("containers")
            .join(container)
            .join(instance.number.to_string());
        tokio::task::spawn_blocking(move || {
            let config = dir.join("bundle/config.json");
            let spec = Spec::load(&config).map_err(|source| RuntimeError::Spec {
                container: instance.id.clone(),
                source,
            })?;
            let mut process = spec
                .process()
                .clone()
                .ok_or_else(|| RuntimeError::Container {
                    container: instance.id.clone(),
                    message: "container spec has no process".into(),
                })?;
            process.set_args(Some(opts.command.clone()));
            process.set_terminal(Some(opts.tty));
            process.set_oom_score_adj(None);
            let tag = crate::instance::random_id();
            let process_json = dir.join(format!("exec-{}.json", &tag[..12]));
            let bytes = serde_json::to_vec(&process).map_err(|source| RuntimeError::State {
                path: process_json.clone(),
                source,
            })?;
            crate::fsutil::write_atomic(&process_json, &bytes, 0o600)?;
            let profile = match spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
                Some(p) => Some(p),
                // The fast path keeps the profile beside the spec (see seccomp_filter).
                None => std::fs::read(dir.join("seccomp.json")).ok().and_then(|b| {
                    serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(&b).ok()
                }),
            };
            let seccomp = match profile {
                Some(p) => {
                    Some(
                        inner
                            .seccomp
                            .get(&p)
                            .map_err(|message| RuntimeError::Container {
                                container: instance.id.clone(),
                                message,
                            })?,
                    )
                }
                None => None,
            };

            let mut caller = (None, None, None);
            let (stdio, console, listener) = if opts.tty {
                let sock = std::env::temp_dir().join(format!("skiff-exec-{}.sock", &tag[..16]));
                let listener =
                    UnixListener::bind(&sock).map_err(|e| RuntimeError::io("bind", &sock, e))?;
                (None, Some(sock), Some(listener))
            } else {
                let stdin = if opts.stdin {
                    let (r, w) = pipe()?;
                    caller.0 = Some(File::from(w));
                    r
                } else {
                    OwnedFd::from(
                        File::open("/dev/null")
                            .map_err(|e| RuntimeError::io("open", "/dev/null", e))?,
                    )
                };
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                caller.1 = Some(File::from(out_r));
                caller.2 = Some(File::from(err_r));
                (
                    Some(Stdio {
                        stdin,
                        stdout: out_w,
                        stderr: err_w,
                    }),
                    None,
                    None,
                )
            };
            let (tx, rx) = oneshot::channel();
            let exits = &inner.exits;
            let launched = launch(
                Operation::Exec {
                    id: instance.id.clone(),
                    root: inner.libcontainer_root.clone(),
                    process_json: process_json.clone(),
                    stdio,
                    console_socket: console.clone(),
                    seccomp,
                },
                move |l| {
                    let fd = l
                        .pidfd
                        .try_clone()
                        .map_err(|e| RuntimeError::io("dup", "pidfd", e))?;
                    exits.watch(
                        l.pid,
                        fd,
                        Box::new(move |status| {
                            let _ = tx.send(status);
                        }),
                    )
                },
            );
            let _ = std::fs::remove_file(&process_json);
            let terminal = match (&listener, &launched) {
                (Some(l), Ok(_)) => Some(receive_master(l)),
                _ => None,
            };
            if let Some(sock) = &console {
                let _ = std::fs::remove_file(sock);
            }
            let launched = launched?;
            let terminal = terminal.transpose()?;
            Ok(ExecProcess {
                pid: launched.pid,
                stdin: caller.0,
                stdout: caller.1,
                stderr: caller.2,
                terminal,
                exit: rx,
            })
        })
        .await
        .map_err(|e| RuntimeError::Container {
            container: container.to_owned(),
            message: format!("exec task failed: {e}"),
        })?
    }

    fn pod_instance(&self, uid: &str, container: &str) -> Result<Option<crate::state::Instance>> {
        let pods = self.inner().pods.lock().unwrap_or_else(|p| p.into_inner());
        let e = pods
            .get(uid)
            .ok_or_else(|| RuntimeError::PodNotFound(uid.to_owned()))?;
        let r = e.state.lock().unwrap_or_else(|p| p.into_inner());
        let c = r
            .containers
            .get(container)
            .ok_or_else(|| RuntimeError::ContainerNotFound {
                pod: uid.to_owned(),
                container: container.to_owned(),
            })?;
        Ok(c.instance.clone())
    }
}
