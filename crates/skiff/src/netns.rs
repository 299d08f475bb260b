//! `--netns`: running a node inside an existing network namespace (several nodes on one
//! machine, for development and tests).

use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Moves the whole process into the network namespace at `path`. Must run before any thread
/// starts (all later threads inherit it). Returns a path naming the namespace the process
/// came from (kept open for the process's lifetime): the container runtime learns exit codes
/// from the kernel's proc connector, which only exists in the initial namespace.
pub fn enter(path: &Path) -> Result<PathBuf> {
    let original = std::fs::File::open("/proc/self/ns/net")
        .context("cannot open this process's network namespace")?;
    let target = std::fs::File::open(path)
        .with_context(|| format!("cannot open the network namespace {}", path.display()))?;
    // SAFETY: setns(2) with a namespace file we opened; the process is still single-threaded.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot enter the network namespace {}", path.display()));
    }
    // Kept open on purpose until the process ends.
    let fd = original.into_raw_fd();
    Ok(PathBuf::from(format!("/proc/self/fd/{fd}")))
}
