//! Adoption and release of dependents by selector (upstream `ControllerRefManager`): a
//! controller owns the objects its selector matches that have no controller yet (it adopts
//! them by adding its controller reference) and lets go of the ones it owns that its selector
//! no longer matches.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_types::selector::LabelSelector;

use crate::error::{is_not_found, status_code, ApiContext};
use crate::util::meta::{controller_of, key_of};
use crate::Error;

/// The dependents `owner` controls after adopting matching orphans and releasing owned
/// objects that no longer match. `candidates` are the objects the owner controls plus the
/// orphans of its namespace.
pub async fn claim<K>(
    client: &Client,
    owner: &OwnerReference,
    owner_deleting: bool,
    selector: &LabelSelector,
    candidates: Vec<Arc<K>>,
) -> Result<Vec<Arc<K>>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let mut claimed = Vec::with_capacity(candidates.len());
    for object in candidates {
        let meta = object.meta();
        let labels = meta.labels.clone().unwrap_or_default();
        let matches = selector.matches(&labels);
        match controller_of(meta) {
            Some(r) if r.uid == owner.uid => {
                if matches || owner_deleting {
                    claimed.push(object);
                } else {
                    release(client, owner, object.as_ref()).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches && !owner_deleting && meta.deletion_timestamp.is_none() {
                    if let Some(adopted) = adopt(client, owner, object.as_ref()).await? {
                        claimed.push(Arc::new(adopted));
                    }
                }
            }
        }
    }
    Ok(claimed)
}

fn api_for<K>(client: &Client, object: &K) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    Api::namespaced(
        client.clone(),
        object.meta().namespace.as_deref().unwrap_or_default(),
    )
}

/// Adds `owner` as controller of `object`. `None` when the object is gone or changed owner.
async fn adopt<K>(client: &Client, owner: &OwnerReference, object: &K) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let meta = object.meta();
    let mut refs: Vec<OwnerReference> = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner.clone());
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
    let name = meta.name.clone().unwrap_or_default();
    match api_for(client, object)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(adopted) => {
            tracing::debug!(object = %key_of(meta), owner = %owner.name, "adopted");
            Ok(Some(adopted))
        }
        Err(e) if is_not_found(&e) || status_code(&e) == Some(422) => Ok(None),
        Err(e) => Err(e).context(|| {
            format!(
                "adopt {} {} by {} {}",
                K::kind(&()),
                key_of(meta),
                owner.kind,
                owner.name
            )
        }),
    }
}

/// Removes `owner`'s reference from `object`.
async fn release<K>(client: &Client, owner: &OwnerReference, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let meta = object.meta();
    let refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner.uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
    let name = meta.name.clone().unwrap_or_default();
    match api_for(client, object)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::debug!(object = %key_of(meta), owner = %owner.name, "released");
            Ok(())
        }
        Err(e) if is_not_found(&e) || status_code(&e) == Some(422) => Ok(()),
        Err(e) => Err(e).context(|| {
            format!(
                "release {} {} from {} {}",
                K::kind(&()),
                key_of(meta),
                owner.kind,
                owner.name
            )
        }),
    }
}
