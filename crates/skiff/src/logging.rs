//! Tracing set-up: human-readable on a terminal, JSON on request; `RUST_LOG` beats `--log-level`.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

use crate::cli::{CommonArgs, LogFormat};

/// Installs the global subscriber for a long-running command.
pub(crate) fn init(common: &CommonArgs) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => {
            EnvFilter::try_new(&value).with_context(|| format!("invalid RUST_LOG '{value}'"))?
        }
        _ => EnvFilter::try_new(&common.log_level)
            .with_context(|| format!("invalid --log-level '{}'", common.log_level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match common.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
