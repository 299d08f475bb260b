//! The `skiff` binary: parses the command line and dispatches to one module per command.

mod cli;
mod cmd_agent;
mod cmd_check_config;
mod cmd_debug;
mod cmd_image;
mod cmd_secrets_encrypt;
mod cmd_server;
mod cmd_token;
mod cmd_version;
mod config;
mod fd_limit;
mod host_checks;
mod logging;
mod server_images;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let cli = match config::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    // One crypto provider for every TLS user in the process (API server, link, kube client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Long-running commands hold many connections (server) or containers (agent).
    if matches!(cli.command, Command::Server(_) | Command::Agent(_)) {
        let _ = fd_limit::raise_nofile();
    }
    let result = match cli.command {
        Command::Server(args) => cmd_server::run(args),
        Command::Agent(args) => cmd_agent::run(args),
        Command::Image(command) => cmd_image::run(command),
        Command::Version => cmd_version::run(),
        Command::Token(args) => cmd_token::run(args),
        Command::Debug(command) => cmd_debug::run(command),
        Command::SecretsEncrypt(args) => cmd_secrets_encrypt::run(args),
        Command::CheckConfig(args) => match cmd_check_config::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
