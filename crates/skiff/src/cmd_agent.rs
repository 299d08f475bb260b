//! `skiff agent`: join this machine to a cluster as a worker node.

use anyhow::{Context, Result};

use crate::cli::AgentArgs;
use crate::logging;

/// Runs the node agent until SIGINT or SIGTERM.
pub fn run(args: AgentArgs) -> Result<()> {
    logging::init(&args.common)?;
    let config = skiff_agent::AgentConfig {
        data_dir: args.common.data_dir,
        server: args.server,
        token: args.token,
        node_name: match args.node.node_name {
            Some(name) => name,
            None => host_name()?,
        },
        node_labels: args.node.node_labels,
        node_taints: args.node.node_taints,
        max_pods: args.node.max_pods,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        skiff_agent::run(config, shutdown_signal())
            .await
            .context("skiff agent failed")
    })
}

/// The machine's host name, lower-cased as Kubernetes node names must be.
pub fn host_name() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name; pass --node-name")?;
    Ok(name.trim().to_lowercase())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops skiff");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
