//! Learning when container processes exit, and with which status, whether or not they are our
//! children. Containers are never children of the runtime (they are reparented away when the
//! short-lived launcher exits), so `waitpid` is not available. Instead:
//!
//! * a `pidfd` per watched process tells reliably *that* it exited (pollable for any process);
//! * the kernel proc connector (netlink `NETLINK_CONNECTOR`, `CN_IDX_PROC`, `PROC_EVENT_EXIT`)
//!   tells *how*: it multicasts the exit code of every exiting task, before the pidfd fires.
//!
//! One thread per monitor waits in `epoll` on the netlink socket and all pidfds. Exit events of
//! unwatched processes are kept in a short ring so a process that exits before it is watched
//! still gets its code. If the socket overflows (ENOBUFS) or the connector is unavailable, exits
//! are still detected and reported with [`ExitStatus::Unknown`].

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use crate::error::{Result, RuntimeError};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
    /// It exited but the status was not observed (runtime down, event lost).
    Unknown,
}

impl ExitStatus {
    /// Decodes a kernel `task->exit_code` (wait status layout).
    pub fn from_wait_status(code: u32) -> ExitStatus {
        if code & 0x7f == 0 {
            ExitStatus::Exited(((code >> 8) & 0xff) as i32)
        } else {
            ExitStatus::Signaled((code & 0x7f) as i32)
        }
    }

    /// The exit code as Kubernetes reports it (128 + signal for signals, 255 if unknown).
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
            ExitStatus::Unknown => 255,
        }
    }
}

/// Receives the exit status of one watched process (called on the monitor thread).
pub type ExitCallback = Box<dyn FnOnce(ExitStatus) + Send>;

/// Opens a pidfd for `pid`.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: raw pidfd_open syscall; the returned descriptor is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` has exited (non-blocking).
pub fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid descriptor with a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && (p.revents & (libc::POLLIN | libc::POLLHUP)) != 0
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat): together
/// with the pid it identifies a process across pid reuse.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip to the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether `pid` is a process that has not exited (zombies and dead tasks have).
pub fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    match stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
    {
        Some('Z') | Some('X') | Some('x') | None => false,
        Some(_) => true,
    }
}

const TOKEN_NETLINK: u64 = 0;
const TOKEN_WAKE: u64 = 1;
const RECENT_EXITS: usize = 4096;

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;

struct Watch {
    pid: i32,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    /// When its pidfd reported the exit (it may still wait for the exit event).
    exited_at: Option<std::time::Instant>,
    callback: ExitCallback,
}

#[derive(Default)]
struct State {
    next_token: u64,
    watches: HashMap<u64, Watch>,
    by_pid: HashMap<i32, u64>,
    recent: VecDeque<(i32, u32)>,
    events_lost: bool,
}

struct Shared {
    epoll: OwnedFd,
    wake: OwnedFd,
    netlink: Option<OwnedFd>,
    state: Mutex<State>,
}

/// The exit monitor: one thread, one netlink socket, one pidfd per watched process.
pub struct ExitMonitor {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ExitMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitMonitor").finish_non_exhaustive()
    }
}

fn os_err(call: &'static str) -> RuntimeError {
    RuntimeError::sys(call, "exit monitor", nix::Error::last())
}

fn epoll_add(epoll: &OwnedFd, fd: RawFd, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: valid epoll and target descriptors.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A `NETLINK_CONNECTOR` socket. The proc connector exists only in the initial network
/// namespace: a runtime running in another one (a node given its own namespace with
/// `--netns`) names the initial one in `netns`, and the socket is made on a short-lived thread
/// that enters it (the socket stays bound to it).
fn connector_socket(netns: Option<&std::path::Path>) -> std::io::Result<OwnedFd> {
    fn make() -> std::io::Result<OwnedFd> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_CONNECTOR,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    let Some(path) = netns else {
        return make();
    };
    let ns = std::fs::File::open(path)?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on this short-lived thread only (network namespaces are per thread).
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        make()
    })
    .join()
    .map_err(|_| std::io::Error::other("the connector socket thread panicked"))?
}

/// Opens and subscribes the proc connector socket.
pub(crate) fn open_proc_connector(netns: Option<&std::path::Path>) -> std::io::Result<OwnedFd> {
    let sock = connector_socket(netns)?;
    let fd = sock.as_raw_fd();
    // A large receive buffer: the connector multicasts every exit on the machine.
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt with a correctly sized int.
    unsafe {
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        ) < 0
        {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
    }
    // SAFETY: zeroed sockaddr_nl is a valid initial value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = CN_IDX_PROC;
    addr.nl_pid = 0; // let the kernel pick a unique port id
                     // SAFETY: bind with a correctly sized sockaddr_nl.
    if unsafe {
        libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // Kernels since 6.6 accept an event filter after the op; older ones only the op.
    let filtered = kernel_at_least(6, 6);
    let payload: Vec<u8> = if filtered {
        [
            PROC_CN_MCAST_LISTEN.to_ne_bytes(),
            PROC_EVENT_EXIT.to_ne_bytes(),
        ]
        .concat()
    } else {
        PROC_CN_MCAST_LISTEN.to_ne_bytes().to_vec()
    };
    let total = NLMSG_HDRLEN + CN_MSG_LEN + payload.len();
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes()); // nlmsg_type
    msg.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&(payload.len() as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&payload);
    // SAFETY: send a fully initialised buffer.
    if unsafe { libc::send(fd, msg.as_ptr() as *const libc::c_void, msg.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let ma: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mi: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (ma, mi) >= (major, minor)
}

impl ExitMonitor {
    /// Starts the monitor thread.
    pub fn start() -> Result<ExitMonitor> {
        Self::start_in(None)
    }

    /// Starts the monitor thread, subscribing to the proc connector in the network namespace
    /// at `connector_netns` (the initial one) when the process runs in another.
    pub fn start_in(connector_netns: Option<&std::path::Path>) -> Result<ExitMonitor> {
        // SAFETY: plain epoll_create1/eventfd.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(os_err("epoll_create1"));
        }
        // SAFETY: fresh descriptor.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: plain eventfd.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(os_err("eventfd"));
        }
        // SAFETY: fresh descriptor.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        epoll_add(&epoll, wake.as_raw_fd(), TOKEN_WAKE)
            .map_err(|e| RuntimeError::io("epoll_ctl", "eventfd", e))?;
        let netlink = match open_proc_connector(connector_netns) {
            Ok(sock) => {
                epoll_add(&epoll, sock.as_raw_fd(), TOKEN_NETLINK)
                    .map_err(|e| RuntimeError::io("epoll_ctl", "proc connector", e))?;
                Some(sock)
            }
            Err(e) => {
                tracing::warn!(error = %e, "proc connector unavailable: container exit codes will be reported as unknown");
                None
            }
        };
        let shared = Arc::new(Shared {
            epoll,
            wake,
            netlink,
            state: Mutex::new(State {
                next_token: 2,
                ..Default::default()
            }),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("skiff-exits".into())
            .spawn(move || run(thread_shared))
            .map_err(|e| RuntimeError::io("spawn thread", "skiff-exits", e))?;
        Ok(ExitMonitor {
            shared,
            thread: Some(thread),
        })
    }

    /// Whether exit codes can be learned (the proc connector is subscribed).
    pub fn has_exit_codes(&self) -> bool {
        self.shared.netlink.is_some()
    }

    /// Watches `pid` (whose `pidfd` the caller opened while the pid was known to be valid);
    /// `callback` runs once with its exit status.
    pub fn watch(&self, pid: i32, pidfd: OwnedFd, callback: ExitCallback) -> Result<()> {
        // Pick up events that arrived before the watch.
        drain_netlink(&self.shared);
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let token = state.next_token;
        state.next_token += 1;
        let status = state
            .recent
            .iter()
            .rev()
            .find(|(tgid, _)| *tgid == pid)
            .map(|(_, code)| ExitStatus::from_wait_status(*code));
        epoll_add(&self.shared.epoll, pidfd.as_raw_fd(), token)
            .map_err(|e| RuntimeError::io("epoll_ctl", format!("pidfd of {pid}"), e))?;
        state.by_pid.insert(pid, token);
        state.watches.insert(
            token,
            Watch {
                pid,
                pidfd,
                status,
                exited_at: None,
                callback,
            },
        );
        Ok(())
    }

    /// Stops watching `pid` (its callback never runs).
    pub fn unwatch(&self, pid: i32) {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = state.by_pid.remove(&pid) {
            if let Some(w) = state.watches.remove(&token) {
                // SAFETY: removing a registered descriptor from our epoll set.
                unsafe {
                    libc::epoll_ctl(
                        self.shared.epoll.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        w.pidfd.as_raw_fd(),
                        std::ptr::null_mut(),
                    );
                }
            }
        }
    }

    /// Number of processes being watched.
    pub fn watched(&self) -> usize {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watches
            .len()
    }
}

impl Drop for ExitMonitor {
    fn drop(&mut self) {
        let one: u64 = u64::MAX - 1;
        // SAFETY: write 8 bytes to our eventfd.
        unsafe {
            libc::write(
                self.shared.wake.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            );
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads every queued connector message and records exit codes.
fn drain_netlink(shared: &Shared) {
    let Some(sock) = &shared.netlink else { return };
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: recv into a local buffer.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return,
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {
                    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                    if !state.events_lost {
                        tracing::warn!("proc connector overflowed: some exit codes were lost");
                    }
                    state.events_lost = true;
                    continue;
                }
                _ => {
                    tracing::warn!(error = %e, "proc connector read failed");
                    return;
                }
            }
        }
        let mut data = &buf[..n as usize];
        while data.len() >= NLMSG_HDRLEN {
            let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
            if len < NLMSG_HDRLEN || len > data.len() {
                break;
            }
            if let Some((tgid, code)) = parse_exit(&data[NLMSG_HDRLEN..len]) {
                record_exit(shared, tgid, code);
            }
            let aligned = (len + 3) & !3;
            data = &data[aligned.min(data.len())..];
        }
    }
}

/// Parses a cn_msg carrying a proc_event; returns (tgid, exit_code) for exit events.
fn parse_exit(cn: &[u8]) -> Option<(i32, u32)> {
    let u32_at = |b: &[u8], off: usize| -> Option<u32> {
        b.get(off..off + 4)
            .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    if u32_at(cn, 0)? != CN_IDX_PROC || u32_at(cn, 4)? != CN_VAL_PROC {
        return None;
    }
    let ev = &cn[CN_MSG_LEN..];
    // struct proc_event { u32 what; u32 cpu; u64 timestamp_ns; union { exit: {pid, tgid, code, signal, ...} } }
    if u32_at(ev, 0)? != PROC_EVENT_EXIT {
        return None;
    }
    let tgid = u32_at(ev, 20)? as i32;
    let code = u32_at(ev, 24)?;
    Some((tgid, code))
}

fn record_exit(shared: &Shared, tgid: i32, code: u32) {
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&token) = state.by_pid.get(&tgid) {
        if let Some(w) = state.watches.get_mut(&token) {
            // Once the watched process is gone and has a status, a later event for the same
            // number belongs to a new process that reused the pid.
            if !(w.status.is_some() && (w.exited_at.is_some() || pidfd_exited(&w.pidfd))) {
                w.status = Some(ExitStatus::from_wait_status(code));
            }
        }
        return;
    }
    if state.recent.len() >= RECENT_EXITS {
        state.recent.pop_front();
    }
    state.recent.push_back((tgid, code));
}

/// How long an exited process may wait for its exit event. The kernel makes the pidfd readable
/// (in `exit_notify`) just *before* it sends the proc connector message (`proc_exit_connector`
/// runs after it in `do_exit`), so the event usually follows within microseconds.
const EVENT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

fn run(shared: Arc<Shared>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        let next_deadline = {
            let state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .watches
                .values()
                .filter_map(|w| w.exited_at.map(|t| t + EVENT_GRACE))
                .min()
        };
        let timeout = match next_deadline {
            Some(d) => d
                .saturating_duration_since(std::time::Instant::now())
                .as_millis()
                .clamp(1, i32::MAX as u128) as i32,
            None => -1,
        };
        // SAFETY: epoll_wait into a correctly sized buffer.
        let n = unsafe {
            libc::epoll_wait(
                shared.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            tracing::error!(error = %std::io::Error::last_os_error(), "exit monitor epoll failed");
            return;
        }
        drain_netlink(&shared);
        let now = std::time::Instant::now();
        let mut done: Vec<(Watch, ExitStatus)> = Vec::new();
        {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            for ev in &events[..n.max(0) as usize] {
                match ev.u64 {
                    TOKEN_NETLINK => {}
                    TOKEN_WAKE => return,
                    token => {
                        if let Some(w) = state.watches.get_mut(&token) {
                            if w.exited_at.is_none() {
                                w.exited_at = Some(now);
                                // SAFETY: removing a registered descriptor from our epoll set.
                                unsafe {
                                    libc::epoll_ctl(
                                        shared.epoll.as_raw_fd(),
                                        libc::EPOLL_CTL_DEL,
                                        w.pidfd.as_raw_fd(),
                                        std::ptr::null_mut(),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            // Exited processes with their event, or out of time waiting for it.
            let finished: Vec<u64> = state
                .watches
                .iter()
                .filter(|(_, w)| {
                    w.exited_at
                        .is_some_and(|t| w.status.is_some() || now >= t + EVENT_GRACE)
                })
                .map(|(token, _)| *token)
                .collect();
            for token in finished {
                if let Some(w) = state.watches.remove(&token) {
                    state.by_pid.remove(&w.pid);
                    let status = match w.status {
                        Some(s) => s,
                        None => {
                            tracing::warn!(
                                pid = w.pid,
                                events_lost = state.events_lost,
                                "process exited without an exit event"
                            );
                            ExitStatus::Unknown
                        }
                    };
                    done.push((w, status));
                }
            }
        }
        for (w, status) in done {
            tracing::debug!(pid = w.pid, ?status, "watched process exited");
            (w.callback)(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn wait_status_decoding() {
        assert_eq!(ExitStatus::from_wait_status(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus::Exited(3));
        assert_eq!(ExitStatus::from_wait_status(9), ExitStatus::Signaled(9));
        assert_eq!(
            ExitStatus::from_wait_status(0x80 | 11),
            ExitStatus::Signaled(11)
        );
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
    }

    #[test]
    fn start_time_identifies_a_process() {
        let me = std::process::id() as i32;
        let a = process_start_time(me).unwrap();
        assert_eq!(process_start_time(me), Some(a));
        assert_eq!(process_start_time(i32::MAX), None);
    }

    /// Runs `sh -c script` as a grandchild (so it is not our child) and returns its pid.
    fn orphan(script: &str) -> (i32, OwnedFd) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sh -c '{script}' >/dev/null 2>&1 & echo $!; sleep 0.2"
            ))
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // The intermediate shell waited 0.2 s, so the orphan is alive (sleeping) and ours to watch.
        let fd = pidfd_open(pid).unwrap();
        (pid, fd)
    }

    #[test]
    fn reports_exit_codes_of_processes_that_are_not_children() {
        if !nix::unistd::geteuid().is_root() {
            skiff_testkit::gate::skip("exit monitor needs the proc connector (root)");
            return;
        }
        let monitor = ExitMonitor::start().unwrap();
        assert!(monitor.has_exit_codes());
        let (tx, rx) = mpsc::channel();
        let (pid, fd) = orphan("sleep 0.5; exit 7");
        let tx1 = tx.clone();
        monitor
            .watch(pid, fd, Box::new(move |s| tx1.send((pid, s)).unwrap()))
            .unwrap();
        let (pid2, fd2) = orphan("sleep 0.5; kill -KILL $$");
        monitor
            .watch(pid2, fd2, Box::new(move |s| tx.send((pid2, s)).unwrap()))
            .unwrap();
        let mut got = HashMap::new();
        for _ in 0..2 {
            let (p, s) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            got.insert(p, s);
        }
        assert_eq!(got[&pid], ExitStatus::Exited(7));
        assert_eq!(got[&pid2], ExitStatus::Signaled(9));
        assert_eq!(monitor.watched(), 0);
    }

    #[test]
    fn exit_before_watch_is_still_reported() {
        if !nix::unistd::geteuid().is_root() {
            skiff_testkit::gate::skip("exit monitor needs the proc connector (root)");
            return;
        }
        let monitor = ExitMonitor::start().unwrap();
        // Our own child: it stays a zombie (pidfd valid) until we reap it after watching.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exit 42")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fd = pidfd_open(pid).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (tx, rx) = mpsc::channel();
        monitor
            .watch(pid, fd, Box::new(move |s| tx.send(s).unwrap()))
            .unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            ExitStatus::Exited(42)
        );
        let _ = child.wait();
    }
}

#[cfg(test)]
mod pidns_tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn killed_pid_namespace_init_with_children_reports_its_signal() {
        if !skiff_testkit::gate::require_root("needs the proc connector (root)") {
            return;
        }
        let monitor = ExitMonitor::start().unwrap();
        // unshare forks the namespace init (sh), which runs children; we watch the init.
        let mut child = std::process::Command::new("unshare")
            .args([
                "--fork",
                "--pid",
                "--mount-proc",
                "sh",
                "-c",
                "sleep 100 & sleep 100 & while true; do sleep 0.1; done",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let init: i32 =
            std::fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id()))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        let (tx, rx) = mpsc::channel();
        monitor
            .watch(
                init,
                pidfd_open(init).unwrap(),
                Box::new(move |s| tx.send(s).unwrap()),
            )
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(init),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            ExitStatus::Signaled(9)
        );
        let _ = child.wait();
    }
}
