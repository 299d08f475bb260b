//! Resource amounts as the scheduler counts them: milli-CPU, bytes of memory and ephemeral
//! storage, and extended resources (`example.com/gpu`) as integers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_types::quantity::Quantity;

/// CPU counted for a container without a CPU request when scoring (upstream
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory counted for a container without a memory request when scoring (upstream
/// `DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;
/// Pods a node takes when its status does not say.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// A set of resource amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Extended resources (name → integer amount), sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list (`requests`, `allocatable`). Unparsable quantities count as 0
    /// (the API server validates them on write).
    pub fn from_list(list: &BTreeMap<String, ApiQuantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            let Ok(q) = Quantity::parse(&q.0) else {
                continue;
            };
            match name.as_str() {
                "cpu" => r.milli_cpu = q.milli_value(),
                "memory" => r.memory = q.value(),
                "ephemeral-storage" => r.ephemeral_storage = q.value(),
                "pods" => {}
                other if is_scalar(other) => r.set_scalar(other, q.value()),
                _ => {}
            }
        }
        r
    }

    /// Whether nothing is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }

    /// The amount of an extended resource.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn set_scalar(&mut self, name: &str, value: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = value,
            Err(i) => self.scalar.insert(i, (name.to_string(), value)),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let cur = self.scalar(name);
            self.set_scalar(name, cur.saturating_add(*v));
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let cur = self.scalar(name);
            self.set_scalar(name, cur.saturating_sub(*v));
        }
    }

    /// Raises each amount of `self` to at least `other`'s.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let cur = self.scalar(name);
            if *v > cur {
                self.set_scalar(name, *v);
            }
        }
    }
}

/// Whether a resource name is an extended resource the scheduler counts (anything with a
/// domain prefix, plus `hugepages-*`), as upstream's `IsScalarResourceName`.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

/// The `pods` amount of an allocatable list, or [`DEFAULT_MAX_PODS`] when absent.
pub fn allowed_pods(list: Option<&BTreeMap<String, ApiQuantity>>) -> i64 {
    list.and_then(|l| l.get("pods"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map(|q| q.value())
        .unwrap_or(DEFAULT_MAX_PODS)
}

/// The requests of one container, and its requests with upstream's scoring defaults for
/// missing CPU and memory.
#[derive(Debug)]
pub struct ContainerRequests {
    /// As written.
    pub requests: Resources,
    /// CPU and memory with defaults for what is missing.
    pub non_zero: (i64, i64),
}

impl ContainerRequests {
    /// Reads a container's `resources.requests`.
    pub fn of(requests: Option<&BTreeMap<String, ApiQuantity>>) -> ContainerRequests {
        let requests = requests.map(Resources::from_list).unwrap_or_default();
        let has_cpu = requests.milli_cpu != 0;
        let has_memory = requests.memory != 0;
        ContainerRequests {
            non_zero: (
                if has_cpu {
                    requests.milli_cpu
                } else {
                    DEFAULT_MILLI_CPU_REQUEST
                },
                if has_memory {
                    requests.memory
                } else {
                    DEFAULT_MEMORY_REQUEST
                },
            ),
            requests,
        }
    }
}

/// What a whole pod requests (upstream `resourcehelper.PodRequests`): the sum of its
/// containers, at least the largest init container (restartable "sidecar" init containers
/// run beside everything after them), plus the pod overhead.
pub fn pod_requests(
    containers: &[ContainerRequests],
    init_containers: &[(ContainerRequests, bool)],
    overhead: Option<&BTreeMap<String, ApiQuantity>>,
) -> (Resources, (i64, i64)) {
    let mut total = Resources::default();
    let mut non_zero = (0i64, 0i64);
    for c in containers {
        total.add(&c.requests);
        non_zero.0 += c.non_zero.0;
        non_zero.1 += c.non_zero.1;
    }
    let mut sidecars = Resources::default();
    let mut sidecars_nz = (0i64, 0i64);
    let mut init_max = Resources::default();
    let mut init_max_nz = (0i64, 0i64);
    for (c, restartable) in init_containers {
        let (this, this_nz) = if *restartable {
            total.add(&c.requests);
            non_zero.0 += c.non_zero.0;
            non_zero.1 += c.non_zero.1;
            sidecars.add(&c.requests);
            sidecars_nz.0 += c.non_zero.0;
            sidecars_nz.1 += c.non_zero.1;
            (sidecars.clone(), sidecars_nz)
        } else {
            let mut this = c.requests.clone();
            this.add(&sidecars);
            (
                this,
                (c.non_zero.0 + sidecars_nz.0, c.non_zero.1 + sidecars_nz.1),
            )
        };
        init_max.max_with(&this);
        init_max_nz = (init_max_nz.0.max(this_nz.0), init_max_nz.1.max(this_nz.1));
    }
    total.max_with(&init_max);
    non_zero = (non_zero.0.max(init_max_nz.0), non_zero.1.max(init_max_nz.1));
    if let Some(overhead) = overhead {
        let o = Resources::from_list(overhead);
        non_zero.0 += o.milli_cpu;
        non_zero.1 += o.memory;
        total.add(&o);
    }
    (total, non_zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, &str)]) -> BTreeMap<String, ApiQuantity> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string())))
            .collect()
    }

    #[test]
    fn parses_lists() {
        let r = Resources::from_list(&list(&[
            ("cpu", "1500m"),
            ("memory", "1Gi"),
            ("ephemeral-storage", "2G"),
            ("example.com/gpu", "2"),
            ("pods", "110"),
        ]));
        assert_eq!(r.milli_cpu, 1500);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.ephemeral_storage, 2_000_000_000);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(allowed_pods(Some(&list(&[("pods", "20")]))), 20);
        assert_eq!(allowed_pods(None), 110);
    }

    #[test]
    fn init_containers_take_the_max_and_sidecars_add_up() {
        let c = |cpu: &str| ContainerRequests::of(Some(&list(&[("cpu", cpu)])));
        // Upstream's example: containers 2 + 1 CPU, init containers 2 and 2 -> 3.
        let (r, _) = pod_requests(&[c("2"), c("1")], &[(c("2"), false), (c("2"), false)], None);
        assert_eq!(r.milli_cpu, 3000);
        // An init container larger than the sum wins.
        let (r, _) = pod_requests(&[c("1")], &[(c("4"), false)], None);
        assert_eq!(r.milli_cpu, 4000);
        // A sidecar (restartable init container) runs beside the app containers.
        let (r, _) = pod_requests(&[c("1")], &[(c("500m"), true)], None);
        assert_eq!(r.milli_cpu, 1500);
        // Overhead adds.
        let (r, _) = pod_requests(&[c("1")], &[], Some(&list(&[("cpu", "250m")])));
        assert_eq!(r.milli_cpu, 1250);
    }

    #[test]
    fn scoring_defaults_for_missing_requests() {
        let none = ContainerRequests::of(None);
        assert_eq!(
            none.non_zero,
            (DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST)
        );
        let (r, nz) = pod_requests(&[none], &[], None);
        assert!(r.is_zero());
        assert_eq!(nz, (100, 200 * 1024 * 1024));
    }
}
