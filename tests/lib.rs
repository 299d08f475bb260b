//! Shared helpers for skiff's workspace-level tests (see the `tests/` folder of this package):
//! the real `skiff` binary as a child process ([`process`]), an API server in the test
//! process over real HTTPS ([`inproc`]), a raw HTTPS client ([`https`]) and kubectl
//! ([`kubectl`]), a multi-node cluster in network namespaces ([`harness`]) and the official
//! Python client from PyPI ([`python_client`]).

pub mod harness;
pub mod https;
pub mod inproc;
pub mod kubectl;
pub mod process;
pub mod python_client;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// The root-test gate (`skiff_testkit::gate`): [`e2e_required`] is `SKIFF_E2E_REQUIRED=1`;
/// [`skip`] reports a missing prerequisite loudly, or fails under it.
pub use skiff_testkit::gate::{e2e_required, skip};

/// Installs the one crypto provider (ring) for rustls users in the test process.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// A temporary directory under the target directory's tmp area (kept out of `/tmp` clutter
/// only by name; removed when dropped).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("skiff-{prefix}-"))
        .tempdir()
        .expect("create a temporary directory")
}

/// Path of a file in the test data folder (`tests/data`).
pub fn data(name: &str) -> PathBuf {
    workspace_root().join("tests").join("data").join(name)
}
