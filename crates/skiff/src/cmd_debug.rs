//! `skiff debug ...`: tools for developers and benchmarks.

use anyhow::{Context, Result};
use skiff_link::hollow::{run_fleet, FleetEvent, HollowConfig};

use crate::cli::{DebugCommand, HollowNodesArgs};

/// Runs a debug command.
pub(crate) fn run(command: DebugCommand) -> Result<()> {
    match command {
        DebugCommand::HollowNodes(args) => hollow_nodes(args),
    }
}

/// Runs `--count` hollow nodes until SIGINT/SIGTERM, printing one JSON line per milestone
/// (`all_connected`, `outage`, `recovered`, `progress`) on standard output.
fn hollow_nodes(args: HollowNodesArgs) -> Result<()> {
    crate::logging::init(&args.common)?;
    let mut config = HollowConfig::new(
        &args.server,
        args.token.clone(),
        args.common.data_dir.clone(),
        args.count,
        &args.prefix,
    );
    config.nodes_per_socket = args.nodes_per_socket.max(1);
    config.start_concurrency = args.start_concurrency.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let printer = tokio::spawn(async move {
            while let Some(event) = reports.recv().await {
                let line = match event {
                    FleetEvent::AllConnected { seconds } => {
                        serde_json::json!({"event": "all_connected", "seconds": seconds})
                    }
                    FleetEvent::Outage { connected } => {
                        serde_json::json!({"event": "outage", "connected": connected})
                    }
                    FleetEvent::Recovered { seconds } => {
                        serde_json::json!({"event": "recovered", "seconds": seconds})
                    }
                    FleetEvent::Progress {
                        connected,
                        pods_running,
                    } => serde_json::json!({
                        "event": "progress", "connected": connected, "pods_running": pods_running
                    }),
                };
                println!("{line}");
            }
        });
        tracing::info!(count = args.count, server = %args.server, "starting hollow nodes");
        let result = run_fleet(config, report, crate::cmd_agent::shutdown_signal()).await;
        printer.abort();
        result.context("hollow nodes failed")
    })
}
