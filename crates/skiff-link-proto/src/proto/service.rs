//! The cluster's Services as every node needs them for the service proxy and cluster DNS
//! (protocol version [`SERVICE_PROTOCOL_VERSION`] and later only).
//!
//! The server joins each Service with its EndpointSlices once, for all nodes, and sends the
//! result as [`ServiceSummary`]s: the agent asks with `AgentMessage::WatchServices` and gets a
//! full list (`ServerMessage::Services { full: true }`) followed by changes. A summary carries
//! only what the data path and DNS read, so neither the proxy nor the resolver sees API objects.

use serde::{Deserialize, Serialize};

/// First protocol version that carries Services (`WatchServices` / `Services`).
pub const SERVICE_PROTOCOL_VERSION: u32 = 3;

/// A Service named by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceKey {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ServiceType {
    /// Reachable on its cluster IPs only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also on the addresses in `status.loadBalancer` (and node ports).
    LoadBalancer,
    /// A DNS alias (`spec.externalName`); no proxying.
    ExternalName,
}

/// A Service and its endpoints, as the proxy and DNS read them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    /// Which Service.
    pub key: ServiceKey,
    /// `spec.type`.
    #[serde(default)]
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (empty for headless and ExternalName Services).
    #[serde(default)]
    pub cluster_ips: Vec<String>,
    /// `spec.clusterIP: None`: DNS answers with the endpoints' addresses, nothing is proxied.
    #[serde(default)]
    pub headless: bool,
    /// `spec.externalName` of an ExternalName Service (a CNAME in DNS).
    #[serde(default)]
    pub external_name: Option<String>,
    /// `spec.externalIPs`: proxied like the cluster IPs, for traffic arriving at the node.
    #[serde(default)]
    pub external_ips: Vec<String>,
    /// `status.loadBalancer.ingress[].ip`: proxied like external IPs.
    #[serde(default)]
    pub load_balancer_ips: Vec<String>,
    /// `spec.ports`.
    #[serde(default)]
    pub ports: Vec<ServicePortSummary>,
    /// `spec.sessionAffinityConfig.clientIP.timeoutSeconds` when `sessionAffinity: ClientIP`.
    #[serde(default)]
    pub session_affinity_seconds: Option<u32>,
    /// `spec.externalTrafficPolicy: Local`: node ports, external and load-balancer IPs go
    /// only to endpoints on the receiving node, and the client address is kept.
    #[serde(default)]
    pub external_traffic_local: bool,
    /// `spec.internalTrafficPolicy: Local`: cluster IPs go only to endpoints on the same node.
    #[serde(default)]
    pub internal_traffic_local: bool,
    /// The endpoints of all the Service's EndpointSlices (`kubernetes.io/service-name`).
    #[serde(default)]
    pub endpoints: Vec<EndpointSummary>,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortSummary {
    /// `name` (empty when the Service has one unnamed port); endpoint ports match by it.
    #[serde(default)]
    pub name: String,
    /// `protocol`: `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// `port`, on the cluster, external and load-balancer IPs.
    pub port: u16,
    /// `nodePort`, on every node address (NodePort and LoadBalancer Services).
    #[serde(default)]
    pub node_port: Option<u16>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSummary {
    /// `addresses` (one pod IP in practice).
    pub addresses: Vec<String>,
    /// `nodeName`: where the endpoint runs (traffic policies `Local`).
    #[serde(default)]
    pub node_name: Option<String>,
    /// `hostname` (a pod's `spec.hostname` under a matching `subdomain`; DNS names it).
    #[serde(default)]
    pub hostname: Option<String>,
    /// `conditions.ready` (missing = true, as upstream reads it).
    pub ready: bool,
    /// `conditions.serving`: ready or, while terminating, still passing its probe.
    pub serving: bool,
    /// `conditions.terminating`.
    #[serde(default)]
    pub terminating: bool,
    /// The slice's `ports`: which target port each Service port name maps to here.
    #[serde(default)]
    pub ports: Vec<EndpointPortSummary>,
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPortSummary {
    /// `name`: the Service port it serves (empty for an unnamed port).
    #[serde(default)]
    pub name: String,
    /// `protocol`.
    pub protocol: String,
    /// `port` on the endpoint's address.
    pub port: u16,
}

impl ServiceSummary {
    /// The endpoint port serving `port` (matched by name and protocol), per endpoint.
    pub fn target_port(endpoint: &EndpointSummary, port: &ServicePortSummary) -> Option<u16> {
        endpoint
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
            .map(|p| p.port)
    }
}

/// The cluster-wide settings the node's proxy and DNS need (sent with the node directory).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceNetwork {
    /// `--service-cidr`.
    pub service_cidr: String,
    /// The `kube-dns` Service's address (the tenth of the service CIDR), served by every
    /// node's own resolver.
    pub cluster_dns: String,
    /// `--cluster-domain` (`cluster.local`).
    pub cluster_domain: String,
    /// `--service-node-port-range` as `FIRST-LAST`.
    pub node_port_range: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_round_trip_and_tolerate_missing_optional_fields() {
        let summary = ServiceSummary {
            key: ServiceKey {
                namespace: "default".into(),
                name: "web".into(),
            },
            service_type: ServiceType::NodePort,
            cluster_ips: vec!["10.43.0.20".into()],
            ports: vec![ServicePortSummary {
                name: "http".into(),
                protocol: "TCP".into(),
                port: 80,
                node_port: Some(30080),
            }],
            endpoints: vec![EndpointSummary {
                addresses: vec!["10.42.1.5".into()],
                node_name: Some("node-a".into()),
                ready: true,
                serving: true,
                ports: vec![EndpointPortSummary {
                    name: "http".into(),
                    protocol: "TCP".into(),
                    port: 8080,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&summary).unwrap();
        assert_eq!(
            serde_json::from_str::<ServiceSummary>(&json).unwrap(),
            summary
        );
        let minimal: ServiceSummary =
            serde_json::from_str(r#"{"key":{"namespace":"a","name":"b"}}"#).unwrap();
        assert_eq!(minimal.service_type, ServiceType::ClusterIP);
        assert_eq!(
            ServiceSummary::target_port(&summary.endpoints[0], &summary.ports[0]),
            Some(8080)
        );
    }
}
