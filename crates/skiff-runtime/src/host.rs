//! Facts about the host that the runtime depends on, for `skiff check-config`: how cgroups are
//! mounted and whether the kernel's process events can be subscribed to. They are asked of the
//! code the runtime itself uses (libcgroups' setup detection, the v1 mount parser, the exit
//! monitor's proc connector), so the checks and the runtime cannot disagree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a machine mounts its cgroups (libcgroups' classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// v1 only: one hierarchy per controller.
    Legacy,
    /// v1 controllers, with systemd's unified (v2) tree beside them at `unified/`.
    Hybrid,
    /// v2: one unified hierarchy.
    Unified,
}

impl From<libcgroups::common::CgroupSetup> for CgroupMode {
    fn from(setup: libcgroups::common::CgroupSetup) -> Self {
        match setup {
            libcgroups::common::CgroupSetup::Legacy => CgroupMode::Legacy,
            libcgroups::common::CgroupSetup::Hybrid => CgroupMode::Hybrid,
            libcgroups::common::CgroupSetup::Unified => CgroupMode::Unified,
        }
    }
}

/// The cgroups of the machine at a root directory (`/`, or a copy of its `/proc` and `/sys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFacts {
    /// Legacy, hybrid or unified; `None` when the root shows no cgroups at all.
    pub mode: Option<CgroupMode>,
    /// Where the unified hierarchy is looked for (`ROOT/sys/fs/cgroup`).
    pub unified_root: PathBuf,
    /// Controllers the unified hierarchy offers (`cgroup.controllers`; unified mode only).
    pub v2_controllers: Vec<String>,
    /// Controllers the kernel has, and whether each is enabled (`/proc/cgroups`; v1).
    pub v1_enabled: BTreeMap<String, bool>,
    /// Controllers of the mounted v1 hierarchies (`/proc/self/mountinfo`).
    pub v1_mounted: Vec<String>,
}

impl CgroupFacts {
    /// Reads the facts under `root`. For the running machine (`/`) the mode comes from
    /// libcgroups, as the runtime and libcontainer see it; a copied tree cannot be `statfs`ed
    /// for its file system types, so there it follows the files: `cgroup.controllers` at the
    /// top means unified, v1 controllers mean legacy (hybrid with a `unified` directory).
    pub fn read(root: &Path) -> CgroupFacts {
        let read = |relative: &str| std::fs::read_to_string(root.join(relative)).ok();
        let unified_root = root.join("sys/fs/cgroup");
        let v2_controllers: Vec<String> = read("sys/fs/cgroup/cgroup.controllers")
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let v1_enabled = read("proc/cgroups")
            .map(|text| parse_proc_cgroups(&text))
            .unwrap_or_default();
        let v1_mounted: Vec<String> =
            crate::cgroups::parse_v1_mounts(&read("proc/self/mountinfo").unwrap_or_default())
                .into_iter()
                .flat_map(|(_, controllers)| controllers)
                .collect();
        let mode = if root == Path::new("/") {
            libcgroups::common::get_cgroup_setup()
                .ok()
                .map(CgroupMode::from)
        } else if unified_root.join("cgroup.controllers").exists() {
            Some(CgroupMode::Unified)
        } else if unified_root.join("unified").exists() {
            Some(CgroupMode::Hybrid)
        } else {
            Some(CgroupMode::Legacy)
        };
        // Legacy or hybrid without a single v1 controller is no cgroup support at all.
        let mode = mode.filter(|mode| {
            matches!(mode, CgroupMode::Unified) || !(v1_enabled.is_empty() && v1_mounted.is_empty())
        });
        let v2_controllers = match mode {
            Some(CgroupMode::Unified) => v2_controllers,
            _ => Vec::new(),
        };
        CgroupFacts {
            mode,
            unified_root,
            v2_controllers,
            v1_enabled,
            v1_mounted,
        }
    }
}

/// `/proc/cgroups`: `subsys_name hierarchy num_cgroups enabled` per controller.
fn parse_proc_cgroups(text: &str) -> BTreeMap<String, bool> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 4).then(|| (fields[0].to_string(), fields[3] == "1"))
        })
        .collect()
}

/// Whether this process can subscribe to the kernel's process events (the proc connector),
/// which the runtime needs to learn the exit codes of containers; tried with the exit
/// monitor's own subscription, then closed.
pub fn proc_connector() -> std::io::Result<()> {
    crate::exits::open_proc_connector(None).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    #[test]
    fn unified_trees_list_their_controllers() {
        let root = tree(&[("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")]);
        let facts = CgroupFacts::read(root.path());
        assert_eq!(facts.mode, Some(CgroupMode::Unified));
        assert_eq!(facts.v2_controllers, ["cpuset", "cpu", "io", "pids"]);
    }

    #[test]
    fn hybrid_trees_list_enabled_and_mounted_v1_controllers() {
        let root = tree(&[
            ("sys/fs/cgroup/unified/cgroup.controllers", ""),
            (
                "proc/cgroups",
                "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t0\t1\t0\n",
            ),
            (
                "proc/self/mountinfo",
                "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                 35 25 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n",
            ),
        ]);
        let facts = CgroupFacts::read(root.path());
        assert_eq!(facts.mode, Some(CgroupMode::Hybrid));
        assert!(facts.v2_controllers.is_empty());
        assert_eq!(facts.v1_enabled.get("cpu"), Some(&true));
        assert_eq!(facts.v1_enabled.get("memory"), Some(&false));
        assert_eq!(facts.v1_mounted, ["cpu", "cpuacct"]);
    }

    #[test]
    fn a_tree_without_cgroups_has_no_mode() {
        let root = tree(&[("proc/version", "Linux\n")]);
        assert_eq!(CgroupFacts::read(root.path()).mode, None);
    }

    #[test]
    fn root_can_subscribe_to_process_events() {
        if !skiff_testkit::gate::require_root("subscribing to the proc connector") {
            return;
        }
        proc_connector().expect("root subscribes to the proc connector");
    }

    #[test]
    fn this_machine_agrees_with_the_runtime() {
        let facts = CgroupFacts::read(Path::new("/"));
        let Ok(setup) = crate::cgroups::CgroupSetup::detect() else {
            eprintln!("skipping: no cgroups on this machine");
            return;
        };
        assert_eq!(
            setup.is_v2(),
            matches!(facts.mode, Some(CgroupMode::Unified)),
            "{facts:?} against {setup:?}"
        );
    }
}
