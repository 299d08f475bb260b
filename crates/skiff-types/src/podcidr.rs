//! Pod CIDR allocation: the cluster CIDR (`--cluster-cidr`, default `10.42.0.0/16`) split into
//! one subnet per node (default `/24`), written by the server into `node.spec.podCIDR(s)`.
//!
//! [`PodCidrAllocator`] is pure bookkeeping: the server restores it from the `spec.podCIDR` of
//! the Node objects it already has ([`PodCidrAllocator::restore`]), so assignments are stable
//! across restarts, then [`allocate`](PodCidrAllocator::allocate)s for new nodes and
//! [`release`](PodCidrAllocator::release)s when a node is deleted. Like upstream's range
//! allocator it hands out subnets round-robin, so a just-released subnet is not immediately
//! reused while stale routes to it may still exist on other nodes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The cluster CIDR used when `--cluster-cidr` is not given.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// Prefix length of each node's pod CIDR unless configured otherwise (254 pod addresses).
pub const DEFAULT_NODE_PREFIX_LEN: u8 = 24;
/// Longest node prefix accepted: a /30 still leaves one pod address beside the gateway.
pub const MAX_NODE_PREFIX_LEN: u8 = 30;
/// Most subnets one cluster CIDR may be split into (upstream's limit: 16 bits of difference).
pub const MAX_SUBNET_BITS: u8 = 16;

/// Errors of CIDR parsing and pod CIDR allocation. Each names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodCidrError {
    /// The text is not an IPv4 CIDR such as `10.42.0.0/16`.
    #[error("invalid IPv4 CIDR {input:?}: {reason}")]
    InvalidCidr {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The node prefix is shorter than the cluster prefix, or longer than a /30.
    #[error(
        "node pod CIDR prefix length /{node_prefix_len} does not fit cluster CIDR {cluster}: \
         it must be between /{} and /{MAX_NODE_PREFIX_LEN}",
        cluster.prefix_len()
    )]
    InvalidNodePrefix {
        /// The cluster CIDR.
        cluster: Ipv4Cidr,
        /// The requested per-node prefix length.
        node_prefix_len: u8,
    },
    /// Splitting would produce more than 2^16 subnets.
    #[error(
        "cluster CIDR {cluster} split into /{node_prefix_len} subnets gives more than \
         2^{MAX_SUBNET_BITS} node subnets; use a longer cluster prefix or a shorter node prefix"
    )]
    TooManySubnets {
        /// The cluster CIDR.
        cluster: Ipv4Cidr,
        /// The requested per-node prefix length.
        node_prefix_len: u8,
    },
    /// A stored `podCIDR` lies outside the cluster CIDR.
    #[error("node {node:?}: podCIDR {cidr} is outside the cluster CIDR {cluster}")]
    OutsideCluster {
        /// Node name.
        node: String,
        /// Its pod CIDR.
        cidr: Ipv4Cidr,
        /// The cluster CIDR.
        cluster: Ipv4Cidr,
    },
    /// A stored `podCIDR` has a different size than this allocator's subnets.
    #[error("node {node:?}: podCIDR {cidr} is not a /{expected} subnet of the cluster CIDR")]
    WrongSize {
        /// Node name.
        node: String,
        /// Its pod CIDR.
        cidr: Ipv4Cidr,
        /// The allocator's node prefix length.
        expected: u8,
    },
    /// A stored `podCIDR` is already assigned to another node.
    #[error("node {node:?}: podCIDR {cidr} is already assigned to node {owner:?}")]
    Taken {
        /// Node name.
        node: String,
        /// The contested pod CIDR.
        cidr: Ipv4Cidr,
        /// The node holding it.
        owner: String,
    },
    /// The node already holds a different pod CIDR.
    #[error("node {node:?} already has podCIDR {existing}, cannot also take {requested}")]
    AlreadyAssigned {
        /// Node name.
        node: String,
        /// The pod CIDR it holds.
        existing: Ipv4Cidr,
        /// The pod CIDR asked for.
        requested: Ipv4Cidr,
    },
    /// Every subnet is taken.
    #[error(
        "no pod CIDR left for node {node:?}: all {capacity} /{node_prefix_len} subnets of \
         {cluster} are assigned"
    )]
    Exhausted {
        /// Node name.
        node: String,
        /// The cluster CIDR.
        cluster: Ipv4Cidr,
        /// The allocator's node prefix length.
        node_prefix_len: u8,
        /// Number of subnets in the cluster CIDR.
        capacity: u32,
    },
}

/// An IPv4 network in CIDR notation whose host bits are zero, e.g. `10.42.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// A CIDR from its network address and prefix length; refuses set host bits.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Self, PodCidrError> {
        let invalid = |reason: String| PodCidrError::InvalidCidr {
            input: format!("{network}/{prefix_len}"),
            reason,
        };
        if prefix_len > 32 {
            return Err(invalid("the prefix length must be at most 32".into()));
        }
        let masked = u32::from(network) & mask(prefix_len);
        if masked != u32::from(network) {
            return Err(invalid(format!(
                "host bits are set (the network is {}/{prefix_len})",
                Ipv4Addr::from(masked)
            )));
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }

    /// The network address (first address).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask, e.g. `255.255.255.0` for a /24.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix_len))
    }

    /// The last address of the range (the broadcast address of a /31 or shorter prefix).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix_len))
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    /// Whether `addr` lies in this range.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// Whether `other` lies entirely inside this range.
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network)
    }
}

fn mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = PodCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| PodCidrError::InvalidCidr {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| invalid("expected ADDRESS/PREFIX, e.g. 10.42.0.0/16"))?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| invalid("the address is not an IPv4 address"))?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the prefix length is not a number from 0 to 32"));
        }
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| invalid("the prefix length is not a number from 0 to 32"))?;
        Ipv4Cidr::new(network, prefix_len).map_err(|e| match e {
            PodCidrError::InvalidCidr { reason, .. } => PodCidrError::InvalidCidr {
                input: s.to_string(),
                reason,
            },
            other => other,
        })
    }
}

/// Splits a cluster CIDR into per-node subnets and tracks which node holds which.
#[derive(Debug, Clone)]
pub struct PodCidrAllocator {
    cluster: Ipv4Cidr,
    node_prefix_len: u8,
    by_node: BTreeMap<String, u32>,
    by_index: BTreeMap<u32, String>,
    next: u32,
}

impl PodCidrAllocator {
    /// An empty allocator splitting `cluster` into `/node_prefix_len` subnets.
    pub fn new(cluster: Ipv4Cidr, node_prefix_len: u8) -> Result<Self, PodCidrError> {
        if node_prefix_len < cluster.prefix_len() || node_prefix_len > MAX_NODE_PREFIX_LEN {
            return Err(PodCidrError::InvalidNodePrefix {
                cluster,
                node_prefix_len,
            });
        }
        if node_prefix_len - cluster.prefix_len() > MAX_SUBNET_BITS {
            return Err(PodCidrError::TooManySubnets {
                cluster,
                node_prefix_len,
            });
        }
        Ok(Self {
            cluster,
            node_prefix_len,
            by_node: BTreeMap::new(),
            by_index: BTreeMap::new(),
            next: 0,
        })
    }

    /// The cluster CIDR being split.
    pub fn cluster(&self) -> Ipv4Cidr {
        self.cluster
    }

    /// Prefix length of each node subnet.
    pub fn node_prefix_len(&self) -> u8 {
        self.node_prefix_len
    }

    /// Total number of node subnets.
    pub fn capacity(&self) -> u32 {
        1u32 << (self.node_prefix_len - self.cluster.prefix_len())
    }

    /// Number of subnets currently assigned.
    pub fn assigned_count(&self) -> usize {
        self.by_node.len()
    }

    /// The subnet held by `node`, if any.
    pub fn assigned(&self, node: &str) -> Option<Ipv4Cidr> {
        self.by_node.get(node).map(|&i| self.subnet(i))
    }

    /// All assignments, by node name.
    pub fn assignments(&self) -> impl Iterator<Item = (&str, Ipv4Cidr)> + '_ {
        self.by_node
            .iter()
            .map(|(node, &i)| (node.as_str(), self.subnet(i)))
    }

    /// Records an assignment that already exists (a Node's stored `spec.podCIDR`), so that it
    /// is kept and never handed to another node. Restoring the same pair twice is a no-op.
    pub fn restore(&mut self, node: &str, cidr: Ipv4Cidr) -> Result<(), PodCidrError> {
        if !self.cluster.contains_cidr(&cidr) {
            return Err(PodCidrError::OutsideCluster {
                node: node.to_string(),
                cidr,
                cluster: self.cluster,
            });
        }
        if cidr.prefix_len() != self.node_prefix_len {
            return Err(PodCidrError::WrongSize {
                node: node.to_string(),
                cidr,
                expected: self.node_prefix_len,
            });
        }
        let index = self.index_of(cidr);
        if let Some(&held) = self.by_node.get(node) {
            if held == index {
                return Ok(());
            }
            return Err(PodCidrError::AlreadyAssigned {
                node: node.to_string(),
                existing: self.subnet(held),
                requested: cidr,
            });
        }
        if let Some(owner) = self.by_index.get(&index) {
            return Err(PodCidrError::Taken {
                node: node.to_string(),
                cidr,
                owner: owner.clone(),
            });
        }
        self.by_node.insert(node.to_string(), index);
        self.by_index.insert(index, node.to_string());
        Ok(())
    }

    /// Restores many stored assignments (name, `spec.podCIDR` text), returning the ones that
    /// could not be kept (unparsable, outside the cluster CIDR, wrong size, or duplicated) so
    /// the caller can report them; the valid ones are all recorded.
    pub fn restore_all<'a>(
        &mut self,
        existing: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<PodCidrError> {
        let mut rejected = Vec::new();
        for (node, text) in existing {
            let result = text
                .parse::<Ipv4Cidr>()
                .and_then(|cidr| self.restore(node, cidr));
            if let Err(e) = result {
                rejected.push(e);
            }
        }
        rejected
    }

    /// The subnet for `node`: the one it already holds, or the next free one.
    pub fn allocate(&mut self, node: &str) -> Result<Ipv4Cidr, PodCidrError> {
        if let Some(cidr) = self.assigned(node) {
            return Ok(cidr);
        }
        let capacity = self.capacity();
        for step in 0..capacity {
            let index = (self.next + step) % capacity;
            if !self.by_index.contains_key(&index) {
                self.by_node.insert(node.to_string(), index);
                self.by_index.insert(index, node.to_string());
                self.next = (index + 1) % capacity;
                return Ok(self.subnet(index));
            }
        }
        Err(PodCidrError::Exhausted {
            node: node.to_string(),
            cluster: self.cluster,
            node_prefix_len: self.node_prefix_len,
            capacity,
        })
    }

    /// Gives back the subnet of a deleted node; returns it, or `None` if it held none.
    pub fn release(&mut self, node: &str) -> Option<Ipv4Cidr> {
        let index = self.by_node.remove(node)?;
        self.by_index.remove(&index);
        Some(self.subnet(index))
    }

    fn subnet(&self, index: u32) -> Ipv4Cidr {
        let host_bits = 32 - u32::from(self.node_prefix_len);
        let base = u32::from(self.cluster.network());
        Ipv4Cidr {
            network: Ipv4Addr::from(base + (index << host_bits)),
            prefix_len: self.node_prefix_len,
        }
    }

    fn index_of(&self, cidr: Ipv4Cidr) -> u32 {
        let host_bits = 32 - u32::from(self.node_prefix_len);
        (u32::from(cidr.network()) - u32::from(self.cluster.network())) >> host_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("valid test CIDR")
    }

    fn default_allocator() -> PodCidrAllocator {
        PodCidrAllocator::new(cidr(DEFAULT_CLUSTER_CIDR), DEFAULT_NODE_PREFIX_LEN)
            .expect("default split is valid")
    }

    #[test]
    fn parses_and_prints_cidrs() {
        let c = cidr("10.42.3.0/24");
        assert_eq!(c.network(), Ipv4Addr::new(10, 42, 3, 0));
        assert_eq!(c.prefix_len(), 24);
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.last(), Ipv4Addr::new(10, 42, 3, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 42, 3, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 4, 0)));
        assert!(cidr("10.42.0.0/16").contains_cidr(&c));
        assert!(!c.contains_cidr(&cidr("10.42.0.0/16")));
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
    }

    #[test]
    fn hostile_cidr_text_is_refused_with_the_reason() {
        for (input, needle) in [
            ("10.42.0.0", "expected ADDRESS/PREFIX"),
            (
                "10.42.0.1/16",
                "host bits are set (the network is 10.42.0.0/16)",
            ),
            ("10.42.0.0/33", "at most 32"),
            ("10.42.0.0/-1", "prefix length"),
            ("10.42.0.0/+8", "prefix length"),
            ("10.42.0.0/", "prefix length"),
            ("10.42.0.0/0016", "prefix length"),
            ("10.420.0.0/16", "not an IPv4 address"),
            ("fd00::/64", "not an IPv4 address"),
            ("", "expected ADDRESS/PREFIX"),
        ] {
            let err = input.parse::<Ipv4Cidr>().expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input}: {err}");
        }
    }

    #[test]
    fn default_split_hands_out_distinct_24s_in_order() {
        let mut a = default_allocator();
        assert_eq!(a.capacity(), 256);
        assert_eq!(a.allocate("n1").unwrap(), cidr("10.42.0.0/24"));
        assert_eq!(a.allocate("n2").unwrap(), cidr("10.42.1.0/24"));
        assert_eq!(a.allocate("n3").unwrap(), cidr("10.42.2.0/24"));
        // Idempotent: asking again for a node returns what it has.
        assert_eq!(a.allocate("n2").unwrap(), cidr("10.42.1.0/24"));
        assert_eq!(a.assigned("n3"), Some(cidr("10.42.2.0/24")));
        assert_eq!(a.assigned_count(), 3);
    }

    #[test]
    fn released_subnets_come_back_only_after_the_others() {
        let mut a = PodCidrAllocator::new(cidr("10.0.0.0/22"), 24).unwrap();
        let first = a.allocate("a").unwrap();
        a.allocate("b").unwrap();
        assert_eq!(a.release("a"), Some(first));
        assert_eq!(a.release("a"), None);
        // Round-robin: the next two go to fresh subnets, then the released one is reused.
        assert_eq!(a.allocate("c").unwrap(), cidr("10.0.2.0/24"));
        assert_eq!(a.allocate("d").unwrap(), cidr("10.0.3.0/24"));
        assert_eq!(a.allocate("e").unwrap(), first);
        let err = a.allocate("f").unwrap_err();
        assert!(matches!(err, PodCidrError::Exhausted { capacity: 4, .. }));
        assert!(err.to_string().contains("\"f\""), "{err}");
    }

    #[test]
    fn restart_keeps_existing_assignments_and_never_duplicates() {
        let mut before = default_allocator();
        let mut stored = Vec::new();
        for n in 0..50 {
            let node = format!("node-{n}");
            let c = before.allocate(&node).unwrap();
            stored.push((node, c.to_string()));
        }
        // Delete a few nodes before the "restart".
        stored.retain(|(node, _)| !matches!(node.as_str(), "node-3" | "node-10"));

        let mut after = default_allocator();
        let rejected = after.restore_all(stored.iter().map(|(n, c)| (n.as_str(), c.as_str())));
        assert!(rejected.is_empty(), "{rejected:?}");
        for (node, c) in &stored {
            assert_eq!(after.allocate(node).unwrap().to_string(), *c, "{node}");
        }
        let mut seen: std::collections::BTreeSet<Ipv4Cidr> =
            stored.iter().map(|(_, c)| cidr(c)).collect();
        for n in 0..100 {
            let c = after.allocate(&format!("new-{n}")).unwrap();
            assert!(seen.insert(c), "{c} handed out twice");
        }
    }

    #[test]
    fn restore_rejects_bad_stored_values_naming_the_node() {
        let mut a = default_allocator();
        a.restore("n1", cidr("10.42.7.0/24")).unwrap();
        a.restore("n1", cidr("10.42.7.0/24")).unwrap();
        let rejected = a.restore_all([
            ("n2", "10.42.7.0/24"),
            ("n3", "10.43.0.0/24"),
            ("n4", "10.42.8.0/25"),
            ("n5", "garbage"),
            ("n1", "10.42.9.0/24"),
            ("n6", "10.42.9.0/24"),
        ]);
        let messages: Vec<String> = rejected.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 5, "{messages:?}");
        assert!(messages[0].contains("\"n2\"") && messages[0].contains("\"n1\""));
        assert!(messages[1].contains("outside the cluster CIDR"));
        assert!(messages[2].contains("not a /24"));
        assert!(messages[3].contains("garbage"));
        assert!(messages[4].contains("already has podCIDR 10.42.7.0/24"));
        // The valid one was kept; the rejected ones changed nothing.
        assert_eq!(a.assigned("n6"), Some(cidr("10.42.9.0/24")));
        assert_eq!(a.assigned("n1"), Some(cidr("10.42.7.0/24")));
        assert_eq!(a.assigned_count(), 2);
    }

    #[test]
    fn node_prefix_must_fit_the_cluster() {
        let cluster = cidr("10.42.0.0/16");
        assert!(matches!(
            PodCidrAllocator::new(cluster, 8),
            Err(PodCidrError::InvalidNodePrefix { .. })
        ));
        assert!(matches!(
            PodCidrAllocator::new(cluster, 31),
            Err(PodCidrError::InvalidNodePrefix { .. })
        ));
        assert!(matches!(
            PodCidrAllocator::new(cidr("10.0.0.0/8"), 30),
            Err(PodCidrError::TooManySubnets { .. })
        ));
        let a = PodCidrAllocator::new(cidr("10.0.0.0/8"), 24).unwrap();
        assert_eq!(a.capacity(), 65536);
        let whole = PodCidrAllocator::new(cidr("10.42.0.0/24"), 24).unwrap();
        assert_eq!(whole.capacity(), 1);
    }

    #[test]
    fn large_split_allocates_the_last_subnet() {
        let mut a = PodCidrAllocator::new(cidr("10.0.0.0/8"), 24).unwrap();
        a.restore("last", cidr("10.255.255.0/24")).unwrap();
        assert_eq!(a.assigned("last"), Some(cidr("10.255.255.0/24")));
        assert_eq!(a.allocate("first").unwrap(), cidr("10.0.0.0/24"));
    }
}
