//! `skiff server`: the control plane plus, by default, a local node.

use anyhow::{Context, Result};

use crate::cli::ServerArgs;
use crate::logging;

/// Runs the control plane until SIGINT or SIGTERM.
pub(crate) fn run(args: ServerArgs) -> Result<()> {
    let host_netns = args
        .node
        .netns
        .as_deref()
        .map(skiff_net::NetNs::enter_process)
        .transpose()
        .context("cannot run the node in its --netns namespace")?;
    logging::init(&args.common)?;
    // Before anything is written: the data directory and the local node's must be private.
    skiff_server::data_dir::secure_dir(&args.common.data_dir)?;
    if !args.disable_agent {
        skiff_server::data_dir::secure_dir(&args.common.data_dir.join("agent"))?;
    }
    args.flannel_backend
        .parse::<skiff_net::Backend>()
        .context("invalid --flannel-backend")?;
    // The local node: the same node flags, joined to this server once it listens.
    let local_agent = if args.disable_agent {
        None
    } else {
        let mut node = crate::cmd_agent::agent_config(
            &args.common.data_dir,
            &args.node,
            "https://127.0.0.1",
            None,
            true,
        )?;
        if node.node_ip.is_none() {
            node.node_ip = args.advertise_address;
        }
        node.connector_netns = host_netns;
        Some(local_agent(node))
    };
    // Images imported at the server (`skiff image import --data-dir DIR`, or DIR/agent/images
    // archives) are handed over to agents that lack them.
    let image_store = skiff_image::store_root(&args.common.data_dir);
    let images = skiff_image::ImageStore::open(&image_store)
        .with_context(|| format!("cannot open the image store {}", image_store.display()))?;
    let images: std::sync::Arc<dyn skiff_link::quic::ImageSource> =
        std::sync::Arc::new(crate::server_images::StoreImages::new(images));
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
        service_cidr: args.service_cidr,
        cluster_domain: args.cluster_domain,
        service_node_port_range: args.service_node_port_range,
        manifests_prune: args.manifests_prune,
        token: args.token,
        flannel_backend: args.flannel_backend,
        node_heartbeat_interval: args.node_heartbeat_interval,
        controllers: args.controllers.settings(),
        secrets_encryption: args.secrets_encryption,
        event_ttl: args.event_ttl,
        images: Some(images),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        skiff_server::run_with_local_agent(config, crate::cmd_agent::shutdown_signal(), local_agent)
            .await
            .context("skiff server failed")
    })
}

/// The server's own node agent, started once the server listens.
fn local_agent(mut config: skiff_agent::AgentConfig) -> skiff_server::LocalAgent {
    Box::new(move |node, stop| {
        config.server = node.server_url;
        config.token = Some(node.token);
        Box::pin(async move {
            skiff_agent::run(config, stop)
                .await
                .map_err(|e| e.to_string())
        })
    })
}
