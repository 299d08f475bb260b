//! The resolver's settings, and the host's upstream resolvers from `/etc/resolv.conf`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Settings of a [`ClusterDns`](crate::ClusterDns). `Default` is what a node uses, less the
/// listen address (the agent passes `<cluster dns ip>:53`).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `--cluster-domain` (`cluster.local`).
    pub cluster_domain: String,
    /// Where to serve, UDP and TCP on each (port 0 picks a free port; see
    /// [`ClusterDns::local_addrs`](crate::ClusterDns::local_addrs)).
    pub listen: Vec<SocketAddr>,
    /// Where names outside the cluster domain go, tried in order. Empty: such queries are
    /// answered from the cache or with SERVFAIL.
    pub upstreams: Vec<SocketAddr>,
    /// How many forwarded answers the cache keeps (oldest out first).
    pub cache_size: usize,
    /// How long one forwarded query may take over all upstreams before the cache's stale
    /// answer (or SERVFAIL) is sent.
    pub upstream_timeout: Duration,
    /// Forwarded queries in flight at once; more are answered SERVFAIL (a flood cannot grow
    /// tasks and sockets without bound).
    pub max_in_flight: usize,
    /// TCP connections at once; more are closed on accept.
    pub max_tcp_connections: usize,
    /// A TCP connection with no complete query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// How long past its TTL an answer may still be served while the upstreams do not answer
    /// (RFC 8767 suggests one to three days).
    pub max_stale: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cluster_domain: "cluster.local".into(),
            listen: Vec::new(),
            upstreams: host_upstreams(),
            cache_size: 10_000,
            upstream_timeout: Duration::from_secs(2),
            max_in_flight: 512,
            max_tcp_connections: 128,
            tcp_idle_timeout: Duration::from_secs(10),
            max_stale: Duration::from_secs(24 * 3600),
        }
    }
}

/// The nameservers of the host's `/etc/resolv.conf` on port 53 (loopback stubs such as
/// systemd-resolved's 127.0.0.53 included: the agent runs in the host's network namespace).
pub fn host_upstreams() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| parse_resolv_conf(&text))
        .unwrap_or_default()
}

/// The `nameserver` lines of a resolv.conf, as port-53 addresses (an IPv6 zone suffix such as
/// `%eth0` is dropped; unparsable lines are skipped).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            let addr = addr.split('%').next()?;
            addr.parse::<IpAddr>().ok()
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch lan\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n\
                    nameserver  192.0.2.1 \nnameserver bogus\noptions edns0\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap(),
            ]
        );
    }
}
