//! Pod networking for the runtime's sandboxes, through skiff-net. The node's network can only
//! be set up once its pod CIDR is known (assigned by the server, or remembered from before), so
//! sandboxes created earlier wait for it; `hostNetwork` pods never reach this module.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use skiff_net::{Backend, HostPort, NetworkConfig, Peer, PodNetRequest, PodNetwork, Protocol};
use skiff_runtime::{BoxFuture, SandboxNetwork};
use tokio::sync::{watch, Mutex};

use crate::error::AgentError;

/// How long a sandbox waits for the node's network before its creation fails (and is retried).
const WAIT_FOR_NETWORK: Duration = Duration::from_secs(20);

/// The node's network facts, as the server tells them (kept in the local state for offline
/// restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetwork {
    /// This node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// The cluster's pod range.
    pub cluster_cidr: Ipv4Net,
    /// `host-gw` or `vxlan`.
    pub backend: String,
    /// The node's address.
    pub node_ip: Ipv4Addr,
}

/// The agent's [`SandboxNetwork`]: waits for the node's network, then attaches pods.
pub struct AgentNetwork {
    state_dir: std::path::PathBuf,
    manager: Mutex<Option<(NodeNetwork, PodNetwork)>>,
    ready: watch::Sender<bool>,
}

impl std::fmt::Debug for AgentNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentNetwork")
            .field("state_dir", &self.state_dir)
            .field("ready", &*self.ready.borrow())
            .finish_non_exhaustive()
    }
}

/// The host ports a pod publishes.
pub fn host_ports(pod: &Pod) -> Result<Vec<HostPort>, String> {
    let mut ports = Vec::new();
    let containers = pod.spec.iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    });
    for c in containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let protocol: Protocol = p
                .protocol
                .as_deref()
                .unwrap_or("TCP")
                .parse()
                .map_err(|e: skiff_net::NetError| format!("container {:?}: {e}", c.name))?;
            let host_ip = match p.host_ip.as_deref().filter(|h| !h.is_empty()) {
                Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| {
                    format!(
                        "container {:?}: hostIP {ip:?} is not an IPv4 address",
                        c.name
                    )
                })?),
                None => None,
            };
            let port = |v: i32, what: &str| {
                u16::try_from(v)
                    .map_err(|_| format!("container {:?}: {what} {v} is not a port", c.name))
            };
            ports.push(HostPort {
                host_port: port(host_port, "hostPort")?,
                container_port: port(p.container_port, "containerPort")?,
                protocol,
                host_ip,
            });
        }
    }
    Ok(ports)
}

impl AgentNetwork {
    /// A network with nothing set up yet; `state_dir` holds skiff-net's state.
    pub fn new(state_dir: &Path) -> Arc<AgentNetwork> {
        Arc::new(AgentNetwork {
            state_dir: state_dir.to_path_buf(),
            manager: Mutex::new(None),
            ready: watch::channel(false).0,
        })
    }

    /// Whether the node's network is up.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the network is up.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The node's pod network, once set up.
    pub(crate) async fn pod_network(&self) -> Option<PodNetwork> {
        self.network().await
    }

    async fn network(&self) -> Option<PodNetwork> {
        self.manager.lock().await.as_ref().map(|(_, n)| n.clone())
    }

    /// The facts the network runs with, once set up.
    pub async fn current(&self) -> Option<NodeNetwork> {
        self.manager.lock().await.as_ref().map(|(n, _)| n.clone())
    }

    /// Sets up the node's network for `facts` (bridge, NAT, peers remembered from before).
    /// Does nothing when it is already up with the same facts; a different pod CIDR needs
    /// `skiff agent --cleanup` first (skiff-net refuses it).
    pub async fn configure(&self, facts: &NodeNetwork) -> Result<(), AgentError> {
        let mut manager = self.manager.lock().await;
        if let Some((current, _)) = manager.as_ref() {
            if current == facts {
                return Ok(());
            }
            tracing::warn!(?current, wanted = ?facts, "the node's network facts changed; setting the network up again");
        }
        let backend: Backend = facts.backend.parse()?;
        let mut config = NetworkConfig::new(
            facts.pod_cidr,
            facts.cluster_cidr,
            facts.node_ip,
            &self.state_dir,
        );
        config.backend = backend;
        let network = PodNetwork::setup(config).await?;
        tracing::info!(pod_cidr = %facts.pod_cidr, backend = %facts.backend, node_ip = %facts.node_ip, "pod network ready");
        *manager = Some((facts.clone(), network));
        drop(manager);
        self.ready.send_replace(true);
        Ok(())
    }

    /// Routes to the other nodes' pods.
    pub async fn sync_peers(&self, peers: &[Peer]) -> Result<(), AgentError> {
        if let Some(network) = self.network().await {
            network.sync_peers(peers).await?;
        }
        Ok(())
    }

    /// Detaches pods skiff-net still holds addresses for but that no longer exist.
    pub async fn release_except(&self, live: &std::collections::HashSet<String>) {
        let Some(network) = self.network().await else {
            return;
        };
        for pod in network.attached().await {
            if !live.contains(&pod.uid) {
                tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), ip = %pod.ip, "releasing the address of a pod that is gone");
                if let Err(error) = network.detach(&pod.uid).await {
                    tracing::warn!(uid = %pod.uid, %error, "cannot release a pod's network");
                }
            }
        }
    }

    async fn attach(&self, pod: &Pod, netns: &Path) -> Result<Vec<String>, String> {
        if !self.is_ready() {
            tokio::time::timeout(WAIT_FOR_NETWORK, self.wait_ready())
                .await
                .map_err(|_| {
                    "network is not ready: the node has no pod CIDR yet (waiting for the server)"
                        .to_string()
                })?;
        }
        let request = PodNetRequest {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            netns: netns.to_path_buf(),
            host_ports: host_ports(pod)?,
        };
        let network = self.network().await.ok_or("network is not ready")?;
        let status = network.attach(&request).await.map_err(|e| e.to_string())?;
        Ok(vec![status.ip.to_string()])
    }

    async fn detach(&self, pod: &Pod) -> Result<(), String> {
        let Some(network) = self.network().await else {
            // Never set up in this process: the address (if any) is released by
            // `release_except` once the network is up.
            return Ok(());
        };
        network
            .detach(pod.metadata.uid.as_deref().unwrap_or_default())
            .await
            .map_err(|e| e.to_string())
    }
}

impl SandboxNetwork for AgentNetwork {
    fn setup<'a>(
        &'a self,
        pod: &'a Pod,
        netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<Vec<String>, String>> {
        Box::pin(self.attach(pod, netns))
    }

    fn teardown<'a>(
        &'a self,
        pod: &'a Pod,
        _netns: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<(), String>> {
        Box::pin(self.detach(pod))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};

    #[test]
    fn host_ports_come_from_every_container() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    ports: Some(vec![
                        ContainerPort {
                            container_port: 80,
                            host_port: Some(8080),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 53,
                            host_port: Some(5353),
                            protocol: Some("UDP".into()),
                            host_ip: Some("10.0.0.1".into()),
                            ..Default::default()
                        },
                        ContainerPort {
                            container_port: 9000,
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let ports = host_ports(&pod).unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].host_port, 8080);
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].host_ip, Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn sctp_host_ports_are_refused_by_name() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        container_port: 1,
                        host_port: Some(2),
                        protocol: Some("SCTP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = host_ports(&pod).unwrap_err();
        assert!(e.contains("\"c\"") && e.contains("SCTP"), "{e}");
    }
}
