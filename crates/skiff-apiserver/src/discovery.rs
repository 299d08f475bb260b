//! Discovery documents, generated from the resource registry: `/version`, `/api`, `/apis`,
//! `/api/v1`, `/apis/<group>/<version>`, and the aggregated forms (`apidiscovery.k8s.io/v2`
//! and `v2beta1`) that kubectl 1.26+ asks for first.

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_types::registry::{self, ResourceInfo};

use crate::negotiate::MediaType;

/// Every discovery document, rendered once.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    /// `/version`.
    pub version: Bytes,
    /// `/api` (APIVersions).
    pub api: Bytes,
    /// `/apis` (APIGroupList).
    pub apis: Bytes,
    /// `(group, version, APIResourceList)` for every served group version.
    pub resource_lists: Vec<(String, String, Bytes)>,
    /// Aggregated discovery of `/api`, by apidiscovery version (`v2`, `v2beta1`).
    pub aggregated_api: Vec<(&'static str, Bytes)>,
    /// Aggregated discovery of `/apis`, by apidiscovery version.
    pub aggregated_apis: Vec<(&'static str, Bytes)>,
}

impl Discovery {
    /// Renders the documents.
    pub(crate) fn new() -> Self {
        let group_versions = registry::group_versions();
        let mut resource_lists: Vec<(String, String, Bytes)> = group_versions
            .iter()
            .map(|(g, v)| {
                (
                    g.to_string(),
                    v.to_string(),
                    Bytes::from(resource_list(g, v).to_string()),
                )
            })
            .collect();
        // metrics.k8s.io is served beside the registry's kinds (`metrics_api`): not stored
        // objects, as upstream's aggregated metrics-server.
        resource_lists.push((
            crate::metrics_api::GROUP.to_string(),
            crate::metrics_api::VERSION.to_string(),
            Bytes::from(crate::metrics_api::resource_list().to_string()),
        ));
        let mut groups: Vec<Value> = grouped(&group_versions)
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        groups.push(crate::metrics_api::api_group());
        let aggregated = |core: bool, api_version: &str| {
            let mut items: Vec<Value> = grouped(&group_versions)
                .into_iter()
                .filter(|(g, _)| g.is_empty() == core)
                .map(|(g, versions)| aggregated_group(g, &versions))
                .collect();
            if !core {
                items.push(crate::metrics_api::aggregated_group());
            }
            Bytes::from(
                json!({
                    "kind": "APIGroupDiscoveryList",
                    "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
                    "metadata": {},
                    "items": items,
                })
                .to_string(),
            )
        };
        Discovery {
            version: Bytes::from(version_info().to_string()),
            api: Bytes::from(
                json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [],
                })
                .to_string(),
            ),
            apis: Bytes::from(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}).to_string(),
            ),
            resource_lists,
            aggregated_api: vec![
                ("v2", aggregated(true, "v2")),
                ("v2beta1", aggregated(true, "v2beta1")),
            ],
            aggregated_apis: vec![
                ("v2", aggregated(false, "v2")),
                ("v2beta1", aggregated(false, "v2beta1")),
            ],
        }
    }

    /// The APIResourceList of one group version.
    pub(crate) fn resource_list(&self, group: &str, version: &str) -> Option<Bytes> {
        self.resource_lists
            .iter()
            .find(|(g, v, _)| g == group && v == version)
            .map(|(_, _, b)| b.clone())
    }
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery::new()
    }
}

/// If the client asks for aggregated discovery (before plain JSON), the apidiscovery version
/// it wants (`v2` or `v2beta1`), else `None` (legacy documents).
pub(crate) fn wants_aggregated(headers: &http::HeaderMap) -> Option<&'static str> {
    for value in headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for offer in value.split(',') {
            let Some(media) = MediaType::parse(offer) else {
                continue;
            };
            if media.essence != "application/json" {
                continue;
            }
            match (media.param("g"), media.param("v"), media.param("as")) {
                (Some("apidiscovery.k8s.io"), Some("v2"), Some("APIGroupDiscoveryList")) => {
                    return Some("v2")
                }
                (Some("apidiscovery.k8s.io"), Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                    return Some("v2beta1")
                }
                (None, None, None) => return None,
                _ => continue,
            }
        }
    }
    None
}

/// Content type of an aggregated discovery answer.
pub(crate) fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

fn grouped(
    group_versions: &[(&'static str, &'static str)],
) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (g, v) in group_versions {
        match out.iter_mut().find(|(og, _)| og == g) {
            Some((_, versions)) => versions.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

/// `/version`, reporting the Kubernetes release skiff serves.
pub(crate) fn version_info() -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    json!({
        "major": skiff_types::KUBERNETES_MAJOR,
        "minor": skiff_types::KUBERNETES_MINOR,
        "gitVersion": format!("{}+skiff", skiff_types::KUBERNETES_VERSION),
        "gitCommit": option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (skiff is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{arch}", std::env::consts::OS),
    })
}

fn scope(info: &ResourceInfo) -> &'static str {
    if info.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// The group/version/kind a subresource takes and returns.
fn subresource_kind(info: &ResourceInfo, sub: &str) -> (String, String, String) {
    match registry::subresource(sub) {
        Some(s) if sub == "proxy" => (
            s.group.unwrap_or(info.group).to_string(),
            s.version.unwrap_or(info.version).to_string(),
            format!("{}ProxyOptions", info.kind),
        ),
        Some(s) => (
            s.group.unwrap_or(info.group).to_string(),
            s.version.unwrap_or(info.version).to_string(),
            s.kind.unwrap_or(info.kind).to_string(),
        ),
        None => (
            info.group.to_string(),
            info.version.to_string(),
            info.kind.to_string(),
        ),
    }
}

fn subresource_verbs(sub: &str) -> Vec<&'static str> {
    match (sub, registry::subresource(sub)) {
        ("finalize", _) => vec!["update"],
        (_, Some(s)) => s.verbs.to_vec(),
        (_, None) => vec!["get"],
    }
}

/// Subresources a resource serves, as discovery reports them.
pub(crate) fn subresources_of(info: &ResourceInfo) -> Vec<&'static str> {
    let mut subs: Vec<&'static str> = info.subresources.to_vec();
    if info.group.is_empty() && info.plural == "namespaces" && !subs.contains(&"finalize") {
        subs.push("finalize");
    }
    subs
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for info in registry::resources_in(group, version) {
        let mut r = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": info.verbs,
        });
        if !info.short_names.is_empty() {
            r["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            r["categories"] = json!(info.categories);
        }
        resources.push(r);
        for sub in subresources_of(info) {
            let (g, v, k) = subresource_kind(info, sub);
            let mut r = json!({
                "name": format!("{}/{sub}", info.plural),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": k,
                "verbs": subresource_verbs(sub),
            });
            if g != info.group || v != info.version {
                r["group"] = json!(g);
                r["version"] = json!(v);
            }
            resources.push(r);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

fn aggregated_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry::resources_in(group, v)
                .map(|info| {
                    let subresources: Vec<Value> = subresources_of(info)
                        .into_iter()
                        .map(|sub| {
                            let (g, v, k) = subresource_kind(info, sub);
                            json!({
                                "subresource": sub,
                                "responseKind": {"group": g, "version": v, "kind": k},
                                "verbs": subresource_verbs(sub),
                            })
                        })
                        .collect();
                    let mut r = json!({
                        "resource": info.plural,
                        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                        "scope": scope(info),
                        "singularResource": info.singular,
                        "verbs": info.verbs,
                    });
                    if !info.short_names.is_empty() {
                        r["shortNames"] = json!(info.short_names);
                    }
                    if !info.categories.is_empty() {
                        r["categories"] = json!(info.categories);
                    }
                    if !subresources.is_empty() {
                        r["subresources"] = Value::Array(subresources);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_every_registry_resource() {
        let d = Discovery::new();
        let core: Value = serde_json::from_slice(&d.resource_list("", "v1").unwrap()).unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for name in [
            "pods",
            "pods/status",
            "pods/binding",
            "pods/log",
            "namespaces",
            "namespaces/finalize",
            "nodes",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let apps: Value = serde_json::from_slice(&d.resource_list("apps", "v1").unwrap()).unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        let groups: Value = serde_json::from_slice(&d.apis).unwrap();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"apps")
                && names.contains(&"batch")
                && names.contains(&"coordination.k8s.io")
        );
        assert!(!names.contains(&""));
    }

    #[test]
    fn aggregated_discovery_is_chosen_from_accept() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::ACCEPT, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json".parse().unwrap());
        assert_eq!(wants_aggregated(&h), Some("v2"));
        h.insert(
            http::header::ACCEPT,
            "application/json, */*".parse().unwrap(),
        );
        assert_eq!(wants_aggregated(&h), None);
    }
}
