//! Objects that exist from the start: the system namespaces and each namespace's `default`
//! ServiceAccount (upstream's service account controller creates those; skiff's API server
//! does it when a namespace is created and on start).

use serde_json::json;
use skiff_store::{Key, ListOptions};
use skiff_types::registry;

use crate::handlers::{create_object, update_object, Part};
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

/// The `kubernetes` Service: created with the first address of the service CIDR; an existing
/// one gets its target port updated when the API port changed.
pub(crate) async fn kubernetes_service(api: &ApiServer, api_port: u16) -> Result<(), ApiError> {
    let services = registry::find("", "v1", "services")
        .ok_or_else(|| ApiError::internal("the registry has no services"))?;
    let key = Key::new(services.storage_name(), Some("default"), "kubernetes");
    let ports = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]);
    if let Some(existing) = api.store().get(&key) {
        let old: serde_json::Value = serde_json::from_slice(existing.json())
            .map_err(|e| ApiError::internal(format!("stored Service is not JSON: {e}")))?;
        let ip = old["spec"]["clusterIP"].as_str().unwrap_or_default();
        if ip != api.service_ips().cidr().first().to_string() {
            tracing::warn!(
                cluster_ip = ip,
                service_cidr = %api.service_ips().cidr(),
                "the kubernetes Service keeps its address from another service CIDR"
            );
        }
        if old["spec"]["ports"][0]["targetPort"] == json!(api_port) {
            return Ok(());
        }
        let mut new = old.clone();
        new["spec"]["ports"] = ports;
        update_object(api, services, &key, &old, new, Part::Main, false).await?;
        tracing::info!(api_port, "kubernetes Service points at the new API port");
        return Ok(());
    }
    let ip = api.service_ips().cidr().first().to_string();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": ports,
            "sessionAffinity": "None",
        },
    });
    match create_object(api, services, Some("default"), object, false).await {
        Ok(_) => {
            tracing::info!(cluster_ip = %ip, "created the kubernetes Service");
            Ok(())
        }
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}
