//! Resource usage read from cgroups, as cadvisor reads it for the kubelet's Summary API and
//! metrics-server: cumulative CPU time in nanoseconds and the *working set* (memory usage
//! minus inactive file pages, floored at 0), per container cgroup, per pod cgroup and for the
//! node (the root cgroup).
//!
//! - cgroup v1: `cpuacct.usage` (ns); `memory.usage_in_bytes` − `total_inactive_file` of
//!   `memory.stat`.
//! - cgroup v2: `cpu.stat` `usage_usec` × 1000; `memory.current` − `inactive_file` of
//!   `memory.stat`. The root cgroup has no `memory.current`: as runc's `rootStatsFromMeminfo`
//!   (which cadvisor uses), usage is `MemTotal − MemFree` of `/proc/meminfo`.
//!
//! Reading is a handful of small file reads per cgroup; nothing is written. Containers are the
//! runtime's own cgroups (`<parent>/pod<uid>/<instance id>`, [`crate::cgroups`]).

use std::path::Path;

use crate::cgroups::CgroupSetup;

/// One cgroup's usage at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupUsage {
    /// CPU time used since the cgroup was created, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Working-set memory in bytes (usage − inactive file, floored at 0).
    pub working_set_bytes: u64,
}

/// One running container's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// When this instance started (milliseconds since the Unix epoch), if known.
    pub started_ms: Option<i64>,
    /// Its usage.
    pub usage: CgroupUsage,
}

/// One pod's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// The pod cgroup's usage (all its containers), if readable.
    pub pod: Option<CgroupUsage>,
    /// Its running containers.
    pub containers: Vec<ContainerUsage>,
}

/// The node's and its pods' usage at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSnapshot {
    /// The node (root cgroup), if readable.
    pub node: Option<CgroupUsage>,
    /// Pods with at least one running container.
    pub pods: Vec<PodUsage>,
}

/// The value of `key` in a flat keyed file (`memory.stat`, `cpu.stat`, `/proc/meminfo` with
/// its `kB` unit and colon).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let name = parts.next()?.trim_end_matches(':');
        (name == key).then(|| parts.next()?.parse().ok())?
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Working set from a usage figure and the `memory.stat` text, as cadvisor computes it.
pub fn working_set(usage: u64, memory_stat: &str, inactive_key: &str) -> u64 {
    usage.saturating_sub(keyed_value(memory_stat, inactive_key).unwrap_or(0))
}

/// CPU nanoseconds from a v2 `cpu.stat`.
pub fn v2_cpu_ns(cpu_stat: &str) -> Option<u64> {
    keyed_value(cpu_stat, "usage_usec").map(|us| us.saturating_mul(1000))
}

/// Memory in use from `/proc/meminfo` (`MemTotal − MemFree`, bytes), the v2 root's usage.
pub fn meminfo_usage(meminfo: &str) -> Option<u64> {
    let total = keyed_value(meminfo, "MemTotal")?;
    let free = keyed_value(meminfo, "MemFree")?;
    Some(total.saturating_sub(free).saturating_mul(1024))
}

/// Usage of the cgroup `path` (absolute inside the hierarchies, e.g. `/skiff/pod…/…`), or
/// `None` when its files are missing (the cgroup is gone, or a controller is not mounted).
pub fn read_cgroup(setup: &CgroupSetup, path: &Path) -> Option<CgroupUsage> {
    match setup {
        CgroupSetup::V1 { .. } => {
            let cpu = setup.controller_dir("cpuacct", path)?;
            let mem = setup.controller_dir("memory", path)?;
            let cpu_usage_ns = read_u64(&cpu.join("cpuacct.usage"))?;
            let usage = read_u64(&mem.join("memory.usage_in_bytes"))?;
            let stat = read_text(&mem.join("memory.stat"))?;
            Some(CgroupUsage {
                cpu_usage_ns,
                working_set_bytes: working_set(usage, &stat, "total_inactive_file"),
            })
        }
        CgroupSetup::V2 { .. } => {
            let dir = setup.controller_dir("", path)?;
            let cpu_usage_ns = v2_cpu_ns(&read_text(&dir.join("cpu.stat"))?)?;
            let usage = read_u64(&dir.join("memory.current"))?;
            let stat = read_text(&dir.join("memory.stat"))?;
            Some(CgroupUsage {
                cpu_usage_ns,
                working_set_bytes: working_set(usage, &stat, "inactive_file"),
            })
        }
    }
}

/// The node's usage: the root cgroup, as the kubelet's node summary (cadvisor's `/`).
pub fn read_node(setup: &CgroupSetup) -> Option<CgroupUsage> {
    match setup {
        CgroupSetup::V1 { .. } => read_cgroup(setup, Path::new("/")),
        CgroupSetup::V2 { root } => {
            let cpu_usage_ns = v2_cpu_ns(&read_text(&root.join("cpu.stat"))?)?;
            let usage = meminfo_usage(&read_text(Path::new("/proc/meminfo"))?)?;
            let stat = read_text(&root.join("memory.stat"))?;
            Some(CgroupUsage {
                cpu_usage_ns,
                working_set_bytes: working_set(usage, &stat, "inactive_file"),
            })
        }
    }
}

/// A pod's state if no one holds it now. Usage is sampled while the pods table is locked
/// (and the fresh-container check runs on an async thread): waiting for a pod worker busy
/// launching a container would stall both; a busy pod is sampled next time instead.
fn try_state(
    entry: &crate::context::PodEntry,
) -> Option<std::sync::MutexGuard<'_, crate::state::PodRecord>> {
    match entry.state.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

impl crate::Runtime {
    /// Start times (milliseconds since the Unix epoch) of the running containers, from
    /// memory only (no file reads): the agent uses it to report a fresh container early.
    pub fn running_container_starts(&self) -> Vec<i64> {
        let table = self.inner().pods.lock().unwrap_or_else(|p| p.into_inner());
        table
            .values()
            .flat_map(|entry| {
                let Some(record) = try_state(entry) else {
                    return Vec::new();
                };
                record
                    .containers
                    .values()
                    .filter_map(|c| {
                        let instance = c.instance.as_ref().filter(|i| i.is_running())?;
                        instance.started_at.map(|t| t.as_millisecond())
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Reads the node's and every running container's usage from their cgroups (blocking
    /// file reads: call from a blocking thread).
    pub fn resource_usage(&self) -> UsageSnapshot {
        let inner = self.inner();
        let setup = &inner.cgroups;
        // Copy out what is needed under the lock; read files after releasing it.
        let pods: Vec<(String, String, String, std::path::PathBuf, Vec<_>)> = {
            let table = inner.pods.lock().unwrap_or_else(|p| p.into_inner());
            table
                .iter()
                .filter_map(|(uid, entry)| {
                    let record = try_state(entry)?;
                    let containers: Vec<(String, Option<i64>, std::path::PathBuf)> = record
                        .containers
                        .iter()
                        .filter_map(|(name, c)| {
                            let instance = c.instance.as_ref().filter(|i| i.is_running())?;
                            Some((
                                name.clone(),
                                instance.started_at.map(|t| t.as_millisecond()),
                                instance.cgroup.clone(),
                            ))
                        })
                        .collect();
                    if containers.is_empty() {
                        return None;
                    }
                    let meta = &record.pod.metadata;
                    Some((
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default(),
                        uid.clone(),
                        inner.pod_cgroup(uid),
                        containers,
                    ))
                })
                .collect()
        };
        let pods = pods
            .into_iter()
            .map(|(namespace, name, uid, pod_cgroup, containers)| PodUsage {
                namespace,
                name,
                uid,
                pod: read_cgroup(setup, &pod_cgroup),
                containers: containers
                    .into_iter()
                    .filter_map(|(name, started_ms, cgroup)| {
                        Some(ContainerUsage {
                            name,
                            started_ms,
                            usage: read_cgroup(setup, &cgroup)?,
                        })
                    })
                    .collect(),
            })
            .filter(|p| !p.containers.is_empty())
            .collect();
        UsageSnapshot {
            node: read_node(setup),
            pods,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fake hierarchy under a temporary directory.
    fn tmpdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-usage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const V2_MEMORY_STAT: &str = "anon 1048576\nfile 8388608\nkernel 262144\n\
active_anon 0\ninactive_anon 1048576\nactive_file 4194304\ninactive_file 4194304\n\
unevictable 0\n";

    #[test]
    fn v2_container_cgroup_is_read_as_cadvisor_does() {
        let root = tmpdir("v2");
        let dir = root.join("skiff/podu1/c1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 0\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.current"), "10485760\n").unwrap();
        std::fs::write(dir.join("memory.stat"), V2_MEMORY_STAT).unwrap();
        let setup = CgroupSetup::V2 { root: root.clone() };
        let usage = read_cgroup(&setup, Path::new("/skiff/podu1/c1")).unwrap();
        assert_eq!(usage.cpu_usage_ns, 1_500_000_000);
        assert_eq!(usage.working_set_bytes, 10485760 - 4194304);
        // Floored at zero when inactive file exceeds usage.
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        let usage = read_cgroup(&setup, Path::new("/skiff/podu1/c1")).unwrap();
        assert_eq!(usage.working_set_bytes, 0);
        // A cgroup that is gone reads as nothing.
        assert_eq!(read_cgroup(&setup, Path::new("/skiff/podu1/gone")), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn v2_root_uses_meminfo_and_root_stat() {
        let root = tmpdir("v2root");
        std::fs::write(root.join("cpu.stat"), "usage_usec 42\n").unwrap();
        std::fs::write(root.join("memory.stat"), V2_MEMORY_STAT).unwrap();
        let setup = CgroupSetup::V2 { root: root.clone() };
        let meminfo = "MemTotal:        8000000 kB\nMemFree:         3000000 kB\n\
MemAvailable:    6000000 kB\n";
        assert_eq!(meminfo_usage(meminfo), Some(5_000_000 * 1024));
        // The real /proc/meminfo: the node's figure is positive and below the total.
        let node = read_node(&setup).unwrap();
        assert_eq!(node.cpu_usage_ns, 42_000);
        let total = keyed_value(
            &std::fs::read_to_string("/proc/meminfo").unwrap(),
            "MemTotal",
        )
        .unwrap();
        assert!(node.working_set_bytes > 0 && node.working_set_bytes < total * 1024);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn v1_cgroup_uses_cpuacct_and_total_inactive_file() {
        let root = tmpdir("v1");
        let cpu = root.join("cpuacct");
        let mem = root.join("memory");
        std::fs::create_dir_all(cpu.join("skiff/podu1/c1")).unwrap();
        std::fs::create_dir_all(mem.join("skiff/podu1/c1")).unwrap();
        std::fs::write(cpu.join("skiff/podu1/c1/cpuacct.usage"), "123456789\n").unwrap();
        std::fs::write(
            mem.join("skiff/podu1/c1/memory.usage_in_bytes"),
            "20971520\n",
        )
        .unwrap();
        // v1 memory.stat: the local `inactive_file` must not be used, the hierarchical
        // `total_inactive_file` must.
        std::fs::write(
            mem.join("skiff/podu1/c1/memory.stat"),
            "cache 8388608\nrss 1048576\ninactive_file 4096\nactive_file 0\n\
total_cache 8388608\ntotal_rss 1048576\ntotal_inactive_file 8388608\ntotal_active_file 0\n",
        )
        .unwrap();
        let setup = CgroupSetup::V1 {
            hierarchies: vec![
                (cpu.clone(), vec!["cpuacct".into()]),
                (mem.clone(), vec!["memory".into()]),
            ],
        };
        let usage = read_cgroup(&setup, Path::new("/skiff/podu1/c1")).unwrap();
        assert_eq!(usage.cpu_usage_ns, 123456789);
        assert_eq!(usage.working_set_bytes, 20971520 - 8388608);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn this_machines_root_cgroup_reads() {
        let setup = CgroupSetup::detect().unwrap();
        let node = read_node(&setup).expect("the root cgroup's usage");
        assert!(node.cpu_usage_ns > 0);
        assert!(node.working_set_bytes > 0);
    }
}
