//! ServiceLB as k3s has it, without its pods: every `type: LoadBalancer` Service's
//! `status.loadBalancer.ingress` lists the addresses of the Ready nodes (a node's ExternalIP
//! when it has one, else its InternalIP), sorted; the node ports already reach the Service on
//! every node. A Service that stops being a LoadBalancer has the list cleared. Services with a
//! `spec.loadBalancerClass` belong to another implementation and are left alone, as in k3s.
//!
//! [`plan_ingress`] is the pure part; the reconcile writes the status when it differs.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;

use crate::error::{is_not_found, ApiContext};
use crate::informer::{Change, Informer};
use crate::util::meta::{name_of, namespace_of};
use crate::Error;

/// Component name in logs.
pub const COMPONENT: &str = "servicelb-controller";

/// The address a node offers load-balanced traffic at: ExternalIP, else InternalIP; `None`
/// for nodes not Ready.
pub fn node_address(node: &Node) -> Option<String> {
    let status = node.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let addresses = status.addresses.as_deref().unwrap_or_default();
    let of = |t: &str| {
        addresses
            .iter()
            .find(|a| a.type_ == t && !a.address.is_empty())
            .map(|a| a.address.clone())
    };
    of("ExternalIP").or_else(|| of("InternalIP"))
}

/// What `status.loadBalancer.ingress` should hold (IPs), or `None` to leave it alone.
pub fn plan_ingress(service: &Service, nodes: &[Arc<Node>]) -> Option<Vec<String>> {
    let spec = service.spec.as_ref()?;
    if spec.load_balancer_class.is_some() {
        return None;
    }
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return Some(Vec::new());
    }
    let mut ips: Vec<String> = nodes.iter().filter_map(|n| node_address(n)).collect();
    ips.sort_by(|a, b| {
        let parse = |s: &str| s.parse::<std::net::IpAddr>().ok();
        (parse(a), a).cmp(&(parse(b), b))
    });
    ips.dedup();
    Some(ips)
}

fn current_ingress(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

fn has_ingress(service: &Service) -> bool {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

struct Ctx {
    client: Client,
    nodes: Informer<Node>,
}

/// Starts the controller.
pub fn start(
    client: Client,
    services: &Informer<Service>,
    nodes: &Informer<Node>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let store = services.store();
    let own = services.triggers(store.clone(), |change| match change {
        Change::Applied(s) => vec![ObjectRef::from_obj(s.as_ref())],
        _ => Vec::new(),
    });
    // Any node change may change every LoadBalancer's addresses.
    let lbs = store.clone();
    let from_nodes = nodes.triggers(store.clone(), move |_| {
        lbs.state()
            .iter()
            .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    });
    let ctx = Arc::new(Ctx {
        client,
        nodes: nodes.clone(),
    });
    tasks.spawn(crate::runner::run(
        COMPONENT,
        store,
        futures::stream::select(own, from_nodes).boxed(),
        reconcile,
        ctx,
        1,
    ));
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let nodes = ctx.nodes.store().state();
    let Some(ips) = plan_ingress(&service, &nodes) else {
        return Ok(Action::await_change());
    };
    if ips == current_ingress(&service) && (!ips.is_empty() || !has_ingress(&service)) {
        return Ok(Action::await_change());
    }
    let ingress: Vec<serde_json::Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let patch = json!({"status": {"loadBalancer": {"ingress": if ingress.is_empty() { serde_json::Value::Null } else { json!(ingress) }}}});
    let namespace = namespace_of(&service.metadata);
    let name = name_of(&service.metadata);
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => {
            Err(e).context(|| format!("update load balancer status of Service {namespace}/{name}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, NodeAddress, NodeCondition, NodeStatus,
        ServiceSpec, ServiceStatus,
    };

    use super::*;

    fn node(ready: bool, addresses: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn service(type_: &str, class: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                load_balancer_class: class.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_nodes_external_ip_first_sorted() {
        let nodes = vec![
            node(true, &[("InternalIP", "192.168.1.20")]),
            node(
                true,
                &[("InternalIP", "192.168.1.3"), ("ExternalIP", "203.0.113.7")],
            ),
            node(false, &[("InternalIP", "192.168.1.9")]),
            node(true, &[("InternalIP", "192.168.1.5")]),
        ];
        assert_eq!(
            plan_ingress(&service("LoadBalancer", None), &nodes),
            Some(vec![
                "192.168.1.5".to_string(),
                "192.168.1.20".to_string(),
                "203.0.113.7".to_string()
            ])
        );
        // Another implementation's Services are left alone; other types are cleared.
        assert_eq!(
            plan_ingress(&service("LoadBalancer", Some("x.io/lb")), &nodes),
            None
        );
        assert_eq!(
            plan_ingress(&service("ClusterIP", None), &nodes),
            Some(Vec::new())
        );
    }

    #[test]
    fn ingress_is_read_back_as_ips() {
        let mut svc = service("LoadBalancer", None);
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("192.168.1.5".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        assert_eq!(current_ingress(&svc), ["192.168.1.5"]);
        assert!(has_ingress(&svc));
    }
}
