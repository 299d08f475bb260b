//! Request dispatch: public endpoints, authentication, discovery, OpenAPI, and the resource
//! verbs (one module each).

mod delete;
mod meta;
mod node;
mod node_http;
mod patch;
pub(crate) mod portforward;
mod proxy;
mod read;
mod spdy;
mod subresources;
mod watch;
pub(crate) mod websocket;
mod write;

pub(crate) use read::{field_selector, label_selector};
pub(crate) use write::{create_object, update_object, Part};

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use futures::FutureExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use skiff_metrics::apiserver::RequestLabels;
use skiff_store::StoreError;
use skiff_types::registry::ResourceInfo;

use crate::auth::{forbidden_message, forbidden_path_message, Attributes, Decision};
use crate::discovery::{aggregated_content_type, wants_aggregated};
use crate::query::Query;
use crate::render::json_bytes;
use crate::request::{self, ResourceRequest, Verb};
use crate::status::Subject;
use crate::{negotiate, ApiError, ApiServer, Authenticated};

/// Everything a resource handler needs about its request.
pub(crate) struct Call {
    pub api: ApiServer,
    pub request: ResourceRequest,
    pub query: Query,
    pub headers: http::HeaderMap,
    pub identity: Authenticated,
}

impl Call {
    pub(crate) fn info(&self) -> &'static ResourceInfo {
        self.request.info
    }

    /// The field manager of this request: `?fieldManager=`, else from the User-Agent.
    pub(crate) fn field_manager(&self) -> &str {
        crate::apply::manager_of(
            self.query.non_empty("fieldManager"),
            self.headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// How a write of this request (not an apply) records field ownership.
    pub(crate) fn ownership(&self) -> crate::apply::Ownership<'_> {
        crate::apply::Ownership::Update {
            manager: self.field_manager(),
            subresource: self.request.subresource.as_deref().unwrap_or_default(),
        }
    }

    /// `details` naming this request's object.
    pub(crate) fn subject<'a>(&'a self, name: &'a str) -> Subject<'a> {
        Subject {
            group: self.request.info.group,
            kind: self.request.info.plural,
            name,
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.request.name.as_deref().unwrap_or_default()
    }

    pub(crate) fn namespace(&self) -> Option<&str> {
        self.request.namespace.as_deref()
    }

    /// The store key of the object named in the URL.
    pub(crate) fn key(&self) -> skiff_store::Key {
        skiff_store::Key::new(
            self.request.info.storage_name(),
            self.namespace(),
            self.name(),
        )
    }

    /// Asks the authorizer to admit the object this request is about to store (403 if not).
    pub(crate) fn admit(&self, object: &serde_json::Value) -> Result<(), ApiError> {
        let name = crate::objects::meta_str(object, "name")
            .filter(|n| !n.is_empty())
            .or(self.request.name.as_deref());
        let attributes = Attributes {
            identity: &self.identity.0,
            verb: self.request.verb.as_str(),
            api_group: self.request.info.group,
            resource: self.request.info.plural,
            subresource: self.request.subresource.as_deref(),
            namespace: self.request.namespace.as_deref(),
            name,
        };
        match self.api.config().authorizer.admit(&attributes, object) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => {
                Err(ApiError::forbidden(forbidden_message(&attributes, &reason))
                    .about(self.subject(name.unwrap_or_default())))
            }
        }
    }

    /// Maps a store error to the API's `Status`, naming this request's object.
    pub(crate) fn store_error(&self, error: StoreError) -> ApiError {
        self.api.note_store_error(&error);
        store_error(self.request.info, error)
    }
}

/// Maps a store error of a write to a `Status`, noting it for the `store` health check.
pub(crate) fn write_error(api: &ApiServer, info: &ResourceInfo, error: StoreError) -> ApiError {
    api.note_store_error(&error);
    store_error(info, error)
}

/// Maps a store error to a `Status`.
pub(crate) fn store_error(info: &ResourceInfo, error: StoreError) -> ApiError {
    fn subject<'a>(info: &'a ResourceInfo, name: &'a str) -> Subject<'a> {
        Subject {
            group: info.group,
            kind: info.plural,
            name,
        }
    }
    let subject = |name| subject(info, name);
    match &error {
        StoreError::AlreadyExists { key } => ApiError::already_exists(subject(&key.name)),
        StoreError::NotFound { key } => ApiError::not_found(subject(&key.name)),
        StoreError::Conflict { key, message } => {
            if message.starts_with("Precondition failed") {
                ApiError::conflict(subject(&key.name), message)
            } else {
                ApiError::stale(subject(&key.name))
            }
        }
        StoreError::Gone {
            requested,
            compacted,
        } => ApiError::gone(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::ContinueExpired { .. } => ApiError::gone(error.to_string()),
        StoreError::TooLargeResourceVersion { requested, current } => {
            let mut e = ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            e.details_mut().retry_after_seconds = Some(1);
            e.details_mut().causes.push(crate::StatusCause {
                reason: "ResourceVersionTooLarge".into(),
                message: format!("Too large resource version: {requested}, current: {current}"),
                field: String::new(),
            });
            e
        }
        StoreError::InvalidContinue { .. } => ApiError::bad_request(error.to_string()),
        StoreError::InvalidObject { key, message } => ApiError::invalid(
            subject(&key.name),
            format!(
                "{} \"{}\" is invalid: {message}",
                info.qualified_kind(),
                key.name
            ),
            Vec::new(),
        ),
        StoreError::Closed => ApiError::unavailable("the store is shutting down"),
        _ => {
            tracing::error!(%error, "store failure");
            ApiError::internal(error.to_string())
        }
    }
}

/// Entry point of every request.
pub(crate) async fn dispatch(
    State(api): State<ApiServer>,
    request: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut labels = crate::metrics::non_resource(&method);
    let permit = api.inflight().admit(
        &method,
        &path,
        request.uri().query(),
        request.extensions().get::<Authenticated>(),
    );
    let _permit = match permit {
        Ok(permit) => permit,
        Err(error) => {
            let response = error.into_response();
            skiff_metrics::global().apiserver.record(
                &labels,
                response.status().as_u16(),
                started.elapsed(),
            );
            return response;
        }
    };
    // A panic in a handler ends this request with 500, never the server (upstream's
    // `WithPanicRecovery`). Panics while streaming a body end that stream's task only.
    let routed = AssertUnwindSafe(route(api, request, &mut labels))
        .catch_unwind()
        .await;
    let response = match routed {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(panic) => {
            tracing::error!(
                %method,
                %path,
                panic = panic_message(panic.as_ref()),
                "request handler panicked"
            );
            ApiError::internal(PANIC_MESSAGE).into_response()
        }
    };
    skiff_metrics::global().apiserver.record(
        &labels,
        response.status().as_u16(),
        started.elapsed(),
    );
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Upstream's answer to a request whose handler panicked.
pub(crate) const PANIC_MESSAGE: &str =
    "This request caused apiserver to panic. Look in the logs for details.";

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

fn only_get(method: &Method) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )))
    }
}

async fn route(
    api: ApiServer,
    request: Request<Body>,
    labels: &mut RequestLabels,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_string();
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "healthz" | "livez" | "readyz" => {
            only_get(request.method())?;
            let only = path.trim_matches('/').split_once('/').map(|(_, name)| name);
            let query = Query::parse(request.uri().query());
            return Ok(crate::health::respond(
                first,
                only,
                &api.health_checks(),
                &query,
            ));
        }
        "version" if path == "/version" || path == "/version/" => {
            only_get(request.method())?;
            return Ok(json_bytes(StatusCode::OK, api.discovery().version.clone()));
        }
        _ => {}
    }
    let identity = request
        .extensions()
        .get::<Authenticated>()
        .cloned()
        .ok_or_else(ApiError::unauthorized)?;
    let trimmed = path.trim_matches('/');
    let segments: Vec<&str> = trimmed.split('/').collect();
    match segments.as_slice() {
        ["api"] => {
            only_get(request.method())?;
            Ok(discovery_root(&api, request.headers(), true))
        }
        ["apis"] => {
            only_get(request.method())?;
            Ok(discovery_root(&api, request.headers(), false))
        }
        ["api", version] => {
            only_get(request.method())?;
            api.discovery()
                .resource_list("", version)
                .map(|b| json_bytes(StatusCode::OK, b))
                .ok_or_else(ApiError::no_route)
        }
        ["apis", group, version] => {
            only_get(request.method())?;
            api.discovery()
                .resource_list(group, version)
                .map(|b| json_bytes(StatusCode::OK, b))
                .ok_or_else(ApiError::no_route)
        }
        ["metrics"] => {
            only_get(request.method())?;
            authorize_path(&api, &identity, "get", "/metrics")?;
            Ok(crate::metrics::exposition(&api))
        }
        ["openapi", "v2"] => {
            only_get(request.method())?;
            openapi_v2(&api, request.headers())
        }
        ["openapi", "v3"] => {
            only_get(request.method())?;
            Ok(json_bytes(StatusCode::OK, api.openapi().v3_index.clone()))
        }
        ["openapi", "v3", rest @ ..] => {
            only_get(request.method())?;
            openapi_v3(&api, &rest.join("/"), request.uri().query())
        }
        ["apis", crate::metrics_api::GROUP, crate::metrics_api::VERSION, rest @ ..] => {
            crate::metrics_api::serve(
                &api,
                &identity,
                request.method(),
                rest,
                request.uri().query(),
            )
        }
        ["api", "v1", "nodes", target, "proxy", rest @ ..] => {
            let (target, rest) = (target.to_string(), rest.join("/"));
            node_http::proxy(&api, &identity, &target, &rest, request).await
        }
        ["api", version, rest @ ..] => {
            let (version, rest) = (version.to_string(), to_owned(rest));
            resource(api, identity, "", &version, rest, request, labels).await
        }
        ["apis", group, version, rest @ ..] => {
            let (group, version, rest) = (group.to_string(), version.to_string(), to_owned(rest));
            resource(api, identity, &group, &version, rest, request, labels).await
        }
        _ => Err(ApiError::no_route()),
    }
}

fn to_owned(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn discovery_root(api: &ApiServer, headers: &http::HeaderMap, core: bool) -> Response<Body> {
    let d = api.discovery();
    if let Some(version) = wants_aggregated(headers) {
        let docs = if core {
            &d.aggregated_api
        } else {
            &d.aggregated_apis
        };
        if let Some((_, body)) = docs.iter().find(|(v, _)| *v == version) {
            let mut response = json_bytes(StatusCode::OK, body.clone());
            if let Ok(ct) = HeaderValue::from_str(&aggregated_content_type(version)) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            return response;
        }
    }
    let mut response = json_bytes(
        StatusCode::OK,
        if core { d.api.clone() } else { d.apis.clone() },
    );
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn openapi_v2(api: &ApiServer, headers: &http::HeaderMap) -> Result<Response<Body>, ApiError> {
    if crate::openapi_pb::wanted(headers) {
        let mut response = json_bytes(StatusCode::OK, api.openapi().v2_protobuf.clone());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::openapi_pb::CONTENT_TYPE),
        );
        return Ok(response);
    }
    if !negotiate::accepts_json(headers) {
        return Err(ApiError::not_acceptable(
            "the OpenAPI v2 document is served as application/json or protobuf",
        ));
    }
    Ok(json_bytes(StatusCode::OK, api.openapi().v2.clone()))
}

fn openapi_v3(
    api: &ApiServer,
    path: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (hash, body) = api
        .openapi()
        .v3_document(path)
        .ok_or_else(ApiError::no_route)?;
    let mut response = json_bytes(StatusCode::OK, body.clone());
    let asked = Query::parse(query);
    let cache = if asked.get("hash") == Some(hash) {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

async fn resource(
    api: ApiServer,
    identity: Authenticated,
    group: &str,
    version: &str,
    rest: Vec<String>,
    request: Request<Body>,
    labels: &mut RequestLabels,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(request.uri().query());
    let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
    let parsed = request::parse(request.method(), group, version, &parts, &query)?;
    *labels = crate::metrics::resource(&parsed, request.headers());
    authorize(&api, &identity, &parsed)?;
    let (mut parts, body) = request.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let (method, uri) = (parts.method.clone(), parts.uri.clone());
    let call = Call {
        api,
        request: parsed,
        query,
        headers: parts.headers,
        identity,
    };
    let sub = call.request.subresource.clone();
    match (call.request.verb, sub.as_deref()) {
        (Verb::Get, None | Some("status")) => read::get(&call),
        (Verb::List, None) => read::list(&call),
        (Verb::Watch, None) => watch::watch(&call),
        (Verb::Create, None) => write::create(&call, body).await,
        (Verb::Update, None | Some("status")) => write::update(&call, body).await,
        (Verb::Update, Some("finalize")) => write::finalize(&call, body).await,
        (Verb::Patch, None | Some("status")) => patch::patch(&call, body).await,
        (Verb::Delete, None) => delete::delete(&call, body).await,
        (Verb::DeleteCollection, None) => delete::delete_collection(&call, body).await,
        (Verb::Get, Some("scale")) => subresources::get_scale(&call),
        (Verb::Update, Some("scale")) => subresources::update_scale(&call, body).await,
        (Verb::Patch, Some("scale")) => subresources::patch_scale(&call, body).await,
        (Verb::Create, Some("binding")) => subresources::binding(&call, body).await,
        (Verb::Create, Some("eviction")) => subresources::eviction(&call, body).await,
        (Verb::Get, Some("log")) => node::log(&call).await,
        (Verb::Get | Verb::Create, Some("exec")) => node::exec(&call, upgrade).await,
        (Verb::Get | Verb::Create, Some("portforward")) => {
            // kubectl speaks SPDY (raw, or tunnelled in a WebSocket); the Python client and
            // other WebSocket clients the channel protocols.
            if crate::spdy::upgrade::wants_spdy(&call.headers)
                || websocket::offered_protocols(&call.headers)
                    .iter()
                    .any(|p| p == crate::spdy::portforward::TUNNEL_PROTOCOL)
            {
                spdy::port_forward(&call, upgrade).await
            } else {
                portforward::portforward(&call, upgrade).await
            }
        }
        (_, Some("proxy")) => proxy::proxy(&call, method, &uri, body).await,
        (verb, Some(sub)) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {}/{sub})",
            verb.as_str(),
            call.request.info.plural
        ))),
    }
}

/// Asks the authorizer about a non-resource path (403 with upstream's message if refused).
fn authorize_path(
    api: &ApiServer,
    identity: &Authenticated,
    verb: &str,
    path: &str,
) -> Result<(), ApiError> {
    match api
        .config()
        .authorizer
        .authorize_path(&identity.0, verb, path)
    {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(ApiError::forbidden(forbidden_path_message(
            &identity.0,
            verb,
            path,
            &reason,
        ))),
    }
}

fn authorize(
    api: &ApiServer,
    identity: &Authenticated,
    request: &ResourceRequest,
) -> Result<(), ApiError> {
    let attributes = Attributes {
        identity: &identity.0,
        verb: request.verb.as_str(),
        api_group: request.info.group,
        resource: request.info.plural,
        subresource: request.subresource.as_deref(),
        namespace: request.namespace.as_deref(),
        name: request.name.as_deref(),
    };
    match api.config().authorizer.authorize(&attributes) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(ApiError::forbidden(forbidden_message(&attributes, &reason))
            .about(Subject {
                group: request.info.group,
                kind: request.info.plural,
                name: request.name.as_deref().unwrap_or_default(),
            })),
    }
}
