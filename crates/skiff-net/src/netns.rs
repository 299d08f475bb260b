//! Network namespace handles and running code inside a namespace.
//!
//! Entering a namespace with `setns` changes only the calling thread, so skiff-net never enters
//! one on a shared (tokio) thread: work that must happen inside a namespace (creating a
//! netlink socket, running `nft`, writing `/proc/sys/net`) runs on a fresh short-lived thread
//! that enters it first. A netlink socket stays bound to the namespace it was created in, so the
//! rest of the conversation can go on from any thread.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sched::{setns, CloneFlags};

use crate::NetError;

/// An open network namespace (a `/proc/<pid>/ns/net` or bind-mounted namespace file).
#[derive(Debug, Clone)]
pub struct NetNs {
    file: Arc<File>,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace file at `path` (e.g. `/run/netns/NAME` or a pod sandbox's
    /// `ns/net`).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| NetError::Netns {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            file: Arc::new(file),
            path,
        })
    }

    /// The namespace of the calling thread.
    pub fn current_thread() -> Result<Self, NetError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether both handles refer to the same namespace (same nsfs inode).
    pub fn same_as(&self, other: &NetNs) -> Result<bool, NetError> {
        let a = self.file.metadata().map_err(|e| self.error(e))?;
        let b = other.file.metadata().map_err(|e| other.error(e))?;
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` on a new thread inside this namespace and returns its result (blocking).
    pub fn run<T, F>(&self, f: F) -> Result<T, NetError>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("skiff-netns".into())
                .spawn_scoped(scope, || {
                    self.enter_this_thread()?;
                    Ok(f())
                })
                .map_err(|source| self.error(source))?;
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `f` on a new thread inside this namespace without blocking the async caller.
    pub async fn run_async<T, F>(&self, f: F) -> Result<T, NetError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ns = self.clone();
        std::thread::Builder::new()
            .name("skiff-netns".into())
            .spawn(move || {
                let result = ns.enter_this_thread().map(|()| f());
                let _ = tx.send(result);
            })
            .map_err(|source| self.error(source))?;
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.error(std::io::Error::other(
                "the worker thread inside the namespace panicked",
            ))),
        }
    }

    /// Moves the whole process into the namespace at `path`: a node run inside its own
    /// namespace (`--netns`, several nodes on one machine). Call it before any other thread
    /// starts: `setns` moves only the calling thread, and threads started later inherit its
    /// namespace. Returns a path naming the namespace the process came from, whose descriptor
    /// stays open for the process's lifetime: the runtime's proc connector, from which it
    /// learns exit codes, exists only in the initial namespace.
    pub fn enter_process(path: &Path) -> Result<PathBuf, NetError> {
        const CURRENT: &str = "/proc/self/ns/net";
        let target = NetNs::open(path)?;
        let original = File::open(CURRENT).map_err(|source| NetError::Netns {
            path: PathBuf::from(CURRENT),
            source,
        })?;
        target.enter_this_thread()?;
        // Kept open on purpose until the process ends.
        let fd = original.into_raw_fd();
        Ok(PathBuf::from(format!("/proc/self/fd/{fd}")))
    }

    /// Moves the calling thread into this namespace (only for threads skiff-net created, and
    /// the process's first thread in [`NetNs::enter_process`]).
    fn enter_this_thread(&self) -> Result<(), NetError> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|errno| self.error(std::io::Error::from(errno)))
    }

    fn error(&self, source: std::io::Error) -> NetError {
        NetError::Netns {
            path: self.path.clone(),
            source,
        }
    }
}
