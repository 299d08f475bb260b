//! Columns and cells per kind, as upstream's `printers.go`.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::Column;
use crate::validation::V;

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const fn col(
    name: &'static str,
    ty: &'static str,
    description: &'static str,
    priority: i64,
) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC, 0);
const CONTAINERS: Column = col(
    "Containers",
    "string",
    "Names of each container in the template.",
    1,
);
const IMAGES: Column = col(
    "Images",
    "string",
    "Images referenced by each container in the template.",
    1,
);
const SELECTOR: Column = col("Selector", "string", "A label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this controller. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1);

static POD: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
    col("Status", "string", "The aggregate status of the containers in this pod.", 0),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
    AGE,
    col("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
    col("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName.", 1),
    col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.", 1),
    col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
];

static NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node", 0),
    col("Roles", "string", "The roles of the node", 0),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node.", 0),
    col("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    col("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available.", 1),
    col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
    col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
    col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
];

static NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace", 0),
    AGE,
];

static EVENT: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded.", 0),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future", 0),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
    col("Object", "string", "The object that this event is about.", 0),
    col("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].", 1),
    col("Source", "string", "The component reporting this event. Should be a short machine understandable string.", 1),
    col("Message", "string", "A human-readable description of the status of this operation.", 0),
    col("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", 1),
    col("Count", "string", "The number of times this event has occurred.", 1),
    Column {
        name: "Name",
        ty: "string",
        format: "name",
        description: NAME_DESC,
        priority: 1,
    },
];

static CONFIG_MAP: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0),
    AGE,
];

static SECRET: &[Column] = &[
    NAME,
    col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
    col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
    AGE,
];

static SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.", 0),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly.", 0),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.", 0),
    col("Port(s)", "string", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
    AGE,
    col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify.", 1),
];

static SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", 0),
    AGE,
];

static DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state", 0),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

static REPLICA_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
        0,
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
        0,
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

static DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).", 0),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.", 0),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", 0),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod", 0),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)", 0),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node.", 0),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

static JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job.", 0),
    col(
        "Completions",
        "string",
        "The completion status of the job.",
        0,
    ),
    col(
        "Duration",
        "string",
        "Time required to complete the job.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

static LEASE: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
        0,
    ),
    AGE,
];

static CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object", 0),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
        0,
    ),
    AGE,
];

const SUBSETS_DESC: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";

static ENDPOINTS: &[Column] = &[NAME, col("Endpoints", "string", SUBSETS_DESC, 0), AGE];

static ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.", 0),
    col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.", 0),
    col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.", 0),
    AGE,
];

static NETWORK_POLICY: &[Column] = &[
    NAME,
    col("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies.  The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods.  In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace.", 0),
    AGE,
];

static DEFAULT: &[Column] = &[NAME, col("Created At", "date", AGE_DESC, 0)];

/// Columns for a kind.
pub(super) fn columns(group: &str, kind: &str) -> &'static [Column] {
    match (group, kind) {
        ("", "Pod") => POD,
        ("", "Node") => NODE,
        ("", "Namespace") => NAMESPACE,
        ("", "Event") => EVENT,
        ("", "ConfigMap") => CONFIG_MAP,
        ("", "Secret") => SECRET,
        ("", "Service") => SERVICE,
        ("", "ServiceAccount") => SERVICE_ACCOUNT,
        ("apps", "Deployment") => DEPLOYMENT,
        ("apps", "ReplicaSet") => REPLICA_SET,
        ("apps", "DaemonSet") => DAEMON_SET,
        ("apps", "ControllerRevision") => CONTROLLER_REVISION,
        ("batch", "Job") => JOB,
        ("coordination.k8s.io", "Lease") => LEASE,
        ("", "Endpoints") => ENDPOINTS,
        ("discovery.k8s.io", "EndpointSlice") => ENDPOINT_SLICE,
        ("networking.k8s.io", "NetworkPolicy") => NETWORK_POLICY,
        _ => DEFAULT,
    }
}

/// Cells (and row conditions) for one object of a kind.
pub(super) fn cells(
    group: &str,
    kind: &str,
    object: &Value,
    now: Timestamp,
) -> (Vec<Value>, Option<Value>) {
    let o = V::new(object);
    let name = json!(o.get("metadata").get("name").str());
    let age = json!(age_of(o.get("metadata").get("creationTimestamp"), now));
    match (group, kind) {
        ("", "Pod") => pod(o, now),
        ("", "Node") => (node(o, now), None),
        ("", "Namespace") => (
            vec![name, json!(o.get("status").get("phase").str()), age],
            None,
        ),
        ("", "Event") => (event(o, now), None),
        ("", "ConfigMap") => {
            let n = o.get("data").map().len() + o.get("binaryData").map().len();
            (vec![name, json!(n), age], None)
        }
        ("", "Secret") => (
            vec![
                name,
                json!(o.get("type").str()),
                json!(o.get("data").map().len()),
                age,
            ],
            None,
        ),
        ("", "Service") => (service(o, now), None),
        ("", "ServiceAccount") => (vec![name, json!(o.get("secrets").len()), age], None),
        ("apps", "Deployment") => {
            let spec = o.get("spec");
            let status = o.get("status");
            let (containers, images) =
                layout_containers(spec.get("template").get("spec").get("containers"));
            (
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        status.get("readyReplicas").int0(),
                        spec.get("replicas").int0()
                    )),
                    json!(status.get("updatedReplicas").int0()),
                    json!(status.get("availableReplicas").int0()),
                    age,
                    json!(containers),
                    json!(images),
                    json!(selector_string(spec.get("selector"))),
                ],
                None,
            )
        }
        ("apps", "ReplicaSet") => {
            let spec = o.get("spec");
            let status = o.get("status");
            let (containers, images) =
                layout_containers(spec.get("template").get("spec").get("containers"));
            (
                vec![
                    name,
                    json!(spec.get("replicas").int0()),
                    json!(status.get("replicas").int0()),
                    json!(status.get("readyReplicas").int0()),
                    age,
                    json!(containers),
                    json!(images),
                    json!(selector_string(spec.get("selector"))),
                ],
                None,
            )
        }
        ("apps", "DaemonSet") => {
            let spec = o.get("spec");
            let status = o.get("status");
            let (containers, images) =
                layout_containers(spec.get("template").get("spec").get("containers"));
            (
                vec![
                    name,
                    json!(status.get("desiredNumberScheduled").int0()),
                    json!(status.get("currentNumberScheduled").int0()),
                    json!(status.get("numberReady").int0()),
                    json!(status.get("updatedNumberScheduled").int0()),
                    json!(status.get("numberAvailable").int0()),
                    json!(format_labels(
                        spec.get("template").get("spec").get("nodeSelector")
                    )),
                    age,
                    json!(containers),
                    json!(images),
                    json!(format_label_selector(spec.get("selector").0)),
                ],
                None,
            )
        }
        ("apps", "ControllerRevision") => {
            let controller = o
                .get("metadata")
                .get("ownerReferences")
                .items()
                .find(|r| r.get("controller").bool() == Some(true))
                .map_or("<none>".to_string(), |r| {
                    let group = r
                        .get("apiVersion")
                        .str()
                        .split_once('/')
                        .map_or("", |(g, _)| g);
                    let kind = if group.is_empty() {
                        r.get("kind").str().to_string()
                    } else {
                        format!("{}.{group}", r.get("kind").str())
                    };
                    format!("{}/{}", kind.to_lowercase(), r.get("name").str())
                });
            (
                vec![
                    name,
                    json!(controller),
                    json!(o.get("revision").int0()),
                    age,
                ],
                None,
            )
        }
        ("batch", "Job") => (job(o, now), None),
        ("coordination.k8s.io", "Lease") => (
            vec![name, json!(o.get("spec").get("holderIdentity").str()), age],
            None,
        ),
        ("", "Endpoints") => (vec![name, json!(format_endpoints(o)), age], None),
        ("networking.k8s.io", "NetworkPolicy") => (
            vec![
                name,
                json!(format_label_selector(o.get("spec").get("podSelector").0)),
                age,
            ],
            None,
        ),
        ("discovery.k8s.io", "EndpointSlice") => (
            vec![
                name,
                json!(o.get("addressType").str()),
                json!(format_discovery_ports(o.get("ports"))),
                json!(format_discovery_endpoints(o.get("endpoints"))),
                age,
            ],
            None,
        ),
        _ => {
            let created = o.get("metadata").get("creationTimestamp").str();
            (vec![name, json!(created)], None)
        }
    }
}

/// Upstream `formatEndpoints`: up to three `ip:port` pairs of ready addresses, then
/// `+ N more...`; `<none>` without subsets.
fn format_endpoints(o: V<'_>) -> String {
    const MAX: usize = 3;
    let subsets = o.get("subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for subset in subsets.items() {
        let addresses: Vec<&str> = subset
            .get("addresses")
            .items()
            .map(|a| a.get("ip").str())
            .collect();
        let ports: Vec<i64> = subset
            .get("ports")
            .items()
            .map(|p| p.get("port").int0())
            .collect();
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for ip in &addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(ip.to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for ip in &addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(ip, port));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// Go's `net.JoinHostPort`: brackets around IPv6 hosts.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Upstream `formatDiscoveryPorts`: port numbers (or names, or `*`), three at most.
fn format_discovery_ports(ports: V<'_>) -> String {
    let list = ports.items().map(|p| {
        if let Some(n) = p.get("port").int() {
            n.to_string()
        } else if p.get("name").present() {
            p.get("name").str().to_string()
        } else {
            "*".to_string()
        }
    });
    list_with_more(list.collect())
}

/// Upstream `formatDiscoveryEndpoints`: the endpoints' addresses, three at most.
fn format_discovery_endpoints(endpoints: V<'_>) -> String {
    let list = endpoints
        .items()
        .flat_map(|e| e.get("addresses").strings())
        .map(str::to_string);
    list_with_more(list.collect())
}

/// Upstream `listWithMoreString` with a maximum of three: `a,b,c + 2 more...`, `<unset>`
/// when empty.
fn list_with_more(list: Vec<String>) -> String {
    const MAX: usize = 3;
    let count = list.len();
    let joined = list[..count.min(MAX)].join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

/// Upstream `duration.HumanDuration`: `5s`, `3m20s`, `15m`, `2h5m`, `3d4h`, `2y100d`...
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

fn parse_time(v: V<'_>) -> Option<Timestamp> {
    v.0.and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
}

/// Upstream `translateTimestampSince`: `<unknown>` for a missing time.
fn age_of(ts: V<'_>, now: Timestamp) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(seconds_between(t, now)),
        None => "<unknown>".to_string(),
    }
}

fn seconds_between(from: Timestamp, to: Timestamp) -> i64 {
    to.as_second() - from.as_second() - i64::from(to.subsec_nanosecond() < from.subsec_nanosecond())
}

fn layout_containers(containers: V<'_>) -> (String, String) {
    let names: Vec<&str> = containers.items().map(|c| c.get("name").str()).collect();
    let images: Vec<&str> = containers.items().map(|c| c.get("image").str()).collect();
    (names.join(","), images.join(","))
}

/// `labels.FormatLabels`: `a=b,c=d` sorted, `<none>` when empty.
fn format_labels(labels: V<'_>) -> String {
    let mut parts: Vec<String> = labels
        .string_map()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.sort();
    if parts.is_empty() {
        "<none>".to_string()
    } else {
        parts.join(",")
    }
}

fn requirement_string(key: &str, operator: &str, values: &[&str]) -> String {
    let mut sorted: Vec<&str> = values.to_vec();
    sorted.sort_unstable();
    let joined = sorted.join(",");
    match operator {
        "In" => format!("{key} in ({joined})"),
        "NotIn" => format!("{key} notin ({joined})"),
        "Exists" => key.to_string(),
        "DoesNotExist" => format!("!{key}"),
        "Equals" => format!("{key}={joined}"),
        _ => key.to_string(),
    }
}

/// `labels.Selector.String()` of a `LabelSelector`: requirements sorted by key, `""` for an
/// empty or absent selector.
fn selector_string(selector: V<'_>) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in selector.get("matchLabels").string_map() {
        reqs.push((k.to_string(), requirement_string(k, "Equals", &[v])));
    }
    for e in selector.get("matchExpressions").items() {
        let key = e.get("key").str();
        let values = e.get("values").strings();
        reqs.push((
            key.to_string(),
            requirement_string(key, e.get("operator").str(), &values),
        ));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter()
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector string, `<none>` when empty.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let s = selector_string(V(selector));
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

fn pod(o: V<'_>, now: Timestamp) -> (Vec<Value>, Option<Value>) {
    let spec = o.get("spec");
    let status = o.get("status");
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut total = spec.get("containers").len();
    let mut ready = 0usize;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let phase = status.get("phase").str();
    let mut reason = if status.get("reason").str().is_empty() {
        phase.to_string()
    } else {
        status.get("reason").str().to_string()
    };
    for c in status.get("conditions").items() {
        if c.get("type").str() == "PodScheduled" && c.get("reason").str() == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }
    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };
    let init_specs: Vec<V<'_>> = spec.get("initContainers").items().collect();
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| c.get("name").str() == name && c.get("restartPolicy").str() == "Always")
    };
    total += init_specs
        .iter()
        .filter(|c| c.get("restartPolicy").str() == "Always")
        .count();
    let later = |cur: Option<Timestamp>, t: Option<Timestamp>| match (cur, t) {
        (Some(a), Some(b)) if b > a => Some(b),
        (None, Some(b)) => Some(b),
        (a, _) => a,
    };

    let mut initializing = false;
    let init_count = init_specs.len();
    for (i, c) in status.get("initContainerStatuses").items().enumerate() {
        restarts += c.get("restartCount").int0();
        let last_term = c.get("lastState").get("terminated");
        if last_term.present() {
            last_restart = later(last_restart, parse_time(last_term.get("finishedAt")));
        }
        let name = c.get("name").str();
        if is_sidecar(name) {
            sidecar_restarts += c.get("restartCount").int0();
            if last_term.present() {
                last_sidecar_restart = later(
                    last_sidecar_restart,
                    parse_time(last_term.get("finishedAt")),
                );
            }
        }
        let terminated = c.get("state").get("terminated");
        let waiting = c.get("state").get("waiting");
        if terminated.present() && terminated.get("exitCode").int0() == 0 {
            continue;
        }
        if is_sidecar(name) && c.get("started").bool() == Some(true) {
            if c.get("ready").bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if terminated.present() {
            reason = if terminated.get("reason").str().is_empty() {
                if terminated.get("signal").int0() != 0 {
                    format!("Init:Signal:{}", terminated.get("signal").int0())
                } else {
                    format!("Init:ExitCode:{}", terminated.get("exitCode").int0())
                }
            } else {
                format!("Init:{}", terminated.get("reason").str())
            };
        } else if !waiting.get("reason").str().is_empty()
            && waiting.get("reason").str() != "PodInitializing"
        {
            reason = format!("Init:{}", waiting.get("reason").str());
        } else {
            reason = format!("Init:{i}/{init_count}");
        }
        initializing = true;
        break;
    }

    let initialized = status
        .get("conditions")
        .items()
        .any(|c| c.get("type").str() == "Initialized" && c.get("status").str() == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        let statuses: Vec<V<'_>> = status.get("containerStatuses").items().collect();
        for c in statuses.iter().rev() {
            restarts += c.get("restartCount").int0();
            let last_term = c.get("lastState").get("terminated");
            if last_term.present() {
                last_restart = later(last_restart, parse_time(last_term.get("finishedAt")));
            }
            let waiting = c.get("state").get("waiting");
            let terminated = c.get("state").get("terminated");
            if waiting.present() && !waiting.get("reason").str().is_empty() {
                reason = waiting.get("reason").str().to_string();
            } else if terminated.present() && !terminated.get("reason").str().is_empty() {
                reason = terminated.get("reason").str().to_string();
            } else if terminated.present() {
                reason = if terminated.get("signal").int0() != 0 {
                    format!("Signal:{}", terminated.get("signal").int0())
                } else {
                    format!("ExitCode:{}", terminated.get("exitCode").int0())
                };
            } else if c.get("ready").bool() == Some(true) && c.get("state").get("running").present()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status
                .get("conditions")
                .items()
                .any(|c| c.get("type").str() == "Ready" && c.get("status").str() == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = o.get("metadata").get("deletionTimestamp").present();
    if deleting && status.get("reason").str() == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".to_string();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(seconds_between(t, now))
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = status
        .get("podIPs")
        .items()
        .next()
        .map(|ip| ip.get("ip").str())
        .filter(|s| !s.is_empty())
        .or_else(|| Some(status.get("podIP").str()).filter(|s| !s.is_empty()))
        .unwrap_or("<none>");
    let node = Some(spec.get("nodeName").str())
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let nominated = Some(status.get("nominatedNodeName").str())
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let gates = spec.get("readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .items()
            .filter(|g| {
                let ty = g.get("conditionType").str();
                status
                    .get("conditions")
                    .items()
                    .find(|c| c.get("type").str() == ty)
                    .is_some_and(|c| c.get("status").str() == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    let cells = vec![
        json!(o.get("metadata").get("name").str()),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(age_of(o.get("metadata").get("creationTimestamp"), now)),
        json!(pod_ip),
        json!(node),
        json!(nominated),
        json!(readiness_gates),
    ];
    (cells, conditions)
}

fn node(o: V<'_>, now: Timestamp) -> Vec<Value> {
    let status = o.get("status");
    let mut states: Vec<String> = Vec::new();
    if let Some(c) = status
        .get("conditions")
        .items()
        .find(|c| c.get("type").str() == "Ready")
    {
        if c.get("status").str() == "True" {
            states.push("Ready".to_string());
        } else {
            states.push("NotReady".to_string());
        }
    }
    if states.is_empty() {
        states.push("Unknown".to_string());
    }
    if o.get("spec").get("unschedulable").bool() == Some(true) {
        states.push("SchedulingDisabled".to_string());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in o.get("metadata").get("labels").string_map() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.push(v.to_string());
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |ty: &str| {
        status
            .get("addresses")
            .items()
            .find(|a| a.get("type").str() == ty)
            .map_or("<none>".to_string(), |a| a.get("address").str().to_string())
    };
    let info = status.get("nodeInfo");
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "<unknown>".to_string()
        } else {
            s.to_string()
        }
    };
    vec![
        json!(o.get("metadata").get("name").str()),
        json!(states.join(",")),
        json!(roles),
        json!(age_of(o.get("metadata").get("creationTimestamp"), now)),
        json!(info.get("kubeletVersion").str()),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(info.get("osImage").str())),
        json!(or_unknown(info.get("kernelVersion").str())),
        json!(or_unknown(info.get("containerRuntimeVersion").str())),
    ]
}

fn event(o: V<'_>, now: Timestamp) -> Vec<Value> {
    let first = if o.get("firstTimestamp").present() {
        age_of(o.get("firstTimestamp"), now)
    } else {
        age_of(o.get("eventTime"), now)
    };
    let mut last = if o.get("lastTimestamp").present() {
        age_of(o.get("lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = o.get("count").int0();
    let series = o.get("series");
    if series.present() {
        last = age_of(series.get("lastObservedTime"), now);
        count = series.get("count").int0();
    } else if count == 0 {
        count = 1;
    }
    let involved = o.get("involvedObject");
    let kind = involved.get("kind").str().to_lowercase();
    let target = if involved.get("name").str().is_empty() {
        kind
    } else {
        format!("{kind}/{}", involved.get("name").str())
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        o.get("source").get("component").str(),
        o.get("reportingComponent").str(),
    );
    let instance = first_non_empty(
        o.get("source").get("host").str(),
        o.get("reportingInstance").str(),
    );
    let source = match (component.is_empty(), instance.is_empty()) {
        (true, true) => String::new(),
        (_, true) => component,
        _ => format!("{component}, {instance}"),
    };
    vec![
        json!(last),
        json!(o.get("type").str()),
        json!(o.get("reason").str()),
        json!(target),
        json!(involved.get("fieldPath").str()),
        json!(source),
        json!(o.get("message").str().trim()),
        json!(first),
        json!(count),
        json!(o.get("metadata").get("name").str()),
    ]
}

fn service(o: V<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let ty = spec.get("type").str();
    let cluster_ip = spec
        .get("clusterIPs")
        .items()
        .next()
        .map(|v| v.str())
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let external_ips: Vec<&str> = spec.get("externalIPs").strings();
    let lb: Vec<String> = o
        .get("status")
        .get("loadBalancer")
        .get("ingress")
        .items()
        .filter_map(|i| {
            let ip = i.get("ip").str();
            let host = i.get("hostname").str();
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all: Vec<String> = lb.clone();
            all.extend(external_ips.iter().map(|s| s.to_string()));
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => spec.get("externalName").str().to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = spec
        .get("ports")
        .items()
        .map(|p| {
            let port = p.get("port").int0();
            let protocol = p.get("protocol").str();
            match p.get("nodePort").int0() {
                0 => format!("{port}/{protocol}"),
                np => format!("{port}:{np}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        json!(o.get("metadata").get("name").str()),
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(ports),
        json!(age_of(o.get("metadata").get("creationTimestamp"), now)),
        json!(format_labels(spec.get("selector"))),
    ]
}

fn job(o: V<'_>, now: Timestamp) -> Vec<Value> {
    let spec = o.get("spec");
    let status = o.get("status");
    let succeeded = status.get("succeeded").int0();
    let completions = match spec.get("completions").int() {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = spec.get("parallelism").int0();
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = parse_time(status.get("startTime"));
    let duration = match (start, parse_time(status.get("completionTime"))) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(seconds_between(s, now)),
        (Some(s), Some(c)) => human_duration(seconds_between(s, c)),
    };
    let has = |ty: &str| {
        status
            .get("conditions")
            .items()
            .any(|c| c.get("type").str() == ty && c.get("status").str() == "True")
    };
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o.get("metadata").get("deletionTimestamp").present() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (containers, images) =
        layout_containers(spec.get("template").get("spec").get("containers"));
    vec![
        json!(o.get("metadata").get("name").str()),
        json!(state),
        json!(completions),
        json!(duration),
        json!(age_of(o.get("metadata").get("creationTimestamp"), now)),
        json!(containers),
        json!(images),
        json!(format_label_selector(spec.get("selector").0)),
    ]
}
