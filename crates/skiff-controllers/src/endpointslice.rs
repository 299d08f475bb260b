//! The EndpointSlice controller (upstream `endpointslice-controller`,
//! `pkg/controller/endpointslice` and `k8s.io/endpointslice`): for every Service with a
//! selector, IPv4 EndpointSlices listing the selected pods.
//!
//! Slices are named `<service>-<random>` (generateName), labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, and controlled
//! by the Service (the garbage collector removes them with it). Endpoints are grouped by their
//! resolved ports (a named `targetPort` may resolve differently per pod, or not at all), at
//! most [`MAX_ENDPOINTS_PER_SLICE`] per slice; endpoints stay in the slice they are in, so a
//! readiness change rewrites one slice. A Service selecting nothing keeps one empty
//! placeholder slice, as upstream. Services without a selector, and ExternalName Services, are
//! left to their owners.
//!
//! [`plan_slices`] is the pure part (what to create, update and delete); [`reconcile`]
//! applies it through the API. Pod, Service and slice changes all trigger the Service, so a
//! pod failing its readiness probe leaves the slices as soon as the kubelet reports it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::error::{is_not_found, ApiContext};
use crate::informer::{object_ref, Informer, BY_NAMESPACE};
use crate::util::meta::{controller_ref, name_of, namespace_of};
use crate::util::pods;
use crate::Error;

/// Component name in logs.
pub const COMPONENT: &str = "endpointslice-controller";
/// Label naming the Service of a slice.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label upstream puts on the slices (and Endpoints) of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Index of slices by `namespace/service`.
pub const BY_SERVICE: &str = "service";
/// How long a reconcile waits for the cache to show its own writes before looking again.
const STALE_CACHE_RETRY: Duration = Duration::from_millis(200);

/// Index function for [`BY_SERVICE`]: `namespace/<kubernetes.io/service-name>`.
pub fn service_index(slice: &EndpointSlice) -> Vec<String> {
    match slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
    {
        Some(service) => vec![format!("{}/{service}", namespace_of(&slice.metadata))],
        None => Vec::new(),
    }
}

/// What to write so a Service's slices match its pods.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlicePlan {
    /// New slices (with `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (names and resourceVersions kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl SlicePlan {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Whether this controller (and the Endpoints controller) manages the Service's endpoints:
/// it has a selector and is not ExternalName.
pub fn has_selector(service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// Whether the Service's selector selects `pod` (same namespace, every label equal).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    if namespace_of(&service.metadata) != namespace_of(&pod.metadata) {
        return false;
    }
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Upstream `ShouldPodBeInEndpoints`: not finished, has an IP, and (unless
/// `include_terminating`) not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if pods::is_terminal(pod) || pod_ipv4(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPv4 address (`status.podIPs`, else `status.podIP`).
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let from_list = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok());
    from_list
        .or(status
            .pod_ip
            .as_deref()
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()))
        .map(str::to_string)
}

/// Upstream `podutil.FindPort`: the container port a Service port's `targetPort` means on
/// `pod` (a number as it is; a name looked up among the containers' ports of the same
/// protocol), or `None` when the name does not resolve.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Upstream `getEndpointPorts`: the Service's ports as resolved on `pod`; ports that do not
/// resolve are left out (so such pods land in slices of their own).
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|p| {
            let number = find_port(pod, p)?;
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

/// Upstream `ShouldSetHostname`: the pod asked for a hostname under this Service's name.
pub fn hostname_for(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(name_of(&service.metadata))
        && namespace_of(&service.metadata) == namespace_of(&pod.metadata))
    .then(|| hostname.to_string())
}

/// The `targetRef` of a pod's endpoint.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(namespace_of(&pod.metadata).to_string()),
        name: Some(name_of(&pod.metadata).to_string()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Upstream `podToEndpoint`: serving = pod Ready; terminating = being deleted; ready =
/// serving and not terminating, or always with `publishNotReadyAddresses`.
fn pod_endpoint(service: &Service, pod: &Pod, ip: String) -> Endpoint {
    let serving = pods::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(service, pod),
        node_name: Some(pods::node_name(pod).to_string()).filter(|n| !n.is_empty()),
        target_ref: Some(pod_reference(pod)),
        ..Default::default()
    }
}

/// The labels of a Service's slices: the Service's own (but the reserved two), the service
/// name, the manager, and the headless marker.
pub fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != LABEL_SERVICE_NAME && k != LABEL_MANAGED_BY)
        .collect();
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        name_of(&service.metadata).to_string(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// Key of a port list (slices group endpoints by it).
fn ports_key(ports: &[EndpointPort]) -> String {
    let mut parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP"),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// What identifies an endpoint's pod across rewrites.
fn endpoint_id(endpoint: &Endpoint) -> String {
    match endpoint.target_ref.as_ref() {
        Some(r) => format!("pod/{}", r.name.as_deref().unwrap_or("")),
        None => format!("addr/{}", endpoint.addresses.join(",")),
    }
}

/// The fields this controller writes, to compare endpoints regardless of fields the server
/// fills in.
fn endpoint_view(e: &Endpoint) -> impl PartialEq + '_ {
    let c = e.conditions.as_ref();
    (
        &e.addresses,
        c.and_then(|c| c.ready),
        c.and_then(|c| c.serving),
        c.and_then(|c| c.terminating),
        &e.hostname,
        &e.node_name,
        e.target_ref
            .as_ref()
            .map(|r| (r.name.as_deref(), r.uid.as_deref())),
    )
}

fn same_endpoints(a: &[Endpoint], b: &[Endpoint]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| endpoint_view(x) == endpoint_view(y))
}

/// The desired endpoints of a Service, grouped by resolved ports: key → (ports, endpoints
/// sorted by pod name).
fn desired_groups(
    service: &Service,
    pods: &[Arc<Pod>],
) -> BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    let mut selected: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| selects(service, p) && should_be_in_endpoints(p, true))
        .collect();
    selected.sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
    for pod in selected {
        let Some(ip) = pod_ipv4(pod) else { continue };
        let ports = endpoint_ports(service, pod);
        let group = groups
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()));
        group.1.push(pod_endpoint(service, pod, ip));
    }
    groups
}

/// A new slice of `service` (named by the server from `generateName`).
fn new_slice(
    service: &Service,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", name_of(&service.metadata))),
            namespace: Some(namespace_of(&service.metadata).to_string()),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![controller_ref(service)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

/// What to create, update and delete so that `existing` (the slices this controller manages
/// for `service`) list the selected, addressable `pods`.
pub fn plan_slices(
    service: &Service,
    pods: &[Arc<Pod>],
    existing: &[Arc<EndpointSlice>],
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let groups = desired_groups(service, pods);
    let labels = slice_labels(service);
    let owner = controller_ref(service);

    let mut by_key: HashMap<String, Vec<&Arc<EndpointSlice>>> = HashMap::new();
    for slice in existing {
        if slice.address_type != "IPv4" {
            plan.delete.push(name_of(&slice.metadata).to_string());
            continue;
        }
        let key = ports_key(slice.ports.as_deref().unwrap_or_default());
        by_key.entry(key).or_default().push(slice);
    }
    for slices in by_key.values_mut() {
        slices.sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
    }

    for (key, (ports, endpoints)) in &groups {
        let current = by_key.remove(key).unwrap_or_default();
        let mut pool: BTreeMap<String, &Endpoint> =
            endpoints.iter().map(|e| (endpoint_id(e), e)).collect();
        // Endpoints stay where they are.
        let mut kept: Vec<Vec<Endpoint>> = current
            .iter()
            .map(|slice| {
                let mut seen = HashSet::new();
                slice
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        let id = endpoint_id(e);
                        if !seen.insert(id.clone()) {
                            return None;
                        }
                        pool.remove(&id).cloned()
                    })
                    .take(MAX_ENDPOINTS_PER_SLICE)
                    .collect()
            })
            .collect();
        // New endpoints fill the existing slices, then new ones.
        let mut rest = pool.into_values().cloned();
        for endpoints in kept.iter_mut() {
            if endpoints.is_empty() {
                continue;
            }
            while endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                match rest.next() {
                    Some(e) => endpoints.push(e),
                    None => break,
                }
            }
        }
        let rest: Vec<Endpoint> = rest.collect();
        let mut rest = rest.into_iter().peekable();
        for endpoints in kept.iter_mut() {
            if !endpoints.is_empty() {
                continue;
            }
            endpoints.extend(rest.by_ref().take(MAX_ENDPOINTS_PER_SLICE));
        }
        for (slice, endpoints) in current.iter().zip(kept) {
            if endpoints.is_empty() {
                plan.delete.push(name_of(&slice.metadata).to_string());
                continue;
            }
            let mut endpoints = endpoints;
            endpoints.sort_by_key(endpoint_id);
            let fresh = slice.metadata.labels.clone().unwrap_or_default() == labels
                && slice.metadata.owner_references.as_deref() == Some(&[owner.clone()][..])
                && same_endpoints(&slice.endpoints, &endpoints);
            if !fresh {
                let mut updated = slice.as_ref().clone();
                updated.metadata.labels = Some(labels.clone());
                updated.metadata.owner_references = Some(vec![owner.clone()]);
                updated.endpoints = endpoints;
                updated.ports = Some(ports.clone());
                plan.update.push(updated);
            }
        }
        while rest.peek().is_some() {
            let chunk: Vec<Endpoint> = rest.by_ref().take(MAX_ENDPOINTS_PER_SLICE).collect();
            plan.create.push(new_slice(service, ports.clone(), chunk));
        }
    }
    for slices in by_key.into_values() {
        for slice in slices {
            plan.delete.push(name_of(&slice.metadata).to_string());
        }
    }

    // A Service with no endpoints keeps one empty placeholder slice.
    let survivors = existing.len() - plan.delete.len();
    if survivors == 0 && plan.create.is_empty() {
        let placeholder = existing.iter().find(|s| {
            s.address_type == "IPv4"
                && s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or_default().is_empty()
        });
        match placeholder {
            Some(slice) => {
                let name = name_of(&slice.metadata);
                plan.delete.retain(|n| n != name);
                if slice.metadata.labels.clone().unwrap_or_default() != labels {
                    let mut updated = slice.as_ref().clone();
                    updated.metadata.labels = Some(labels.clone());
                    plan.update.push(updated);
                }
            }
            None => plan.create.push(new_slice(service, Vec::new(), Vec::new())),
        }
    }
    plan.delete.sort();
    plan
}

/// The slices this controller manages for `service`, from the cache.
fn managed_slices(slices: &Informer<EndpointSlice>, service: &Service) -> Vec<Arc<EndpointSlice>> {
    let key = format!(
        "{}/{}",
        namespace_of(&service.metadata),
        name_of(&service.metadata)
    );
    slices
        .indexed(BY_SERVICE, &key)
        .into_iter()
        .filter(|s| managed_by(s) == Some(MANAGED_BY))
        .collect()
}

/// The Services (in the cache) whose endpoints may involve `pod`: those selecting it now, and
/// those whose slices list it (it may have stopped matching).
fn services_of_pod(
    services: &Informer<Service>,
    slices: &Informer<EndpointSlice>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let namespace = namespace_of(&pod.metadata);
    let name = name_of(&pod.metadata);
    let mut out: Vec<ObjectRef<Service>> = services
        .indexed(BY_NAMESPACE, namespace)
        .iter()
        .filter(|s| selects(s, pod))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect();
    for slice in slices.indexed(BY_NAMESPACE, namespace) {
        let lists_pod = slice.endpoints.iter().any(|e| {
            e.target_ref
                .as_ref()
                .is_some_and(|r| r.name.as_deref() == Some(name))
        });
        if lists_pod {
            if let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
            {
                out.push(object_ref(namespace, service));
            }
        }
    }
    out
}

/// Writes this controller made that the cache may not show yet: per Service, slice name →
/// resourceVersion written (`None` for deleted).
/// Records older than [`WRITTEN_TTL`] are dropped (someone else may have removed the slice).
type Written = Mutex<HashMap<String, (Instant, HashMap<String, Option<String>>)>>;
/// How long a write is waited for in the cache at most.
const WRITTEN_TTL: Duration = Duration::from_secs(10);

struct Ctx {
    client: Client,
    pods: Informer<Pod>,
    slices: Informer<EndpointSlice>,
    written: Written,
}

/// Starts the controller. `services` and `pods` must carry the [`BY_NAMESPACE`] index;
/// `slices` the [`BY_NAMESPACE`] and [`BY_SERVICE`] indexes.
pub fn start(
    client: Client,
    services: &Informer<Service>,
    pods: &Informer<Pod>,
    slices: &Informer<EndpointSlice>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let store = services.store();
    let (svc, sl) = (services.clone(), slices.clone());
    let from_pods = pods.triggers(store.clone(), move |change| match change.object() {
        Some(pod) => services_of_pod(&svc, &sl, pod),
        None => Vec::new(),
    });
    let from_slices = slices.triggers(store, |change| match change.object() {
        Some(slice) => service_of_slice(slice),
        None => Vec::new(),
    });
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.clone(),
        slices: slices.clone(),
        written: Mutex::new(HashMap::new()),
    });
    crate::runner::spawn(
        tasks,
        COMPONENT,
        services,
        vec![from_pods.boxed(), from_slices.boxed()],
        reconcile,
        ctx,
        concurrency,
    );
}

/// The `endpointslice.kubernetes.io/managed-by` label of a slice.
pub fn managed_by(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .map(String::as_str)
}

/// The Service (or, for mirrored slices, the Endpoints) a slice belongs to: its
/// `kubernetes.io/service-name` label in its namespace.
pub fn service_of_slice<P: kube::Resource<DynamicType = ()>>(
    slice: &EndpointSlice,
) -> Vec<ObjectRef<P>> {
    match slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
    {
        Some(service) => vec![object_ref(namespace_of(&slice.metadata), service)],
        None => Vec::new(),
    }
}

/// Whether the cache shows every write recorded for the Service (forgetting those it shows).
fn cache_caught_up(ctx: &Ctx, key: &str, existing: &[Arc<EndpointSlice>]) -> bool {
    let mut written = ctx.written.lock().unwrap_or_else(|e| e.into_inner());
    let Some((at, expected)) = written.get_mut(key) else {
        return true;
    };
    if at.elapsed() > WRITTEN_TTL {
        written.remove(key);
        return true;
    }
    let rv_of = |name: &str| {
        existing
            .iter()
            .find(|s| name_of(&s.metadata) == name)
            .map(|s| s.metadata.resource_version.clone().unwrap_or_default())
    };
    expected.retain(|name, rv| match (rv.as_deref(), rv_of(name)) {
        // Deleted: caught up once gone.
        (None, seen) => seen.is_some(),
        // Written: caught up once that version (or a newer one) is seen.
        (Some(want), Some(seen)) => !newer_or_same(&seen, want),
        (Some(_), None) => true,
    });
    let done = expected.is_empty();
    if done {
        written.remove(key);
    }
    done
}

/// Whether resourceVersion `seen` is `want` or later (numeric when both are numbers).
fn newer_or_same(seen: &str, want: &str) -> bool {
    match (seen.parse::<u64>(), want.parse::<u64>()) {
        (Ok(s), Ok(w)) => s >= w,
        _ => seen == want,
    }
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !has_selector(&service) {
        return Ok(Action::await_change());
    }
    let namespace = namespace_of(&service.metadata).to_string();
    let name = name_of(&service.metadata).to_string();
    let key = format!("{namespace}/{name}");
    let existing = managed_slices(&ctx.slices, &service);
    if !cache_caught_up(&ctx, &key, &existing) {
        return Ok(Action::requeue(STALE_CACHE_RETRY));
    }
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pods = ctx.pods.indexed(BY_NAMESPACE, &namespace);
    let plan = plan_slices(&service, &pods, &existing);
    if plan.is_empty() {
        return Ok(Action::await_change());
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut written: HashMap<String, Option<String>> = HashMap::new();
    let result = apply(&api, &key, plan, &mut written).await;
    if !written.is_empty() {
        ctx.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), written));
    }
    result.map(|()| Action::await_change())
}

async fn apply(
    api: &Api<EndpointSlice>,
    key: &str,
    plan: SlicePlan,
    written: &mut HashMap<String, Option<String>>,
) -> Result<(), Error> {
    for slice in &plan.update {
        let name = name_of(&slice.metadata).to_string();
        let updated = api
            .replace(&name, &PostParams::default(), slice)
            .await
            .context(|| format!("update EndpointSlice {key} {name}"))?;
        written.insert(name, updated.metadata.resource_version);
    }
    for slice in &plan.create {
        let created = api
            .create(&PostParams::default(), slice)
            .await
            .context(|| format!("create EndpointSlice for Service {key}"))?;
        written.insert(
            name_of(&created.metadata).to_string(),
            created.metadata.resource_version,
        );
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).context(|| format!("delete EndpointSlice {key} {name}")),
        }
        written.insert(name.clone(), None);
    }
    tracing::debug!(service = key, "endpoint slices written");
    Ok(())
}

#[cfg(test)]
mod tests;
