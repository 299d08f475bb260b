//! Service node port allocation from `--service-node-port-range` (30000-32767 by default), as
//! upstream's portallocator: NodePort and LoadBalancer Services get a free port for every port
//! that has none; a requested one must lie in the range and belong to no other Service (422
//! `spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`).
//!
//! As for cluster IPs ([`crate::service_ips`]), the stored Services are the record: a port is
//! taken while a stored Service (other than the one being written) lists it or a create still
//! in flight reserved it, so a deleted Service's ports, or those of a Service that changed to
//! ClusterIP, are free again as soon as it is stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde_json::{json, Value};
use skiff_store::{ListOptions, Store};
use skiff_types::validation::{FieldError, ValidationErrors};

/// A range of node ports (`30000-32767`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl Default for NodePortRange {
    fn default() -> Self {
        NodePortRange {
            first: 30000,
            last: 32767,
        }
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why a node port range cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid node port range {range:?}: expected FIRST-LAST, e.g. 30000-32767, with 1 <= FIRST <= LAST <= 65535")]
pub struct InvalidNodePortRange {
    /// What was given.
    pub range: String,
}

impl std::str::FromStr for NodePortRange {
    type Err = InvalidNodePortRange;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidNodePortRange {
            range: text.to_string(),
        };
        let (first, last) = match text.trim().split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text.trim(), text.trim()),
        };
        let first: u16 = first.parse().map_err(|_| bad())?;
        let last: u16 = last.parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(NodePortRange { first, last })
    }
}

impl NodePortRange {
    fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }
}

/// Ports handed out for writes that have not reached the store yet.
#[derive(Default)]
struct Pending {
    ports: HashSet<i64>,
}

/// The node port allocator of one API server.
#[derive(Clone)]
pub(crate) struct NodePorts {
    range: NodePortRange,
    pending: Arc<Mutex<Pending>>,
}

/// Ports held until the Service carrying them is stored (or the write failed).
pub(crate) struct Reservation {
    ports: Vec<i64>,
    pending: Arc<Mutex<Pending>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for p in &self.ports {
            pending.ports.remove(p);
        }
    }
}

/// Why a Service got no node ports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AssignError {
    /// A requested port cannot be had (422).
    Invalid(ValidationErrors),
    /// No port is left in the range (upstream answers 500).
    Full,
}

/// Whether Services of `spec`'s type get node ports.
fn wants_node_ports(spec: &Value) -> bool {
    match spec.get("type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => {
            spec.get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

fn port_key(port: &Value) -> (i64, String) {
    (
        port.get("port").and_then(Value::as_i64).unwrap_or(0),
        port.get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string(),
    )
}

/// Upstream's `dropTypeDependentFields` for node ports: a Service changed to a type without
/// node ports (ClusterIP, ExternalName) loses the ones it had, unless the update set them
/// itself. Runs before validation (which refuses node ports on ClusterIP Services).
pub(crate) fn drop_on_type_change(old: &Value, new: &mut Value) {
    let Some(old_spec) = old.get("spec") else {
        return;
    };
    if !wants_node_ports(old_spec) {
        return;
    }
    let Some(spec) = new.get_mut("spec") else {
        return;
    };
    if matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    ) {
        return;
    }
    let old_ports: HashMap<(i64, String), i64> = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            (
                port_key(p),
                p.get("nodePort").and_then(Value::as_i64).unwrap_or(0),
            )
        })
        .collect();
    // The other type-dependent fields go with them when the update left them as they were.
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|ips| !ips.is_empty());
    if let Some(map) = spec.as_object_mut() {
        let mut fields = vec![
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
        ];
        if !external_ips {
            fields.push("externalTrafficPolicy");
        }
        for field in fields {
            if map.get(field).is_some() && map.get(field) == old_spec.get(field) {
                map.remove(field);
            }
        }
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let np = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if np != 0 && old_ports.get(&port_key(port)) == Some(&np) {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
}

impl NodePorts {
    pub(crate) fn new(range: NodePortRange) -> Self {
        NodePorts {
            range,
            pending: Arc::default(),
        }
    }

    /// Gives `service` (create, or update from `old`) its node ports: the old ones kept for
    /// ports that still need one, free ones for the rest, requested ones checked. `dry_run`
    /// checks and fills in without reserving.
    pub(crate) fn assign(
        &self,
        store: &Store,
        old: Option<&Value>,
        service: &mut Value,
        dry_run: bool,
    ) -> Result<Option<Reservation>, AssignError> {
        let me = object_key(service);
        let Some(spec) = service.get_mut("spec") else {
            return Ok(None);
        };
        if !wants_node_ports(spec) {
            return Ok(None);
        }
        // What the Service had: kept for the same port/protocol when not given.
        let mine: HashMap<(i64, String), i64> = old
            .and_then(|o| o.get("spec"))
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
                (np != 0).then(|| (port_key(p), np))
            })
            .collect();
        let held: HashSet<i64> = mine.values().copied().collect();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut used = used_ports(store, &me);
        used.extend(pending.ports.iter().copied());
        let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let mut taken_here: HashSet<i64> = HashSet::new();
        let mut fresh = Vec::new();
        for (i, port) in ports.iter_mut().enumerate() {
            let requested = port.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            let path = format!("spec.ports[{i}].nodePort");
            let chosen = if requested != 0 {
                if !self.range.contains(requested) {
                    errors.push(FieldError::invalid(
                        path,
                        requested,
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}",
                            self.range
                        ),
                    ));
                    continue;
                }
                // Another Service has it (this one may use it for several protocols).
                if used.contains(&requested) && !held.contains(&requested) {
                    errors.push(FieldError::invalid(
                        path,
                        requested,
                        "provided port is already allocated",
                    ));
                    continue;
                }
                requested
            } else if let Some(np) = mine.get(&port_key(port)) {
                *np
            } else {
                let mut exclude = used.clone();
                exclude.extend(taken_here.iter().copied());
                match self.pick(&exclude) {
                    Some(p) => p,
                    None => return Err(AssignError::Full),
                }
            };
            if !held.contains(&chosen) && !used.contains(&chosen) {
                fresh.push(chosen);
            }
            taken_here.insert(chosen);
            if let Some(p) = port.as_object_mut() {
                p.insert("nodePort".into(), json!(chosen));
            }
        }
        if !errors.is_empty() {
            return Err(AssignError::Invalid(ValidationErrors(errors)));
        }
        if dry_run || fresh.is_empty() {
            return Ok(None);
        }
        pending.ports.extend(fresh.iter().copied());
        Ok(Some(Reservation {
            ports: fresh,
            pending: self.pending.clone(),
        }))
    }

    /// A random free port of the range.
    fn pick(&self, used: &HashSet<i64>) -> Option<i64> {
        let first = i64::from(self.range.first);
        let span = i64::from(self.range.last) - first + 1;
        let start = rand::rng().random_range(0..span);
        (0..span)
            .map(|step| first + (start + step) % span)
            .find(|p| !used.contains(p))
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

/// Node ports of every stored Service other than `me`.
fn used_ports(store: &Store, me: &(String, String)) -> HashSet<i64> {
    let mut used = HashSet::new();
    let Ok(page) = store.list("services", None, &ListOptions::default()) else {
        return used;
    };
    for object in page.items {
        let Ok(svc) = serde_json::from_slice::<Value>(object.json()) else {
            continue;
        };
        if object_key(&svc) == *me {
            continue;
        }
        for port in svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(np) = port.get("nodePort").and_then(Value::as_i64) {
                if np != 0 {
                    used.insert(np);
                }
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_the_flag() {
        assert_eq!(
            "30000-32767".parse::<NodePortRange>(),
            Ok(NodePortRange::default())
        );
        assert_eq!(
            "31000".parse::<NodePortRange>(),
            Ok(NodePortRange {
                first: 31000,
                last: 31000
            })
        );
        for bad in ["", "0-10", "200-100", "a-b", "1-70000"] {
            assert!(bad.parse::<NodePortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn changing_to_cluster_ip_drops_the_old_node_ports() {
        let old = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        drop_on_type_change(&old, &mut new);
        assert_eq!(new["spec"]["ports"][0].get("nodePort"), None);
        let old =
            json!({"spec": {"type": "NodePort", "externalTrafficPolicy": "Cluster", "ports": []}});
        let mut new =
            json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": "Cluster", "ports": []}});
        drop_on_type_change(&old, &mut new);
        assert_eq!(new["spec"].get("externalTrafficPolicy"), None);
        // A node port the update sets itself stays (and validation refuses it).
        let mut new = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30081}]}});
        drop_on_type_change(&old, &mut new);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30081);
    }
}
