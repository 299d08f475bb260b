//! Scaffolding shared by skiff's tests and benchmarks, kept once instead of copied into each
//! crate's `tests/common`:
//!
//! - [`gate`]: tests that need root or host tools skip loudly, or fail under
//!   `SKIFF_E2E_REQUIRED=1` (set by `.ci/run`).
//! - [`cmd`]: running a host command and reporting its stderr.
//! - [`netns`]: named network namespaces, and a LAN of node namespaces on a bridge.
//! - [`kubelet`]: a fake kubelet and node heartbeats over a `kube::Client`, for controller
//!   tests and benchmarks without a real node.
//! - [`image`]: the busybox test image built from `images/busybox/build.sh`.
//! - [`wait`]: polling for a condition in async tests.
//!
//! Only ever a dev-dependency (`tests/tests/architecture.rs` checks it).

pub mod cmd;
pub mod fuzz;
pub mod gate;
pub mod image;
pub mod kubelet;
pub mod measure;
pub mod netns;
pub mod wait;

use std::path::{Path, PathBuf};

/// The workspace root (where `images/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
