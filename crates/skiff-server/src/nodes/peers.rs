//! The cluster's nodes as agents need them for pod networking (name, InternalIP, pod CIDRs):
//! one watch of the Node objects for the whole server, and per agent that asks for it a full
//! list followed by changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::Api;
use skiff_link::proto::{ClusterNetwork, NodeSummary};
use skiff_link::quic::NodeSender;
use tokio::sync::watch;

/// Every node's summary, by name.
pub(crate) type Directory = Arc<BTreeMap<String, NodeSummary>>;

/// What pod networking needs to know about a node. A malformed address or CIDR (a node
/// reports its own addresses) is left out and logged, so agents never receive it; the rest of
/// the node's entry, and every other node's, still goes out.
pub(crate) fn summary(node: &Node) -> Option<NodeSummary> {
    let name = node.metadata.name.clone()?;
    let spec = node.spec.as_ref();
    let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty() {
        if let Some(cidr) = spec.and_then(|s| s.pod_cidr.clone()) {
            pod_cidrs.push(cidr);
        }
    }
    pod_cidrs.retain(|cidr| {
        let valid = is_cidr(cidr);
        if !valid {
            tracing::warn!(node = %name, %cidr, "ignoring an invalid pod CIDR");
        }
        valid
    });
    let internal_ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .filter(|ip| {
            let valid = ip.parse::<IpAddr>().is_ok();
            if !valid {
                tracing::warn!(node = %name, address = %ip, "ignoring an invalid InternalIP");
            }
            valid
        });
    Some(NodeSummary {
        name,
        internal_ip,
        pod_cidrs,
    })
}

/// Whether `text` is `ADDRESS/PREFIX` with a prefix that fits the address family.
fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => prefix <= 32,
        Ok(IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

/// Starts the server-wide watch of nodes; the receiver always holds the latest directory.
pub(crate) fn start(admin: kube::Client) -> watch::Receiver<Directory> {
    let (tx, rx) = watch::channel(Directory::default());
    tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(admin);
        let mut stream = watcher(nodes, watcher::Config::default()).boxed();
        let mut current: BTreeMap<String, NodeSummary> = BTreeMap::new();
        let mut building: Option<BTreeMap<String, NodeSummary>> = None;
        while let Some(event) = stream.next().await {
            let changed = match event {
                Ok(watcher::Event::Init) => {
                    building = Some(BTreeMap::new());
                    false
                }
                Ok(watcher::Event::InitApply(node)) => {
                    if let (Some(b), Some(s)) = (building.as_mut(), summary(&node)) {
                        b.insert(s.name.clone(), s);
                    }
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    let fresh = building.take().unwrap_or_default();
                    let changed = fresh != current;
                    current = fresh;
                    changed
                }
                Ok(watcher::Event::Apply(node)) => match summary(&node) {
                    Some(s) if current.get(&s.name) != Some(&s) => {
                        current.insert(s.name.clone(), s);
                        true
                    }
                    _ => false,
                },
                Ok(watcher::Event::Delete(node)) => node
                    .metadata
                    .name
                    .as_ref()
                    .is_some_and(|name| current.remove(name).is_some()),
                Err(error) => {
                    tracing::debug!(%error, "node watch interrupted; it resumes");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    false
                }
            };
            if changed && tx.send(Arc::new(current.clone())).is_err() {
                return;
            }
        }
    });
    rx
}

/// Sends the directory to one node: in full now, then what changes, until its session ends.
pub(crate) async fn serve(
    mut directory: watch::Receiver<Directory>,
    network: Option<ClusterNetwork>,
    sender: NodeSender,
) {
    let mut sent: Directory = directory.borrow_and_update().clone();
    if sender
        .send_nodes(
            network.clone(),
            true,
            sent.values().cloned().collect(),
            Vec::new(),
        )
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            changed = directory.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sender.closed() => return,
        }
        let now = directory.borrow_and_update().clone();
        let upserts: Vec<NodeSummary> = now
            .values()
            .filter(|s| sent.get(&s.name) != Some(*s))
            .cloned()
            .collect();
        let removed: Vec<String> = sent
            .keys()
            .filter(|name| !now.contains_key(*name))
            .cloned()
            .collect();
        if upserts.is_empty() && removed.is_empty() {
            continue;
        }
        if sender.send_nodes(None, false, upserts, removed).is_err() {
            return;
        }
        sent = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_the_internal_ip_and_cidrs() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.42.1.0/24"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "192.168.1.5"}
            ]}
        }))
        .unwrap();
        let s = summary(&node).unwrap();
        assert_eq!(s.internal_ip.as_deref(), Some("192.168.1.5"));
        assert_eq!(s.pod_cidrs, ["10.42.1.0/24"]);
    }

    #[test]
    fn malformed_addresses_and_cidrs_are_left_out() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bad"},
            "spec": {"podCIDRs": ["10.42.2.0/24", "10.42.3.0/99", "garbage"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "not-an-ip"}]}
        }))
        .unwrap();
        let s = summary(&node).unwrap();
        assert_eq!(s.internal_ip, None);
        assert_eq!(s.pod_cidrs, ["10.42.2.0/24"]);
    }
}
