//! Downward API values: `fieldRef` and `resourceFieldRef` as upstream resolves them.

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};

use crate::error::{Result, RuntimeError};
use crate::inputs::NodeFacts;
use crate::quantity::{parse_field, Quantity};

/// What a pod can learn about itself beyond its object: addresses and the node.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodFacts<'a> {
    pub node: Option<&'a NodeFacts>,
    pub pod_ips: &'a [String],
}

/// Parses `metadata.labels['key']` into `("metadata.labels", "key")`.
fn subscripted(path: &str) -> Option<(&str, &str)> {
    let open = path.find("['")?;
    let inner = path[open + 2..].strip_suffix("']")?;
    Some((&path[..open], inner))
}

/// Formats a label/annotation map as the downward API volume does: `key="value"` lines, sorted.
pub(crate) fn format_map(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    let mut out = String::new();
    for (k, v) in map.into_iter().flatten() {
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str("\"\n");
    }
    out
}

/// Resolves a `fieldRef`. `for_volume` allows the whole label/annotation maps (volumes only) and
/// rejects the status fields (env only), as upstream validation does.
pub(crate) fn field_value(
    pod: &Pod,
    facts: &PodFacts<'_>,
    selector: &ObjectFieldSelector,
    field: &str,
    for_volume: bool,
) -> Result<String> {
    if let Some(version) = &selector.api_version {
        if !version.is_empty() && version != "v1" {
            return Err(RuntimeError::invalid(
                format!("{field}.apiVersion"),
                format!("unsupported version {version:?}"),
            ));
        }
    }
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = selector.field_path.as_str();
    let node = facts.node;
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" if for_volume => format_map(meta.labels.as_ref()),
        "metadata.annotations" if for_volume => format_map(meta.annotations.as_ref()),
        "spec.nodeName" if !for_volume => node.map(|n| n.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" if !for_volume => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" if !for_volume => node
            .and_then(|n| n.host_ips.first().cloned())
            .unwrap_or_default(),
        "status.hostIPs" if !for_volume => node.map(|n| n.host_ips.join(",")).unwrap_or_default(),
        "status.podIP" if !for_volume => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" if !for_volume => facts.pod_ips.join(","),
        other => match subscripted(other) {
            Some(("metadata.labels", key)) => meta
                .labels
                .as_ref()
                .and_then(|l| l.get(key).cloned())
                .unwrap_or_default(),
            Some(("metadata.annotations", key)) => meta
                .annotations
                .as_ref()
                .and_then(|l| l.get(key).cloned())
                .unwrap_or_default(),
            _ => {
                return Err(RuntimeError::invalid(
                    format!("{field}.fieldPath"),
                    format!("unsupported field path {other:?}"),
                ))
            }
        },
    };
    Ok(value)
}

fn machine_cpu_millis() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64 * 1000)
        .unwrap_or(1000)
}

fn machine_memory_bytes() -> i64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resolves a `resourceFieldRef` for `container` (or the container it names) of `pod`.
pub(crate) fn resource_value(
    pod: &Pod,
    container: &Container,
    node: Option<&NodeFacts>,
    selector: &ResourceFieldSelector,
    field: &str,
) -> Result<String> {
    let target = match selector.container_name.as_deref() {
        None | Some("") => container,
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
            })
            .ok_or_else(|| {
                RuntimeError::invalid(
                    format!("{field}.containerName"),
                    format!("no container named {name:?}"),
                )
            })?,
    };
    let divisor = match &selector.divisor {
        Some(d) => parse_field(&format!("{field}.divisor"), d)?,
        None => Quantity::parse("1").map_err(|e| RuntimeError::invalid(field, e.to_string()))?,
    };
    let resources = target.resources.as_ref();
    let get = |limits: bool, name: &str| {
        resources
            .and_then(|r| {
                if limits {
                    r.limits.as_ref()
                } else {
                    r.requests.as_ref()
                }
            })
            .and_then(|m| m.get(name))
    };
    let (limits, name) = match selector.resource.split_once('.') {
        Some(("limits", name)) => (true, name),
        Some(("requests", name)) => (false, name),
        _ => {
            return Err(RuntimeError::invalid(
                format!("{field}.resource"),
                format!("unsupported resource {:?}", selector.resource),
            ))
        }
    };
    let quantity = match get(limits, name) {
        Some(q) => Some(parse_field(&format!("{field}.resource"), q)?),
        // Requests default to limits (API defaulting) when only limits are set.
        None if !limits => match get(true, name) {
            Some(q) => Some(parse_field(&format!("{field}.resource"), q)?),
            None => None,
        },
        None => None,
    };
    let ceil_div = |a: i64, b: i64| -> i64 {
        if b <= 0 {
            0
        } else {
            (a + b - 1) / b
        }
    };
    let value = match name {
        "cpu" => {
            let millis = match quantity {
                Some(q) => q.milli_value(),
                None if limits => node
                    .map(|n| n.allocatable_cpu_millis)
                    .filter(|v| *v > 0)
                    .unwrap_or_else(machine_cpu_millis),
                None => 0,
            };
            ceil_div(millis, divisor.milli_value())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match quantity {
                Some(q) => q.value(),
                None if limits && name == "memory" => node
                    .map(|n| n.allocatable_memory_bytes)
                    .filter(|v| *v > 0)
                    .unwrap_or_else(machine_memory_bytes),
                None => 0,
            };
            ceil_div(bytes, divisor.value())
        }
        other if other.starts_with("hugepages-") => {
            ceil_div(quantity.map(|q| q.value()).unwrap_or(0), divisor.value())
        }
        other => {
            return Err(RuntimeError::invalid(
                format!("{field}.resource"),
                format!("unsupported resource {other:?}"),
            ))
        }
    };
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use std::collections::BTreeMap;

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("prod".into());
        p.metadata.uid = Some("u-1".into());
        p.metadata.labels = Some(BTreeMap::from([
            ("app".into(), "web".into()),
            ("tier".into(), "a\"b".into()),
        ]));
        p.spec = Some(PodSpec {
            service_account_name: Some("sa".into()),
            ..Default::default()
        });
        p
    }

    fn sel(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        }
    }

    #[test]
    fn field_refs_resolve_like_upstream() {
        let node = NodeFacts {
            node_name: "n1".into(),
            host_ips: vec!["10.0.0.5".into()],
            ..Default::default()
        };
        let ips = vec!["10.42.0.7".to_string()];
        let facts = PodFacts {
            node: Some(&node),
            pod_ips: &ips,
        };
        let p = pod();
        let v = |path| field_value(&p, &facts, &sel(path), "env", false).unwrap();
        assert_eq!(v("metadata.name"), "web");
        assert_eq!(v("metadata.namespace"), "prod");
        assert_eq!(v("metadata.labels['app']"), "web");
        assert_eq!(v("metadata.labels['missing']"), "");
        assert_eq!(v("spec.nodeName"), "n1");
        assert_eq!(v("spec.serviceAccountName"), "sa");
        assert_eq!(v("status.podIP"), "10.42.0.7");
        assert_eq!(v("status.hostIP"), "10.0.0.5");
        assert!(field_value(&p, &facts, &sel("spec.containers"), "env[0]", false).is_err());
        assert!(field_value(&p, &facts, &sel("metadata.labels"), "env[0]", false).is_err());
        let labels = field_value(&p, &facts, &sel("metadata.labels"), "vol", true).unwrap();
        assert_eq!(labels, "app=\"web\"\ntier=\"a\\\"b\"\n");
    }

    #[test]
    fn resource_refs_divide_and_round_up() {
        let p = pod();
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([
                    ("cpu".into(), Q("1500m".into())),
                    ("memory".into(), Q("64Mi".into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = |res: &str, div: Option<&str>| {
            let s = ResourceFieldSelector {
                resource: res.into(),
                divisor: div.map(|d| Q(d.into())),
                container_name: None,
            };
            resource_value(&p, &c, None, &s, "env").unwrap()
        };
        assert_eq!(r("limits.cpu", None), "2");
        assert_eq!(r("limits.cpu", Some("1m")), "1500");
        assert_eq!(r("limits.memory", Some("1Mi")), "64");
        assert_eq!(r("requests.memory", None), (64 * 1024 * 1024).to_string());
        let node = NodeFacts {
            allocatable_memory_bytes: 1 << 30,
            ..Default::default()
        };
        let c2 = Container {
            name: "c2".into(),
            ..Default::default()
        };
        let s = ResourceFieldSelector {
            resource: "limits.memory".into(),
            divisor: Some(Q("1Mi".into())),
            container_name: None,
        };
        assert_eq!(
            resource_value(&p, &c2, Some(&node), &s, "env").unwrap(),
            "1024"
        );
    }
}
