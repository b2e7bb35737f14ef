//! Control groups: one manager over cgroup v1 (one hierarchy per controller, as on this hybrid
//! host) and cgroup v2 (the unified hierarchy). It creates the container's cgroup, joins a pid to
//! it before that pid can fork, writes the spec's resource limits, lists, freezes and kills its
//! processes, reads statistics and removes the cgroup again.
//!
//! The manager is rebuilt from the spec's `cgroupsPath` alone (see [`CgroupManager::new`]), so a
//! process that did not create the container can still clean it up.

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use crate::Result;

/// Which cgroup layout this host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers (possibly with a cgroup2 mount beside them: hybrid).
    V1,
    /// cgroup v2 unified hierarchy at /sys/fs/cgroup.
    V2,
}

/// The cgroup of one container.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: Layout,
    /// The cgroup path relative to each hierarchy's root, e.g. `/myshim/ns/id`.
    path: PathBuf,
}

impl CgroupManager {
    /// Resolve the container's cgroup from the spec's `cgroupsPath` (`None`: a default path
    /// built from `id`). Touches nothing on disk.
    pub fn new(cgroups_path: Option<&std::path::Path>, id: &str) -> Result<Self> {
        let _ = (cgroups_path, id);
        Err(anyhow::anyhow!("cgroups: not implemented").into())
    }

    /// Create the cgroup (every hierarchy) and move `pid` into it.
    pub fn apply(&self, pid: i32) -> Result<()> {
        let _ = pid;
        Err(anyhow::anyhow!("cgroups: not implemented").into())
    }

    /// Write the spec's resource limits.
    pub fn set(&self, resources: &LinuxResources) -> Result<()> {
        let _ = resources;
        Err(anyhow::anyhow!("cgroups: not implemented").into())
    }

    /// Every pid in the cgroup (all hierarchies agree; the main one is read).
    pub fn pids(&self) -> Result<Vec<i32>> {
        Err(anyhow::anyhow!("cgroups: not implemented").into())
    }

    /// Remove the cgroup directories; a missing cgroup is not an error.
    pub fn destroy(&self) -> Result<()> {
        Err(anyhow::anyhow!("cgroups: not implemented").into())
    }

    /// Layout of this manager.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Path relative to the hierarchy roots.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
