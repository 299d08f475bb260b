//! Everything a pod references, resolved before the runtime runs it: images (per pull policy),
//! the config maps and secrets of its volumes and environment (from the server when it can be
//! reached, else from the local state), and the node's facts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use skiff_runtime::{ContainerImage, NodeFacts, PodInputs};

use crate::images::{ImageFailure, ImagePuller, Resolved};
use crate::state::{LocalState, ObjectKind};

/// A boxed future.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Reads config maps and secrets from the server.
pub trait ObjectSource: Send + Sync + 'static {
    /// The objects `refs` names in `namespace`, in order (`None`: it does not exist). An error
    /// means the server could not be asked (the agent then uses what it stored before).
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        refs: &'a [(ObjectKind, String)],
    ) -> BoxFuture<'a, Result<Vec<Option<serde_json::Value>>, String>>;
}

/// No server to ask (tests, or a node that never reached its server).
#[derive(Debug)]
pub struct Offline;

impl ObjectSource for Offline {
    fn fetch<'a>(
        &'a self,
        _namespace: &'a str,
        _refs: &'a [(ObjectKind, String)],
    ) -> BoxFuture<'a, Result<Vec<Option<serde_json::Value>>, String>> {
        Box::pin(async { Err("the server is not reachable".to_string()) })
    }
}

/// The config maps and secrets a pod references, with whether each is optional.
pub fn referenced_objects(pod: &Pod) -> BTreeMap<(ObjectKind, String), bool> {
    let mut refs: BTreeMap<(ObjectKind, String), bool> = BTreeMap::new();
    let mut add = |kind: ObjectKind, name: &str, optional: Option<bool>| {
        if name.is_empty() {
            return;
        }
        let optional = optional.unwrap_or(false);
        refs.entry((kind, name.to_string()))
            .and_modify(|o| *o = *o && optional)
            .or_insert(optional);
    };
    let Some(spec) = pod.spec.as_ref() else {
        return refs;
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            add(ObjectKind::ConfigMap, &cm.name, cm.optional);
        }
        if let Some(secret) = &volume.secret {
            add(
                ObjectKind::Secret,
                secret.secret_name.as_deref().unwrap_or_default(),
                secret.optional,
            );
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    add(ObjectKind::ConfigMap, &cm.name, cm.optional);
                }
                if let Some(secret) = &source.secret {
                    add(ObjectKind::Secret, &secret.name, secret.optional);
                }
            }
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for env in c.env.iter().flatten() {
            let Some(from) = &env.value_from else {
                continue;
            };
            if let Some(r) = &from.config_map_key_ref {
                add(ObjectKind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &from.secret_key_ref {
                add(ObjectKind::Secret, &r.name, r.optional);
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                add(ObjectKind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &from.secret_ref {
                add(ObjectKind::Secret, &r.name, r.optional);
            }
        }
    }
    refs
}

/// `(container name, image, pull policy)` of every container, init containers first.
pub fn container_images(pod: &Pod) -> Vec<(String, String, Option<String>)> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .map(|c| {
            (
                c.name.clone(),
                c.image.clone().unwrap_or_default(),
                c.image_pull_policy.clone(),
            )
        })
        .collect()
}

/// Why inputs could not be resolved.
#[derive(Debug, Clone, Default)]
pub struct InputFailure {
    /// Image failures per container.
    pub images: BTreeMap<String, ImageFailure>,
}

/// Images that were pulled for a pod (for `Pulled` events).
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Container name.
    pub container: String,
    /// The image as the pod names it.
    pub image: String,
    /// What happened.
    pub resolved: Resolved,
}

/// Resolves pods' inputs.
pub struct InputResolver {
    pub(crate) images: Arc<ImagePuller>,
    pub(crate) state: Arc<LocalState>,
    pub(crate) objects: Arc<dyn ObjectSource>,
    pub(crate) node: std::sync::Mutex<NodeFacts>,
}

impl std::fmt::Debug for InputResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputResolver").finish_non_exhaustive()
    }
}

impl InputResolver {
    /// A resolver.
    pub fn new(
        images: Arc<ImagePuller>,
        state: Arc<LocalState>,
        objects: Arc<dyn ObjectSource>,
        node: NodeFacts,
    ) -> InputResolver {
        InputResolver {
            images,
            state,
            objects,
            node: std::sync::Mutex::new(node),
        }
    }

    /// Updates the node facts pods see.
    pub fn set_node(&self, node: NodeFacts) {
        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = node;
    }

    /// The node facts pods see.
    pub fn node(&self) -> NodeFacts {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes every container's image available per its pull policy.
    pub async fn images(
        &self,
        pod: &Pod,
    ) -> Result<(BTreeMap<String, ContainerImage>, Vec<Pulled>), InputFailure> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut images = BTreeMap::new();
        let mut pulled = Vec::new();
        let mut failure = InputFailure::default();
        for (container, name, policy) in container_images(pod) {
            match self.images.ensure(&uid, &name, policy.as_deref()).await {
                Ok(resolved) => {
                    images.insert(container.clone(), ContainerImage::from(&resolved.image));
                    if resolved.pulled {
                        pulled.push(Pulled {
                            container,
                            image: name,
                            resolved,
                        });
                    }
                }
                Err(f) => {
                    failure.images.insert(container, f);
                }
            }
        }
        if failure.images.is_empty() {
            Ok((images, pulled))
        } else {
            Err(failure)
        }
    }

    /// The config maps and secrets the pod references: fresh from the server when it answers
    /// (and then stored), else as stored. Missing ones are left out (the runtime reports
    /// them by the field that references them).
    pub async fn objects(
        &self,
        pod: &Pod,
    ) -> (BTreeMap<String, ConfigMap>, BTreeMap<String, Secret>) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let refs: Vec<(ObjectKind, String)> = referenced_objects(pod).into_keys().collect();
        let mut config_maps = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        if refs.is_empty() {
            return (config_maps, secrets);
        }
        let fetched = self.objects.fetch(&namespace, &refs).await;
        let values: Vec<Option<serde_json::Value>> = match fetched {
            Ok(values) if values.len() == refs.len() => {
                let records: Vec<_> = refs
                    .iter()
                    .zip(&values)
                    .map(|((kind, name), v)| (*kind, namespace.clone(), name.clone(), v.clone()))
                    .collect();
                if let Err(error) = self.state.put_objects(&records) {
                    tracing::warn!(%error, "cannot store config maps and secrets locally");
                }
                values
            }
            other => {
                if let Err(reason) = &other {
                    tracing::debug!(%reason, "using the locally stored config maps and secrets");
                }
                refs.iter()
                    .map(|(kind, name)| self.state.object(*kind, &namespace, name).ok().flatten())
                    .collect()
            }
        };
        for ((kind, name), value) in refs.into_iter().zip(values) {
            let Some(value) = value else { continue };
            match kind {
                ObjectKind::ConfigMap => match serde_json::from_value::<ConfigMap>(value) {
                    Ok(cm) => {
                        config_maps.insert(name, cm);
                    }
                    Err(error) => {
                        tracing::warn!(configmap = %name, %error, "unreadable config map")
                    }
                },
                ObjectKind::Secret => match serde_json::from_value::<Secret>(value) {
                    Ok(secret) => {
                        secrets.insert(name, secret);
                    }
                    Err(error) => tracing::warn!(secret = %name, %error, "unreadable secret"),
                },
            }
        }
        (config_maps, secrets)
    }

    /// Everything but the images (which the caller resolved already).
    pub async fn inputs(&self, pod: &Pod, images: BTreeMap<String, ContainerImage>) -> PodInputs {
        let (config_maps, secrets) = self.objects(pod).await;
        PodInputs {
            images,
            config_maps,
            secrets,
            service_account_tokens: BTreeMap::new(),
            service_env: BTreeMap::new(),
            node: self.node(),
        }
    }

    /// Drops stored objects no desired pod references any more.
    pub fn prune_objects(&self, pods: &[Pod]) {
        let mut wanted: BTreeSet<(ObjectKind, String, String)> = BTreeSet::new();
        for pod in pods {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            for (kind, name) in referenced_objects(pod).into_keys() {
                wanted.insert((kind, namespace.clone(), name));
            }
        }
        match self.state.retain_objects(|kind, ns, name| {
            wanted.contains(&(kind, ns.to_string(), name.to_string()))
        }) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "pruned stored config maps and secrets"),
            Err(error) => tracing::warn!(%error, "cannot prune stored objects"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_everywhere() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "volumes": [
                    {"name": "a", "configMap": {"name": "cm-vol"}},
                    {"name": "b", "secret": {"secretName": "sec-vol", "optional": true}},
                    {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm-proj"}}, {"secret": {"name": "sec-proj"}}]}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-envfrom"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec-env", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-vol", "key": "k", "optional": true}}}
                ]}]
            }
        }))
        .unwrap();
        let refs = referenced_objects(&pod);
        let names: Vec<String> = refs.keys().map(|(_, n)| n.clone()).collect();
        assert_eq!(
            names,
            [
                "cm-envfrom",
                "cm-proj",
                "cm-vol",
                "sec-env",
                "sec-proj",
                "sec-vol"
            ]
        );
        // Required somewhere means required.
        assert!(!refs[&(ObjectKind::ConfigMap, "cm-vol".into())]);
        assert!(refs[&(ObjectKind::Secret, "sec-vol".into())]);
    }
}
