//! `pods/proxy` and `services/proxy`: an HTTP request relayed to a pod, carried over a
//! port-forward connection ([`NodeProxy::pod_port_forward`]) so it reaches pods on any node
//! with no route from the server to the pod network. The pod's server is reached on its
//! loopback inside its network namespace (upstream dials the pod IP; a server bound only to
//! the pod IP is therefore not reachable here).
//!
//! Names as upstream's `SplitSchemeNamePort`: `name`, `name:port`, `scheme:name:port`
//! (`http` or `https`). A pod's port is a number or a container port's name, by default the
//! first declared container port (else 80/443); a Service's port is a number (mapped to its
//! port name) or a name, and the request goes to a ready address of the Service's Endpoints
//! at that port's target port, as upstream's `ResourceLocation`.

use axum::body::Body;
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri,
};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::Value;
use skiff_store::Key;
use skiff_types::registry;

use super::node::{proxy as node_proxy, proxy_error};
use super::{meta, Call};
use crate::node_proxy::NodeProxyError;
use crate::ApiError;

/// Where a proxied request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    https: bool,
    node: String,
    namespace: String,
    pod: String,
    /// Host header (`podIP:port`, as upstream's URL host).
    host: String,
    port: u16,
}

/// Upstream's `SplitSchemeNamePort`: `(scheme, name, port)`, `None` when invalid.
pub(crate) fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// The path after `.../{plural}/{name}/proxy` in the raw request path (`""` when there is
/// none; a trailing slash is kept).
pub(crate) fn proxied_path(raw: &str, plural: &str) -> Option<String> {
    let segments: Vec<&str> = raw.split('/').collect();
    let at = (0..segments.len())
        .find(|&i| segments[i] == plural && segments.get(i + 2) == Some(&"proxy"))?;
    let rest = &segments[at + 3..];
    if rest.is_empty() {
        Some(String::new())
    } else {
        Some(format!("/{}", rest.join("/")))
    }
}

/// Any method on `pods/{name}/proxy/...` or `services/{name}/proxy/...`.
pub(super) async fn proxy(
    call: &Call,
    method: Method,
    uri: &Uri,
    body: Body,
) -> Result<Response<Body>, ApiError> {
    let id = call.name();
    let path = proxied_path(uri.path(), call.request.info.plural).ok_or_else(ApiError::no_route)?;
    if path.is_empty() {
        // Upstream redirects `.../proxy` to `.../proxy/` (kubernetes#4958).
        let mut location = format!("{}/", uri.path());
        if let Some(query) = uri.query() {
            location.push('?');
            location.push_str(query);
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    let destination = match call.request.info.plural {
        "pods" => pod_destination(call, id)?,
        "services" => service_destination(call, id)?,
        _ => return Err(ApiError::no_route()),
    };
    if destination.https {
        return Err(ApiError::bad_request(format!(
            "https is not supported by this server's {} proxy",
            call.request.info.singular
        )));
    }
    let proxy = node_proxy(call)?;
    let (reader, writer) = proxy
        .pod_port_forward(
            &destination.node,
            &destination.namespace,
            &destination.pod,
            destination.port,
        )
        .await
        .map_err(|error| match error {
            NodeProxyError::Failed(message) => {
                ApiError::unavailable(format!("error trying to reach service: {message}"))
            }
            other => proxy_error(other),
        })?;
    let mut sender = http1_client(reader, writer)
        .await
        .map_err(|e| ApiError::unavailable(format!("error trying to reach service: {e}")))?;
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(&target)
        .body(body)
        .map_err(|e| ApiError::bad_request(format!("invalid proxied request: {e}")))?;
    *request.headers_mut() = forwarded_headers(&call.headers);
    if let Ok(host) = HeaderValue::from_str(&destination.host) {
        request.headers_mut().insert(header::HOST, host);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("error trying to reach service: {e}")))?;
    let (mut parts, incoming) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(incoming)))
}

/// An HTTP/1.1 client on a relayed byte stream (a port-forward or node connection); the
/// connection lives until the response body is read or dropped.
pub(super) async fn http1_client(
    reader: crate::node_proxy::NodeReader,
    writer: crate::node_proxy::NodeWriter,
) -> Result<hyper::client::conn::http1::SendRequest<Body>, hyper::Error> {
    let io = TokioIo::new(tokio::io::join(reader, writer));
    let (sender, connection) = hyper::client::conn::http1::handshake::<_, Body>(io).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "proxied connection ended");
        }
    });
    Ok(sender)
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1, as Go's
/// `httputil.ReverseProxy` removes them).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// The client's headers as the pod gets them: no hop-by-hop headers, and none of the
/// credentials the API server consumed (upstream drops `Authorization` after authenticating,
/// and impersonation headers after impersonating).
pub(super) fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = headers.clone();
    strip_hop_by_hop(&mut forwarded);
    forwarded.remove(header::AUTHORIZATION);
    let impersonation: Vec<HeaderName> = forwarded
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for name in impersonation {
        forwarded.remove(name);
    }
    forwarded
}

fn load(call: &Call, plural: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let info = registry::find("", "v1", plural).ok_or_else(ApiError::no_route)?;
    let key = Key::new(info.storage_name(), call.namespace(), name);
    match call.api.store().get(&key) {
        Some(stored) => serde_json::from_slice(stored.json())
            .map(Some)
            .map_err(|e| ApiError::internal(format!("stored object is not valid JSON: {e}"))),
        None => Ok(None),
    }
}

/// A pod's address as upstream requires it (a global unicast IP).
fn pod_ip(pod: &Value) -> Result<String, ApiError> {
    let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
    match ip.parse::<std::net::IpAddr>() {
        Ok(addr) if !addr.is_loopback() && !addr.is_unspecified() && !addr.is_multicast() => {
            Ok(ip.to_string())
        }
        _ => Err(ApiError::bad_request("address not allowed")),
    }
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn node_of(pod: &Value, name: &str) -> Result<String, ApiError> {
    match pod["spec"]["nodeName"].as_str() {
        Some(node) if !node.is_empty() => Ok(node.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        ))),
    }
}

fn pod_destination(call: &Call, id: &str) -> Result<Destination, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let (pod, _) = meta::load(call, &Key::new("pods", call.namespace(), name))?;
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let declared = containers
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default());
    let number = if port.is_empty() {
        containers
            .iter()
            .find_map(|c| c["ports"][0]["containerPort"].as_u64())
            .unwrap_or(if scheme == "https" { 443 } else { 80 })
    } else if let Ok(n) = port.parse::<u64>() {
        n
    } else {
        declared
            .clone()
            .find(|p| p["name"].as_str() == Some(port))
            .and_then(|p| p["containerPort"].as_u64())
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "error trying to reach service: pod {name} has no port named {port:?}"
                ))
            })?
    };
    let number = u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let ip = pod_ip(&pod)?;
    Ok(Destination {
        https: scheme == "https",
        node: node_of(&pod, name)?,
        namespace: call.namespace().unwrap_or_default().to_string(),
        pod: name.to_string(),
        host: host_port(&ip, number),
        port: number,
    })
}

fn service_destination(call: &Call, id: &str) -> Result<Destination, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let (service, _) = meta::load(call, &Key::new("services", call.namespace(), name))?;
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        port_name = ports
            .iter()
            .find(|p| p["port"].as_i64() == Some(number))
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "no service port {number} found for service {name:?}"
                ))
            })?;
    }
    let no_endpoints =
        || ApiError::unavailable(format!("no endpoints available for service {name:?}"));
    let endpoints = load(call, "endpoints", name)?.ok_or_else(no_endpoints)?;
    let subsets = endpoints["subsets"].as_array().cloned().unwrap_or_default();
    if subsets.is_empty() {
        return Err(no_endpoints());
    }
    let mut rng = rand::rng();
    let start = rng.random_range(0..subsets.len());
    for i in 0..subsets.len() {
        let subset = &subsets[(start + i) % subsets.len()];
        let addresses = subset["addresses"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        let ports = subset["ports"].as_array().cloned().unwrap_or_default();
        let Some(target_port) = ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let first = rng.random_range(0..addresses.len());
        for j in 0..addresses.len() {
            let address = &addresses[(first + j) % addresses.len()];
            let target = &address["targetRef"];
            if target["kind"].as_str() != Some("Pod") {
                continue;
            }
            let Some(pod_name) = target["name"].as_str() else {
                continue;
            };
            let Some(pod) = load(call, "pods", pod_name)? else {
                continue;
            };
            let Ok(node) = node_of(&pod, pod_name) else {
                continue;
            };
            let ip = address["ip"].as_str().unwrap_or_default();
            return Ok(Destination {
                https: scheme == "https",
                node,
                namespace: call.namespace().unwrap_or_default().to_string(),
                pod: pod_name.to_string(),
                host: host_port(ip, target_port),
                port: target_port,
            });
        }
    }
    Err(ApiError::unavailable(format!(
        "no endpoints available for service {id:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(
            split_scheme_name_port("web:http"),
            Some(("", "web", "http"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn the_proxied_path_keeps_its_trailing_slash() {
        let raw = "/api/v1/namespaces/default/pods/web:80/proxy/a/b/";
        assert_eq!(proxied_path(raw, "pods").as_deref(), Some("/a/b/"));
        assert_eq!(
            proxied_path("/api/v1/namespaces/d/pods/web/proxy", "pods").as_deref(),
            Some("")
        );
        assert_eq!(
            proxied_path("/api/v1/namespaces/d/pods/web/proxy/", "pods").as_deref(),
            Some("/")
        );
        assert_eq!(
            proxied_path("/api/v1/namespaces/d/services/s/proxy/x%2Fy?q", "services").as_deref(),
            Some("/x%2Fy?q")
        );
        assert_eq!(
            proxied_path("/api/v1/namespaces/d/pods/web/proxyx", "pods"),
            None
        );
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_here() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert("impersonate-user", HeaderValue::from_static("bob"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        let forwarded = forwarded_headers(&headers);
        assert_eq!(forwarded.len(), 1, "{forwarded:?}");
        assert!(forwarded.contains_key(header::ACCEPT));
    }
}
