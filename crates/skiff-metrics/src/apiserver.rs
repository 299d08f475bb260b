//! API server requests, named and labelled as upstream kube-apiserver's:
//! `apiserver_request_total{verb,group,version,resource,subresource,scope,code}` and
//! `apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency bucket bounds in seconds: finer at the low end than upstream's (skiff answers most
/// requests in well under 5 ms), up to upstream's 60 s.
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What a request was, as upstream labels it. Every field is a static string, so recording
/// allocates nothing; requests that name no served resource (discovery, health, unknown
/// paths) have empty group, version, resource and scope.
#[derive(Debug, Clone, Copy, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Upstream's verb: `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`,
    /// `DELETECOLLECTION`, `CONNECT` (exec).
    pub verb: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Resource plural (`pods`).
    pub resource: &'static str,
    /// Subresource (`status`, `binding`, ...), or `""`.
    pub subresource: &'static str,
    /// `cluster`, `namespace` or `resource` (a named object), as upstream.
    pub scope: &'static str,
}

impl RequestLabels {
    /// Whether this is a long-running request (watch, exec), whose duration says nothing
    /// about the server's latency; upstream keeps them out of the histogram too.
    pub fn long_running(&self) -> bool {
        matches!(self.verb, "WATCH" | "CONNECT")
    }
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: u16,
}

/// The API server's families.
#[derive(Debug)]
pub struct ApiserverMetrics {
    requests: Family<CodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl ApiserverMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        let durations = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, \
             subresource, scope and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, \
             subresource and scope (until the response head; watch and exec not included)",
            durations.clone(),
        );
        ApiserverMetrics {
            requests,
            durations,
        }
    }

    /// Records one answered request: counts it with its response `code`, and observes
    /// `elapsed` unless the request is [long-running](RequestLabels::long_running).
    pub fn record(&self, request: &RequestLabels, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&CodeLabels {
                request: *request,
                code,
            })
            .inc();
        if !request.long_running() {
            self.durations
                .get_or_create(request)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Requests counted so far with these labels and code (for tests).
    pub fn count(&self, request: &RequestLabels, code: u16) -> u64 {
        self.requests
            .get_or_create(&CodeLabels {
                request: *request,
                code,
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;

    fn create_configmap() -> RequestLabels {
        RequestLabels {
            verb: "POST",
            group: "",
            version: "v1",
            resource: "configmaps",
            subresource: "",
            scope: "namespace",
        }
    }

    #[test]
    fn requests_are_counted_by_code_and_timed() {
        let metrics = Metrics::new();
        let labels = create_configmap();
        metrics
            .apiserver
            .record(&labels, 201, Duration::from_millis(3));
        metrics
            .apiserver
            .record(&labels, 201, Duration::from_millis(30));
        metrics
            .apiserver
            .record(&labels, 409, Duration::from_millis(1));
        assert_eq!(metrics.apiserver.count(&labels, 201), 2);
        assert_eq!(metrics.apiserver.count(&labels, 409), 1);
        let text = metrics.encode(None);
        assert!(
            text.contains(
                "apiserver_request_total{verb=\"POST\",group=\"\",version=\"v1\",\
                 resource=\"configmaps\",subresource=\"\",scope=\"namespace\",code=\"201\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "apiserver_request_duration_seconds_count{verb=\"POST\",group=\"\",\
                 version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"namespace\"} 3\n"
            ),
            "{text}"
        );
        // 3 ms falls in the 5 ms bucket (cumulative: the 1 ms request too).
        assert!(
            text.contains(
                "apiserver_request_duration_seconds_bucket{le=\"0.005\",verb=\"POST\",group=\"\",\
                 version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"namespace\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn watches_are_counted_but_not_timed() {
        let metrics = Metrics::new();
        let watch = RequestLabels {
            verb: "WATCH",
            resource: "pods",
            version: "v1",
            scope: "cluster",
            ..RequestLabels::default()
        };
        metrics
            .apiserver
            .record(&watch, 200, Duration::from_secs(300));
        assert_eq!(metrics.apiserver.count(&watch, 200), 1);
        let text = metrics.encode(None);
        assert!(text.contains("verb=\"WATCH\""), "{text}");
        assert!(
            !text.contains("apiserver_request_duration_seconds_count{verb=\"WATCH\""),
            "{text}"
        );
    }
}
