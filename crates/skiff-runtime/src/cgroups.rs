//! Pod cgroups on v1 (one directory per pod in every controller hierarchy) and v2 (one
//! directory in the unified tree): creation with the pod-level limits, OOM counters, removal.

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};
use crate::spec::resources::{shares_to_weight, PodCgroupResources, QUOTA_PERIOD};

/// Which cgroup hierarchy the machine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSetup {
    /// Legacy or hybrid: one mount per controller (the unified mount, if any, is not used).
    V1 {
        /// Mount point of each v1 hierarchy with its controllers, e.g. (`/sys/fs/cgroup/memory`,
        /// [`memory`]); named hierarchies (name=systemd) are left out.
        hierarchies: Vec<(PathBuf, Vec<String>)>,
    },
    /// Unified hierarchy mounted at `root`.
    V2 {
        /// Usually `/sys/fs/cgroup`.
        root: PathBuf,
    },
}

impl CgroupSetup {
    /// Detects the setup with libcgroups (the library libcontainer creates container cgroups
    /// with, so both agree): unified means v2; legacy or hybrid means v1, with the hierarchies
    /// read from `/proc/self/mountinfo` by their controllers (libcgroups finds v1 mounts by
    /// directory name only). A `/sys/fs/cgroup` that libcgroups cannot classify (neither cgroup2
    /// nor tmpfs) is taken as v1 too, as before.
    pub fn detect() -> Result<CgroupSetup> {
        use libcgroups::common::{get_cgroup_setup, CgroupSetup as Mode, GetCgroupSetupError};
        let root = Path::new(libcgroups::common::DEFAULT_CGROUP_ROOT);
        match get_cgroup_setup() {
            Ok(Mode::Unified) => {
                return Ok(CgroupSetup::V2 {
                    root: root.to_path_buf(),
                })
            }
            Ok(Mode::Legacy | Mode::Hybrid) | Err(GetCgroupSetupError::FailedToDetect) => {}
            Err(error) => {
                return Err(RuntimeError::io(
                    "detect the cgroup setup at",
                    root,
                    std::io::Error::other(error.to_string()),
                ))
            }
        }
        Ok(CgroupSetup::V1 {
            hierarchies: v1_hierarchies()?,
        })
    }

    /// Whether this is cgroup v2.
    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupSetup::V2 { .. })
    }

    /// Whether memory+swap limits exist (v1 memsw accounting, or v2).
    pub fn has_swap_accounting(&self) -> bool {
        match self {
            CgroupSetup::V2 { .. } => true,
            CgroupSetup::V1 { .. } => self
                .controller_dir("memory", Path::new("/"))
                .map(|d| d.join("memory.memsw.limit_in_bytes").exists())
                .unwrap_or(false),
        }
    }

    /// Host directory of cgroup `path` (absolute, e.g. `/skiff/pod1`) for `controller` (v1), or
    /// in the unified tree (v2, controller ignored).
    pub fn controller_dir(&self, controller: &str, path: &Path) -> Option<PathBuf> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        match self {
            CgroupSetup::V2 { root } => Some(root.join(rel)),
            CgroupSetup::V1 { hierarchies } => hierarchies
                .iter()
                .find(|(_, ctrls)| ctrls.iter().any(|c| c == controller))
                .map(|(mount, _)| mount.join(rel)),
        }
    }

    /// Every host directory of cgroup `path`, across hierarchies (v1) or the one (v2).
    pub fn all_dirs(&self, path: &Path) -> Vec<PathBuf> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        match self {
            CgroupSetup::V2 { root } => vec![root.join(rel)],
            CgroupSetup::V1 { hierarchies } => {
                hierarchies.iter().map(|(m, _)| m.join(rel)).collect()
            }
        }
    }
}

/// The v1 controllers (anything else in the super options is a mount option or a name).
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// The mounted v1 hierarchies of this machine: mount point and controllers.
pub(crate) fn v1_hierarchies() -> Result<Vec<(PathBuf, Vec<String>)>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RuntimeError::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse_v1_mounts(&mountinfo))
}

/// v1 hierarchies from /proc/self/mountinfo: mount point and controllers (super options).
pub(crate) fn parse_v1_mounts(mountinfo: &str) -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let _source = post.next();
        let super_opts = post.next().unwrap_or("");
        let mount_point = pre.split(' ').nth(4).unwrap_or("");
        let controllers: Vec<String> = super_opts
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o))
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        out.push((PathBuf::from(mount_point), controllers));
    }
    out
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| RuntimeError::io("write cgroup file", path, e))
}

/// The v2 controllers the pod cgroup needs from its parents.
const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids"];

/// Creates the parent cgroup of all pods at `parent` and caps its memory at `memory_limit`
/// (node allocatable: capacity minus system-reserved), as the kubelet's
/// `--enforce-node-allocatable=pods` does on `kubepods`: pods without limits (BestEffort,
/// Burstable) can then exhaust only what was allocated to pods, never the node's reserve.
pub fn limit_pods_parent(setup: &CgroupSetup, parent: &Path, memory_limit: u64) -> Result<()> {
    match setup {
        CgroupSetup::V1 { .. } => {
            if let Some(mem) = setup.controller_dir("memory", parent) {
                std::fs::create_dir_all(&mem)
                    .map_err(|e| RuntimeError::io("create cgroup", &mem, e))?;
                write(&mem, "memory.limit_in_bytes", &memory_limit.to_string())?;
            }
        }
        CgroupSetup::V2 { root } => {
            let mut current = root.clone();
            for component in parent.strip_prefix("/").unwrap_or(parent).components() {
                enable_v2_controllers(&current);
                current.push(component);
                std::fs::create_dir_all(&current)
                    .map_err(|e| RuntimeError::io("create cgroup", &current, e))?;
            }
            enable_v2_controllers(&current);
            write(&current, "memory.max", &memory_limit.to_string())?;
        }
    }
    Ok(())
}

/// The memory limit on the pods' parent cgroup, if any (`None`: unlimited or no memory
/// controller).
pub fn pods_parent_memory_limit(setup: &CgroupSetup, parent: &Path) -> Option<u64> {
    let (dir, file) = match setup {
        CgroupSetup::V1 { .. } => (
            setup.controller_dir("memory", parent)?,
            "memory.limit_in_bytes",
        ),
        CgroupSetup::V2 { .. } => (setup.controller_dir("memory", parent)?, "memory.max"),
    };
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Creates the pod cgroup at `path` and writes its limits.
pub fn create_pod(setup: &CgroupSetup, path: &Path, res: &PodCgroupResources) -> Result<()> {
    match setup {
        CgroupSetup::V1 { .. } => {
            for dir in setup.all_dirs(path) {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| RuntimeError::io("create cgroup", &dir, e))?;
            }
            if let Some(cpuset) = setup.controller_dir("cpuset", path) {
                copy_cpuset_from_parents(&cpuset)?;
            }
            if let Some(cpu) = setup.controller_dir("cpu", path) {
                write(&cpu, "cpu.shares", &res.cpu_shares.to_string())?;
                write(&cpu, "cpu.cfs_period_us", &QUOTA_PERIOD.to_string())?;
                write(
                    &cpu,
                    "cpu.cfs_quota_us",
                    &res.cpu_quota.unwrap_or(-1).to_string(),
                )?;
            }
            if let (Some(mem), Some(limit)) =
                (setup.controller_dir("memory", path), res.memory_limit)
            {
                write(&mem, "memory.limit_in_bytes", &limit.to_string())?;
                if mem.join("memory.memsw.limit_in_bytes").exists() {
                    write(&mem, "memory.memsw.limit_in_bytes", &limit.to_string())?;
                }
            }
            if let (Some(pids), Some(limit)) = (setup.controller_dir("pids", path), res.pids_limit)
            {
                write(&pids, "pids.max", &limit.to_string())?;
            }
        }
        CgroupSetup::V2 { root } => {
            let dir = setup.all_dirs(path).remove(0);
            // Enable the controllers along the path, from the root down.
            let mut current = root.clone();
            for component in path.strip_prefix("/").unwrap_or(path).components() {
                enable_v2_controllers(&current);
                current.push(component);
                std::fs::create_dir_all(&current)
                    .map_err(|e| RuntimeError::io("create cgroup", &current, e))?;
            }
            enable_v2_controllers(&dir);
            write(
                &dir,
                "cpu.weight",
                &shares_to_weight(res.cpu_shares).to_string(),
            )?;
            let max = match res.cpu_quota {
                Some(q) => format!("{q} {QUOTA_PERIOD}"),
                None => format!("max {QUOTA_PERIOD}"),
            };
            write(&dir, "cpu.max", &max)?;
            if let Some(limit) = res.memory_limit {
                write(&dir, "memory.max", &limit.to_string())?;
                let _ = write(&dir, "memory.swap.max", "0");
            }
            if let Some(limit) = res.pids_limit {
                write(&dir, "pids.max", &limit.to_string())?;
            }
        }
    }
    Ok(())
}

fn enable_v2_controllers(dir: &Path) {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for c in V2_CONTROLLERS {
        if available.split_whitespace().any(|a| a == *c) {
            // Failing to enable one controller (e.g. busy) only loses that limit.
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// v1 cpuset directories start empty; a task cannot join until cpus and mems are set.
fn copy_cpuset_from_parents(dir: &Path) -> Result<()> {
    let mut chain = vec![dir.to_path_buf()];
    let mut p = dir.parent();
    while let Some(parent) = p {
        if !parent.join("cpuset.cpus").exists() {
            break;
        }
        chain.push(parent.to_path_buf());
        p = parent.parent();
    }
    for pair in chain.windows(2).rev() {
        let (child, parent) = (&pair[0], &pair[1]);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(child.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let value = std::fs::read_to_string(parent.join(file))
                    .map_err(|e| RuntimeError::io("read", parent.join(file), e))?;
                write(child, file, value.trim())?;
            }
        }
    }
    Ok(())
}

/// Removes the cgroup `path` (and any leftover children, deepest first) everywhere.
/// A cgroup that still has tasks is reported as an error.
pub fn remove(setup: &CgroupSetup, path: &Path) -> Result<()> {
    for dir in setup.all_dirs(path) {
        if !dir.exists() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs(&dir, &mut dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            rmdir_retrying(&d)?;
        }
    }
    Ok(())
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

fn rmdir_retrying(dir: &Path) -> Result<()> {
    // Exited tasks can take a moment to leave the cgroup.
    let mut delay = std::time::Duration::from_millis(2);
    for _ in 0..12 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(RuntimeError::io("remove cgroup", dir, e)),
        }
    }
    std::fs::remove_dir(dir).map_err(|e| RuntimeError::io("remove cgroup", dir, e))
}

/// How many OOM kills happened in the container cgroup `path` (v1 `memory.oom_control`
/// `oom_kill`, v2 `memory.events` `oom_kill`).
pub fn oom_kills(setup: &CgroupSetup, path: &Path) -> u64 {
    let (dir, file) = match setup {
        CgroupSetup::V1 { .. } => (setup.controller_dir("memory", path), "memory.oom_control"),
        CgroupSetup::V2 { .. } => (setup.controller_dir("memory", path), "memory.events"),
    };
    let Some(dir) = dir else { return 0 };
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .map(|v| v.trim().parse::<u64>().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// Pids of the processes in cgroup `path` (v1: the `pids` or `memory` hierarchy).
pub fn pids(setup: &CgroupSetup, path: &Path) -> Vec<i32> {
    let dir = match setup {
        CgroupSetup::V1 { .. } => setup
            .controller_dir("pids", path)
            .or_else(|| setup.controller_dir("memory", path)),
        CgroupSetup::V2 { .. } => setup.controller_dir("", path),
    };
    let Some(dir) = dir else { return Vec::new() };
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    collect_dirs(&dir, &mut dirs);
    for d in dirs {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
";

    #[test]
    fn v1_hierarchies_are_parsed_without_named_ones() {
        let h = parse_v1_mounts(HYBRID);
        assert_eq!(h.len(), 3);
        assert_eq!(
            h[0],
            (
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                vec!["cpu".to_string(), "cpuacct".to_string()]
            )
        );
        let setup = CgroupSetup::V1 { hierarchies: h };
        assert_eq!(
            setup.controller_dir("cpuacct", Path::new("/skiff/pod1")),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/skiff/pod1"))
        );
        assert_eq!(
            setup.controller_dir("blkio", Path::new("/skiff/pod1")),
            None
        );
        assert_eq!(setup.all_dirs(Path::new("/skiff/pod1")).len(), 3);
    }

    #[test]
    fn v2_paths_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let setup = CgroupSetup::V2 { root: root.clone() };
        let res = PodCgroupResources {
            cpu_shares: 1024,
            cpu_quota: Some(50_000),
            memory_limit: Some(1 << 20),
            pids_limit: Some(100),
        };
        create_pod(&setup, Path::new("/skiff/pod9"), &res).unwrap();
        let pod = root.join("skiff/pod9");
        assert_eq!(
            std::fs::read_to_string(pod.join("cpu.weight")).unwrap(),
            "39"
        );
        assert_eq!(
            std::fs::read_to_string(pod.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(pod.join("memory.max")).unwrap(),
            "1048576"
        );
        assert_eq!(
            std::fs::read_to_string(pod.join("pids.max")).unwrap(),
            "100"
        );
        // The root got the controllers enabled for its children (last write wins in a plain file).
        assert!(std::fs::read_to_string(root.join("cgroup.subtree_control"))
            .unwrap()
            .starts_with('+'));
        std::fs::write(
            pod.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&setup, Path::new("/skiff/pod9")), 1);
    }
}
