//! What a resource URL names: resource, namespace, name, subresource and verb, following
//! upstream's `RequestInfoFactory` (including `/namespaces/{ns}/...` and the legacy
//! `/watch/` prefix).

use http::Method;
use skiff_types::registry::{self, ResourceInfo};

use crate::query::Query;
use crate::ApiError;

/// Subresources of a namespace addressed as `/api/v1/namespaces/{name}/<sub>`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// A request for a resource (as opposed to discovery, openapi or health endpoints).
#[derive(Debug, Clone)]
pub(crate) struct ResourceRequest {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// Namespace from the URL (for namespaced resources; `None` = all namespaces).
    pub namespace: Option<String>,
    /// Object name from the URL.
    pub name: Option<String>,
    /// Subresource from the URL.
    pub subresource: Option<String>,
    /// The verb (`get`, `list`, `watch`, `create`, ...).
    pub verb: Verb,
}

/// Kubernetes verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// GET one object.
    Get,
    /// GET a collection.
    List,
    /// GET a collection with `watch=true` (or under `/watch/`).
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE one object.
    Delete,
    /// DELETE a collection.
    DeleteCollection,
}

impl Verb {
    /// The verb as authorizers and discovery name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Parses the path below the API prefix. `group` is `""` for `/api/v1`. Returns 404 for paths
/// that name nothing served and 405 for verbs a resource does not support.
pub(crate) fn parse(
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &Query,
) -> Result<ResourceRequest, ApiError> {
    let mut parts = rest;
    let mut legacy_watch = false;
    if parts.first() == Some(&"watch") {
        legacy_watch = true;
        parts = &parts[1..];
    }
    if parts.is_empty() {
        return Err(ApiError::no_route());
    }
    let mut namespace = None;
    if parts[0] == "namespaces" && parts.len() > 1 {
        namespace = Some(parts[1].to_string());
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts = &parts[2..];
        }
    }
    let resource = parts[0];
    let name = parts.get(1).map(|s| s.to_string());
    let subresource = parts.get(2).map(|s| s.to_string());
    // `.../{name}/proxy/{path...}`: the rest is the proxied path (the handler reads it from
    // the raw URI, trailing slash included).
    let proxy = subresource.as_deref() == Some("proxy");
    if (parts.len() > 3 && !proxy) || parts.iter().take(3).any(|p| p.is_empty()) {
        return Err(ApiError::no_route());
    }
    let info = registry::find(group, version, resource).ok_or_else(ApiError::no_route)?;
    // `/api/v1/namespaces/foo` names the namespace foo itself.
    let namespace = if info.namespaced { namespace } else { None };
    if let Some(sub) = &subresource {
        let namespace_finalize =
            info.group.is_empty() && info.plural == "namespaces" && sub == "finalize";
        if !info.has_subresource(sub) && !namespace_finalize {
            return Err(ApiError::no_route());
        }
    }
    let watch = legacy_watch || (!proxy && query.flag("watch")?);
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", false) if watch => Verb::Watch,
        ("GET", true) if legacy_watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("GET", true) => Verb::Get,
        ("POST", _) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        // Upstream maps HEAD to `get`; OPTIONS has no verb there (only a superuser passes),
        // here it needs `get` like HEAD.
        ("HEAD" | "OPTIONS", true) if proxy => Verb::Get,
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m} {})",
                info.plural
            )))
        }
    };
    if subresource.is_none()
        && !info.has_verb(verb.as_str())
        && !(verb == Verb::Create && name.is_some())
    {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            verb.as_str(),
            info.plural
        )));
    }
    if verb == Verb::Create && name.is_some() && subresource.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource (POST {}/{})",
            info.plural,
            name.as_deref().unwrap_or_default()
        )));
    }
    if info.namespaced && namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::no_route());
    }
    Ok(ResourceRequest {
        info,
        namespace,
        name,
        subresource,
        verb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(
        method: Method,
        group: &str,
        path: &str,
        query: &str,
    ) -> Result<ResourceRequest, ApiError> {
        let parts: Vec<&str> = path.split('/').collect();
        parse(&method, group, "v1", &parts, &Query::parse(Some(query)))
    }

    #[test]
    fn proxy_paths_keep_their_rest() {
        let r = p(
            Method::HEAD,
            "",
            "namespaces/d/pods/web:80/proxy/a/b/",
            "watch=x",
        )
        .unwrap();
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref(), r.verb),
            (Some("web:80"), Some("proxy"), Verb::Get)
        );
        let r = p(Method::DELETE, "", "namespaces/d/services/s/proxy", "").unwrap();
        assert_eq!(r.verb, Verb::Delete);
        assert!(p(Method::GET, "", "namespaces/d/pods/web/exec/x", "").is_err());
        assert!(p(Method::GET, "", "namespaces/d/secrets/s/proxy/x", "").is_err());
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = p(Method::GET, "", "namespaces/default/pods/web", "").unwrap();
        assert_eq!(
            (
                r.info.plural,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.verb
            ),
            ("pods", Some("default"), Some("web"), Verb::Get)
        );
        let r = p(Method::GET, "", "pods", "watch=true").unwrap();
        assert_eq!((r.namespace, r.verb), (None, Verb::Watch));
        let r = p(Method::GET, "", "namespaces/kube-system", "").unwrap();
        assert_eq!(
            (r.info.plural, r.name.as_deref(), r.namespace),
            ("namespaces", Some("kube-system"), None)
        );
        let r = p(Method::PUT, "", "namespaces/demo/finalize", "").unwrap();
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = p(
            Method::PATCH,
            "apps",
            "namespaces/d/deployments/web/scale",
            "",
        )
        .unwrap();
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        let r = p(Method::POST, "", "namespaces/d/pods/web/binding", "").unwrap();
        assert_eq!(r.verb, Verb::Create);
        let r = p(Method::GET, "", "watch/namespaces/d/pods", "").unwrap();
        assert_eq!(r.verb, Verb::Watch);
    }

    #[test]
    fn unknown_things_are_404_or_405() {
        assert_eq!(p(Method::GET, "", "widgets", "").unwrap_err().code, 404);
        assert_eq!(
            p(Method::GET, "", "namespaces/d/pods/web/attach", "")
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            p(Method::PUT, "", "namespaces/d/pods", "")
                .unwrap_err()
                .code,
            405
        );
        assert_eq!(
            p(Method::POST, "", "namespaces/d/pods/web", "")
                .unwrap_err()
                .code,
            405
        );
        assert_eq!(
            p(Method::DELETE, "", "namespaces", "").unwrap_err().code,
            405
        );
        assert_eq!(
            p(Method::GET, "", "pods", "watch=maybe").unwrap_err().code,
            400
        );
    }
}
