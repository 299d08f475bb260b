//! `skiff check-config`: checks the config file, the kernel and the system for what skiff
//! needs, and prints what is missing and how to fix it. Exit status 1 when something required
//! is missing.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

use crate::cli::{CheckConfigArgs, CheckRole, Command, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR};
use crate::host_checks::{self, Check, Host, Role, Status};

/// Runs the checks and prints the report; `Ok(false)` when something required is missing.
pub(crate) fn run(args: CheckConfigArgs) -> Result<bool> {
    let mut checks = Vec::new();
    let mut role = args.role.map(|r| match r {
        CheckRole::Server => Role::Server,
        CheckRole::Agent => Role::Agent,
    });
    let mut port = args.https_listen_port;
    let mut data_dir = args.data_dir.clone();

    let config = args.config.clone().or_else(|| {
        let default = Path::new(DEFAULT_CONFIG_FILE);
        default.exists().then(|| default.to_path_buf())
    });
    match &config {
        Some(path) => {
            let outcome = check_config_file(path, role);
            role = role.or(Some(outcome.role));
            port = port.or(outcome.port);
            data_dir = data_dir.or(outcome.data_dir);
            checks.push(outcome.check);
        }
        None => checks.push(Check {
            group: "config",
            name: "config file".into(),
            status: Status::Ok,
            detail: format!(
                "none ({DEFAULT_CONFIG_FILE} does not exist; defaults and flags apply)"
            ),
            fix: None,
        }),
    }
    let role = role.unwrap_or(Role::Server);
    let port = port.unwrap_or(6443);
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    let host = Host::at(&args.host_root);
    let kernel_config = host.kernel_config();
    checks.extend(host_checks::kernel_checks(&host, &kernel_config));
    checks.extend(host_checks::cgroup_checks(&host));
    checks.extend(host_checks::system_checks(role, port, &data_dir));

    let colour = std::io::stdout().is_terminal();
    let role_name = match role {
        Role::Server => "server",
        Role::Agent => "agent",
    };
    let root = if host.is_live() {
        String::new()
    } else {
        format!(", kernel files under {}", host.root.display())
    };
    println!("skiff check-config (for `skiff {role_name}`{root})");
    print_report(&checks, colour);
    Ok(!checks.iter().any(|c| c.status == Status::Missing))
}

/// What the config file said, and the check line for it.
struct ConfigOutcome {
    check: Check,
    role: Role,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
}

fn check_config_file(path: &Path, role: Option<Role>) -> ConfigOutcome {
    let name = format!("config file {}", path.display());
    let bad = |role, detail: String, fix: &str| ConfigOutcome {
        check: Check {
            group: "config",
            name: name.clone(),
            status: Status::Missing,
            detail,
            fix: Some(fix.to_string()),
        },
        role,
        port: None,
        data_dir: None,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return bad(
                role.unwrap_or(Role::Server),
                format!("cannot read it: {e}"),
                "create it, or pass another with --config",
            )
        }
    };
    let document: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        match serde_saphyr::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                return bad(
                    role.unwrap_or(Role::Server),
                    format!("not valid YAML: {e}"),
                    "fix the YAML syntax (keys are flag names, e.g. `node-name: edge-1`)",
                )
            }
        }
    };
    let has_server = document.get("server").is_some();
    let role = role.unwrap_or(if has_server {
        Role::Agent
    } else {
        Role::Server
    });
    let subcommand = match role {
        Role::Server => "server",
        Role::Agent => "agent",
    };
    if role == Role::Agent && !has_server && std::env::var_os("SKIFF_SERVER").is_none() {
        return bad(
            role,
            "an agent config needs `server: https://HOST:6443`".into(),
            "add the server's URL (printed by the server at its first start)",
        );
    }
    let argv = ["skiff", subcommand, "--config"]
        .iter()
        .map(std::ffi::OsString::from)
        .chain([path.as_os_str().to_owned()])
        .collect();
    let parsed = match crate::config::parse(argv) {
        Ok(cli) => cli,
        Err(e) => {
            return bad(
                role,
                format!("{e:#}"),
                "keys are the flag names of the command without dashes; see `skiff server --help` / `skiff agent --help` and configs/ for examples",
            )
        }
    };
    let (node, common, port, server) = match &parsed.command {
        Command::Server(a) => (&a.node, &a.common, Some(a.https_listen_port), None),
        Command::Agent(a) => (&a.node, &a.common, None, a.server.clone()),
        _ => unreachable!("parsed as {subcommand}"),
    };
    let node_check = crate::cmd_agent::agent_config(
        &common.data_dir,
        node,
        server.as_deref().unwrap_or("https://127.0.0.1:6443"),
        None,
        role == Role::Server,
    );
    if let Err(e) = node_check {
        return bad(
            role,
            format!("{e:#}"),
            "fix the node settings (labels K=V, taints K=V:EFFECT, an absolute cgroup-parent)",
        );
    }
    ConfigOutcome {
        check: Check {
            group: "config",
            name,
            status: Status::Ok,
            detail: format!("valid `skiff {subcommand}` configuration"),
            fix: None,
        },
        role,
        port,
        data_dir: Some(common.data_dir.clone()),
    }
}

fn print_report(checks: &[Check], colour: bool) {
    let paint = |status: Status| {
        let (text, code) = match status {
            Status::Ok => ("ok", "32"),
            Status::Warn => ("WARN", "33"),
            Status::Missing => ("MISSING", "31"),
        };
        if colour {
            format!("\x1b[{code}m{text:<8}\x1b[0m")
        } else {
            format!("{text:<8}")
        }
    };
    let mut group = "";
    for check in checks {
        if check.group != group {
            group = check.group;
            println!("\n{}", group);
        }
        println!("  {} {}: {}", paint(check.status), check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("           fix: {fix}");
        }
    }
    let missing = checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .count();
    let warnings = checks.iter().filter(|c| c.status == Status::Warn).count();
    println!();
    if missing == 0 {
        println!("All required features are present ({warnings} warning(s)).");
    } else {
        println!(
            "{missing} required feature(s) missing, {warnings} warning(s): skiff will not run \
             correctly here until the missing items are fixed."
        );
    }
}
