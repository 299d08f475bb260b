//! Objects that exist from the start: the system namespaces and the `kubernetes` Service.
//! (Each namespace's `default` ServiceAccount is the service account controller's, in
//! skiff-controllers, as upstream.)

use serde_json::json;
use skiff_store::Key;
use skiff_types::registry;

use crate::handlers::{create_object, update_object, Part};
use crate::{ApiError, ApiServer};

/// Namespaces created on start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Namespaces that may not be deleted (upstream's NamespaceLifecycle admission).
pub(crate) const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

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
    Ok(())
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
