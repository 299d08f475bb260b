//! `skiff version`.

use anyhow::Result;

/// Prints the skiff version, the commit it was built from and the Kubernetes API version served.
pub(crate) fn run() -> Result<()> {
    println!("skiff version {}", env!("CARGO_PKG_VERSION"));
    println!("commit: {}", env!("SKIFF_GIT_COMMIT"));
    println!("kubernetes API: {}", skiff_server::KUBERNETES_VERSION);
    Ok(())
}
