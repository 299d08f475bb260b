//! The `kubernetes` Service for pods of a node without a direct path to the API (behind NAT,
//! or a firewall that lets only the link's UDP through): their connections go through the
//! link's API tunnel ([`skiff_link::proto::tunnel`]).
//!
//! The controller probes the `kubernetes` Service's endpoints (the server's advertised address
//! and API port) with a TCP connect when it starts, whenever the link (re)connects or the
//! Service changes, and every [`PROBE_EVERY`]. When none answers (`--api-via-link=auto`) or
//! always (`--api-via-link=always`), the node answers the Service's cluster IP itself: the
//! address goes on `lo` as a Service address the proxy never DNATs (as the cluster DNS address
//! does), and a listener on the cluster IP and port hands each accepted connection to one
//! tunnel stream. Pods and host-network processes reach that address; the LAN does not (it is
//! a Service address, not routed to the node). While the link is down a connection is reset at
//! once rather than left hanging. When the direct path answers again, the address and the
//! listener go and the proxy DNATs to the endpoints as before.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use skiff_link::proto::service::{ServiceKey, ServiceSummary};
use skiff_link::quic::AgentLink;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, OnceCell, Semaphore};

use crate::config::ApiViaLink;

/// How often the direct path is probed.
const PROBE_EVERY: Duration = Duration::from_secs(30);
/// Time one probe connect may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Time the server has to answer a tunnel request.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel with no byte either way for this long is closed (the server has its own limit).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Most pod connections carried at once (more are reset; the server refuses beyond its own).
const MAX_CONNECTIONS: usize = 256;

/// What the controller needs of the `kubernetes` Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KubernetesService {
    /// Its cluster IP and HTTPS port (what pods dial).
    pub(crate) cluster: SocketAddrV4,
    /// Its endpoints (the servers' advertised addresses and API port).
    pub(crate) endpoints: Vec<SocketAddr>,
}

impl KubernetesService {
    /// `default/kubernetes` from the node's Services table.
    pub(crate) fn from_services(services: &[ServiceSummary]) -> Option<Self> {
        let key = ServiceKey {
            namespace: "default".into(),
            name: "kubernetes".into(),
        };
        let service = services.iter().find(|s| s.key == key)?;
        let ip: Ipv4Addr = service.cluster_ips.first()?.parse().ok()?;
        let port = service
            .ports
            .iter()
            .find(|p| p.protocol == "TCP" && p.name == "https")
            .or_else(|| service.ports.iter().find(|p| p.protocol == "TCP"))?;
        let mut endpoints = Vec::new();
        for endpoint in &service.endpoints {
            let Some(target) = ServiceSummary::target_port(endpoint, port) else {
                continue;
            };
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse() {
                    endpoints.push(SocketAddr::new(ip, target));
                }
            }
        }
        Some(KubernetesService {
            cluster: SocketAddrV4::new(ip, port.port),
            endpoints,
        })
    }
}

/// The running controller (stops when dropped).
#[derive(Debug)]
pub(crate) struct ApiTunnel {
    service: watch::Sender<Option<KubernetesService>>,
    recheck: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiTunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiTunnel {
    /// Starts the controller; `local` tells the service data path which cluster IP the node
    /// answers itself (`None`: none, the proxy DNATs it).
    pub(crate) fn start(
        mode: ApiViaLink,
        link: Arc<OnceCell<Arc<AgentLink>>>,
        local: watch::Sender<Option<Ipv4Addr>>,
    ) -> Self {
        let (service, services) = watch::channel(None);
        let recheck = Arc::new(Notify::new());
        let task = tokio::spawn(control(mode, link, local, services, recheck.clone()));
        ApiTunnel {
            service,
            recheck,
            task,
        }
    }

    /// The `kubernetes` Service as the node's table has it now.
    pub(crate) fn set_service(&self, service: Option<KubernetesService>) {
        self.service.send_if_modified(|current| {
            if *current == service {
                return false;
            }
            *current = service;
            true
        });
    }

    /// Probes again now (the link just connected).
    pub(crate) fn recheck(&self) {
        self.recheck.notify_one();
    }
}

/// Whether any endpoint accepts a TCP connection.
async fn direct_path(endpoints: &[SocketAddr]) -> bool {
    for endpoint in endpoints {
        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(endpoint)).await {
            return true;
        }
    }
    false
}

/// A listener serving one cluster address through the tunnel.
struct Serving {
    address: SocketAddrV4,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn control(
    mode: ApiViaLink,
    link: Arc<OnceCell<Arc<AgentLink>>>,
    local: watch::Sender<Option<Ipv4Addr>>,
    mut services: watch::Receiver<Option<KubernetesService>>,
    recheck: Arc<Notify>,
) {
    let mut serving: Option<Serving> = None;
    loop {
        let service = services.borrow_and_update().clone();
        let wanted = match (mode, service) {
            (ApiViaLink::Never, _) | (_, None) => None,
            (ApiViaLink::Always, Some(service)) => Some(service.cluster),
            (ApiViaLink::Auto, Some(service)) => {
                if direct_path(&service.endpoints).await {
                    None
                } else {
                    Some(service.cluster)
                }
            }
        };
        if serving.as_ref().map(|s| s.address) != wanted {
            serving = None;
            match wanted {
                Some(address) => match listen(address) {
                    Ok(listener) => {
                        tracing::info!(%address, ?mode, "the API is not reachable directly from this node: pods reach the kubernetes Service through the link");
                        local.send_replace(Some(*address.ip()));
                        serving = Some(Serving {
                            address,
                            task: tokio::spawn(serve(listener, link.clone())),
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%address, %error, "cannot listen for the API tunnel; retrying");
                        local.send_replace(None);
                    }
                },
                None => {
                    if local.send_replace(None).is_some() {
                        tracing::info!("the API is reachable directly from this node again: the kubernetes Service goes there");
                    }
                }
            }
        }
        tokio::select! {
            changed = services.changed() => if changed.is_err() { return },
            _ = recheck.notified() => {}
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// A listener on `address`, which need not be on the node yet (the data path puts it on `lo`
/// right after): `IP_FREEBIND`.
fn listen(address: SocketAddrV4) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a c_int option value of the right size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.bind(SocketAddr::V4(address))?;
    socket.listen(128)
}

/// Accepts pod connections and carries each through one tunnel stream.
async fn serve(listener: TcpListener, link: Arc<OnceCell<Arc<AgentLink>>>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "API tunnel listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = MAX_CONNECTIONS, "too many connections through the API tunnel; resetting one");
            reset(tcp);
            continue;
        };
        let link = link.get().cloned();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(link) = link else {
                reset(tcp);
                return;
            };
            match link.open_api_tunnel(OPEN_TIMEOUT).await {
                Ok(tunnel) => {
                    let _ = tcp.set_nodelay(true);
                    if let Err(end) = tunnel.splice(tcp, IDLE_TIMEOUT).await {
                        tracing::debug!(%peer, %end, "API tunnel ended early");
                    }
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "no API tunnel for a pod connection");
                    reset(tcp);
                }
            }
        });
    }
}

/// Closes with a reset: the client learns at once that nothing answers.
fn reset(tcp: TcpStream) {
    #[allow(deprecated)]
    let _ = tcp.set_linger(Some(Duration::ZERO));
    drop(tcp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_link::proto::service::{
        EndpointPortSummary, EndpointSummary, ServicePortSummary, ServiceType,
    };

    fn kubernetes(endpoint_port: u16) -> ServiceSummary {
        ServiceSummary {
            key: ServiceKey {
                namespace: "default".into(),
                name: "kubernetes".into(),
            },
            service_type: ServiceType::ClusterIP,
            cluster_ips: vec!["10.43.0.1".into()],
            ports: vec![ServicePortSummary {
                name: "https".into(),
                protocol: "TCP".into(),
                port: 443,
                node_port: None,
            }],
            endpoints: vec![EndpointSummary {
                addresses: vec!["192.168.50.1".into()],
                ready: true,
                serving: true,
                ports: vec![EndpointPortSummary {
                    name: "https".into(),
                    protocol: "TCP".into(),
                    port: endpoint_port,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_kubernetes_service_is_read_from_the_table() {
        let mut other = kubernetes(1);
        other.key.namespace = "kube-system".into();
        let found = KubernetesService::from_services(&[other, kubernetes(6443)]).unwrap();
        assert_eq!(found.cluster, "10.43.0.1:443".parse().unwrap());
        assert_eq!(found.endpoints, vec!["192.168.50.1:6443".parse().unwrap()]);
        assert_eq!(KubernetesService::from_services(&[]), None);
    }

    #[tokio::test]
    async fn the_probe_sees_a_listener_and_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert!(direct_path(&[closed, open]).await);
        assert!(!direct_path(&[closed]).await);
        assert!(!direct_path(&[]).await);
    }
}
