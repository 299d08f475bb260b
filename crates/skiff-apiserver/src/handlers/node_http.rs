//! `nodes/{name}/proxy/{path}` (and `nodes/{name}:{port}/proxy/…`): the request is relayed to
//! the node's own HTTP endpoints (what the kubelet serves on 10250: `/healthz`, `/pods`,
//! `/stats/summary`, `/metrics/resource`) over an HTTP/1.1 connection the [`NodeProxy`]
//! opens — in skiff a stream of the node's link, so the node listens on no port.
//!
//! [`NodeProxy`]: crate::NodeProxy

use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, Response};

use crate::auth::{forbidden_message, Attributes, Decision};
use crate::node_proxy::NodeProxyError;
use crate::status::Subject;
use crate::{ApiError, ApiServer, Authenticated};

/// The kubelet's port: the only one a node serves (upstream's default for `nodes/proxy`).
pub(crate) const KUBELET_PORT: u16 = 10250;
/// Time allowed to reach the node and hear its response headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The verb a proxy request is authorized as (upstream's `RequestInfoFactory` mapping).
fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

/// `name`, `name:port` or `scheme:name:port` → the node name (400 for a port the node does
/// not serve).
fn node_name(target: &str) -> Result<&str, ApiError> {
    let parts: Vec<&str> = target.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [name] => (*name, None),
        [name, port] => (*name, Some(*port)),
        [scheme, name, port] if matches!(*scheme, "http" | "https" | "") => (*name, Some(*port)),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid node proxy target {target:?}"
            )))
        }
    };
    match port {
        None | Some("") => Ok(name),
        Some(port) if port.parse::<u16>() == Ok(KUBELET_PORT) => Ok(name),
        Some(port) => Err(ApiError::bad_request(format!(
            "node {name} serves only the kubelet port {KUBELET_PORT}, not {port:?}"
        ))),
    }
}

fn proxy_error(error: NodeProxyError) -> ApiError {
    match error {
        NodeProxyError::NodeNotConnected(m) => ApiError::unavailable(m),
        NodeProxyError::NotFound(m) | NodeProxyError::Failed(m) => {
            ApiError::unavailable(format!("error trying to reach the node: {m}"))
        }
    }
}

/// Relays one request to node `target`'s endpoint `path`.
pub(super) async fn proxy(
    api: &ApiServer,
    identity: &Authenticated,
    target: &str,
    path: &str,
    request: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    let name = node_name(target)?;
    let attributes = Attributes {
        identity: &identity.0,
        verb: verb(request.method()),
        api_group: "",
        resource: "nodes",
        subresource: Some("proxy"),
        namespace: None,
        name: Some(name),
    };
    let subject = Subject {
        group: "",
        kind: "nodes",
        name,
    };
    if let Decision::Deny(reason) = api.config().authorizer.authorize(&attributes) {
        return Err(ApiError::forbidden(forbidden_message(&attributes, &reason)).about(subject));
    }
    if api
        .store()
        .get(&skiff_store::Key::new("nodes", None, name))
        .is_none()
    {
        return Err(ApiError::not_found(subject));
    }
    let node_proxy = api.node_proxy().ok_or_else(|| {
        ApiError::unavailable(format!(
            "node {name} cannot be reached: this server has no node link"
        ))
    })?;
    let (reader, writer) = node_proxy.node_http(name).await.map_err(proxy_error)?;
    let mut sender = super::proxy::http1_client(reader, writer)
        .await
        .map_err(|e| ApiError::unavailable(format!("error trying to reach the node: {e}")))?;
    let (parts, body) = request.into_parts();
    let mut uri = format!("/{path}");
    if let Some(query) = parts.uri.query() {
        uri.push('?');
        uri.push_str(query);
    }
    let mut outgoing = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    *outgoing.headers_mut() = super::proxy::forwarded_headers(&parts.headers);
    outgoing.headers_mut().insert(
        header::HOST,
        HeaderValue::from_str(&format!("{name}:{KUBELET_PORT}"))
            .unwrap_or_else(|_| HeaderValue::from_static("node")),
    );
    let response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(outgoing))
        .await
        .map_err(|_| ApiError::unavailable(format!("node {name} did not answer in time")))?
        .map_err(|e| ApiError::unavailable(format!("error trying to reach the node: {e}")))?;
    let (mut parts, body) = response.into_parts();
    super::proxy::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_node_and_only_the_kubelet_port() {
        assert_eq!(node_name("n1").unwrap(), "n1");
        assert_eq!(node_name("n1:10250").unwrap(), "n1");
        assert_eq!(node_name("https:n1:10250").unwrap(), "n1");
        assert!(node_name("n1:22").is_err());
        assert!(node_name("a:b:c:d").is_err());
    }
}
