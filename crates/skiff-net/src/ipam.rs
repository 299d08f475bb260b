//! Address allocation inside the node's pod CIDR (pure; persistence lives in `state`).
//!
//! The network address, the gateway (first address, on the bridge) and the broadcast address
//! are never handed out. Allocation goes round-robin from the last address handed out, like
//! the CNI `host-local` plugin, so a freed address is reused as late as possible (stale ARP
//! entries and conntrack state of the old pod have time to expire).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The assignable range of one pod CIDR.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ipam {
    first: u32,
    last: u32,
}

impl Ipam {
    /// The range of `pod_cidr` (at most a /30) minus network, gateway and broadcast.
    pub(crate) fn new(pod_cidr: Ipv4Net) -> Self {
        let network = u32::from(pod_cidr.network());
        let broadcast = u32::from(pod_cidr.broadcast());
        Self {
            first: network + 2,
            last: broadcast - 1,
        }
    }

    /// How many pod addresses the range holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        (self.last - self.first + 1) as usize
    }

    /// Whether `ip` may be handed to a pod.
    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// The next address after `after` (wrapping) that is not in `used`.
    pub(crate) fn next_free(
        &self,
        used: &BTreeSet<Ipv4Addr>,
        after: Option<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        let start = match after.map(u32::from) {
            Some(a) if a >= self.first && a < self.last => a + 1,
            _ => self.first,
        };
        let span = self.last - self.first + 1;
        (0..span)
            .map(|step| self.first + (start - self.first + step) % span)
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_24_has_253_pod_addresses_skipping_network_gateway_broadcast() {
        let ipam = Ipam::new(net("10.42.1.0/24"));
        assert_eq!(ipam.capacity(), 253);
        assert!(!ipam.contains("10.42.1.0".parse().unwrap()));
        assert!(!ipam.contains("10.42.1.1".parse().unwrap()));
        assert!(ipam.contains("10.42.1.2".parse().unwrap()));
        assert!(ipam.contains("10.42.1.254".parse().unwrap()));
        assert!(!ipam.contains("10.42.1.255".parse().unwrap()));
        assert!(!ipam.contains("10.42.2.5".parse().unwrap()));
    }

    #[test]
    fn allocation_is_round_robin_and_exhausts() {
        let ipam = Ipam::new(net("10.0.0.0/29")); // .2 ..= .6
        let mut used = BTreeSet::new();
        let mut last = None;
        let mut order = Vec::new();
        while let Some(ip) = ipam.next_free(&used, last) {
            used.insert(ip);
            last = Some(ip);
            order.push(ip.octets()[3]);
        }
        assert_eq!(order, vec![2, 3, 4, 5, 6]);
        // Free .3; the next allocation after .6 wraps around and finds it.
        used.remove(&"10.0.0.3".parse().unwrap());
        assert_eq!(
            ipam.next_free(&used, last),
            Some("10.0.0.3".parse().unwrap())
        );
        // Hand out .3, free .5: allocation continues after .3 and finds .5.
        used.remove(&"10.0.0.5".parse().unwrap());
        used.insert("10.0.0.3".parse().unwrap());
        assert_eq!(
            ipam.next_free(&used, Some("10.0.0.3".parse().unwrap())),
            Some("10.0.0.5".parse().unwrap())
        );
    }

    #[test]
    fn a_30_has_one_address() {
        let ipam = Ipam::new(net("10.0.0.4/30"));
        assert_eq!(ipam.capacity(), 1);
        let used = BTreeSet::new();
        assert_eq!(
            ipam.next_free(&used, None),
            Some("10.0.0.6".parse().unwrap())
        );
        assert_eq!(
            ipam.next_free(&used, Some("10.0.0.6".parse().unwrap())),
            Some("10.0.0.6".parse().unwrap())
        );
    }

    #[test]
    fn a_stale_last_address_outside_the_range_restarts_at_the_beginning() {
        let ipam = Ipam::new(net("10.0.0.0/29"));
        let used = BTreeSet::new();
        assert_eq!(
            ipam.next_free(&used, Some("192.168.0.1".parse().unwrap())),
            Some("10.0.0.2".parse().unwrap())
        );
    }
}
