//! The cluster's Services as every node's proxy and resolver need them: one watch of Services
//! and one of EndpointSlices for the whole server, joined into a [`ServiceSummary`] per
//! Service, and per agent that asks for it a full list followed by changes.
//!
//! Joining on the server keeps the agents' side small (no API objects, no slice bookkeeping)
//! and costs one watch per kind however many nodes there are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use skiff_link::proto::service::{
    EndpointPortSummary, EndpointSummary, ServiceKey, ServicePortSummary, ServiceSummary,
    ServiceType,
};
use skiff_link::quic::NodeSender;
use tokio::sync::watch;

/// Every Service's summary, by namespace and name.
pub(crate) type ServiceDirectory = Arc<BTreeMap<ServiceKey, Arc<ServiceSummary>>>;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long a session waits after a change before sending, so a burst (a Deployment's pods
/// becoming ready one after another) goes out as one update.
const COALESCE: Duration = Duration::from_millis(50);

/// What the proxy and DNS read of a Service (without endpoints).
fn service_part(service: &Service) -> Option<ServiceSummary> {
    let key = ServiceKey {
        namespace: service.metadata.namespace.clone()?,
        name: service.metadata.name.clone()?,
    };
    let spec = service.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut cluster_ips = spec.cluster_ips.clone().unwrap_or_default();
    if cluster_ips.is_empty() {
        cluster_ips.extend(spec.cluster_ip.clone());
    }
    cluster_ips.retain(|ip| !ip.is_empty() && ip != "None");
    if service_type == ServiceType::ExternalName {
        cluster_ips.clear();
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port).ok().filter(|p| *p > 0);
            if port.is_none() {
                tracing::warn!(service = %key, port = p.port, "ignoring a service port out of range");
            }
            Some(ServicePortSummary {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: port?,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0),
            })
        })
        .collect();
    let session_affinity_seconds =
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                // Upstream's default: three hours.
                .unwrap_or(10_800)
        });
    let load_balancer_ips = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect();
    Some(ServiceSummary {
        key,
        service_type,
        cluster_ips,
        headless,
        external_name: spec
            .external_name
            .clone()
            .filter(|_| service_type == ServiceType::ExternalName),
        external_ips: spec.external_ips.clone().unwrap_or_default(),
        load_balancer_ips,
        ports,
        session_affinity_seconds,
        external_traffic_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_traffic_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        endpoints: Vec::new(),
    })
}

/// The Service an EndpointSlice belongs to, and its endpoints as summaries.
fn slice_part(slice: &EndpointSlice) -> Option<(ServiceKey, Vec<EndpointSummary>)> {
    let key = ServiceKey {
        namespace: slice.metadata.namespace.clone()?,
        name: slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)?
            .clone(),
    };
    let ports: Vec<EndpointPortSummary> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(EndpointPortSummary {
                name: p.name.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.port.and_then(|n| u16::try_from(n).ok())?,
            })
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| {
            let conditions = e.conditions.clone().unwrap_or_default();
            // Upstream: a missing `ready` is true, a missing `serving` is `ready`.
            let ready = conditions.ready.unwrap_or(true);
            EndpointSummary {
                addresses: e.addresses.clone(),
                node_name: e.node_name.clone(),
                hostname: e.hostname.clone(),
                ready,
                serving: conditions.serving.unwrap_or(ready),
                terminating: conditions.terminating.unwrap_or(false),
                ports: ports.clone(),
            }
        })
        .collect();
    Some((key, endpoints))
}

/// A slice's identity: its own name (a Service may have several).
fn slice_name(slice: &EndpointSlice) -> Option<String> {
    slice.metadata.name.clone()
}

/// What the two watches have seen, joined per Service.
#[derive(Debug, Default)]
struct Joined {
    services: BTreeMap<ServiceKey, ServiceSummary>,
    /// Endpoints per Service, per slice name (in name order, so the join is deterministic).
    slices: BTreeMap<ServiceKey, BTreeMap<String, Vec<EndpointSummary>>>,
    /// Which Service each slice was last counted under (a relabelled slice moves).
    slice_owner: BTreeMap<(String, String), ServiceKey>,
    directory: BTreeMap<ServiceKey, Arc<ServiceSummary>>,
}

impl Joined {
    /// Recomputes one Service's summary; true when it changed.
    fn refresh(&mut self, key: &ServiceKey) -> bool {
        let summary = self.services.get(key).map(|service| {
            let mut summary = service.clone();
            summary.endpoints = self
                .slices
                .get(key)
                .into_iter()
                .flat_map(|slices| slices.values().flatten().cloned())
                .collect();
            summary
        });
        match summary {
            Some(summary) => {
                if self.directory.get(key).map(|s| s.as_ref()) == Some(&summary) {
                    return false;
                }
                self.directory.insert(key.clone(), Arc::new(summary));
                true
            }
            None => self.directory.remove(key).is_some(),
        }
    }

    fn apply_service(&mut self, service: &Service) -> bool {
        let Some(summary) = service_part(service) else {
            return false;
        };
        let key = summary.key.clone();
        self.services.insert(key.clone(), summary);
        self.refresh(&key)
    }

    fn delete_service(&mut self, service: &Service) -> bool {
        let Some(summary) = service_part(service) else {
            return false;
        };
        self.services.remove(&summary.key);
        self.refresh(&summary.key)
    }

    fn apply_slice(&mut self, slice: &EndpointSlice) -> bool {
        // Out of the Service it was counted under, into the one it names now; only then is
        // either summary recomputed, so an unchanged slice changes nothing.
        let previous = self.forget_slice(slice);
        let current = match (slice_part(slice), slice_name(slice)) {
            (Some((key, endpoints)), Some(name)) => {
                self.slice_owner
                    .insert((key.namespace.clone(), name.clone()), key.clone());
                self.slices
                    .entry(key.clone())
                    .or_default()
                    .insert(name, endpoints);
                Some(key)
            }
            _ => None,
        };
        let mut changed = false;
        for key in previous.iter().chain(current.iter()) {
            changed |= self.refresh(key);
        }
        changed
    }

    fn delete_slice(&mut self, slice: &EndpointSlice) -> bool {
        match self.forget_slice(slice) {
            Some(key) => self.refresh(&key),
            None => false,
        }
    }

    /// Drops a slice's endpoints; the Service it was counted under.
    fn forget_slice(&mut self, slice: &EndpointSlice) -> Option<ServiceKey> {
        let (namespace, name) = (slice.metadata.namespace.clone()?, slice_name(slice)?);
        let key = self.slice_owner.remove(&(namespace, name.clone()))?;
        if let Some(slices) = self.slices.get_mut(&key) {
            slices.remove(&name);
            if slices.is_empty() {
                self.slices.remove(&key);
            }
        }
        Some(key)
    }

    /// Replaces everything of one kind after a (re)list.
    fn reset_services(&mut self, services: Vec<Service>) -> bool {
        let old: Vec<ServiceKey> = self.services.keys().cloned().collect();
        self.services = services
            .iter()
            .filter_map(service_part)
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut changed = false;
        for key in old
            .iter()
            .chain(self.services.keys().cloned().collect::<Vec<_>>().iter())
        {
            changed |= self.refresh(key);
        }
        changed
    }

    fn reset_slices(&mut self, slices: Vec<EndpointSlice>) -> bool {
        let old: Vec<ServiceKey> = self.slices.keys().cloned().collect();
        self.slices.clear();
        self.slice_owner.clear();
        for slice in &slices {
            if let (Some((key, endpoints)), Some(name)) = (slice_part(slice), slice_name(slice)) {
                self.slice_owner
                    .insert((key.namespace.clone(), name.clone()), key.clone());
                self.slices.entry(key).or_default().insert(name, endpoints);
            }
        }
        let mut changed = false;
        for key in old
            .iter()
            .chain(self.slices.keys().cloned().collect::<Vec<_>>().iter())
        {
            changed |= self.refresh(key);
        }
        changed
    }
}

enum Change {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
}

/// Folds one watch event in; true when the directory changed.
fn fold(
    joined: &mut Joined,
    listing_services: &mut Option<Vec<Service>>,
    listing_slices: &mut Option<Vec<EndpointSlice>>,
    change: Change,
) -> bool {
    match change {
        Change::Service(event) => match *event {
            watcher::Event::Init => {
                *listing_services = Some(Vec::new());
                false
            }
            watcher::Event::InitApply(s) => {
                listing_services.get_or_insert_with(Vec::new).push(s);
                false
            }
            watcher::Event::InitDone => {
                joined.reset_services(listing_services.take().unwrap_or_default())
            }
            watcher::Event::Apply(s) => joined.apply_service(&s),
            watcher::Event::Delete(s) => joined.delete_service(&s),
        },
        Change::Slice(event) => match *event {
            watcher::Event::Init => {
                *listing_slices = Some(Vec::new());
                false
            }
            watcher::Event::InitApply(s) => {
                listing_slices.get_or_insert_with(Vec::new).push(s);
                false
            }
            watcher::Event::InitDone => {
                joined.reset_slices(listing_slices.take().unwrap_or_default())
            }
            watcher::Event::Apply(s) => joined.apply_slice(&s),
            watcher::Event::Delete(s) => joined.delete_slice(&s),
        },
    }
}

/// Starts the server-wide watches; the receiver always holds the latest directory. Its first
/// value is published only once both kinds were listed, so no agent is ever sent a list
/// without endpoints (which would make its proxy refuse every Service for a moment).
pub(crate) fn start(admin: kube::Client) -> watch::Receiver<Option<ServiceDirectory>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let services = watcher(
            Api::<Service>::all(admin.clone()),
            watcher::Config::default(),
        )
        .map(|e| e.map(|e| Change::Service(Box::new(e))));
        let slices = watcher(Api::<EndpointSlice>::all(admin), watcher::Config::default())
            .map(|e| e.map(|e| Change::Slice(Box::new(e))));
        let mut stream = futures::stream::select(services, slices).boxed();
        let mut joined = Joined::default();
        let (mut listing_services, mut listing_slices) = (None, None);
        let (mut services_listed, mut slices_listed) = (false, false);
        while let Some(first) = stream.next().await {
            // Take everything already waiting, then publish once.
            let mut batch = vec![first];
            while let Some(Some(next)) = stream.next().now_or_never() {
                batch.push(next);
            }
            let mut changed = false;
            for event in batch {
                match event {
                    Ok(change) => {
                        match &change {
                            Change::Service(e) if matches!(**e, watcher::Event::InitDone) => {
                                services_listed = true
                            }
                            Change::Slice(e) if matches!(**e, watcher::Event::InitDone) => {
                                slices_listed = true
                            }
                            _ => {}
                        }
                        changed |= fold(
                            &mut joined,
                            &mut listing_services,
                            &mut listing_slices,
                            change,
                        );
                    }
                    Err(error) => {
                        tracing::debug!(%error, "service watch interrupted; it resumes");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            let first_complete = services_listed && slices_listed && tx.borrow().is_none();
            if (changed && services_listed && slices_listed) || first_complete {
                let directory = Arc::new(joined.directory.clone());
                if tx.send(Some(directory)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Sends the directory to one node: in full once it is complete, then what changes, until
/// its session ends.
pub(crate) async fn serve(
    mut directory: watch::Receiver<Option<ServiceDirectory>>,
    sender: NodeSender,
) {
    let mut sent: Option<ServiceDirectory> = None;
    loop {
        let now = directory.borrow_and_update().clone();
        if let Some(now) = now {
            let (full, upserts, removed) = match &sent {
                None => (
                    true,
                    now.values().map(|s| (**s).clone()).collect(),
                    Vec::new(),
                ),
                Some(sent) => {
                    let upserts: Vec<ServiceSummary> = now
                        .iter()
                        .filter(|(key, s)| {
                            sent.get(*key)
                                .is_none_or(|old| !Arc::ptr_eq(old, s) && old != *s)
                        })
                        .map(|(_, s)| (**s).clone())
                        .collect();
                    let removed: Vec<ServiceKey> = sent
                        .keys()
                        .filter(|key| !now.contains_key(*key))
                        .cloned()
                        .collect();
                    (false, upserts, removed)
                }
            };
            let anything = full || !upserts.is_empty() || !removed.is_empty();
            if anything && sender.send_services(full, upserts, removed).is_err() {
                return;
            }
            sent = Some(now);
        }
        tokio::select! {
            changed = directory.changed() => {
                if changed.is_err() {
                    return;
                }
                tokio::time::sleep(COALESCE).await;
            }
            _ = sender.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    fn slice(name: &str, service: &str, ips: &[(&str, Option<bool>)]) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "default", "name": name,
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": ips.iter().map(|(ip, ready)| serde_json::json!({
                "addresses": [ip], "nodeName": "n1",
                "conditions": ready.map(|r| serde_json::json!({"ready": r})).unwrap_or(serde_json::json!({}))
            })).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    fn web() -> Service {
        service(serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}],
                     "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
        }))
    }

    #[test]
    fn a_service_joins_the_endpoints_of_all_its_slices() {
        let mut joined = Joined::default();
        assert!(joined.apply_service(&web()));
        assert!(joined.apply_slice(&slice("web-a", "web", &[("10.42.0.5", None)])));
        assert!(joined.apply_slice(&slice("web-b", "web", &[("10.42.1.5", Some(false))])));
        let key = ServiceKey {
            namespace: "default".into(),
            name: "web".into(),
        };
        let summary = &joined.directory[&key];
        assert_eq!(summary.service_type, ServiceType::NodePort);
        assert_eq!(summary.cluster_ips, ["10.43.0.20"]);
        assert_eq!(summary.ports[0].node_port, Some(30080));
        assert_eq!(summary.session_affinity_seconds, Some(10_800));
        assert!(summary.external_traffic_local);
        assert_eq!(summary.load_balancer_ips, ["192.0.2.1"]);
        let ready: Vec<(&str, bool, bool)> = summary
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].as_str(), e.ready, e.serving))
            .collect();
        assert_eq!(
            ready,
            [("10.42.0.5", true, true), ("10.42.1.5", false, false)],
            "a missing ready condition is true; serving follows ready"
        );
        assert_eq!(
            ServiceSummary::target_port(&summary.endpoints[0], &summary.ports[0]),
            Some(8080)
        );
        // The same slice again changes nothing; deleting one slice drops its endpoints.
        assert!(!joined.apply_slice(&slice("web-a", "web", &[("10.42.0.5", None)])));
        assert!(joined.delete_slice(&slice("web-b", "web", &[])));
        assert_eq!(joined.directory[&key].endpoints.len(), 1);
        // A slice moved to another Service's label leaves the first one.
        assert!(joined.apply_slice(&slice("web-a", "other", &[("10.42.0.5", None)])));
        assert!(joined.directory[&key].endpoints.is_empty());
        assert!(joined.delete_service(&web()));
        assert!(joined.directory.is_empty());
    }

    #[test]
    fn headless_and_external_name_services_have_no_cluster_ips() {
        let mut joined = Joined::default();
        joined.apply_service(&service(serde_json::json!({
            "metadata": {"namespace": "db", "name": "pg"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}
        })));
        joined.apply_service(&service(serde_json::json!({
            "metadata": {"namespace": "db", "name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}
        })));
        let pg = joined
            .directory
            .values()
            .find(|s| s.key.name == "pg")
            .unwrap();
        assert!(pg.headless && pg.cluster_ips.is_empty());
        assert_eq!(pg.ports[0].protocol, "TCP");
        let ext = joined
            .directory
            .values()
            .find(|s| s.key.name == "ext")
            .unwrap();
        assert_eq!(ext.service_type, ServiceType::ExternalName);
        assert_eq!(ext.external_name.as_deref(), Some("db.example.com"));
    }

    #[test]
    fn a_relist_removes_what_is_gone_and_keeps_what_is_there() {
        let mut joined = Joined::default();
        joined.apply_service(&web());
        joined.apply_slice(&slice("web-a", "web", &[("10.42.0.5", None)]));
        assert!(!joined.reset_services(vec![web()]), "same list, no change");
        assert!(joined.reset_slices(Vec::new()));
        assert!(joined.directory.values().all(|s| s.endpoints.is_empty()));
        assert!(joined.reset_services(Vec::new()));
        assert!(joined.directory.is_empty());
    }
}
