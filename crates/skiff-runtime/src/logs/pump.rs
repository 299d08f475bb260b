//! The log pump: one thread reading every container's output FIFOs with epoll and appending
//! CRI lines to the containers' log files, rotating them by size.
//!
//! Why FIFOs and not pipes: a container's stdout/stderr is a FIFO in its instance directory that
//! the *container itself* holds open read-write (its fd 1 and 2). A FIFO with a reader never
//! gives its writers SIGPIPE/EPIPE, so when the runtime is killed the containers keep running;
//! what they write meanwhile waits in the pipe buffer (sized with F_SETPIPE_SZ, 1 MiB by
//! default; writers block beyond that). A restarted runtime reopens the FIFO by name and goes
//! on reading. The pipe ends — the pump sees end-of-file — when the last process of the
//! container holding it exits.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use jiff::Timestamp;

use super::{LogRecord, Stream};
use crate::error::{Result, RuntimeError};

/// Longest line written as one record; longer lines are split into `P` records (containerd's
/// limit).
pub const MAX_LINE: usize = 16 * 1024;

/// Rotation settings.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// Rotate when the current file exceeds this many bytes.
    pub max_size: u64,
    /// Files kept per container instance, the current one included (at least 2).
    pub max_files: usize,
}

#[derive(Debug, Default)]
struct SinkState {
    file: Option<File>,
    size: u64,
    /// Bumped on every write and rotation (followers wait for a change).
    seq: u64,
    open_streams: usize,
    closed: bool,
}

/// The log file of one container instance, shared by its stdout and stderr streams.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    rotation: Rotation,
    state: Mutex<SinkState>,
    changed: Condvar,
}

impl LogSink {
    /// Opens (appends to) the log file at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> Result<Arc<LogSink>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io("create", parent, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| RuntimeError::io("open log", path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Arc::new(LogSink {
            path: path.to_path_buf(),
            rotation: Rotation {
                max_size: rotation.max_size.max(4096),
                max_files: rotation.max_files.max(2),
            },
            state: Mutex::new(SinkState {
                file: Some(file),
                size,
                ..Default::default()
            }),
            changed: Condvar::new(),
        }))
    }

    /// The current log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut st = self.lock();
        // Whole lines, rotating before a line would take the file over its size.
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = self.rotation.max_size.saturating_sub(st.size) as usize;
            let mut take = match rest[..room.min(rest.len())]
                .iter()
                .rposition(|b| *b == b'\n')
            {
                Some(i) => i + 1,
                None => 0,
            };
            if take == 0 {
                if st.size > 0 {
                    self.rotate(&mut st);
                    continue;
                }
                // A single line longer than a whole file: it goes in as it is.
                take = rest
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|i| i + 1)
                    .unwrap_or(rest.len());
            }
            if let Some(f) = st.file.as_mut() {
                if let Err(e) = f.write_all(&rest[..take]) {
                    tracing::warn!(path = %self.path.display(), error = %e, "log write failed");
                }
            }
            st.size += take as u64;
            rest = &rest[take..];
        }
        st.seq += 1;
        drop(st);
        self.changed.notify_all();
    }

    fn rotate(&self, st: &mut SinkState) {
        let keep = self.rotation.max_files - 1;
        let rotated = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(rotated(keep));
        for i in (1..keep).rev() {
            let _ = std::fs::rename(rotated(i), rotated(i + 1));
        }
        if let Err(e) = std::fs::rename(&self.path, rotated(1)) {
            tracing::warn!(path = %self.path.display(), error = %e, "log rotation failed");
            return;
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => {
                st.file = Some(f);
                st.size = 0;
            }
            Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "log reopen failed"),
        }
    }

    fn stream_opened(&self) {
        self.lock().open_streams += 1;
    }

    fn stream_closed(&self) {
        let mut st = self.lock();
        st.open_streams = st.open_streams.saturating_sub(1);
        if st.open_streams == 0 {
            st.closed = true;
            st.file = None;
        }
        st.seq += 1;
        drop(st);
        self.changed.notify_all();
    }

    /// Whether every stream has ended (the container's output is fully written).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The change counter (for [`LogSink::wait_change`]).
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Waits until the counter moves past `seen` or `timeout` passes; returns the counter.
    pub fn wait_change(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        let st = self.lock();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, timeout, |s| s.seq == seen && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        st.seq
    }

    /// Waits until all streams ended, at most `timeout`.
    pub fn wait_closed(&self, timeout: std::time::Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, timeout, |s| !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        st.closed
    }
}

struct StreamState {
    fd: OwnedFd,
    stream: Stream,
    sink: Arc<LogSink>,
    partial: Vec<u8>,
}

struct Shared {
    epoll: OwnedFd,
    wake: OwnedFd,
    streams: Mutex<HashMap<u64, StreamState>>,
    next: Mutex<u64>,
}

/// The pump thread.
pub struct LogPump {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for LogPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogPump").finish_non_exhaustive()
    }
}

const TOKEN_WAKE: u64 = 0;

impl LogPump {
    /// Starts the thread.
    pub fn start() -> Result<LogPump> {
        // SAFETY: plain epoll_create1/eventfd; descriptors are owned below.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(RuntimeError::sys(
                "epoll_create1",
                "log pump",
                nix::Error::last(),
            ));
        }
        // SAFETY: fresh descriptor.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: plain eventfd.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(RuntimeError::sys("eventfd", "log pump", nix::Error::last()));
        }
        // SAFETY: fresh descriptor.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        epoll_ctl(&epoll, libc::EPOLL_CTL_ADD, wake.as_raw_fd(), TOKEN_WAKE)
            .map_err(|e| RuntimeError::io("epoll_ctl", "log pump", e))?;
        let shared = Arc::new(Shared {
            epoll,
            wake,
            streams: Mutex::new(HashMap::new()),
            next: Mutex::new(1),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("skiff-logs".into())
            .spawn(move || run(thread_shared))
            .map_err(|e| RuntimeError::io("spawn thread", "skiff-logs", e))?;
        Ok(LogPump {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts pumping `fifo_read` (a non-blocking read end) of `stream` into `sink`.
    pub fn add(&self, fifo_read: OwnedFd, stream: Stream, sink: &Arc<LogSink>) -> Result<()> {
        let token = {
            let mut next = self.shared.next.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        sink.stream_opened();
        let raw = fifo_read.as_raw_fd();
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                token,
                StreamState {
                    fd: fifo_read,
                    stream,
                    sink: Arc::clone(sink),
                    partial: Vec::new(),
                },
            );
        if let Err(e) = epoll_ctl(&self.shared.epoll, libc::EPOLL_CTL_ADD, raw, token) {
            if let Some(s) = self
                .shared
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&token)
            {
                s.sink.stream_closed();
            }
            return Err(RuntimeError::io("epoll_ctl", "log fifo", e));
        }
        Ok(())
    }

    /// Number of streams being pumped.
    pub fn streams(&self) -> usize {
        self.shared
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        let v: u64 = 1;
        // SAFETY: write 8 bytes to our eventfd.
        unsafe {
            libc::write(
                self.shared.wake.as_raw_fd(),
                &v as *const u64 as *const libc::c_void,
                8,
            );
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn epoll_ctl(epoll: &OwnedFd, op: i32, fd: RawFd, token: u64) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLHUP) as u32,
        u64: token,
    };
    // SAFETY: valid descriptors and event struct.
    if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Splits buffered bytes into CRI records: complete lines as `F`, over-long runs as `P`.
fn drain_lines(
    partial: &mut Vec<u8>,
    stream: Stream,
    now: Timestamp,
    eof: bool,
    out: &mut Vec<u8>,
) {
    let mut start = 0;
    loop {
        let rest = &partial[start..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(nl) if nl <= MAX_LINE => {
                LogRecord {
                    time: now,
                    stream,
                    partial: false,
                    message: rest[..nl].to_vec(),
                }
                .encode(out);
                start += nl + 1;
            }
            _ if rest.len() > MAX_LINE => {
                LogRecord {
                    time: now,
                    stream,
                    partial: true,
                    message: rest[..MAX_LINE].to_vec(),
                }
                .encode(out);
                start += MAX_LINE;
            }
            _ => break,
        }
    }
    partial.drain(..start);
    if eof && !partial.is_empty() {
        LogRecord {
            time: now,
            stream,
            partial: false,
            message: std::mem::take(partial),
        }
        .encode(out);
    }
}

fn run(shared: Arc<Shared>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: epoll_wait into a correctly sized buffer.
        let n = unsafe {
            libc::epoll_wait(
                shared.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            tracing::error!(error = %std::io::Error::last_os_error(), "log pump epoll failed");
            return;
        }
        for ev in &events[..n as usize] {
            if ev.u64 == TOKEN_WAKE {
                return;
            }
            let token = ev.u64;
            let mut streams = shared.streams.lock().unwrap_or_else(|p| p.into_inner());
            let Some(state) = streams.get_mut(&token) else {
                continue;
            };
            let mut out = Vec::new();
            let mut eof = false;
            // Read what is there (bounded, to stay fair between containers).
            for _ in 0..16 {
                // SAFETY: read into a local buffer from a non-blocking descriptor.
                let r = unsafe {
                    libc::read(
                        state.fd.as_raw_fd(),
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                    )
                };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => break,
                        Some(libc::EINTR) => continue,
                        _ => {
                            eof = true;
                            break;
                        }
                    }
                }
                if r == 0 {
                    eof = true;
                    break;
                }
                state.partial.extend_from_slice(&buf[..r as usize]);
                drain_lines(
                    &mut state.partial,
                    state.stream,
                    Timestamp::now(),
                    false,
                    &mut out,
                );
                if (r as usize) < buf.len() {
                    break;
                }
            }
            if eof {
                drain_lines(
                    &mut state.partial,
                    state.stream,
                    Timestamp::now(),
                    true,
                    &mut out,
                );
            }
            state.sink.write(&out);
            if eof {
                if let Some(s) = streams.remove(&token) {
                    // SAFETY: deregister before the descriptor is closed.
                    unsafe {
                        libc::epoll_ctl(
                            shared.epoll.as_raw_fd(),
                            libc::EPOLL_CTL_DEL,
                            s.fd.as_raw_fd(),
                            std::ptr::null_mut(),
                        );
                    }
                    s.sink.stream_closed();
                }
            }
        }
    }
}

/// Creates a FIFO at `path` (mode 0600) with its buffer enlarged to `pipe_size` bytes, and
/// returns (read-write end for the container, non-blocking read end for the pump).
pub fn create_fifo(path: &Path, pipe_size: usize) -> Result<(OwnedFd, OwnedFd)> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::Error::EEXIST) => {}
        Err(e) => return Err(RuntimeError::sys("mkfifo", path.display(), e)),
    }
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| RuntimeError::io("open fifo", path, e))?;
    if pipe_size > 0 {
        // SAFETY: fcntl on a valid pipe descriptor; failure only keeps the default size.
        unsafe {
            libc::fcntl(rw.as_raw_fd(), libc::F_SETPIPE_SZ, pipe_size as libc::c_int);
        }
    }
    let read = open_fifo_reader(path)?;
    Ok((OwnedFd::from(rw), read))
}

/// Opens the pump's end of an existing FIFO (non-blocking, read-only).
pub fn open_fifo_reader(path: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| RuntimeError::io("open fifo", path, e))?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn records(path: &Path) -> Vec<LogRecord> {
        std::fs::read(path)
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| LogRecord::parse(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_long_lines_and_eof_remainders() {
        let mut partial = b"one\ntwo\nthr".to_vec();
        let mut out = Vec::new();
        let now = Timestamp::now();
        drain_lines(&mut partial, Stream::Stdout, now, false, &mut out);
        assert_eq!(partial, b"thr");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.lines().count() == 2
                && text.contains(" stdout F one\n")
                && text.contains(" stdout F two\n")
        );
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        let mut out = Vec::new();
        drain_lines(&mut long, Stream::Stderr, now, false, &mut out);
        let lines: Vec<_> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| LogRecord::parse(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].partial && lines[0].message.len() == MAX_LINE);
        assert!(!lines[1].partial && lines[1].message.len() == 10);
        let mut rest = b"tail".to_vec();
        let mut out = Vec::new();
        drain_lines(&mut rest, Stream::Stdout, now, true, &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with(" stdout F tail\n"));
    }

    #[test]
    fn fifo_output_reaches_the_file_and_survives_reader_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        let log = dir.path().join("0.log");
        let (writer, reader) = create_fifo(&fifo, 1 << 20).unwrap();
        let pump = LogPump::start().unwrap();
        let sink = LogSink::open(
            &log,
            Rotation {
                max_size: 1 << 20,
                max_files: 3,
            },
        )
        .unwrap();
        pump.add(reader, Stream::Stdout, &sink).unwrap();
        let mut w = File::from(writer);
        w.write_all(b"first\nsecond\n").unwrap();
        let seq = sink.wait_change(0, Duration::from_secs(5));
        assert!(seq > 0);
        // The pump (the "runtime") goes away; the writer keeps writing without SIGPIPE.
        drop(pump);
        w.write_all(b"while away\n").unwrap();
        let pump = LogPump::start().unwrap();
        let sink2 = LogSink::open(
            &log,
            Rotation {
                max_size: 1 << 20,
                max_files: 3,
            },
        )
        .unwrap();
        pump.add(open_fifo_reader(&fifo).unwrap(), Stream::Stdout, &sink2)
            .unwrap();
        w.write_all(b"back\n").unwrap();
        drop(w);
        assert!(
            sink2.wait_closed(Duration::from_secs(5)),
            "EOF once the writer is gone"
        );
        let msgs: Vec<String> = records(&log)
            .into_iter()
            .map(|r| String::from_utf8(r.message).unwrap())
            .collect();
        assert_eq!(msgs, ["first", "second", "while away", "back"]);
        assert_eq!(pump.streams(), 0);
    }

    #[test]
    fn rotation_keeps_bounded_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let sink = LogSink::open(
            &log,
            Rotation {
                max_size: 4096,
                max_files: 3,
            },
        )
        .unwrap();
        let line = {
            let mut out = Vec::new();
            LogRecord {
                time: Timestamp::now(),
                stream: Stream::Stdout,
                partial: false,
                message: vec![b'a'; 1000],
            }
            .encode(&mut out);
            out
        };
        for _ in 0..20 {
            sink.write(&line);
        }
        assert!(log.exists());
        assert!(dir.path().join("0.log.1").exists() && dir.path().join("0.log.2").exists());
        assert!(!dir.path().join("0.log.3").exists(), "only max_files kept");
        for f in ["0.log", "0.log.1", "0.log.2"] {
            assert!(
                std::fs::metadata(dir.path().join(f)).unwrap().len() <= 4096,
                "{f} within the size"
            );
        }
        // One big write is split across files too.
        let big: Vec<u8> = line.iter().copied().cycle().take(line.len() * 12).collect();
        sink.write(&big);
        assert!(std::fs::metadata(&log).unwrap().len() <= 4096);
    }
}
