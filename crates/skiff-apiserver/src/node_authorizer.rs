//! The node authorizer: what a node identity (`system:node:<name>` in `system:nodes`) may do,
//! after upstream's NodeAuthorizer and NodeRestriction.
//!
//! A node may read nodes, services, endpoints and namespaces; list and watch pods; change only
//! its own Node (and its status) and its own Lease in `kube-node-lease`; read, update the status
//! of, and delete (deletion confirmation) only the pods bound to it; create and update events;
//! and read only the secrets and configmaps that pods bound to it reference. Everything else is
//! denied (403) with a reason naming the node and the object. Identities that are not nodes get
//! no decision here (`Deny("")`) so a [`crate::UnionAuthorizer`] can ask the next authorizer.

use serde_json::Value;
use skiff_store::{FieldSelector, Key, ListOptions, Store};

use crate::{node_restriction, Attributes, Authorizer, Decision};

/// Namespace of node leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Authorizes node identities by the objects bound to them, looked up in the store.
#[derive(Clone)]
pub struct NodeAuthorizer {
    store: Store,
}

impl std::fmt::Debug for NodeAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAuthorizer").finish_non_exhaustive()
    }
}

impl NodeAuthorizer {
    /// An authorizer looking up pods and their references in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        self.store
            .get(&Key::namespaced("pods", namespace, name))
            .and_then(|pod| pod.field("spec.nodeName"))
    }

    /// Whether a pod bound to `node` references the secret or configmap `name` in `namespace`.
    fn referenced_by_bound_pod(
        &self,
        node: &str,
        kind: RefKind,
        namespace: &str,
        name: &str,
    ) -> bool {
        let Ok(selector) = FieldSelector::parse(&format!("spec.nodeName={node}")) else {
            return false;
        };
        let options = ListOptions {
            field_selector: Some(selector),
            ..ListOptions::default()
        };
        let Ok(page) = self.store.list("pods", Some(namespace), &options) else {
            return false;
        };
        page.items
            .iter()
            .any(|pod| pod_references(&pod.value(), kind, name))
    }

    fn decide(&self, node: &str, a: &Attributes<'_>) -> Decision {
        let read = matches!(a.verb, "get" | "list" | "watch");
        let deny = |why: String| Decision::Deny(why);
        match (a.api_group, a.resource) {
            ("", "nodes") => {
                if read && a.subresource.is_none() {
                    return Decision::Allow;
                }
                let own = a.name == Some(node);
                let write = matches!(a.verb, "get" | "create" | "update" | "patch" | "delete");
                if own && write && matches!(a.subresource, None | Some("status")) {
                    Decision::Allow
                } else {
                    deny(format!(
                        "node {node:?} is not allowed to modify node {:?}",
                        a.name.unwrap_or_default()
                    ))
                }
            }
            ("coordination.k8s.io", "leases") => {
                let own = a.namespace == Some(LEASE_NAMESPACE) && a.name == Some(node);
                if own
                    && a.subresource.is_none()
                    && matches!(a.verb, "get" | "create" | "update" | "patch" | "delete")
                {
                    Decision::Allow
                } else {
                    deny(format!(
                        "node {node:?} may only use its own Lease {LEASE_NAMESPACE}/{node}"
                    ))
                }
            }
            ("", "pods") => {
                if matches!(a.verb, "list" | "watch") && a.subresource.is_none() {
                    return Decision::Allow;
                }
                let allowed_verb = match a.subresource {
                    None => matches!(a.verb, "get" | "delete"),
                    Some("status") => matches!(a.verb, "get" | "update" | "patch"),
                    Some(_) => false,
                };
                if !allowed_verb {
                    return deny(format!(
                        "node {node:?} may only read, update the status of, and delete pods bound to it"
                    ));
                }
                let (Some(namespace), Some(name)) = (a.namespace, a.name) else {
                    return deny(format!("node {node:?} must name the pod"));
                };
                match self.pod_node(namespace, name) {
                    Some(bound) if bound == node => Decision::Allow,
                    _ => deny(format!(
                        "pod {namespace}/{name} is not bound to node {node:?}"
                    )),
                }
            }
            ("", "events") | ("events.k8s.io", "events") => {
                if matches!(a.verb, "create" | "update" | "patch") {
                    Decision::Allow
                } else {
                    deny(format!("node {node:?} may only create and update events"))
                }
            }
            ("", resource @ ("secrets" | "configmaps")) => {
                let kind = if resource == "secrets" {
                    RefKind::Secret
                } else {
                    RefKind::ConfigMap
                };
                let (Some(namespace), Some(name), "get") = (a.namespace, a.name, a.verb) else {
                    return deny(format!(
                        "node {node:?} may only get {resource} that pods bound to it reference"
                    ));
                };
                if self.referenced_by_bound_pod(node, kind, namespace, name) {
                    Decision::Allow
                } else {
                    deny(format!(
                        "no pod bound to node {node:?} references {} {namespace}/{name}",
                        kind.name()
                    ))
                }
            }
            ("", "services" | "endpoints" | "namespaces")
            | ("discovery.k8s.io", "endpointslices")
                if read && a.subresource.is_none() =>
            {
                Decision::Allow
            }
            _ => deny(format!(
                "node {node:?} may not {} {}",
                a.verb,
                if a.api_group.is_empty() {
                    a.resource.to_string()
                } else {
                    format!("{}.{}", a.resource, a.api_group)
                }
            )),
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, attributes: &Attributes<'_>) -> Decision {
        match skiff_pki::node_name_of(attributes.identity) {
            Some(node) => self.decide(node, attributes),
            None => Decision::Deny(String::new()),
        }
    }

    /// NodeRestriction on the node's own Node: compared with the stored object (read just
    /// before the write, as upstream's admission sees the old object).
    fn admit(&self, attributes: &Attributes<'_>, object: &Value) -> Decision {
        let Some(node) = skiff_pki::node_name_of(attributes.identity) else {
            return Decision::Allow;
        };
        if (attributes.api_group, attributes.resource) != ("", "nodes") {
            return Decision::Allow;
        }
        if attributes.name != Some(node) {
            return Decision::Deny(format!(
                "node {node:?} is not allowed to modify node {:?}",
                attributes.name.unwrap_or_default()
            ));
        }
        let checked = match self.store.get(&Key::cluster("nodes", node)) {
            Some(stored) if attributes.verb != "create" => {
                let old = stored.value();
                if attributes.subresource == Some("status") {
                    // A status write keeps the stored spec; only its labels can change.
                    let mut new = object.clone();
                    new["spec"] = old["spec"].clone();
                    node_restriction::check_node_update(node, &old, &new)
                } else {
                    node_restriction::check_node_update(node, &old, object)
                }
            }
            _ => node_restriction::check_node_create(node, object),
        };
        match checked {
            Ok(()) => Decision::Allow,
            Err(reason) => Decision::Deny(reason),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Secret,
    ConfigMap,
}

impl RefKind {
    fn name(self) -> &'static str {
        match self {
            RefKind::Secret => "secret",
            RefKind::ConfigMap => "configmap",
        }
    }
}

/// Whether a pod (JSON) references the secret or configmap `name`: volumes (incl. projected),
/// env and envFrom of every container kind, and (secrets) image pull secrets.
fn pod_references(pod: &Value, kind: RefKind, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let empty = Vec::new();
    let array = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    if kind == RefKind::Secret
        && array(&spec["imagePullSecrets"])
            .iter()
            .any(|s| is(&s["name"]))
    {
        return true;
    }
    for volume in array(&spec["volumes"]) {
        let direct = match kind {
            RefKind::Secret => is(&volume["secret"]["secretName"]),
            RefKind::ConfigMap => is(&volume["configMap"]["name"]),
        };
        if direct {
            return true;
        }
        for source in array(&volume["projected"]["sources"]) {
            let field = match kind {
                RefKind::Secret => &source["secret"]["name"],
                RefKind::ConfigMap => &source["configMap"]["name"],
            };
            if is(field) {
                return true;
            }
        }
    }
    let (env_ref, from_ref) = match kind {
        RefKind::Secret => ("secretKeyRef", "secretRef"),
        RefKind::ConfigMap => ("configMapKeyRef", "configMapRef"),
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in array(&spec[list]) {
            if array(&container["env"])
                .iter()
                .any(|e| is(&e["valueFrom"][env_ref]["name"]))
            {
                return true;
            }
            if array(&container["envFrom"])
                .iter()
                .any(|e| is(&e[from_ref]["name"]))
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_pki::Identity;

    fn attributes<'a>(
        identity: &'a Identity,
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: Option<&'a str>,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes {
            identity,
            verb,
            api_group: group,
            resource,
            subresource,
            namespace,
            name,
        }
    }

    async fn store_with_pods() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb"), Default::default()).unwrap();
        for (name, node, secret) in [
            ("mine", "n1", "my-secret"),
            ("theirs", "n2", "their-secret"),
        ] {
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                    "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]}]}});
            store
                .create(&Key::namespaced("pods", "default", name), pod)
                .await
                .unwrap();
        }
        (store, dir)
    }

    #[tokio::test]
    async fn a_node_may_touch_only_its_own_objects() {
        let (store, _dir) = store_with_pods().await;
        let authorizer = NodeAuthorizer::new(store);
        let n1 = skiff_pki::node_identity("n1");
        let allow =
            |a: Attributes<'_>| assert_eq!(authorizer.authorize(&a), Decision::Allow, "{a:?}");
        let deny = |a: Attributes<'_>, why: &str| match authorizer.authorize(&a) {
            Decision::Deny(reason) => assert!(reason.contains(why), "{a:?}: {reason}"),
            Decision::Allow => panic!("{a:?} should be denied"),
        };
        // Nodes.
        allow(attributes(&n1, "list", "", "nodes", None, None, None));
        allow(attributes(
            &n1,
            "patch",
            "",
            "nodes",
            Some("status"),
            None,
            Some("n1"),
        ));
        allow(attributes(
            &n1,
            "update",
            "",
            "nodes",
            None,
            None,
            Some("n1"),
        ));
        deny(
            attributes(&n1, "patch", "", "nodes", Some("status"), None, Some("n2")),
            "is not allowed to modify node \"n2\"",
        );
        deny(
            attributes(&n1, "delete", "", "nodes", None, None, Some("n2")),
            "is not allowed to modify node",
        );
        deny(
            attributes(&n1, "create", "", "nodes", None, None, None),
            "is not allowed to modify node",
        );
        // Leases.
        allow(attributes(
            &n1,
            "update",
            "coordination.k8s.io",
            "leases",
            None,
            Some("kube-node-lease"),
            Some("n1"),
        ));
        deny(
            attributes(
                &n1,
                "update",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-node-lease"),
                Some("n2"),
            ),
            "own Lease",
        );
        deny(
            attributes(
                &n1,
                "update",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-system"),
                Some("n1"),
            ),
            "own Lease",
        );
        // Pods.
        allow(attributes(&n1, "watch", "", "pods", None, None, None));
        allow(attributes(
            &n1,
            "patch",
            "",
            "pods",
            Some("status"),
            Some("default"),
            Some("mine"),
        ));
        allow(attributes(
            &n1,
            "delete",
            "",
            "pods",
            None,
            Some("default"),
            Some("mine"),
        ));
        deny(
            attributes(
                &n1,
                "patch",
                "",
                "pods",
                Some("status"),
                Some("default"),
                Some("theirs"),
            ),
            "not bound to node \"n1\"",
        );
        deny(
            attributes(
                &n1,
                "delete",
                "",
                "pods",
                None,
                Some("default"),
                Some("theirs"),
            ),
            "not bound",
        );
        deny(
            attributes(
                &n1,
                "update",
                "",
                "pods",
                None,
                Some("default"),
                Some("mine"),
            ),
            "update the status",
        );
        deny(
            attributes(&n1, "create", "", "pods", None, Some("default"), None),
            "update the status",
        );
        // Secrets: only those its pods reference.
        allow(attributes(
            &n1,
            "get",
            "",
            "secrets",
            None,
            Some("default"),
            Some("my-secret"),
        ));
        deny(
            attributes(
                &n1,
                "get",
                "",
                "secrets",
                None,
                Some("default"),
                Some("their-secret"),
            ),
            "no pod bound",
        );
        deny(
            attributes(&n1, "list", "", "secrets", None, Some("default"), None),
            "may only get",
        );
        // Events and the rest.
        allow(attributes(
            &n1,
            "create",
            "",
            "events",
            None,
            Some("default"),
            None,
        ));
        deny(
            attributes(
                &n1,
                "create",
                "apps",
                "deployments",
                None,
                Some("default"),
                None,
            ),
            "may not create deployments.apps",
        );
        // Other identities get no decision from this authorizer.
        assert_eq!(
            authorizer.authorize(&attributes(
                &Identity::admin(),
                "delete",
                "",
                "nodes",
                None,
                None,
                Some("n1")
            )),
            Decision::Deny(String::new())
        );
    }

    #[test]
    fn references_are_found_everywhere_a_pod_can_name_them() {
        let pod = json!({"spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [
                {"name": "a", "secret": {"secretName": "vol-secret"}},
                {"name": "b", "configMap": {"name": "vol-cm"}},
                {"name": "c", "projected": {"sources": [{"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}}]}}
            ],
            "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}]}],
            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "from-cm"}}]}]
        }});
        for name in ["pull", "vol-secret", "proj-secret", "env-secret"] {
            assert!(pod_references(&pod, RefKind::Secret, name), "{name}");
        }
        for name in ["vol-cm", "proj-cm", "from-cm"] {
            assert!(pod_references(&pod, RefKind::ConfigMap, name), "{name}");
        }
        assert!(!pod_references(&pod, RefKind::Secret, "vol-cm"));
        assert!(!pod_references(&pod, RefKind::ConfigMap, "other"));
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;
    use skiff_pki::Identity;

    /// A node certificate may not read other nodes' endpoints (`nodes/proxy`, its own
    /// included, as upstream's Node authorizer) nor the metrics API.
    #[test]
    fn a_node_may_not_proxy_to_nodes_nor_read_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.redb"), Default::default()).unwrap();
        let authorizer = NodeAuthorizer::new(store);
        let n1: Identity = skiff_pki::node_identity("n1");
        for (group, resource, subresource, name) in [
            ("", "nodes", Some("proxy"), Some("n2")),
            ("", "nodes", Some("proxy"), Some("n1")),
            ("metrics.k8s.io", "pods", None, None),
            ("metrics.k8s.io", "nodes", None, None),
        ] {
            let attributes = Attributes {
                identity: &n1,
                verb: if name.is_some() { "get" } else { "list" },
                api_group: group,
                resource,
                subresource,
                namespace: None,
                name,
            };
            assert!(
                matches!(authorizer.authorize(&attributes), Decision::Deny(_)),
                "{attributes:?}"
            );
        }
    }
}
