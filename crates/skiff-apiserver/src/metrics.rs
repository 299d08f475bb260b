//! The API's own metrics: request labels as upstream's (`verb`, `group`, `version`,
//! `resource`, `subresource`, `scope`) and the `/metrics` endpoint.

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use skiff_metrics::apiserver::RequestLabels;

use crate::request::{ResourceRequest, Verb};
use crate::ApiServer;

/// Labels of a request that names no resource: just the method.
pub(crate) fn non_resource(method: &Method) -> RequestLabels {
    RequestLabels {
        verb: method_verb(method),
        ..RequestLabels::default()
    }
}

/// Labels of a resource request. `verb` is upstream's: `POST` for create, `PUT` for update,
/// `APPLY` for a server-side apply patch, `CONNECT` for exec.
pub(crate) fn resource(request: &ResourceRequest, headers: &HeaderMap) -> RequestLabels {
    let info = request.info;
    let subresource = request.subresource.as_deref().map_or("", |sub| {
        info.subresources
            .iter()
            .copied()
            .find(|s| *s == sub)
            .unwrap_or(if sub == "finalize" { "finalize" } else { "" })
    });
    let verb = match (request.verb, subresource) {
        (_, "exec") => "CONNECT",
        (Verb::Get, _) => "GET",
        (Verb::List, _) => "LIST",
        (Verb::Watch, _) => "WATCH",
        (Verb::Create, _) => "POST",
        (Verb::Update, _) => "PUT",
        (Verb::Patch, _) if is_apply(headers) => "APPLY",
        (Verb::Patch, _) => "PATCH",
        (Verb::Delete, _) => "DELETE",
        (Verb::DeleteCollection, _) => "DELETECOLLECTION",
    };
    let scope = if request.name.is_some() {
        "resource"
    } else if request.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb,
        group: info.group,
        version: info.version,
        resource: info.plural,
        subresource,
        scope,
    }
}

fn is_apply(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/apply-patch"))
}

fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The `/metrics` exposition: every process-wide family plus this API's store gauges.
pub(crate) fn exposition(api: &ApiServer) -> Response<Body> {
    let text = skiff_metrics::global().encode(Some(&api.store().gauges()));
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(skiff_metrics::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Query;

    fn labels(method: Method, group: &str, path: &str, content_type: &str) -> RequestLabels {
        let parts: Vec<&str> = path.split('/').collect();
        let request =
            crate::request::parse(&method, group, "v1", &parts, &Query::parse(None)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        resource(&request, &headers)
    }

    #[test]
    fn upstream_verbs_and_scopes() {
        let l = labels(
            Method::POST,
            "",
            "namespaces/d/configmaps",
            "application/json",
        );
        assert_eq!(
            (l.verb, l.resource, l.version, l.scope, l.subresource),
            ("POST", "configmaps", "v1", "namespace", "")
        );
        let l = labels(Method::GET, "", "pods", "");
        assert_eq!((l.verb, l.scope), ("LIST", "cluster"));
        let l = labels(
            Method::PATCH,
            "apps",
            "namespaces/d/deployments/web",
            "application/apply-patch+yaml",
        );
        assert_eq!((l.verb, l.group, l.scope), ("APPLY", "apps", "resource"));
        let l = labels(
            Method::PUT,
            "",
            "namespaces/d/pods/web/status",
            "application/json",
        );
        assert_eq!((l.verb, l.subresource), ("PUT", "status"));
        let l = labels(Method::POST, "", "namespaces/d/pods/web/exec", "");
        assert_eq!((l.verb, l.subresource), ("CONNECT", "exec"));
        assert!(l.long_running());
        let l = labels(Method::PUT, "", "namespaces/demo/finalize", "");
        assert_eq!((l.resource, l.subresource), ("namespaces", "finalize"));
        assert_eq!(non_resource(&Method::GET).verb, "GET");
    }
}
