//! The node's own HTTP endpoints, as the kubelet serves them on 10250, reached only through
//! the link (`nodes/proxy`: the server opens a node HTTP stream and speaks HTTP/1.1 on it; this
//! node listens on no port): `/healthz`, `/pods` (the PodList of the pods it runs),
//! `/stats/summary` (the Summary API, `stats/v1alpha1`: node and pod CPU and memory) and
//! `/metrics/resource` (the kubelet's resource metrics in Prometheus text). Anything else is
//! 404. Authorization happened in the API server (`get nodes/proxy`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use skiff_link::quic::{NodeHttpConnection, NodeHttpHandler};
use skiff_runtime::usage::CgroupUsage;
use skiff_runtime::Runtime;

use crate::usage::{LastUsage, TimedSnapshot};

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct NodeEndpoints {
    runtime: Runtime,
    node_name: String,
    last: LastUsage,
}

impl NodeEndpoints {
    /// Endpoints of node `node_name` over `runtime`; `last` is the usage reporter's last
    /// snapshot (for CPU rates).
    pub fn new(runtime: Runtime, node_name: String, last: LastUsage) -> Self {
        Self {
            runtime,
            node_name,
            last,
        }
    }

    /// The link's handler: one HTTP/1.1 connection per node HTTP stream.
    pub fn handler(self) -> NodeHttpHandler {
        let endpoints = Arc::new(self);
        Arc::new(move |connection: NodeHttpConnection| {
            let endpoints = endpoints.clone();
            Box::pin(async move {
                let service = hyper::service::service_fn(move |request| {
                    let endpoints = endpoints.clone();
                    async move { Ok::<_, Infallible>(endpoints.respond(request).await) }
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(connection), service)
                    .await
                {
                    tracing::debug!(%error, "node HTTP connection ended");
                }
            })
        })
    }

    async fn respond<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match request.uri().path().trim_end_matches('/') {
            "/healthz" => text(StatusCode::OK, "ok"),
            "/pods" => {
                let items: Vec<Value> = self
                    .runtime
                    .pod_objects()
                    .into_iter()
                    .filter_map(|p| serde_json::to_value(p).ok())
                    .collect();
                let list = json!({
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": items,
                });
                body(StatusCode::OK, "application/json", list.to_string())
            }
            "/stats/summary" => {
                let now = crate::usage::read(&self.runtime).await;
                let summary = summary(&self.node_name, self.last.get().as_ref(), &now);
                body(StatusCode::OK, "application/json", summary.to_string())
            }
            "/metrics/resource" => {
                let now = crate::usage::read(&self.runtime).await;
                body(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    resource_metrics(&now),
                )
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        }
    }
}

fn body(code: StatusCode, content_type: &'static str, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

fn text(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    body(code, "text/plain; charset=utf-8", text.to_string())
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// `CPUStats` and `MemoryStats` of the Summary API; `usageNanoCores` only with an earlier
/// sample of the same counter.
fn stats(at_ms: i64, now: CgroupUsage, before: Option<(i64, CgroupUsage)>) -> (Value, Value) {
    let time = rfc3339(at_ms);
    let mut cpu = json!({"time": time, "usageCoreNanoSeconds": now.cpu_usage_ns});
    if let Some((t0, then)) = before {
        if at_ms > t0 && now.cpu_usage_ns >= then.cpu_usage_ns {
            let nanos = u128::from(now.cpu_usage_ns - then.cpu_usage_ns) * 1_000_000_000
                / (u128::try_from(at_ms - t0).unwrap_or(1) * 1_000_000);
            cpu["usageNanoCores"] = json!(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
    }
    let memory = json!({"time": time, "workingSetBytes": now.working_set_bytes});
    (cpu, memory)
}

/// The Summary API document (`k8s.io/kubelet/pkg/apis/stats/v1alpha1.Summary`).
pub fn summary(node: &str, before: Option<&TimedSnapshot>, now: &TimedSnapshot) -> Value {
    let mut node_stats = json!({"nodeName": node});
    if let Some(usage) = now.snapshot.node {
        let earlier = before.and_then(|b| Some((b.at_ms, b.snapshot.node?)));
        let (cpu, memory) = stats(now.at_ms, usage, earlier);
        node_stats["cpu"] = cpu;
        node_stats["memory"] = memory;
    }
    let pods: Vec<Value> = now
        .snapshot
        .pods
        .iter()
        .map(|pod| {
            let earlier_pod = before
                .and_then(|b| Some((b.at_ms, b.snapshot.pods.iter().find(|p| p.uid == pod.uid)?)));
            let containers: Vec<Value> = pod
                .containers
                .iter()
                .map(|c| {
                    let earlier = earlier_pod.and_then(|(t0, p)| {
                        let then = p
                            .containers
                            .iter()
                            .find(|x| x.name == c.name && x.started_ms == c.started_ms)?;
                        Some((t0, then.usage))
                    });
                    let (cpu, memory) = stats(now.at_ms, c.usage, earlier);
                    let mut out = json!({"name": c.name, "cpu": cpu, "memory": memory});
                    if let Some(start) = c.started_ms {
                        out["startTime"] = json!(rfc3339(start));
                    }
                    out
                })
                .collect();
            let mut out = json!({
                "podRef": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "containers": containers,
            });
            if let Some(usage) = pod.pod {
                let earlier = earlier_pod.and_then(|(t0, p)| Some((t0, p.pod?)));
                let (cpu, memory) = stats(now.at_ms, usage, earlier);
                out["cpu"] = cpu;
                out["memory"] = memory;
            }
            out
        })
        .collect();
    json!({"node": node_stats, "pods": pods})
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The kubelet's `/metrics/resource` (Prometheus text format 0.0.4).
pub fn resource_metrics(now: &TimedSnapshot) -> String {
    let ts = now.at_ms;
    let seconds = |ns: u64| ns as f64 / 1e9;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    };
    let containers = || {
        now.snapshot.pods.iter().flat_map(|p| {
            p.containers.iter().map(move |c| {
                (
                    format!(
                        "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
                        label(&c.name),
                        label(&p.namespace),
                        label(&p.name)
                    ),
                    c.usage,
                )
            })
        })
    };
    let pods = || {
        now.snapshot.pods.iter().filter_map(|p| {
            Some((
                format!(
                    "namespace=\"{}\",pod=\"{}\"",
                    label(&p.namespace),
                    label(&p.name)
                ),
                p.pod?,
            ))
        })
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers()
            .map(|(l, u)| {
                format!(
                    "container_cpu_usage_seconds_total{{{l}}} {} {ts}",
                    seconds(u.cpu_usage_ns)
                )
            })
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers()
            .map(|(l, u)| {
                format!(
                    "container_memory_working_set_bytes{{{l}}} {} {ts}",
                    u.working_set_bytes
                )
            })
            .collect(),
    );
    let node = now.snapshot.node;
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        node.map(|u| {
            format!(
                "node_cpu_usage_seconds_total {} {ts}",
                seconds(u.cpu_usage_ns)
            )
        })
        .into_iter()
        .collect(),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        node.map(|u| format!("node_memory_working_set_bytes {} {ts}", u.working_set_bytes))
            .into_iter()
            .collect(),
    );
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pods()
            .map(|(l, u)| {
                format!(
                    "pod_cpu_usage_seconds_total{{{l}}} {} {ts}",
                    seconds(u.cpu_usage_ns)
                )
            })
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pods()
            .map(|(l, u)| {
                format!(
                    "pod_memory_working_set_bytes{{{l}}} {} {ts}",
                    u.working_set_bytes
                )
            })
            .collect(),
    );
    let error = u8::from(node.is_none());
    let _ = writeln!(
        out,
        "# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE scrape_error gauge");
    let _ = writeln!(out, "scrape_error {error}");
    out
}

#[cfg(test)]
mod tests {
    use skiff_runtime::usage::{ContainerUsage, PodUsage, UsageSnapshot};

    use super::*;

    fn snapshot(at_ms: i64, cpu: u64) -> TimedSnapshot {
        let usage = CgroupUsage {
            cpu_usage_ns: cpu,
            working_set_bytes: 4096,
        };
        TimedSnapshot {
            at_ms,
            snapshot: UsageSnapshot {
                node: Some(usage),
                pods: vec![PodUsage {
                    namespace: "default".into(),
                    name: "web".into(),
                    uid: "u1".into(),
                    pod: Some(usage),
                    containers: vec![ContainerUsage {
                        name: "main".into(),
                        started_ms: Some(1),
                        usage,
                    }],
                }],
            },
        }
    }

    #[test]
    fn summary_has_node_and_pods_with_rates_from_the_earlier_snapshot() {
        let before = snapshot(1_700_000_000_000, 1_000_000_000);
        let now = snapshot(1_700_000_010_000, 3_000_000_000);
        let s = summary("n1", Some(&before), &now);
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 200_000_000);
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 4096);
        let pod = &s["pods"][0];
        assert_eq!(pod["podRef"]["name"], "web");
        assert_eq!(
            pod["containers"][0]["cpu"]["usageCoreNanoSeconds"],
            3_000_000_000u64
        );
        assert_eq!(pod["containers"][0]["cpu"]["usageNanoCores"], 200_000_000);
        // Without an earlier snapshot there is no rate, only the counter.
        let s = summary("n1", None, &now);
        assert!(s["node"]["cpu"].get("usageNanoCores").is_none());
    }

    #[test]
    fn resource_metrics_are_prometheus_text() {
        let text = resource_metrics(&snapshot(1000, 1_500_000_000));
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"web\"} 1.5 1000\n"
        ));
        assert!(text.contains("node_memory_working_set_bytes 4096 1000\n"));
        assert!(text
            .contains("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 1.5 1000\n"));
        assert!(text.contains("# TYPE node_cpu_usage_seconds_total counter\n"));
        assert!(text.ends_with("scrape_error 0\n"));
    }
}
