//! `skiff agent`: join this machine to a cluster as a worker node (or `--cleanup` it).

use anyhow::{Context, Result};

use crate::cli::{AgentArgs, NodeArgs};
use crate::logging;

/// The agent's settings from the node flags (shared by `skiff agent` and the local agent of
/// `skiff server`).
pub(crate) fn agent_config(
    data_dir: &std::path::Path,
    node: &NodeArgs,
    server: &str,
    token: Option<String>,
    control_plane: bool,
) -> Result<skiff_agent::AgentConfig> {
    let mut config = skiff_agent::AgentConfig::new(
        data_dir,
        server,
        &match &node.node_name {
            Some(name) => name.clone(),
            None => host_name()?,
        },
    );
    config.token = token;
    config.node_labels = node.node_labels.clone();
    config.node_taints = node.node_taints.clone();
    config.max_pods = node.max_pods;
    config.node_ip = node.node_ip;
    config.system_reserved = node.system_reserved.clone();
    config.cgroup_parent = node.cgroup_parent.clone();
    config.registry_config = Some(node.node_registry_config.clone());
    config.control_plane = control_plane;
    config.api_via_link = node.api_via_link.into();
    config.validate().context("invalid node settings")?;
    Ok(config)
}

/// Runs the node agent until SIGINT or SIGTERM.
pub(crate) fn run(args: AgentArgs) -> Result<()> {
    let host_netns = args
        .node
        .netns
        .as_deref()
        .map(skiff_net::NetNs::enter_process)
        .transpose()
        .context("cannot run the node in its --netns namespace")?;
    logging::init(&args.common)?;
    // The node's keys and pod data: private to root, refused when others could write them
    // (before anything is written; the agent checks the same again at its start).
    skiff_pki::secure_dir(&args.common.data_dir)?;
    skiff_pki::secure_dir(&args.common.data_dir.join("agent"))?;
    let mut config = agent_config(
        &args.common.data_dir,
        &args.node,
        args.server.as_deref().unwrap_or_default(),
        args.token.clone(),
        false,
    )?;
    config.connector_netns = host_netns;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.cleanup {
        return runtime.block_on(async {
            let summary = skiff_agent::cleanup(&config)
                .await
                .context("skiff agent --cleanup failed")?;
            println!(
                "removed {} pods, {} network interfaces and {} routes",
                summary.pods,
                summary.links.len(),
                summary.routes
            );
            Ok(())
        });
    }
    runtime.block_on(async {
        skiff_agent::run(config, shutdown_signal())
            .await
            .context("skiff agent failed")
    })
}

/// The machine's host name, lower-cased as Kubernetes node names must be.
pub(crate) fn host_name() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name; pass --node-name")?;
    Ok(name.trim().to_lowercase())
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
