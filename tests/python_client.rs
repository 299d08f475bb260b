//! The official Kubernetes Python client, installed from PyPI into a virtual environment under
//! the target directory (once per build tree), as users install it: `pip install kubernetes`.
//! The version is pinned to the newest release the compatibility work was checked against.

use std::path::PathBuf;
use std::process::Command;

/// The client release (`kubernetes` on PyPI) the tests use.
pub const CLIENT_VERSION: &str = "37.0.3";

/// What the venv holds besides the client: the test runner of the client's own suites.
const TEST_PACKAGES: &[&str] = &[
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "pytest-asyncio==1.5.0",
];

/// The venv's Python, creating the venv first if needed (`python3 -m venv`, then `pip install`
/// from PyPI). Concurrent callers share one build: it is made in a temporary directory and
/// renamed into place.
pub fn python() -> PathBuf {
    let dir = crate::workspace_root()
        .join("target")
        .join(format!("python-client-{CLIENT_VERSION}"));
    let python = dir.join("bin").join("python");
    if python.exists() {
        return python;
    }
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    run(Command::new("python3").args(["-m", "venv"]).arg(&tmp));
    run(Command::new(tmp.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("kubernetes=={CLIENT_VERSION}"))
        .args(TEST_PACKAGES));
    // The scripts in bin/ keep the temporary path in their shebangs; the tests only run
    // `bin/python -m …`, which finds the venv from its own location.
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => {}
        Err(_) if python.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => panic!("publish the Python client venv: {e}"),
    }
    python
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
