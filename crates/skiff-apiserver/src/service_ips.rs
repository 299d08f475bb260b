//! Service ClusterIP allocation from the service CIDR (`--service-cidr`, 10.43.0.0/16 by
//! default, as k3s), as upstream's allocator does it for single-stack IPv4 clusters.
//!
//! The stored Services are the record of what is allocated: an allocation looks at every
//! stored Service's `spec.clusterIPs` plus the reservations of creates still in flight, under
//! one lock, so two Services never get the same address and a deleted Service's address is
//! free again as soon as it is gone (whichever path deleted it). Dynamic allocation picks a
//! random free address from the upper part of the range, keeping the lower band for addresses
//! users choose (upstream's `ServiceIPStaticSubrange`); the first address belongs to the
//! `kubernetes` Service.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde_json::{json, Value};
use skiff_store::{ListOptions, Store};
use skiff_types::validation::{FieldError, ValidationErrors};

/// An IPv4 CIDR (`10.43.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u32,
    prefix: u8,
}

/// Why a service CIDR cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid service CIDR {cidr:?}: {reason}")]
pub struct InvalidServiceCidr {
    /// What was given.
    pub cidr: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl std::str::FromStr for ServiceCidr {
    type Err = InvalidServiceCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| InvalidServiceCidr {
            cidr: text.to_string(),
            reason,
        };
        let (addr, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.43.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("not an IPv4 address (only IPv4 service ranges are supported)"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length is not a number"))?;
        if !(8..=29).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 29"));
        }
        let mask = u32::MAX << (32 - prefix);
        let network = u32::from(addr);
        if network & !mask != 0 {
            return Err(bad("host bits are set (use the network address)"));
        }
        Ok(ServiceCidr { network, prefix })
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            network: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
            prefix: 16,
        }
    }
}

impl ServiceCidr {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The first usable address (the `kubernetes` Service's, 10.43.0.1).
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// The address `n` after the network address (`nth(1)` is [`ServiceCidr::first`],
    /// `nth(10)` the cluster DNS address 10.43.0.10).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network.saturating_add(n))
    }

    /// Whether `ip` is a usable address of the range (not the network or broadcast address).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.network && ip < self.network + self.size() - 1
    }

    /// Offset where dynamic allocation starts: upstream's static band is
    /// `min(max(16, size/16), 256)` addresses.
    fn static_band(&self) -> u32 {
        (self.size() / 16).clamp(16, 256)
    }
}

/// Why a requested address cannot be allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllocationError {
    /// The requested address is outside the range.
    NotInRange(String),
    /// Another Service has it.
    Allocated,
    /// Not an IPv4 address.
    Invalid(String),
}

/// Why a Service got no address.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AssignError {
    /// The addresses it asks for cannot be had (422, naming `spec.clusterIPs`).
    Invalid(ValidationErrors),
    /// No address is left in the range (upstream answers 500).
    Full,
}

/// Addresses handed out for creates that have not reached the store yet.
#[derive(Default)]
struct Pending {
    addresses: HashSet<u32>,
}

/// The allocator of one API server.
#[derive(Clone)]
pub(crate) struct ServiceIps {
    cidr: ServiceCidr,
    pending: Arc<Mutex<Pending>>,
}

/// An address held until the Service carrying it is stored (or the create failed): dropping it
/// ends the reservation.
pub(crate) struct Reservation {
    addresses: Vec<u32>,
    pending: Arc<Mutex<Pending>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for a in &self.addresses {
            pending.addresses.remove(a);
        }
    }
}

impl ServiceIps {
    /// An allocator over `cidr`.
    pub(crate) fn new(cidr: ServiceCidr) -> Self {
        ServiceIps {
            cidr,
            pending: Arc::default(),
        }
    }

    /// The range.
    pub(crate) fn cidr(&self) -> ServiceCidr {
        self.cidr
    }

    /// Gives `service` (create, or update from `old`) its cluster IPs: a free address when it
    /// needs one and has none, or a check of the addresses it asks for. `dry_run` checks and
    /// fills in without reserving. Returns the reservation to keep until the Service is stored.
    pub(crate) fn assign(
        &self,
        store: &Store,
        old: Option<&Value>,
        service: &mut Value,
        dry_run: bool,
    ) -> Result<Option<Reservation>, AssignError> {
        let Some(spec) = service.get("spec") else {
            return Ok(None);
        };
        if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
            return Ok(None);
        }
        let requested = cluster_ips(spec);
        if requested.first().is_some_and(|ip| ip == "None") {
            return Ok(None);
        }
        if let (Some(old), false) = (old, requested.is_empty()) {
            let before = old.get("spec").map(cluster_ips).unwrap_or_default();
            if before == requested {
                return Ok(None); // unchanged: already allocated to this Service
            }
        }
        let me = object_key(service);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let used = used_addresses(store, &me, &pending);
        let fail = |ip: &str, error: AllocationError| {
            let reason = match error {
                AllocationError::NotInRange(ip) => format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    self.cidr
                ),
                AllocationError::Allocated => "provided IP is already allocated".to_string(),
                AllocationError::Invalid(ip) => format!("{ip} is not a valid IPv4 address"),
            };
            AssignError::Invalid(ValidationErrors(vec![FieldError::invalid_rendered(
                "spec.clusterIPs",
                json!(requested),
                go_string_slice(&requested),
                format!("failed to allocate IP {ip}: {reason}"),
            )]))
        };
        let address = if let Some(first) = requested.first() {
            if requested.len() > 1 {
                return Err(AssignError::Invalid(ValidationErrors(vec![
                    FieldError::invalid_rendered(
                        "spec.clusterIPs",
                        json!(requested),
                        go_string_slice(&requested),
                        "this cluster serves IPv4 only: at most one cluster IP".to_string(),
                    ),
                ])));
            }
            let ip: Ipv4Addr = first
                .parse()
                .map_err(|_| fail(first, AllocationError::Invalid(first.clone())))?;
            if !self.cidr.contains(ip) {
                return Err(fail(first, AllocationError::NotInRange(first.clone())));
            }
            if used.contains(&u32::from(ip)) {
                return Err(fail(first, AllocationError::Allocated));
            }
            u32::from(ip)
        } else {
            self.pick(&used).ok_or(AssignError::Full)?
        };
        let text = Ipv4Addr::from(address).to_string();
        if let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("clusterIP".into(), json!(text));
            spec.insert("clusterIPs".into(), json!([text]));
        }
        if dry_run {
            return Ok(None);
        }
        pending.addresses.insert(address);
        Ok(Some(Reservation {
            addresses: vec![address],
            pending: self.pending.clone(),
        }))
    }

    /// A random free address of the dynamic band, else of the static band.
    fn pick(&self, used: &HashSet<u32>) -> Option<u32> {
        let first = self.cidr.network + 1;
        let last = self.cidr.network + self.cidr.size() - 2;
        let band = (first + self.cidr.static_band()).min(last);
        let mut rng = rand::rng();
        for (low, high) in [(band, last), (first, band.saturating_sub(1))] {
            if low > high {
                continue;
            }
            let span = high - low + 1;
            let start = rng.random_range(0..span);
            for step in 0..span {
                let candidate = low + (start + step) % span;
                if !used.contains(&candidate) {
                    return Some(candidate);
                }
            }
        }
        None
    }
}

fn cluster_ips(spec: &Value) -> Vec<String> {
    let listed: Vec<String> = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    match spec.get("clusterIP").and_then(Value::as_str) {
        Some(ip) if !ip.is_empty() => vec![ip.to_string()],
        _ => Vec::new(),
    }
}

fn object_key(object: &Value) -> (String, String) {
    let meta = object.get("metadata");
    let get = |field| {
        meta.and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (get("namespace"), get("name"))
}

/// Addresses of every stored Service other than `me`, plus pending reservations.
fn used_addresses(store: &Store, me: &(String, String), pending: &Pending) -> HashSet<u32> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Svc {
        metadata: Meta,
        spec: Spec,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Meta {
        namespace: String,
        name: String,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct Spec {
        #[serde(rename = "clusterIP")]
        cluster_ip: Option<String>,
        #[serde(rename = "clusterIPs")]
        cluster_ips: Vec<String>,
    }
    let mut used = pending.addresses.clone();
    let Ok(page) = store.list("services", None, &ListOptions::default()) else {
        return used;
    };
    for object in page.items {
        let Ok(svc) = serde_json::from_slice::<Svc>(object.json()) else {
            continue;
        };
        if (svc.metadata.namespace.as_str(), svc.metadata.name.as_str())
            == (me.0.as_str(), me.1.as_str())
        {
            continue;
        }
        for ip in svc
            .spec
            .cluster_ips
            .iter()
            .chain(svc.spec.cluster_ip.iter())
        {
            if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                used.insert(u32::from(ip));
            }
        }
    }
    used
}

/// Go's `%#v` of a `[]string` (JSON string quoting equals Go's for addresses).
fn go_string_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_bad_ones_name_the_problem() {
        let cidr: ServiceCidr = "10.43.0.0/16".parse().unwrap();
        assert_eq!(cidr, ServiceCidr::default());
        assert_eq!(cidr.first(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(cidr.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 44, 0, 1)));
        for (bad, reason) in [
            ("10.43.0.0", "ADDRESS/PREFIX"),
            ("10.43.0.1/16", "host bits"),
            ("fd00::/108", "IPv4"),
            ("10.0.0.0/4", "between 8 and 29"),
        ] {
            let err = bad.parse::<ServiceCidr>().unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn dynamic_picks_prefer_the_upper_band_and_fill_the_range() {
        let ips = ServiceIps::new("10.9.0.0/28".parse().unwrap());
        // /28: 14 usable addresses, static band 16 → everything is "static": still allocated.
        let mut used = HashSet::new();
        for _ in 0..14 {
            let ip = ips.pick(&used).expect("a free address");
            assert!(ips.cidr.contains(Ipv4Addr::from(ip)));
            assert!(used.insert(ip), "picked twice");
        }
        assert_eq!(ips.pick(&used), None);

        let ips = ServiceIps::new(ServiceCidr::default());
        for _ in 0..100 {
            let ip = Ipv4Addr::from(ips.pick(&HashSet::new()).unwrap());
            assert!(
                ip >= Ipv4Addr::new(10, 43, 1, 1),
                "{ip} from the static band"
            );
        }
    }

    #[test]
    fn go_renders_string_slices() {
        assert_eq!(
            go_string_slice(&["10.0.0.5".to_string()]),
            "[]string{\"10.0.0.5\"}"
        );
    }
}
