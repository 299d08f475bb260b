//! The EndpointSlice mirroring controller (upstream `endpointslice-mirroring-controller`,
//! `pkg/controller/endpointslicemirroring`): the Endpoints a user writes by hand for a
//! Service *without a selector* are mirrored into EndpointSlices, so the service proxy and
//! the cluster DNS — which read slices only — route them.
//!
//! As upstream: Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` (the
//! Endpoints controller's and the `kubernetes` Service's) or carrying a leader-election
//! annotation are not mirrored, nor are those whose Service is missing or has a selector (their
//! mirrored slices are deleted). Each subset's addresses — ready ones, then `notReadyAddresses`
//! (`conditions.ready` false) — become endpoints of one slice per address type and port set,
//! at most [`MAX_ENDPOINTS_PER_SUBSET`] per subset (`--mirroring-max-endpoints-per-subset`);
//! the rest are skipped with a `TooManyAddressesToMirror` warning event on the Endpoints, and
//! addresses that are not IPs with `InvalidIPAddress`. Slices are named `<endpoints>-<random>`,
//! carry the Endpoints' labels and annotations (but the trigger-time and last-applied ones)
//! plus `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslicemirroring-controller.k8s.io`, and are controlled by the Endpoints, so the
//! garbage collector removes them when the Endpoints go. Slices managed by anyone else are
//! never touched.
//!
//! [`plan_mirror`] is the pure part; [`reconcile`] applies it through the API.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Client};

use crate::endpoints::LABEL_SKIP_MIRROR;
use crate::endpointslice::{
    managed_by, service_of_slice, BY_SERVICE, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};
use crate::error::{is_not_found, ApiContext};
use crate::events::{EventType, Recorder};
use crate::informer::{same_name, Informer};
use crate::util::meta::{controller_ref, name_of, namespace_of};
use crate::Error;

/// Component name in logs and events.
pub const COMPONENT: &str = "endpoint-slice-mirroring-controller";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream's `--mirroring-max-endpoints-per-subset` default.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
/// Annotation of leader-election Endpoints (never mirrored).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Annotations of the Endpoints that are not copied to the slices.
const NOT_COPIED: [&str; 2] = [
    "endpoints.kubernetes.io/last-change-trigger-time",
    "kubectl.kubernetes.io/last-applied-configuration",
];
/// Event reason: addresses beyond [`MAX_ENDPOINTS_PER_SUBSET`] were skipped.
pub const TOO_MANY_ADDRESSES: &str = "TooManyAddressesToMirror";
/// Event reason: addresses that are not IPs were skipped.
pub const INVALID_IP_ADDRESS: &str = "InvalidIPAddress";

/// What to write so the mirrored slices of one Endpoints match it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MirrorPlan {
    /// New slices (with `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (names and resourceVersions kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
    /// Addresses left out because a subset had more than the limit.
    pub skipped_over_limit: usize,
    /// Addresses left out because they are not IPs.
    pub invalid: usize,
}

impl MirrorPlan {
    /// Whether nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Upstream `shouldMirror` plus the Service checks of `syncEndpoints`: the Endpoints are not
/// marked skip-mirror or leader election, and their Service exists without a selector.
pub fn should_mirror(endpoints: &Endpoints, service: Option<&Service>) -> bool {
    let meta = &endpoints.metadata;
    let skip = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let leader = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    let selectorless = service.is_some_and(|s| {
        s.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none_or(|s| s.is_empty())
    });
    !skip && !leader && selectorless
}

/// The desired endpoints of one address type and port set.
struct Group {
    address_type: &'static str,
    ports: Vec<EndpointPort>,
    /// address → endpoint (a later duplicate replaces an earlier one, as upstream's set).
    endpoints: BTreeMap<IpAddr, Endpoint>,
}

/// Key of an address type and port list (slices are grouped by it).
fn group_key(address_type: &str, ports: &[EndpointPort]) -> String {
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
    format!("{address_type}:{}", parts.join(","))
}

/// Upstream `addressToEndpoint`: the address re-written canonically, `ready` as given, the
/// address's target, node and hostname.
fn address_endpoint(address: &EndpointAddress, ip: IpAddr, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        target_ref: address.target_ref.clone(),
        node_name: address.node_name.clone(),
        hostname: address.hostname.clone().filter(|h| !h.is_empty()),
        ..Default::default()
    }
}

/// The desired groups of `endpoints` (key → group) and the addresses skipped (over the
/// limit, invalid).
fn desired_groups(endpoints: &Endpoints, max: usize) -> (BTreeMap<String, Group>, usize, usize) {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let (mut skipped, mut invalid) = (0, 0);
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        // Both address types get a group, so slices of a type no longer listed are deleted.
        for address_type in ["IPv4", "IPv6"] {
            groups
                .entry(group_key(address_type, &ports))
                .or_insert_with(|| Group {
                    address_type,
                    ports: ports.clone(),
                    endpoints: BTreeMap::new(),
                });
        }
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        let mut added = 0;
        for (address, is_ready) in ready.chain(not_ready) {
            if added >= max {
                skipped += 1;
                continue;
            }
            let Ok(ip) = address.ip.trim().parse::<IpAddr>() else {
                invalid += 1;
                continue;
            };
            let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            if let Some(group) = groups.get_mut(&group_key(address_type, &ports)) {
                group
                    .endpoints
                    .insert(ip, address_endpoint(address, ip, is_ready));
            }
            added += 1;
        }
    }
    (groups, skipped, invalid)
}

/// The labels of a mirrored slice: the Endpoints', the service name and the manager.
pub fn mirror_labels(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        name_of(&endpoints.metadata).to_string(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    labels
}

/// The annotations of a mirrored slice: the Endpoints' but the trigger time and
/// last-applied configuration.
fn mirror_annotations(endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    for key in NOT_COPIED {
        annotations.remove(key);
    }
    annotations
}

/// The fields this controller writes, to compare endpoints regardless of fields the server
/// fills in.
type EndpointView<'a> = (
    &'a [String],
    Option<bool>,
    Option<&'a str>,
    Option<&'a str>,
    Option<(Option<&'a str>, Option<&'a str>, Option<&'a str>)>,
);

fn endpoint_view(e: &Endpoint) -> EndpointView<'_> {
    (
        &e.addresses,
        e.conditions.as_ref().and_then(|c| c.ready),
        e.hostname.as_deref(),
        e.node_name.as_deref(),
        e.target_ref
            .as_ref()
            .map(|r| (r.kind.as_deref(), r.name.as_deref(), r.namespace.as_deref())),
    )
}

/// Whether `slice` already says what `desired` says (endpoints in any order).
fn up_to_date(slice: &EndpointSlice, desired: &EndpointSlice) -> bool {
    let mut have: Vec<EndpointView<'_>> = slice.endpoints.iter().map(endpoint_view).collect();
    let mut want: Vec<EndpointView<'_>> = desired.endpoints.iter().map(endpoint_view).collect();
    have.sort();
    want.sort();
    have == want
        && slice.metadata.labels.clone().unwrap_or_default()
            == desired.metadata.labels.clone().unwrap_or_default()
        && slice.metadata.annotations.clone().unwrap_or_default()
            == desired.metadata.annotations.clone().unwrap_or_default()
        && slice.metadata.owner_references == desired.metadata.owner_references
}

/// What to create, update and delete so that `existing` (the slices this controller mirrored
/// for the Endpoints' name) match `endpoints`, or go when `mirror` is false (see
/// [`should_mirror`]). One slice per address type and port set, holding at most `max`
/// endpoints; extra slices of a set are deleted, and a slice that would be deleted is reused
/// for one that would be created (upstream `recycleSlices`).
pub fn plan_mirror(
    endpoints: &Endpoints,
    mirror: bool,
    existing: &[Arc<EndpointSlice>],
    max: usize,
) -> MirrorPlan {
    let mut plan = MirrorPlan::default();
    let mut existing: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    existing.sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
    if !mirror {
        plan.delete = existing
            .iter()
            .map(|s| name_of(&s.metadata).to_string())
            .collect();
        return plan;
    }
    let (groups, skipped, invalid) = desired_groups(endpoints, max);
    plan.skipped_over_limit = skipped;
    plan.invalid = invalid;

    let mut by_key: HashMap<String, Vec<&Arc<EndpointSlice>>> = HashMap::new();
    for slice in existing {
        let key = group_key(
            &slice.address_type,
            slice.ports.as_deref().unwrap_or_default(),
        );
        by_key.entry(key).or_default().push(slice);
    }
    let labels = mirror_labels(endpoints);
    let annotations = mirror_annotations(endpoints);
    let owner = controller_ref(endpoints);
    // Deleted slices of each address type, for recycling.
    let mut deleted: Vec<&Arc<EndpointSlice>> = Vec::new();
    let mut created: Vec<EndpointSlice> = Vec::new();
    for (key, group) in groups {
        let current = by_key.remove(&key).unwrap_or_default();
        if group.endpoints.is_empty() {
            deleted.extend(current);
            continue;
        }
        let desired = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", name_of(&endpoints.metadata))),
                namespace: Some(namespace_of(&endpoints.metadata).to_string()),
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()).filter(|a| !a.is_empty()),
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            },
            address_type: group.address_type.into(),
            endpoints: group.endpoints.into_values().take(max).collect(),
            ports: Some(group.ports),
        };
        match current.split_first() {
            Some((first, rest)) => {
                deleted.extend(rest);
                if !up_to_date(first, &desired) {
                    plan.update.push(reuse(first, desired));
                }
            }
            None => created.push(desired),
        }
    }
    deleted.extend(by_key.into_values().flatten());
    deleted.sort_by(|a, b| name_of(&a.metadata).cmp(name_of(&b.metadata)));
    // Recycle: a create of an address type takes over a deleted slice of the same type.
    for slice in created {
        let reusable = deleted
            .iter()
            .position(|d| d.address_type == slice.address_type);
        match reusable {
            Some(i) => {
                let old = deleted.remove(i);
                plan.update.push(reuse(old, slice));
            }
            None => plan.create.push(slice),
        }
    }
    plan.delete = deleted
        .iter()
        .map(|s| name_of(&s.metadata).to_string())
        .collect();
    plan
}

/// `desired` written over the existing slice `old` (its name and resourceVersion kept).
fn reuse(old: &EndpointSlice, mut desired: EndpointSlice) -> EndpointSlice {
    desired.metadata.generate_name = None;
    desired.metadata.name = old.metadata.name.clone();
    desired.metadata.resource_version = old.metadata.resource_version.clone();
    desired
}

struct Ctx {
    client: Client,
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    recorder: Recorder,
    max_per_subset: usize,
}

/// Starts the controller, keyed by Endpoints and triggered by Endpoints, Service (same name)
/// and slice changes. `slices` must carry the [`BY_SERVICE`] index.
pub fn start(
    client: Client,
    endpoints: &Informer<Endpoints>,
    services: &Informer<Service>,
    slices: &Informer<EndpointSlice>,
    max_per_subset: usize,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let store = endpoints.store();
    let from_services = services.triggers(store.clone(), same_name::<Service, Endpoints>);
    let from_slices = slices.triggers(store, |change| match change.object() {
        Some(slice) => service_of_slice(slice),
        None => Vec::new(),
    });
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        services: services.clone(),
        slices: slices.clone(),
        max_per_subset: max_per_subset.max(1),
    });
    crate::runner::spawn(
        tasks,
        COMPONENT,
        endpoints,
        vec![from_services.boxed(), from_slices.boxed()],
        reconcile,
        ctx,
        concurrency,
    );
}

/// The slices this controller mirrored for `namespace/name`, from the cache.
fn mirrored_slices(
    slices: &Informer<EndpointSlice>,
    namespace: &str,
    name: &str,
) -> Vec<Arc<EndpointSlice>> {
    slices
        .indexed(BY_SERVICE, &format!("{namespace}/{name}"))
        .into_iter()
        .filter(|s| managed_by(s) == Some(MANAGED_BY))
        .collect()
}

async fn reconcile(endpoints: Arc<Endpoints>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = namespace_of(&endpoints.metadata).to_string();
    let name = name_of(&endpoints.metadata).to_string();
    let service = ctx.services.get(&namespace, &name);
    let mirror = should_mirror(&endpoints, service.as_deref());
    let existing = mirrored_slices(&ctx.slices, &namespace, &name);
    let plan = plan_mirror(&endpoints, mirror, &existing, ctx.max_per_subset);
    if plan.invalid > 0 {
        ctx.recorder.event(
            endpoints.as_ref(),
            EventType::Warning,
            INVALID_IP_ADDRESS,
            format!(
                "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                plan.invalid
            ),
        );
    }
    if plan.skipped_over_limit > 0 {
        tracing::warn!(
            %namespace, %name, skipped = plan.skipped_over_limit,
            "addresses of Endpoints skipped: more than the mirroring limit per subset"
        );
        ctx.recorder.event(
            endpoints.as_ref(),
            EventType::Warning,
            TOO_MANY_ADDRESSES,
            format!(
                "A max of {} addresses can be mirrored to EndpointSlices per Endpoints subset. \
                 {} addresses were skipped",
                ctx.max_per_subset, plan.skipped_over_limit
            ),
        );
    }
    if plan.is_empty() {
        return Ok(Action::await_change());
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = format!("{namespace}/{name}");
    for slice in &plan.update {
        let slice_name = name_of(&slice.metadata);
        api.replace(slice_name, &PostParams::default(), slice)
            .await
            .context(|| format!("update mirrored EndpointSlice {key} {slice_name}"))?;
    }
    // No new slices for Endpoints on their way out.
    if endpoints.metadata.deletion_timestamp.is_none() {
        for slice in &plan.create {
            api.create(&PostParams::default(), slice)
                .await
                .context(|| format!("create mirrored EndpointSlice for Endpoints {key}"))?;
        }
    }
    for slice_name in &plan.delete {
        match api.delete(slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(e)
                    .context(|| format!("delete mirrored EndpointSlice {key} {slice_name}"))
            }
        }
    }
    tracing::debug!(endpoints = key, "mirrored endpoint slices written");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests;
