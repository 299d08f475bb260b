//! The resources skiff serves: kind ↔ plural ↔ group/version ↔ scope ↔ subresources.
//!
//! The table mirrors what an upstream 1.33 API server reports in discovery for the same
//! resources (short names, verbs, categories), so `kubectl api-resources`, `kubectl get all`
//! and short names like `kubectl get po` behave as users expect.

/// One resource type served by the API (one row of `kubectl api-resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind of one object, e.g. `Pod`.
    pub kind: &'static str,
    /// Lower-case plural used in URLs, e.g. `pods`.
    pub plural: &'static str,
    /// Lower-case singular name, e.g. `pod`.
    pub singular: &'static str,
    /// Short names accepted by kubectl, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs allowed on the main resource, as reported by discovery.
    pub verbs: &'static [&'static str],
    /// Subresources served, e.g. `status`, `scale`.
    pub subresources: &'static [&'static str],
    /// Categories, e.g. `all` (used by `kubectl get all`).
    pub categories: &'static [&'static str],
    /// Kind of a list of these objects, e.g. `PodList`.
    pub list_kind: &'static str,
}

impl ResourceInfo {
    /// `apiVersion` of objects of this resource: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Key of this resource in the store: `pods`, `deployments.apps`.
    pub fn storage_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Kind qualified by group as upstream prints it in errors: `Pod`, `Deployment.apps`.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Resource qualified by group as upstream prints it in errors: `pods`, `deployments.apps`.
    pub fn qualified_resource(&self) -> String {
        self.storage_name()
    }

    /// Whether `name` is one of this resource's subresources.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// Whether `verb` is allowed on the main resource.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Whether this resource answers to `name` (plural, singular, short name or kind,
    /// case-insensitively for the kind), as kubectl resolves resource arguments.
    pub fn matches_name(&self, name: &str) -> bool {
        self.plural == name
            || self.singular == name
            || self.short_names.contains(&name)
            || self.kind.eq_ignore_ascii_case(name)
    }
}

/// What a subresource accepts and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// Name, e.g. `status`.
    pub name: &'static str,
    /// Verbs allowed on it, as upstream discovery reports them.
    pub verbs: &'static [&'static str],
    /// Group of the object the subresource takes and returns (`""` for core).
    /// `None` means "the parent resource's own group/version/kind".
    pub group: Option<&'static str>,
    /// Version of that object.
    pub version: Option<&'static str>,
    /// Kind of that object (e.g. `Scale`), `None` for the parent's kind.
    pub kind: Option<&'static str>,
}

/// Describes the subresource `name` (`status`, `scale`, `binding`, `log`, `eviction`, `exec`), or `None`
/// when skiff serves no subresource of that name.
pub fn subresource(name: &str) -> Option<SubresourceInfo> {
    const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
    let info = match name {
        "status" => SubresourceInfo {
            name: "status",
            verbs: GET_PATCH_UPDATE,
            group: None,
            version: None,
            kind: None,
        },
        "scale" => SubresourceInfo {
            name: "scale",
            verbs: GET_PATCH_UPDATE,
            group: Some("autoscaling"),
            version: Some("v1"),
            kind: Some("Scale"),
        },
        "binding" => SubresourceInfo {
            name: "binding",
            verbs: &["create"],
            group: Some(""),
            version: Some("v1"),
            kind: Some("Binding"),
        },
        "eviction" => SubresourceInfo {
            name: "eviction",
            verbs: &["create"],
            group: Some("policy"),
            version: Some("v1"),
            kind: Some("Eviction"),
        },
        "exec" => SubresourceInfo {
            name: "exec",
            verbs: &["create", "get"],
            group: Some(""),
            version: Some("v1"),
            kind: Some("PodExecOptions"),
        },
        "portforward" => SubresourceInfo {
            name: "portforward",
            verbs: &["create", "get"],
            group: Some(""),
            version: Some("v1"),
            kind: Some("PodPortForwardOptions"),
        },
        "log" => SubresourceInfo {
            name: "log",
            verbs: &["get"],
            group: Some(""),
            version: Some("v1"),
            kind: Some("Pod"),
        },
        _ => return None,
    };
    Some(info)
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection upstream.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "ConfigMapList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "EndpointsList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "EventList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        verbs: NAMESPACE_VERBS,
        subresources: &["status"],
        categories: &[],
        list_kind: "NamespaceList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        verbs: ALL_VERBS,
        subresources: &["status"],
        categories: &[],
        list_kind: "NodeList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[
            "status",
            "binding",
            "log",
            "eviction",
            "exec",
            "portforward",
        ],
        categories: &["all"],
        list_kind: "PodList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "SecretList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "ServiceAccountList",
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &["status"],
        categories: &["all"],
        list_kind: "ServiceList",
    },
    // apps/v1
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "ControllerRevisionList",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &["status"],
        categories: &["all"],
        list_kind: "DaemonSetList",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &["status", "scale"],
        categories: &["all"],
        list_kind: "DeploymentList",
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &["status", "scale"],
        categories: &["all"],
        list_kind: "ReplicaSetList",
    },
    // batch/v1
    ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &["status"],
        categories: &["all"],
        list_kind: "JobList",
    },
    // coordination.k8s.io/v1
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "LeaseList",
    },
    // discovery.k8s.io/v1
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "EndpointSliceList",
    },
    // networking.k8s.io/v1
    ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        singular: "networkpolicy",
        short_names: &["netpol"],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
        list_kind: "NetworkPolicyList",
    },
];

/// Every resource skiff serves, grouped by API group (core first), sorted by plural within it.
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// The resource at `/apis/<group>/<version>/<plural>` (`group` empty for `/api/v1`).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` (`v1`, `apps/v1`) and `kind`.
pub fn find_by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The resource stored under `storage_name` (`pods`, `deployments.apps`).
pub fn find_by_storage_name(storage_name: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.storage_name() == storage_name)
}

/// API groups served, in discovery order: `(group, version)` pairs, core (`""`) first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Resources of one group/version, in table order.
pub fn resources_in(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let group = group.to_string();
    let version = version.to_string();
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_and_storage_name() {
        let pods = find("", "v1", "pods").expect("pods");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(pods.storage_name(), "pods");
        assert_eq!(pods.qualified_kind(), "Pod");
        let deploy = find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.storage_name(), "deployments.apps");
        assert_eq!(deploy.qualified_kind(), "Deployment.apps");
        let lease = find("coordination.k8s.io", "v1", "leases").expect("leases");
        assert_eq!(lease.storage_name(), "leases.coordination.k8s.io");
    }

    #[test]
    fn find_by_kind_resolves_group_versions() {
        assert_eq!(
            find_by_kind("apps/v1", "Deployment").map(|r| r.plural),
            Some("deployments")
        );
        assert_eq!(find_by_kind("v1", "Pod").map(|r| r.plural), Some("pods"));
        assert_eq!(
            find_by_kind("batch/v1", "Job").map(|r| r.plural),
            Some("jobs")
        );
        assert!(find_by_kind("v1", "Deployment").is_none());
        assert!(find_by_kind("apps/v2", "Deployment").is_none());
        assert!(find_by_kind("extensions/v1beta1", "Deployment").is_none());
    }

    #[test]
    fn unknown_resources_are_not_found() {
        assert!(find("", "v1", "deployments").is_none());
        assert!(find("apps", "v1beta1", "deployments").is_none());
        assert!(find("", "v1", "").is_none());
    }

    #[test]
    fn storage_names_and_kinds_are_unique() {
        let mut names: Vec<String> = resources().iter().map(|r| r.storage_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), resources().len());
        for r in resources() {
            assert_eq!(find_by_kind(&r.api_version(), r.kind), Some(r));
            assert_eq!(find_by_storage_name(&r.storage_name()), Some(r));
            assert_eq!(r.list_kind, format!("{}List", r.kind));
            assert_eq!(r.singular, r.kind.to_ascii_lowercase());
        }
    }

    #[test]
    fn issue_resources_are_served_with_their_subresources() {
        let expect = [
            ("", "namespaces", &["status"][..]),
            ("", "nodes", &["status"]),
            ("", "pods", &["status", "binding", "log"]),
            ("", "events", &[]),
            ("", "configmaps", &[]),
            ("", "secrets", &[]),
            ("", "services", &[]),
            ("", "serviceaccounts", &[]),
            ("apps", "deployments", &["status", "scale"]),
            ("apps", "replicasets", &["status", "scale"]),
            ("apps", "daemonsets", &["status"]),
            ("batch", "jobs", &["status"]),
            ("coordination.k8s.io", "leases", &[]),
            ("", "endpoints", &[]),
            ("discovery.k8s.io", "endpointslices", &[]),
            ("networking.k8s.io", "networkpolicies", &[]),
        ];
        for (group, plural, subs) in expect {
            let r = find(group, "v1", plural).unwrap_or_else(|| panic!("{plural} missing"));
            for s in subs {
                assert!(r.has_subresource(s), "{plural}/{s} missing");
                assert!(subresource(s).is_some(), "{s} not described");
            }
        }
    }

    #[test]
    fn namespaces_and_nodes_are_cluster_scoped() {
        for r in resources() {
            let cluster = matches!(r.plural, "namespaces" | "nodes");
            assert_eq!(r.namespaced, !cluster, "{}", r.plural);
        }
    }

    #[test]
    fn kubectl_names_resolve() {
        let po = resources()
            .iter()
            .find(|r| r.matches_name("po"))
            .map(|r| r.plural);
        assert_eq!(po, Some("pods"));
        let deploy = resources()
            .iter()
            .find(|r| r.matches_name("deploy"))
            .map(|r| r.plural);
        assert_eq!(deploy, Some("deployments"));
        let all: Vec<_> = resources()
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.plural)
            .collect();
        assert_eq!(
            all,
            [
                "pods",
                "services",
                "daemonsets",
                "deployments",
                "replicasets",
                "jobs"
            ]
        );
    }

    #[test]
    fn group_versions_put_core_first() {
        let gv = group_versions();
        assert_eq!(gv[0], ("", "v1"));
        assert!(gv.contains(&("apps", "v1")));
        assert!(gv.contains(&("batch", "v1")));
        assert!(gv.contains(&("coordination.k8s.io", "v1")));
        assert!(gv.contains(&("discovery.k8s.io", "v1")));
        assert!(gv.contains(&("networking.k8s.io", "v1")));
        assert_eq!(resources_in("apps", "v1").count(), 4);
    }

    #[test]
    fn split_api_version_handles_core() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
    }
}
