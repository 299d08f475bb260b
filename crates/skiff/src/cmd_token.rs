//! `skiff token create|list|revoke`: join tokens, stored as bootstrap-token Secrets in
//! kube-system, managed through the API with the admin kubeconfig.

use anyhow::{Context, Result};
use skiff_server::nodes::tokens::{parse_ttl, TokenAdmin};

use crate::cli::{TokenArgs, TokenCommand};

/// Runs a token command.
pub(crate) fn run(args: TokenArgs) -> Result<()> {
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("server").join("admin.kubeconfig"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let admin = TokenAdmin::from_kubeconfig(&kubeconfig)
            .await
            .with_context(|| format!("cannot reach the API with {}", kubeconfig.display()))?;
        match args.command {
            TokenCommand::Create { ttl, description } => {
                let ttl = parse_ttl(&ttl)?;
                let token = admin.create(ttl, &description).await?;
                println!("{token}");
            }
            TokenCommand::List => {
                let tokens = admin.list().await?;
                println!("{:<8} {:<32} DESCRIPTION", "ID", "EXPIRES");
                for token in tokens {
                    let expires = match (token.expiration, token.expired) {
                        (None, _) => "never".to_string(),
                        (Some(at), true) => format!("{at} (expired)"),
                        (Some(at), false) => at.to_string(),
                    };
                    println!("{:<8} {:<32} {}", token.id, expires, token.description);
                }
            }
            TokenCommand::Revoke { id } => {
                admin.revoke(&id).await?;
                println!(
                    "join token {} revoked",
                    id.split("::")
                        .last()
                        .unwrap_or(&id)
                        .split('.')
                        .next()
                        .unwrap_or(&id)
                );
            }
        }
        Ok(())
    })
}
