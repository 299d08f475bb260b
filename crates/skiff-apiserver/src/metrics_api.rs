//! `metrics.k8s.io/v1beta1` (`kubectl top`): `NodeMetrics` and `PodMetrics` as metrics-server
//! serves them, from usage the control plane plugs in through a [`MetricsSource`] (in skiff,
//! the nodes' link reports). The API server owns the REST side — paths, authorization
//! (`get`/`list` on `nodes.metrics.k8s.io` and `pods.metrics.k8s.io`), label and field
//! selectors (matched against the Node and Pod objects, as metrics-server matches its
//! informers' objects), discovery and quantity formatting — and knows nothing of cgroups.

use std::time::Duration;

use axum::body::Body;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use skiff_store::{ListOptions, Object};

use crate::auth::{forbidden_message, Attributes, Decision};
use crate::query::Query;
use crate::render::json_bytes;
use crate::status::Subject;
use crate::{ApiError, ApiServer, Authenticated};

/// The group metrics-server registers.
pub const GROUP: &str = "metrics.k8s.io";
/// Its only version.
pub const VERSION: &str = "v1beta1";

/// A usage rate: CPU in nanocores (CPU-nanoseconds per second), memory as the working set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU, in nanocores.
    pub cpu_nanocores: u64,
    /// Working-set memory, in bytes.
    pub memory_bytes: u64,
}

/// When a rate was measured: the later sample's time and the interval between the two
/// samples it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The later sample's time.
    pub timestamp: jiff::Timestamp,
    /// Time between the two samples.
    pub window: Duration,
}

/// A node's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    /// When.
    pub window: Window,
    /// The node's usage.
    pub usage: Usage,
}

/// A pod's usage, per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// When.
    pub window: Window,
    /// `(container name, usage)`, by name.
    pub containers: Vec<(String, Usage)>,
}

/// Where the metrics API's numbers come from. Without one the group is still discovered
/// but every list is empty and every get is 404, as with a metrics-server that has not
/// scraped yet.
pub trait MetricsSource: Send + Sync + 'static {
    /// The latest usage of node `name`, if it has two samples.
    fn node(&self, name: &str) -> Option<NodeUsage>;

    /// The latest usage of the pod `namespace/name` with `uid` (a same-named successor's
    /// samples are not its), if every container has two samples.
    fn pod(&self, namespace: &str, name: &str, uid: &str) -> Option<PodUsage>;
}

/// `GET /apis/metrics.k8s.io/v1beta1/...` (`rest`: the segments after the version).
pub(crate) fn serve(
    api: &ApiServer,
    identity: &Authenticated,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    let query = Query::parse(query);
    if query.flag("watch")? {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource (watch)",
        ));
    }
    match rest {
        ["nodes"] => {
            authorize(api, identity, "list", "nodes", None, None)?;
            let items = list(api, "nodes", None, &query)?
                .iter()
                .filter_map(|o| node_metrics(api, &o.value()))
                .collect();
            Ok(list_response("NodeMetricsList", items))
        }
        ["nodes", name] => {
            authorize(api, identity, "get", "nodes", None, Some(name))?;
            let node = api
                .store()
                .get(&skiff_store::Key::new("nodes", None, *name))
                .and_then(|o| node_metrics(api, &o.value()))
                .ok_or_else(|| not_found("nodemetrics", name))?;
            Ok(object_response("NodeMetrics", node))
        }
        ["pods"] => {
            authorize(api, identity, "list", "pods", None, None)?;
            Ok(list_response("PodMetricsList", pods(api, None, &query)?))
        }
        ["namespaces", namespace, "pods"] => {
            authorize(api, identity, "list", "pods", Some(namespace), None)?;
            Ok(list_response(
                "PodMetricsList",
                pods(api, Some(namespace), &query)?,
            ))
        }
        ["namespaces", namespace, "pods", name] => {
            authorize(api, identity, "get", "pods", Some(namespace), Some(name))?;
            let pod = api
                .store()
                .get(&skiff_store::Key::new("pods", Some(*namespace), *name))
                .and_then(|o| pod_metrics(api, &o.value()))
                .ok_or_else(|| not_found("podmetrics", &format!("{namespace}/{name}")))?;
            Ok(object_response("PodMetrics", pod))
        }
        _ => Err(ApiError::no_route()),
    }
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError::not_found(Subject {
        group: GROUP,
        kind,
        name,
    })
}

fn authorize(
    api: &ApiServer,
    identity: &Authenticated,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let attributes = Attributes {
        identity: &identity.0,
        verb,
        api_group: GROUP,
        resource,
        subresource: None,
        namespace,
        name,
    };
    match api.config().authorizer.authorize(&attributes) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(ApiError::forbidden(forbidden_message(&attributes, &reason))
            .about(Subject {
                group: GROUP,
                kind: resource,
                name: name.unwrap_or_default(),
            })),
    }
}

/// The Node or Pod objects the selectors pick.
fn list(
    api: &ApiServer,
    resource: &str,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Vec<Object>, ApiError> {
    let options = ListOptions {
        label_selector: crate::handlers::label_selector(query)?,
        field_selector: crate::handlers::field_selector(query)?,
        ..ListOptions::default()
    };
    api.store()
        .list(resource, namespace, &options)
        .map(|page| page.items)
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn pods(api: &ApiServer, namespace: Option<&str>, query: &Query) -> Result<Vec<Value>, ApiError> {
    Ok(list(api, "pods", namespace, query)?
        .iter()
        .filter_map(|o| pod_metrics(api, &o.value()))
        .collect())
}

fn list_response(kind: &str, items: Vec<Value>) -> Response<Body> {
    let body = json!({
        "kind": kind,
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    });
    json_bytes(StatusCode::OK, body.to_string())
}

fn object_response(kind: &str, mut object: Value) -> Response<Body> {
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(format!("{GROUP}/{VERSION}")));
    if let Value::Object(fields) = object.take() {
        out.extend(fields);
    }
    json_bytes(StatusCode::OK, Value::Object(out).to_string())
}

/// metrics-server's object metadata: name, namespace, labels of the object, created now.
fn metadata(object: &Value) -> Value {
    let meta = &object["metadata"];
    let mut out = json!({
        "name": meta["name"],
        "creationTimestamp": rfc3339(jiff::Timestamp::now()),
    });
    if let Some(ns) = meta["namespace"].as_str() {
        out["namespace"] = json!(ns);
    }
    if meta["labels"].is_object() {
        out["labels"] = meta["labels"].clone();
    }
    out
}

fn node_metrics(api: &ApiServer, node: &Value) -> Option<Value> {
    let source = api.metrics_source()?;
    let usage = source.node(node["metadata"]["name"].as_str()?)?;
    Some(json!({
        "metadata": metadata(node),
        "timestamp": rfc3339(usage.window.timestamp),
        "window": go_duration(usage.window.window),
        "usage": usage_json(usage.usage),
    }))
}

fn pod_metrics(api: &ApiServer, pod: &Value) -> Option<Value> {
    let source = api.metrics_source()?;
    let meta = &pod["metadata"];
    let usage = source.pod(
        meta["namespace"].as_str()?,
        meta["name"].as_str()?,
        meta["uid"].as_str().unwrap_or_default(),
    )?;
    let containers: Vec<Value> = usage
        .containers
        .iter()
        .map(|(name, usage)| json!({"name": name, "usage": usage_json(*usage)}))
        .collect();
    Some(json!({
        "metadata": metadata(pod),
        "timestamp": rfc3339(usage.window.timestamp),
        "window": go_duration(usage.window.window),
        "containers": containers,
    }))
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "cpu": decimal_quantity(usage.cpu_nanocores, -9),
        "memory": binary_quantity(usage.memory_bytes),
    })
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `value × 10^scale` as apimachinery's `Quantity` prints a `DecimalSI` quantity:
/// trailing zeros folded into the exponent, the exponent lowered to a multiple of 3, and
/// the SI suffix of that exponent (`12345678n`, `12345u`, `250m`, `2`).
pub fn decimal_quantity(value: u64, scale: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    let (mut amount, mut exponent) = (u128::from(value), scale);
    while amount % 10 == 0 {
        amount /= 10;
        exponent += 1;
    }
    match exponent.rem_euclid(3) {
        1 => {
            amount *= 10;
            exponent -= 1;
        }
        2 => {
            amount *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    let suffix = match exponent {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        e => return format!("{amount}e{e}"),
    };
    format!("{amount}{suffix}")
}

/// Bytes as apimachinery prints a `BinarySI` quantity: below 1024 as a decimal figure,
/// otherwise the largest exact power-of-1024 suffix (`Ki`, `Mi`, …) or none.
pub fn binary_quantity(bytes: u64) -> String {
    if bytes < 1024 {
        return decimal_quantity(bytes, 0);
    }
    let (mut amount, mut times) = (bytes, 0usize);
    while amount % 1024 == 0 && times < 6 {
        amount /= 1024;
        times += 1;
    }
    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][times];
    format!("{amount}{suffix}")
}

/// A duration as Go's `time.Duration.String()` prints it (`metav1.Duration`): `15s`,
/// `15.012s`, `1m0.5s`, `1h2m3s`, `500ms`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, div));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = fraction(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// `n / div` with the fraction's trailing zeros dropped.
fn fraction(n: u128, div: u128) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The group in `/apis` (APIGroupList).
pub(crate) fn api_group() -> Value {
    let version = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"name": GROUP, "versions": [version], "preferredVersion": version})
}

/// `/apis/metrics.k8s.io/v1beta1` (APIResourceList), as metrics-server's.
pub(crate) fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// The group in aggregated discovery (`apidiscovery.k8s.io`).
pub(crate) fn aggregated_group() -> Value {
    let resource = |name: &str, kind: &str, scope: &str| {
        json!({
            "resource": name,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope,
            "singularResource": "",
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{
            "version": VERSION,
            "resources": [
                resource("nodes", "NodeMetrics", "Cluster"),
                resource("pods", "PodMetrics", "Namespaced"),
            ],
            "freshness": "Current",
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_print_as_metrics_server_prints_them() {
        // resource.NewScaledQuantity(n, -9) with DecimalSI, as `kubectl get --raw` shows.
        assert_eq!(decimal_quantity(12_345_678, -9), "12345678n");
        assert_eq!(decimal_quantity(12_345_000, -9), "12345u");
        assert_eq!(decimal_quantity(250_000_000, -9), "250m");
        assert_eq!(decimal_quantity(2_000_000_000, -9), "2");
        assert_eq!(decimal_quantity(1_500_000_000, -9), "1500m");
        assert_eq!(decimal_quantity(10_000, -9), "10u");
        assert_eq!(decimal_quantity(100_000, -9), "100u");
        assert_eq!(decimal_quantity(0, -9), "0");
        assert_eq!(decimal_quantity(1000, 0), "1k");
    }

    #[test]
    fn memory_quantities_print_in_binary_units() {
        assert_eq!(binary_quantity(4096 * 1000), "4000Ki");
        assert_eq!(binary_quantity(1 << 30), "1Gi");
        assert_eq!(binary_quantity(12_345_678), "12345678");
        assert_eq!(binary_quantity(512), "512");
        assert_eq!(binary_quantity(0), "0");
    }

    #[test]
    fn windows_print_as_go_durations() {
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(15_012)), "15.012s");
        assert_eq!(go_duration(Duration::from_millis(60_500)), "1m0.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    }
}
