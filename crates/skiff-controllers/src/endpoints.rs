//! The legacy Endpoints controller (upstream `endpoints-controller`,
//! `pkg/controller/endpoint`): for every Service with a selector, an Endpoints object of the
//! same name whose subsets list the selected pods — ready ones under `addresses`, the others
//! under `notReadyAddresses` — grouped by the ports they serve (upstream `RepackSubsets`).
//!
//! Terminating pods are left out unless the Service publishes not-ready addresses. The
//! objects carry `endpointslice.kubernetes.io/skip-mirror: "true"` (the slices come from the
//! EndpointSlice controller, not from mirroring). When a Service goes, its Endpoints go too;
//! Services without a selector keep the Endpoints their owners write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::endpointslice::{
    endpoint_ports, has_selector, hostname_for, is_headless, pod_ipv4, pod_reference, selects,
    should_be_in_endpoints, LABEL_HEADLESS,
};
use crate::error::{is_conflict, is_not_found, ApiContext};
use crate::informer::{object_ref, same_name, Change, Informer, BY_NAMESPACE};
use crate::util::meta::{name_of, namespace_of};
use crate::util::pods;
use crate::Error;

/// Component name in logs.
pub const COMPONENT: &str = "endpoints-controller";
/// Label telling the mirroring controller to leave an Endpoints object alone.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// The subsets of a Service's Endpoints: each selected, addressable pod's address under
/// `addresses` (ready, or the Service publishes not-ready addresses) or `notReadyAddresses`,
/// grouped by the ports it serves; addresses sorted by IP, subsets by their ports.
pub fn plan_subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let has_ports = spec.ports.as_ref().is_some_and(|p| !p.is_empty());
    // ports key → (ports, ready addresses, not-ready addresses)
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods {
        if !selects(service, pod) || !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let mut ports: Vec<EndpointPort> = endpoint_ports(service, pod)
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name.filter(|n| !n.is_empty()),
                port: p.port.unwrap_or(0),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        // Pods serving none of the ports are no endpoint, but headless portless Services
        // list their pods anyway.
        if ports.is_empty() && (has_ports || !is_headless(service)) {
            continue;
        }
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}/{}",
                    p.name.as_deref().unwrap_or(""),
                    p.port,
                    p.protocol.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let node = pods::node_name(pod);
        let address = EndpointAddress {
            ip,
            hostname: hostname_for(service, pod),
            node_name: Some(node.to_string()).filter(|n| !n.is_empty()),
            target_ref: Some(pod_reference(pod)),
        };
        let group = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pods::is_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
        let parse = |ip: &str| ip.parse::<std::net::IpAddr>().ok();
        (parse(&a.ip), &a.ip).cmp(&(parse(&b.ip), &b.ip))
    };
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: Some(ready).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
                ports: Some(ports).filter(|p| !p.is_empty()),
            }
        })
        .collect()
}

/// The labels of a Service's Endpoints: the Service's, the skip-mirror mark and the headless
/// marker.
pub fn endpoints_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(LABEL_SKIP_MIRROR.into(), "true".into());
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// The Endpoints object to write for `service`, or `None` when `existing` already says it.
pub fn plan_endpoints(
    service: &Service,
    pods: &[Arc<Pod>],
    existing: Option<&Endpoints>,
) -> Option<Endpoints> {
    let subsets = plan_subsets(service, pods);
    let labels = endpoints_labels(service);
    if let Some(current) = existing {
        let same_labels = current.metadata.labels.clone().unwrap_or_default() == labels;
        if same_labels && same_subsets(current.subsets.as_deref().unwrap_or_default(), &subsets) {
            return None;
        }
    }
    let mut desired = existing.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(name_of(&service.metadata).to_string()),
            namespace: Some(namespace_of(&service.metadata).to_string()),
            ..Default::default()
        },
        ..Default::default()
    });
    desired.metadata.labels = Some(labels);
    desired.subsets = Some(subsets).filter(|s| !s.is_empty());
    Some(desired)
}

/// ip, hostname, nodeName, targetRef name of an address.
type AddressView = (String, Option<String>, Option<String>, Option<String>);

/// Compares the fields this controller writes (the server may fill in others).
fn same_subsets(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    fn view(s: &EndpointSubset) -> impl PartialEq + '_ {
        let addresses = |list: &'_ Option<Vec<EndpointAddress>>| -> Vec<AddressView> {
            list.iter()
                .flatten()
                .map(|a| {
                    (
                        a.ip.clone(),
                        a.hostname.clone().filter(|h| !h.is_empty()),
                        a.node_name.clone(),
                        a.target_ref.as_ref().and_then(|r| r.name.clone()),
                    )
                })
                .collect()
        };
        let ports: Vec<(Option<&str>, i32, Option<&str>)> = s
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.as_deref().filter(|n| !n.is_empty()),
                    p.port,
                    p.protocol.as_deref(),
                )
            })
            .collect();
        (
            addresses(&s.addresses),
            addresses(&s.not_ready_addresses),
            ports,
        )
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| view(x) == view(y))
}

struct Ctx {
    client: Client,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
}

/// Starts the controller. `services` and `pods` must carry the [`BY_NAMESPACE`] index.
pub fn start(
    client: Client,
    services: &Informer<Service>,
    pods: &Informer<Pod>,
    endpoints: &Informer<Endpoints>,
    concurrency: u16,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let store = services.store();
    let (svc, eps) = (services.clone(), endpoints.clone());
    let from_pods = pods.triggers(store.clone(), move |change| match change.object() {
        Some(pod) => services_of_pod(&svc, &eps, pod),
        None => Vec::new(),
    });
    let from_endpoints = endpoints.triggers(store, same_name::<Endpoints, Service>);
    tasks.spawn(delete_orphans(
        client.clone(),
        services.clone(),
        endpoints.clone(),
    ));
    let ctx = Arc::new(Ctx {
        client,
        pods: pods.clone(),
        endpoints: endpoints.clone(),
    });
    crate::runner::spawn(
        tasks,
        COMPONENT,
        services,
        vec![from_pods.boxed(), from_endpoints.boxed()],
        reconcile,
        ctx,
        concurrency,
    );
}

/// The Services whose Endpoints may involve `pod`: those selecting it, and those whose
/// Endpoints list it.
fn services_of_pod(
    services: &Informer<Service>,
    endpoints: &Informer<Endpoints>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let namespace = namespace_of(&pod.metadata);
    let name = name_of(&pod.metadata);
    let mut out: BTreeSet<String> = services
        .indexed(BY_NAMESPACE, namespace)
        .iter()
        .filter(|s| selects(s, pod))
        .map(|s| name_of(&s.metadata).to_string())
        .collect();
    for ep in endpoints.indexed(BY_NAMESPACE, namespace) {
        let lists_pod = ep.subsets.iter().flatten().any(|s| {
            s.addresses
                .iter()
                .chain(s.not_ready_addresses.iter())
                .flatten()
                .any(|a| {
                    a.target_ref
                        .as_ref()
                        .is_some_and(|r| r.name.as_deref() == Some(name))
                })
        });
        if lists_pod {
            out.insert(name_of(&ep.metadata).to_string());
        }
    }
    out.iter().map(|s| object_ref(namespace, s)).collect()
}

/// Deletes the Endpoints of deleted Services: on each deletion, and on every resync for
/// Endpoints this controller wrote ([`LABEL_SKIP_MIRROR`]) whose Service is gone (deleted
/// while the controller was not running).
async fn delete_orphans(
    client: Client,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
) {
    let mut changes = Box::pin(services.subscribe());
    while let Some(change) = changes.next().await {
        let gone: Vec<(String, String)> = match change {
            Change::Deleted(svc) => vec![(
                namespace_of(&svc.metadata).to_string(),
                name_of(&svc.metadata).to_string(),
            )],
            Change::Resync => {
                endpoints.ready().await;
                endpoints
                    .store()
                    .state()
                    .iter()
                    .filter(|ep| {
                        ep.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_SKIP_MIRROR))
                            .is_some_and(|v| v == "true")
                    })
                    .map(|ep| {
                        (
                            namespace_of(&ep.metadata).to_string(),
                            name_of(&ep.metadata).to_string(),
                        )
                    })
                    .filter(|(ns, name)| services.get(ns, name).is_none())
                    .collect()
            }
            Change::Applied(_) => Vec::new(),
        };
        for (namespace, name) in gone {
            if endpoints.get(&namespace, &name).is_none() {
                continue;
            }
            let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::debug!(%namespace, %name, "deleted the Endpoints of a deleted Service")
                }
                Err(e) if is_not_found(&e) => {}
                Err(error) => {
                    tracing::warn!(%namespace, %name, %error, "could not delete Endpoints")
                }
            }
        }
    }
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !has_selector(&service) || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = namespace_of(&service.metadata);
    let name = name_of(&service.metadata);
    let existing = ctx.endpoints.get(namespace, name);
    let pods = ctx.pods.indexed(BY_NAMESPACE, namespace);
    let Some(desired) = plan_endpoints(&service, &pods, existing.as_deref()) else {
        return Ok(Action::await_change());
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), namespace);
    let result = if existing.is_some() {
        api.replace(name, &PostParams::default(), &desired).await
    } else {
        api.create(&PostParams::default(), &desired).await
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // The cache was behind; the watch event brings the next reconcile.
        Err(e) if is_conflict(&e) => Ok(Action::requeue(std::time::Duration::from_millis(200))),
        Err(e) => Err(e).context(|| format!("write Endpoints {namespace}/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    fn service(ports: Vec<(&str, i32, IntOrString)>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".into(), "web".into())])),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(name, port, target)| ServicePort {
                            name: Some(name.into()),
                            port,
                            protocol: Some("TCP".into()),
                            target_port: Some(target),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, ip: &str, ready: bool, named_port: Option<i32>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: named_port.map(|p| {
                        vec![ContainerPort {
                            name: Some("metrics".into()),
                            container_port: p,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_addresses_grouped_by_ports() {
        let svc = service(vec![
            ("http", 80, IntOrString::Int(8080)),
            ("metrics", 9090, IntOrString::String("metrics".into())),
        ]);
        let mut leaving = (*pod("web-t", "10.42.0.11", true, Some(9100))).clone();
        leaving.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let pods = vec![
            pod("web-b", "10.42.0.9", true, Some(9100)),
            pod("web-a", "10.42.0.10", false, Some(9100)),
            pod("web-c", "10.42.0.2", true, None),
            Arc::new(leaving.clone()),
        ];
        let subsets = plan_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        // Pods with both ports.
        let both = subsets
            .iter()
            .find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 2))
            .unwrap();
        assert_eq!(ips(&both.addresses), ["10.42.0.9"]);
        assert_eq!(ips(&both.not_ready_addresses), ["10.42.0.10"]);
        let ports: Vec<(Option<&str>, i32)> = both
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(ports, [(Some("http"), 8080), (Some("metrics"), 9100)]);
        // The pod whose named port does not resolve serves http only.
        let http_only = subsets
            .iter()
            .find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 1))
            .unwrap();
        assert_eq!(ips(&http_only.addresses), ["10.42.0.2"]);
        let address = &http_only.addresses.as_ref().unwrap()[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(
            address.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("web-c")
        );

        // publishNotReadyAddresses: everyone ready, terminating pods included.
        let mut publish = svc.clone();
        publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = plan_subsets(&publish, &pods);
        let both = subsets
            .iter()
            .find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 2))
            .unwrap();
        assert_eq!(
            ips(&both.addresses),
            ["10.42.0.9", "10.42.0.10", "10.42.0.11"]
        );
        assert!(both.not_ready_addresses.is_none());
    }

    #[test]
    fn endpoints_are_written_only_when_they_change() {
        let svc = service(vec![("http", 80, IntOrString::Int(8080))]);
        let pods = vec![pod("web-a", "10.42.0.5", true, None)];
        let first = plan_endpoints(&svc, &pods, None).expect("create");
        assert_eq!(first.metadata.name.as_deref(), Some("web"));
        assert_eq!(
            first.metadata.labels.as_ref().unwrap()[LABEL_SKIP_MIRROR],
            "true"
        );
        assert!(plan_endpoints(&svc, &pods, Some(&first)).is_none());
        let not_ready = vec![pod("web-a", "10.42.0.5", false, None)];
        let second = plan_endpoints(&svc, &not_ready, Some(&first)).expect("update");
        let subset = &second.subsets.as_ref().unwrap()[0];
        assert!(subset.addresses.is_none());
        assert_eq!(ips(&subset.not_ready_addresses), ["10.42.0.5"]);
        // No pods: no subsets.
        let empty = plan_endpoints(&svc, &[], Some(&second)).expect("update");
        assert!(empty.subsets.is_none());
    }
}
