//! Objects that exist from the start: the system namespaces and each namespace's `default`
//! ServiceAccount (upstream's service account controller creates those; skiff's API server
//! does it when a namespace is created and on start).

use serde_json::json;
use skiff_store::{Key, ListOptions};
use skiff_types::registry;

use crate::handlers::create_object;
use crate::{ApiError, ApiServer};

/// Namespaces created on start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Namespaces that may not be deleted (upstream's NamespaceLifecycle admission).
pub const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub(crate) async fn run(api: &ApiServer) -> Result<(), ApiError> {
    let namespaces = registry::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("the registry has no namespaces"))?;
    for name in SYSTEM_NAMESPACES {
        let key = Key::new("namespaces", None, *name);
        if api.store().get(&key).is_some() {
            continue;
        }
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match create_object(api, namespaces, None, object, false).await {
            Ok(_) => tracing::info!(namespace = name, "created system namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    let existing = api
        .store()
        .list("namespaces", None, &ListOptions::default())
        .map_err(|e| crate::handlers::store_error(namespaces, e))?;
    for namespace in existing.items {
        ensure_default_service_account(api, &namespace.key().name).await;
    }
    Ok(())
}

/// Creates the `default` ServiceAccount of `namespace` if it is missing.
pub(crate) async fn ensure_default_service_account(api: &ApiServer, namespace: &str) {
    let Some(accounts) = registry::find("", "v1", "serviceaccounts") else {
        return;
    };
    let key = Key::new(accounts.storage_name(), Some(namespace), "default");
    if api.store().get(&key).is_some() {
        return;
    }
    let object = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
    });
    // Boxed: creating a namespace creates its account, so these futures nest.
    match Box::pin(create_object(api, accounts, Some(namespace), object, false)).await {
        Ok(_)
        | Err(ApiError {
            reason: "AlreadyExists",
            ..
        }) => {}
        Err(error) => {
            tracing::warn!(namespace, %error, "cannot create the default ServiceAccount")
        }
    }
}
