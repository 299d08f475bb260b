//! `skiff server`: the control plane plus, by default, a local node.

use anyhow::{Context, Result};

use crate::cli::ServerArgs;
use crate::logging;

/// Runs the control plane until SIGINT or SIGTERM.
pub fn run(args: ServerArgs) -> Result<()> {
    logging::init(&args.common)?;
    let config = skiff_server::ServerConfig {
        data_dir: args.common.data_dir,
        https_listen_port: args.https_listen_port,
        bind_address: args.bind_address,
        advertise_address: args.advertise_address,
        node_name: match args.node.node_name {
            Some(name) => name,
            None => crate::cmd_agent::host_name()?,
        },
        node_labels: args.node.node_labels,
        node_taints: args.node.node_taints,
        max_pods: args.node.max_pods,
        disable_agent: args.disable_agent,
        cluster_cidr: args.cluster_cidr,
        token: args.token,
        controllers: args.controllers.settings(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        skiff_server::run(config, crate::cmd_agent::shutdown_signal())
            .await
            .context("skiff server failed")
    })
}
