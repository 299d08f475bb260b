//! Command-line parsing with the precedence of the contract: flag, then environment, then the
//! YAML config file, then the built-in default.
//!
//! clap handles flags, environment and defaults. The config file is layered in afterwards: every
//! key of the file names a flag of the subcommand; a key whose flag was not given on the command
//! line or in the environment is turned into that flag and the arguments are parsed again, so the
//! file's values go through exactly the same validation as flags.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use serde_json::Value;

use crate::cli::{Cli, DEFAULT_CONFIG_FILE};

/// Subcommands that read the config file.
const CONFIGURABLE: [&str; 2] = ["server", "agent"];

/// Parses `argv` into a [`Cli`], layering in the config file. Help and version requests and
/// command-line errors are printed by clap and end the process, as usual for a CLI.
pub(crate) fn parse(argv: Vec<OsString>) -> Result<Cli> {
    let command = Cli::command();
    // A required flag (`skiff agent --server`) may come from the config file: when only such a
    // flag is missing, read what was given leniently and decide once the file is layered in.
    let (matches, missing) = match command.clone().try_get_matches_from(&argv) {
        Ok(matches) => (matches, None),
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
            match command
                .clone()
                .ignore_errors(true)
                .try_get_matches_from(&argv)
            {
                Ok(matches) => (matches, Some(e)),
                Err(_) => e.exit(),
            }
        }
        Err(e) => e.exit(),
    };
    let finish = |matches: &ArgMatches| match &missing {
        Some(e) => e.exit(),
        None => Ok(Cli::from_arg_matches(matches)?),
    };
    let Some((sub_name, sub_matches)) = matches.subcommand() else {
        return finish(&matches);
    };
    if !CONFIGURABLE.contains(&sub_name) {
        return finish(&matches);
    }
    let Some(path) = config_path(sub_matches) else {
        return finish(&matches);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let sub_command = command
        .find_subcommand(sub_name)
        .ok_or_else(|| anyhow!("subcommand {sub_name} vanished"))?;
    let extra = args_from_config(&text, &path, sub_command, sub_matches)?;
    if extra.is_empty() {
        return finish(&matches);
    }
    let mut full = argv;
    full.extend(extra.into_iter().map(OsString::from));
    let matches = match command.try_get_matches_from(&full) {
        Ok(matches) => matches,
        // Still missing with the file's keys: clap's own message lists what to give.
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => e.exit(),
        Err(e) => return Err(config_error(&path, e)),
    };
    Ok(Cli::from_arg_matches(&matches)?)
}

/// The config file to read: `--config`/`SKIFF_CONFIG` when given (it must exist), else the
/// default path when it exists.
fn config_path(matches: &ArgMatches) -> Option<PathBuf> {
    match matches.get_one::<PathBuf>("config") {
        Some(path) => Some(path.clone()),
        None => {
            let default = Path::new(DEFAULT_CONFIG_FILE);
            default.exists().then(|| default.to_path_buf())
        }
    }
}

/// Turns the config file's keys into command-line arguments for the flags not already set on
/// the command line or in the environment.
fn args_from_config(
    text: &str,
    path: &Path,
    command: &clap::Command,
    matches: &ArgMatches,
) -> Result<Vec<String>> {
    let document: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_saphyr::from_str(text)
            .with_context(|| format!("config file {} is not valid YAML", path.display()))?
    };
    let map = match document {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        _ => bail!(
            "config file {}: expected a mapping of flag names to values",
            path.display()
        ),
    };
    let mut args = Vec::new();
    for (key, value) in map {
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
            .ok_or_else(|| {
                anyhow!(
                    "config file {}: unknown key '{key}' (keys are the flag names of `skiff {}`)",
                    path.display(),
                    command.get_name()
                )
            })?;
        if matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let is_flag = matches!(arg.get_action(), ArgAction::SetTrue);
        let is_list = matches!(arg.get_action(), ArgAction::Append);
        match value {
            Value::Null => {}
            Value::Bool(b) if is_flag => {
                if b {
                    args.push(format!("--{key}"));
                }
            }
            _ if is_flag => bail!(
                "config file {}: key '{key}' must be true or false",
                path.display()
            ),
            Value::Array(items) if is_list => {
                for item in items {
                    args.push(format!("--{key}={}", scalar(&item, &key, path)?));
                }
            }
            Value::Array(_) => bail!(
                "config file {}: key '{key}' takes a single value, not a list",
                path.display()
            ),
            other => args.push(format!("--{key}={}", scalar(&other, &key, path)?)),
        }
    }
    Ok(args)
}

fn scalar(value: &Value, key: &str, path: &Path) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => bail!(
            "config file {}: key '{key}' must be a string, number or boolean",
            path.display()
        ),
    }
}

/// Rewrites a clap error caused by a config value so it names the file and the key.
fn config_error(path: &Path, error: clap::Error) -> anyhow::Error {
    let key = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg
            .trim_start_matches('-')
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => format!(" value '{v}'"),
        _ => String::new(),
    };
    let detail = error.render().to_string();
    let detail = detail
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    if key.is_empty() {
        anyhow!("config file {}: {detail}", path.display())
    } else {
        anyhow!(
            "config file {}: key '{key}'{value} is invalid: {detail}",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use std::io::Write;

    /// Tests read the process environment; this keeps the one that changes it from racing.
    pub(super) static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn write_config(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn parse_locked(args: &[&str]) -> Result<Cli> {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        parse(argv(args))
    }

    fn server(cli: Cli) -> crate::cli::ServerArgs {
        match cli.command {
            Command::Server(s) => s,
            other => panic!("expected server, got {other:?}"),
        }
    }

    // The environment is process-global, so every case that touches it runs in this one test.
    #[test]
    fn flag_beats_environment_beats_file_beats_default() {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let file = write_config(
            "https-listen-port: 7000\nnode-name: from-file\nnode-label: [a=b, c=d]\ndisable-agent: true\ncluster-cidr: 10.9.0.0/16\n",
        );
        let path = file.path().to_str().unwrap();

        let cli = server(parse(argv(&["skiff", "server", "--config", path])).unwrap());
        assert_eq!(cli.https_listen_port, 7000);
        assert_eq!(cli.node.node_name.as_deref(), Some("from-file"));
        assert_eq!(cli.node.node_labels, vec!["a=b", "c=d"]);
        assert!(cli.disable_agent);
        assert_eq!(cli.cluster_cidr, "10.9.0.0/16");
        assert_eq!(
            cli.node.max_pods, 110,
            "default when neither file nor flag sets it"
        );

        std::env::set_var("SKIFF_NODE_NAME", "from-env");
        std::env::set_var("SKIFF_HTTPS_LISTEN_PORT", "7001");
        let cli = server(parse(argv(&["skiff", "server", "--config", path])).unwrap());
        assert_eq!(cli.node.node_name.as_deref(), Some("from-env"));
        assert_eq!(cli.https_listen_port, 7001);

        let cli = server(
            parse(argv(&[
                "skiff",
                "server",
                "--config",
                path,
                "--node-name",
                "from-flag",
                "--node-label",
                "x=y",
            ]))
            .unwrap(),
        );
        assert_eq!(cli.node.node_name.as_deref(), Some("from-flag"));
        assert_eq!(cli.node.node_labels, vec!["x=y"]);
        assert_eq!(cli.https_listen_port, 7001);
        std::env::remove_var("SKIFF_NODE_NAME");
        std::env::remove_var("SKIFF_HTTPS_LISTEN_PORT");
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key() {
        let file = write_config("https-listen-port: 7000\nno-such-flag: 1\n");
        let err = parse_locked(&["skiff", "server", "--config", file.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'no-such-flag'"), "{err}");
    }

    #[test]
    fn bad_value_is_an_error_naming_the_key() {
        let file = write_config("max-pods: lots\n");
        let err = parse_locked(&["skiff", "server", "--config", file.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key 'max-pods'"), "{err}");
        assert!(err.contains("lots"), "{err}");
    }

    #[test]
    fn config_itself_is_not_a_key_and_lists_need_list_flags() {
        let file = write_config("node-name: [a, b]\n");
        let err = parse_locked(&["skiff", "server", "--config", file.path().to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("'node-name' takes a single value"), "{err}");
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let err =
            parse_locked(&["skiff", "server", "--config", "/nonexistent/skiff.yaml"]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/skiff.yaml"));
    }
}

/// Every example under `configs/` goes through the real parser (`server*.yaml` as
/// `skiff server`, `agent*.yaml` as `skiff agent`) and the node settings' validation, and
/// `registries.yaml` through the image store's registry parser.
#[cfg(test)]
mod example_tests {
    use std::path::{Path, PathBuf};

    use crate::cli::Command;

    fn examples() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
    }

    fn parse_example(subcommand: &str, path: &Path) -> crate::cli::Cli {
        let _guard = super::tests::ENV_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        super::parse(
            ["skiff", subcommand, "--config", path.to_str().unwrap()]
                .iter()
                .map(std::ffi::OsString::from)
                .collect(),
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
    }

    #[test]
    fn every_example_config_parses_and_validates() {
        let files = examples();
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for path in &files {
            let name = path.file_name().unwrap().to_str().unwrap();
            if name.starts_with("server") {
                let Command::Server(args) = parse_example("server", path).command else {
                    panic!("{name}: not parsed as a server config");
                };
                crate::cmd_agent::agent_config(
                    &args.common.data_dir,
                    &args.node,
                    "https://127.0.0.1:6443",
                    None,
                    true,
                )
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                *seen.entry("server").or_default() += 1;
            } else if name.starts_with("agent") {
                let Command::Agent(args) = parse_example("agent", path).command else {
                    panic!("{name}: not parsed as an agent config");
                };
                let server = args.server.clone().expect("agent examples name the server");
                assert!(server.starts_with("https://"), "{name}: {server}");
                assert!(
                    args.token.is_some(),
                    "{name}: agent examples carry the token"
                );
                crate::cmd_agent::agent_config(
                    &args.common.data_dir,
                    &args.node,
                    &server,
                    args.token.clone(),
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
                *seen.entry("agent").or_default() += 1;
            } else if name == "registries.yaml" {
                let text = std::fs::read_to_string(path).unwrap();
                skiff_image::RegistryConfig::from_yaml(&text, name)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                *seen.entry("registries").or_default() += 1;
            } else {
                panic!("{name}: example configs are named server*.yaml, agent*.yaml or registries.yaml");
            }
        }
        assert!(seen.get("server") >= Some(&2), "{seen:?}");
        assert!(seen.get("agent") >= Some(&3), "{seen:?}");
    }

    #[test]
    fn examples_cover_control_plane_worker_spot_and_dedicated_nodes() {
        let text: String = examples()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        for needle in [
            "node-role.kubernetes.io/control-plane=true:NoSchedule",
            "node-role.kubernetes.io/worker=true",
            "node.skiff.dev/spot=true:PreferNoSchedule",
            "dedicated=camera:NoSchedule",
        ] {
            assert!(text.contains(needle), "no example sets {needle}");
        }
    }
}
