//! Objects that exist from the start: the system namespaces, the `kubernetes` Service and its
//! endpoints, and the `kube-dns` Service.
//! (Each namespace's `default` ServiceAccount is the service account controller's, in
//! skiff-controllers, as upstream.)

use std::net::IpAddr;

use serde_json::json;
use skiff_store::Key;
use skiff_types::registry;

use crate::apply::Ownership;
use crate::handlers::{create_object, update_object, Part};

/// The field manager of the objects the API server keeps itself.
const BOOTSTRAP: Ownership<'static> = Ownership::Update {
    manager: "skiff-apiserver",
    subresource: "",
};
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
        match create_object(api, namespaces, None, object, false, BOOTSTRAP).await {
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
        update_object(api, services, &key, &old, new, Part::Main, false, BOOTSTRAP).await?;
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
    match create_object(api, services, Some("default"), object, false, BOOTSTRAP).await {
        Ok(_) => {
            tracing::info!(cluster_ip = %ip, "created the kubernetes Service");
            Ok(())
        }
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Name and namespace of the cluster DNS Service.
pub const KUBE_DNS: (&str, &str) = ("kube-system", "kube-dns");
/// Offset of the cluster DNS address in the service CIDR (10.43.0.10).
pub const KUBE_DNS_OFFSET: u32 = 10;

/// The `kube-dns` Service in `kube-system` at the tenth address of the service CIDR, ports
/// `dns` 53/UDP and `dns-tcp` 53/TCP, without a selector (each node answers it itself).
/// Created when missing; an existing one is left as it is.
pub(crate) async fn kube_dns_service(api: &ApiServer) -> Result<(), ApiError> {
    let services = registry::find("", "v1", "services")
        .ok_or_else(|| ApiError::internal("the registry has no services"))?;
    let (namespace, name) = KUBE_DNS;
    let key = Key::new(services.storage_name(), Some(namespace), name);
    if api.store().get(&key).is_some() {
        return Ok(());
    }
    let ip = api.service_ips().cidr().nth(KUBE_DNS_OFFSET).to_string();
    let object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "KubeDNS",
            },
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "sessionAffinity": "None",
        },
    });
    match create_object(api, services, Some(namespace), object, false, BOOTSTRAP).await {
        Ok(_) => {
            tracing::info!(cluster_ip = %ip, "created the kube-dns Service");
            Ok(())
        }
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Endpoints and EndpointSlice `default/kubernetes` (upstream's master endpoint
/// reconciler and its EndpointsAdapter): the API server's `address` and HTTPS `port`, named
/// `https`. Written when missing or different; nothing is written for an address pods cannot
/// reach (none, unspecified or loopback — upstream refuses those too).
pub(crate) async fn kubernetes_endpoints(
    api: &ApiServer,
    address: Option<IpAddr>,
    port: u16,
) -> Result<(), ApiError> {
    let Some(ip) = address.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) else {
        tracing::debug!(
            ?address,
            "no address pods can reach: the kubernetes Service has no endpoints"
        );
        return Ok(());
    };
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{
            "addresses": [{"ip": ip.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": address_type,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put_system_object(api, ("", "endpoints"), endpoints, &["subsets"]).await?;
    put_system_object(
        api,
        ("discovery.k8s.io", "endpointslices"),
        slice,
        &["addressType", "endpoints", "ports"],
    )
    .await
}

/// Creates `object` (in `default`), or updates the stored one when its labels or any of
/// `fields` differ. A stored slice of another address type is replaced (the field is
/// immutable).
async fn put_system_object(
    api: &ApiServer,
    (group, plural): (&str, &str),
    object: serde_json::Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let info = registry::find(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("the registry has no {plural}")))?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = Key::new(info.storage_name(), Some("default"), &name);
    if let Some(existing) = api.store().get(&key) {
        let old: serde_json::Value = serde_json::from_slice(existing.json())
            .map_err(|e| ApiError::internal(format!("stored {plural} is not JSON: {e}")))?;
        let same = |field: &str| normalized(&old[field]) == normalized(&object[field]);
        let labels_same = old["metadata"]["labels"] == object["metadata"]["labels"];
        if labels_same && fields.iter().all(|f| same(f)) {
            return Ok(());
        }
        if old["addressType"] == object["addressType"] {
            let mut new = old.clone();
            new["metadata"]["labels"] = object["metadata"]["labels"].clone();
            for field in fields {
                new[*field] = object[*field].clone();
            }
            update_object(api, info, &key, &old, new, Part::Main, false, BOOTSTRAP).await?;
            tracing::info!(
                resource = plural,
                name,
                "updated the API server's endpoints"
            );
            return Ok(());
        }
        // The address type is immutable: the old slice goes first.
        api.store()
            .delete(&key, skiff_store::Preconditions::default())
            .await
            .map_err(|e| crate::handlers::store_error(info, e))?;
    }
    match create_object(api, info, Some("default"), object, false, BOOTSTRAP).await {
        Ok(_) => {
            tracing::info!(
                resource = plural,
                name,
                "created the API server's endpoints"
            );
            Ok(())
        }
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// `value` without the zero-valued fields the server adds (so a stored object compares equal
/// to the one written).
fn normalized(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(_, v)| {
                    !matches!(v, serde_json::Value::Null)
                        && v.as_str() != Some("")
                        && v.as_object().is_none_or(|o| !o.is_empty())
                })
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(normalized).collect())
        }
        other => other.clone(),
    }
}
