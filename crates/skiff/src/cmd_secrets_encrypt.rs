//! `skiff secrets-encrypt status|rotate-keys`: reads the key files of the data directory;
//! a rotation is handed to the running server, or done here when none runs.

use anyhow::{Context, Result};
use skiff_server::secrets_encryption::{rotate_keys, status_text, RotatedBy};

use crate::cli::{SecretsEncryptArgs, SecretsEncryptCommand};

/// Runs a secrets-encrypt command.
pub(crate) fn run(args: SecretsEncryptArgs) -> Result<()> {
    match args.command {
        SecretsEncryptCommand::Status => {
            print!("{}", status_text(&args.data_dir)?);
            Ok(())
        }
        SecretsEncryptCommand::RotateKeys { timeout } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            match runtime.block_on(rotate_keys(&args.data_dir, timeout))? {
                RotatedBy::Server => {
                    println!("keys rotated, reencryption finished (by the running server)")
                }
                RotatedBy::ThisProcess { rewritten } => println!(
                    "keys rotated, reencryption finished ({rewritten} records rewritten; no server was running)"
                ),
            }
            Ok(())
        }
    }
}
