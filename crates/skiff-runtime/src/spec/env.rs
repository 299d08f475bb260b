//! Environment variables and the command line of a container, with `$(VAR)` expansion exactly
//! as upstream's `third_party/forked/golang/expansion`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::Config as ImageConfig;

use super::fieldref::{field_value, resource_value, PodFacts};
use crate::error::{Result, RuntimeError};
use crate::inputs::PodInputs;

const OPERATOR: u8 = b'$';
const OPENER: u8 = b'(';
const CLOSER: u8 = b')';

/// Expands `$(VAR)` references in `input` with `mapping`; `$$` escapes a `$`; references that
/// `mapping` does not know stay as written (upstream's `expansion.Expand`).
pub fn expand(input: &str, mapping: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == OPERATOR && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let (read, advance) = read_variable_name(&input[cursor + 1..]);
            match read {
                Read::Escaped => out.push('$'),
                Read::Variable(name) => match mapping(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                },
                Read::Literal(text) => {
                    out.push('$');
                    out.push_str(text);
                }
            }
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// What follows a `$`.
enum Read<'a> {
    /// `$$`: a literal `$`.
    Escaped,
    /// `$(NAME)`.
    Variable(&'a str),
    /// Anything else: `$` and this text are copied as they are.
    Literal(&'a str),
}

/// Reads what follows an operator; returns it and the number of bytes consumed.
fn read_variable_name(input: &str) -> (Read<'_>, usize) {
    let bytes = input.as_bytes();
    match bytes[0] {
        OPERATOR => (Read::Escaped, 1),
        OPENER => match bytes[1..].iter().position(|b| *b == CLOSER) {
            Some(i) => (Read::Variable(&input[1..i + 1]), i + 2),
            // Incomplete reference: copy the operator and the opener, go on after the opener.
            None => (Read::Literal("("), 1),
        },
        _ => {
            // Not an expression: copy the operator and the next character.
            let len = input.chars().next().map(char::len_utf8).unwrap_or(1);
            (Read::Literal(&input[..len]), len)
        }
    }
}

/// An insertion-ordered map of environment variables (later writes replace in place).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EnvList {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    /// Sets `key` to `value`, keeping the first position of `key`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].1.as_str())
    }

    /// The entries in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// `KEY=value` strings as the OCI spec wants them.
    pub fn to_oci(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

fn config_map_value(
    inputs: &PodInputs,
    name: &str,
    key: &str,
) -> Option<std::result::Result<String, ()>> {
    let cm = inputs.config_maps.get(name)?;
    if let Some(v) = cm.data.as_ref().and_then(|d| d.get(key)) {
        return Some(Ok(v.clone()));
    }
    if let Some(v) = cm.binary_data.as_ref().and_then(|d| d.get(key)) {
        return Some(Ok(String::from_utf8_lossy(&v.0).into_owned()));
    }
    Some(Err(()))
}

fn secret_value(
    inputs: &PodInputs,
    name: &str,
    key: &str,
) -> Option<std::result::Result<String, ()>> {
    let secret = inputs.secrets.get(name)?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(Ok(String::from_utf8_lossy(&v.0).into_owned()));
    }
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(Ok(v.clone()));
    }
    Some(Err(()))
}

/// An environment variable name upstream accepts (relaxed validation: printable ASCII, no `=`).
fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// The container's own environment (`envFrom`, then `env`), resolved and expanded as the
/// kubelet does: values may reference earlier variables and service variables with `$(VAR)`.
/// `field` is the container's JSON path, e.g. `spec.containers[1]`.
pub(crate) fn container_env(
    pod: &Pod,
    container: &Container,
    field: &str,
    inputs: &PodInputs,
    facts: &PodFacts<'_>,
) -> Result<EnvList> {
    let mut env = EnvList::default();
    let service_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let empty = std::collections::BTreeMap::new();
    let service_env = if service_links {
        &inputs.service_env
    } else {
        &empty
    };

    for (i, source) in container.env_from.iter().flatten().enumerate() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let at = format!("{field}.envFrom[{i}]");
        if let Some(r) = &source.config_map_ref {
            match inputs.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        let key = format!("{prefix}{k}");
                        if valid_env_name(&key) {
                            env.set(key, v.clone());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(RuntimeError::MissingInput {
                        kind: "configmap",
                        name: r.name.clone(),
                        field: format!("{at}.configMapRef"),
                    })
                }
            }
        }
        if let Some(r) = &source.secret_ref {
            match inputs.secrets.get(&r.name) {
                Some(secret) => {
                    for (k, v) in secret.data.iter().flatten() {
                        let key = format!("{prefix}{k}");
                        if valid_env_name(&key) {
                            env.set(key, String::from_utf8_lossy(&v.0).into_owned());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(RuntimeError::MissingInput {
                        kind: "secret",
                        name: r.name.clone(),
                        field: format!("{at}.secretRef"),
                    })
                }
            }
        }
    }

    for (i, var) in container.env.iter().flatten().enumerate() {
        let at = format!("{field}.env[{i}]");
        if !valid_env_name(&var.name) {
            return Err(RuntimeError::invalid(
                format!("{at}.name"),
                format!("invalid environment variable name {:?}", var.name),
            ));
        }
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let mapping = |name: &str| {
                    env.get(name)
                        .map(str::to_owned)
                        .or_else(|| service_env.get(name).cloned())
                };
                expand(v, &mapping)
            }
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, facts, f, &format!("{at}.valueFrom.fieldRef"), false)?
                } else if let Some(r) = &from.resource_field_ref {
                    resource_value(
                        pod,
                        container,
                        facts.node,
                        r,
                        &format!("{at}.valueFrom.resourceFieldRef"),
                    )?
                } else if let Some(r) = &from.config_map_key_ref {
                    match config_map_value(inputs, &r.name, &r.key) {
                        Some(Ok(v)) => v,
                        _ if r.optional == Some(true) => continue,
                        Some(Err(())) => {
                            return Err(RuntimeError::MissingInput {
                                kind: "configmap key",
                                name: format!("{}/{}", r.name, r.key),
                                field: format!("{at}.valueFrom.configMapKeyRef"),
                            })
                        }
                        None => {
                            return Err(RuntimeError::MissingInput {
                                kind: "configmap",
                                name: r.name.clone(),
                                field: format!("{at}.valueFrom.configMapKeyRef"),
                            })
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    match secret_value(inputs, &r.name, &r.key) {
                        Some(Ok(v)) => v,
                        _ if r.optional == Some(true) => continue,
                        Some(Err(())) => {
                            return Err(RuntimeError::MissingInput {
                                kind: "secret key",
                                name: format!("{}/{}", r.name, r.key),
                                field: format!("{at}.valueFrom.secretKeyRef"),
                            })
                        }
                        None => {
                            return Err(RuntimeError::MissingInput {
                                kind: "secret",
                                name: r.name.clone(),
                                field: format!("{at}.valueFrom.secretKeyRef"),
                            })
                        }
                    }
                } else {
                    return Err(RuntimeError::invalid(
                        format!("{at}.valueFrom"),
                        "must set one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef",
                    ));
                }
            }
            _ => String::new(),
        };
        env.set(var.name.clone(), value);
    }

    for (k, v) in service_env {
        if env.get(k).is_none() {
            env.set(k.clone(), v.clone());
        }
    }
    Ok(env)
}

/// The default `PATH` containerd puts in every spec before the image's environment.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process environment: default PATH, the image's `Env`, `HOSTNAME`, then the container's.
pub(crate) fn process_env(image: Option<&ImageConfig>, hostname: &str, own: &EnvList) -> EnvList {
    let mut env = EnvList::default();
    env.set("PATH", DEFAULT_PATH);
    for entry in image.and_then(|c| c.env().as_ref()).into_iter().flatten() {
        match entry.split_once('=') {
            Some((k, v)) => env.set(k, v),
            None => env.set(entry.as_str(), ""),
        }
    }
    env.set("HOSTNAME", hostname);
    for (k, v) in own.entries() {
        env.set(k.clone(), v.clone());
    }
    env
}

/// The argv of the container: `command`/`args` over the image's Entrypoint/Cmd (upstream rules),
/// with `$(VAR)` expanded from the container's own environment.
pub(crate) fn command_line(
    container: &Container,
    field: &str,
    image: Option<&ImageConfig>,
    own: &EnvList,
) -> Result<Vec<String>> {
    let mapping = |name: &str| own.get(name).map(str::to_owned);
    let expand_all = |v: &Vec<String>| v.iter().map(|s| expand(s, &mapping)).collect::<Vec<_>>();
    let image_entrypoint = image
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let command = container.command.as_ref().filter(|c| !c.is_empty());
    let args = container.args.as_ref().filter(|a| !a.is_empty());
    let argv: Vec<String> = match (command, args) {
        (Some(cmd), Some(args)) => expand_all(cmd)
            .into_iter()
            .chain(expand_all(args))
            .collect(),
        (Some(cmd), None) => expand_all(cmd),
        (None, Some(args)) => image_entrypoint
            .into_iter()
            .chain(expand_all(args))
            .collect(),
        (None, None) => image_entrypoint.into_iter().chain(image_cmd).collect(),
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(RuntimeError::invalid(
            format!("{field}.command"),
            "no command specified: the container sets no command and the image has no Entrypoint or Cmd",
        ));
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, Secret,
        SecretEnvSource,
    };
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn map(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    /// Cases from upstream's expand_test.go.
    #[test]
    fn expansion_matches_upstream_cases() {
        let m = map(&[
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
            ("VAR_EMPTY_KEY", ""),
            ("BLANK", ""),
            ("VAR_ESCAPED", "$$"),
        ]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
            ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_B)", "$B"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("foo$(VAR_DNE)bar", "foo$(VAR_DNE)bar"),
            ("$()", "$()"),
            ("$(VAR_", "$(VAR_"),
            ("$(", "$("),
            ("$", "$"),
            ("$$", "$"),
            ("$$$", "$$"),
            ("$VAR_A", "$VAR_A"),
            ("$$VAR_A", "$VAR_A"),
            ("foo$", "foo$"),
            ("f00$£", "f00$£"),
            ("$(VAR_A) $$(VAR_B) $$$(VAR_C)", "A $(VAR_B) $C"),
            ("", ""),
            ("no refs", "no refs"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &m), want, "expanding {input:?}");
        }
    }

    fn container(env: Vec<EnvVar>) -> Container {
        Container {
            name: "app".into(),
            env: Some(env),
            ..Default::default()
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn env_expands_earlier_vars_and_service_env_only() {
        let pod = Pod::default();
        let mut inputs = PodInputs::default();
        inputs
            .service_env
            .insert("KUBERNETES_SERVICE_HOST".into(), "10.43.0.1".into());
        let c = container(vec![
            var("A", "a"),
            var("B", "$(A)-$(C)"),
            var("C", "c"),
            var("D", "$(KUBERNETES_SERVICE_HOST)"),
            var("E", "$(PATH)"),
        ]);
        let env = container_env(
            &pod,
            &c,
            "spec.containers[0]",
            &inputs,
            &PodFacts::default(),
        )
        .unwrap();
        assert_eq!(env.get("B"), Some("a-$(C)"), "later vars are not visible");
        assert_eq!(env.get("D"), Some("10.43.0.1"));
        assert_eq!(env.get("E"), Some("$(PATH)"), "image env is not a source");
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
    }

    #[test]
    fn env_from_and_key_refs_resolve_and_missing_ones_are_named() {
        let pod = Pod::default();
        let mut inputs = PodInputs::default();
        let cm = ConfigMap {
            data: Some(BTreeMap::from([("mode".into(), "fast".into())])),
            ..Default::default()
        };
        inputs.config_maps.insert("settings".into(), cm);
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "pw".into(),
                ByteString(b"s3cret".to_vec()),
            )])),
            ..Default::default()
        };
        inputs.secrets.insert("creds".into(), secret);
        let mut c = container(vec![EnvVar {
            name: "MODE".into(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "mode".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }]);
        c.env_from = Some(vec![EnvFromSource {
            prefix: Some("DB_".into()),
            secret_ref: Some(SecretEnvSource {
                name: "creds".into(),
                optional: None,
            }),
            ..Default::default()
        }]);
        let env = container_env(
            &pod,
            &c,
            "spec.containers[0]",
            &inputs,
            &PodFacts::default(),
        )
        .unwrap();
        assert_eq!(env.get("MODE"), Some("fast"));
        assert_eq!(env.get("DB_pw"), Some("s3cret"));

        let c = container(vec![EnvVar {
            name: "X".into(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "nope".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }]);
        let err = container_env(
            &pod,
            &c,
            "spec.containers[0]",
            &inputs,
            &PodFacts::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("settings/nope") && err.contains("spec.containers[0].env[0]"),
            "{err}"
        );

        let mut optional = c.clone();
        if let Some(r) = optional.env.as_mut().unwrap()[0]
            .value_from
            .as_mut()
            .unwrap()
            .config_map_key_ref
            .as_mut()
        {
            r.optional = Some(true);
        }
        let env = container_env(&pod, &optional, "c", &inputs, &PodFacts::default()).unwrap();
        assert_eq!(env.get("X"), None, "optional missing keys are skipped");
    }

    #[test]
    fn command_and_args_follow_upstream_rules() {
        let image: ImageConfig = serde_json::from_value(serde_json::json!({
            "Entrypoint": ["/entry"], "Cmd": ["default-arg"]
        }))
        .unwrap();
        let mut env = EnvList::default();
        env.set("WHO", "world");
        let mut c = Container::default();
        let run = |c: &Container| command_line(c, "c", Some(&image), &env).unwrap();
        assert_eq!(run(&c), ["/entry", "default-arg"]);
        c.args = Some(vec!["hello $(WHO)".into()]);
        assert_eq!(run(&c), ["/entry", "hello world"]);
        c.command = Some(vec!["/bin/echo".into()]);
        assert_eq!(run(&c), ["/bin/echo", "hello world"]);
        c.args = None;
        assert_eq!(
            run(&c),
            ["/bin/echo"],
            "command replaces Entrypoint and Cmd"
        );
        let err =
            command_line(&Container::default(), "spec.containers[2]", None, &env).unwrap_err();
        assert!(err.to_string().contains("spec.containers[2].command"));
    }

    #[test]
    fn process_env_layers_image_then_container() {
        let image: ImageConfig = serde_json::from_value(serde_json::json!({
            "Env": ["PATH=/opt/bin", "LANG=C", "KEEP=1"]
        }))
        .unwrap();
        let mut own = EnvList::default();
        own.set("LANG", "en");
        own.set("NEW", "x");
        let env = process_env(Some(&image), "pod-a", &own).to_oci();
        assert_eq!(
            env,
            [
                "PATH=/opt/bin",
                "LANG=en",
                "KEEP=1",
                "HOSTNAME=pod-a",
                "NEW=x"
            ]
        );
    }
}
