//! `skiff image ...`: the node's image store.

use anyhow::{bail, Result};

use crate::cli::ImageCommand;

/// Runs an image subcommand.
pub fn run(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Import { .. } | ImageCommand::Ls { .. } => {
            bail!("skiff image is not yet available in this build")
        }
    }
}
