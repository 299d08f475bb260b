//! The node's cluster DNS, built in (what CoreDNS is in a kubeadm cluster).
//!
//! Every node answers the cluster DNS address itself (the agent puts it on a local device), so
//! a pod's lookups never leave its node and keep working while the node is cut off from the
//! server or the internet. The records come from the Services the link delivers
//! ([`ServiceSummary`]), swapped in whole on each update; names outside the cluster domain go
//! to the host's resolvers through a bounded cache that serves stale answers while those do not
//! answer (a site offline keeps resolving what it resolved before).
//!
//! - [`zone`]: the names and records, as CoreDNS's `kubernetes` plugin answers them.
//! - [`cache`]: forwarded answers (RFC 2308 negative caching, RFC 8767 serve-stale).
//! - [`upstream`]: one forwarded question (UDP, TCP on truncation).
//! - [`resolve`]: request to response.
//! - [`server`]: the UDP and TCP loops and their limits against hostile input.
//!
//! Messages are parsed and written by `hickory-proto`; nothing here encodes packets by hand.

mod cache;
mod config;
#[cfg(test)]
mod fuzz;
mod resolve;
mod server;
mod upstream;
mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::rr::Name;
use skiff_link_proto::proto::service::ServiceSummary;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{watch, Semaphore};

pub use config::{host_upstreams, parse_resolv_conf, DnsConfig};
pub use server::MAX_TCP_QUERY;
pub use zone::ZONE_TTL;

use resolve::Resolver;
use server::{RateLimitedLog, Server};
use zone::Zone;

/// Why the resolver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The cluster domain is not a valid DNS name.
    #[error("cluster domain {0:?} is not a valid DNS name")]
    Domain(String),
    /// No listen address was given.
    #[error("no listen address")]
    NoListen,
    /// A socket could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running cluster resolver. Dropping it (or [`ClusterDns::shutdown`]) stops it.
#[derive(Debug)]
pub struct ClusterDns {
    server: Arc<Server>,
    ns_addrs: Vec<IpAddr>,
    local_addrs: Vec<SocketAddr>,
    shutdown: watch::Sender<bool>,
}

impl ClusterDns {
    /// Binds UDP and TCP on every listen address and starts serving (an empty zone until the
    /// first [`update`](Self::update)). Must be called inside a tokio runtime.
    pub async fn start(config: DnsConfig) -> Result<ClusterDns, DnsError> {
        let domain = Name::from_ascii(config.cluster_domain.trim_end_matches('.'))
            .map(|mut d| {
                d.set_fqdn(true);
                d.to_lowercase()
            })
            .map_err(|_| DnsError::Domain(config.cluster_domain.clone()))?;
        if domain.is_root() {
            return Err(DnsError::Domain(config.cluster_domain.clone()));
        }
        if config.listen.is_empty() {
            return Err(DnsError::NoListen);
        }
        let mut sockets = Vec::new();
        for addr in &config.listen {
            sockets.push(bind_pair(*addr).await?);
        }
        let local_addrs: Vec<SocketAddr> = sockets.iter().map(|(_, _, a)| *a).collect();
        // Never forward to ourselves (a resolv.conf naming the cluster address would loop).
        let upstreams: Vec<SocketAddr> = config
            .upstreams
            .iter()
            .filter(|u| !local_addrs.contains(u) && !config.listen.contains(u))
            .copied()
            .collect();
        let ns_addrs: Vec<IpAddr> = local_addrs
            .iter()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let server = Arc::new(Server {
            resolver: Resolver {
                zone: RwLock::new(Arc::new(Zone::build(&domain, &ns_addrs, &[]))),
                domain,
                cache: Mutex::new(cache::Cache::new(config.cache_size, config.max_stale)),
                upstreams,
                upstream_timeout: config.upstream_timeout,
                #[cfg(test)]
                panic_on: Mutex::new(None),
            },
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            tcp_slots: Arc::new(Semaphore::new(config.max_tcp_connections)),
            tcp_idle_timeout: config.tcp_idle_timeout,
            malformed: RateLimitedLog::new(Duration::from_secs(10)),
            overload: RateLimitedLog::new(Duration::from_secs(10)),
        });
        let (shutdown, watcher) = watch::channel(false);
        // One receive loop per core on each UDP socket: local answers are computed inline in
        // the loop, so one loop would answer on one core only.
        let udp_loops = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        for (udp, tcp, _) in sockets {
            let (udp, tcp) = (Arc::new(udp), Arc::new(tcp));
            for _ in 0..udp_loops {
                let (s, w, udp) = (server.clone(), watcher.clone(), udp.clone());
                server::supervise("UDP", move || {
                    server::serve_udp(s.clone(), udp.clone(), w.clone())
                });
            }
            let (s, w) = (server.clone(), watcher.clone());
            server::supervise("TCP", move || {
                server::serve_tcp(s.clone(), tcp.clone(), w.clone())
            });
        }
        tracing::info!(addrs = ?local_addrs, upstreams = ?server.resolver.upstreams, "cluster DNS serving");
        Ok(ClusterDns {
            server,
            ns_addrs,
            local_addrs,
            shutdown,
        })
    }

    /// Replaces the zone with the records of `services` (the link's full list). The new zone
    /// is built before the swap; queries in progress finish on the old one.
    pub fn update(&self, services: &[ServiceSummary]) {
        let zone = Arc::new(Zone::build(
            &self.server.resolver.domain,
            &self.ns_addrs,
            services,
        ));
        tracing::debug!(
            services = services.len(),
            names = zone.len(),
            "cluster DNS zone updated"
        );
        let mut current = self
            .server
            .resolver
            .zone
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *current = zone;
    }

    /// The addresses served (UDP and TCP on each), with the ports actually bound.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops serving (the same as dropping it).
    pub fn shutdown(self) {}
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds UDP and TCP on `addr`; with port 0, UDP picks the port and TCP takes the same one
/// (retried when another process holds it on TCP).
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let bind_err = |source| DnsError::Bind { addr, source };
    let mut last = None;
    for _ in 0..if addr.port() == 0 { 16 } else { 1 } {
        let udp = UdpSocket::bind(addr).await.map_err(bind_err)?;
        let local = udp.local_addr().map_err(bind_err)?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e) => last = Some(e),
        }
    }
    Err(bind_err(last.unwrap_or_else(|| {
        std::io::Error::other("no port free on both UDP and TCP")
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::RecordType;

    async fn ask(addr: SocketAddr, name: &str) -> Option<Message> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut request = Message::new(9, MessageType::Query, OpCode::Query);
        request.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        socket
            .send_to(&request.to_vec().unwrap(), addr)
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Message::from_vec(&buf[..n]).ok()
    }

    #[tokio::test]
    async fn a_panicking_query_costs_only_its_own_answer() {
        let dns = ClusterDns::start(DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            upstreams: Vec::new(),
            ..Default::default()
        })
        .await
        .unwrap();
        let addr = dns.local_addrs()[0];
        let poison = Name::from_ascii("boom.cluster.local.").unwrap();
        *dns.server.resolver.panic_on.lock().unwrap() = Some(poison);
        for _ in 0..3 {
            assert!(ask(addr, "boom.cluster.local.").await.is_none());
            let answer = ask(addr, "nope.cluster.local.")
                .await
                .expect("still serving");
            assert_eq!(
                answer.metadata.response_code,
                hickory_proto::op::ResponseCode::NXDomain
            );
        }
    }
}
