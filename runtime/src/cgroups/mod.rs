//! Control groups: one manager over cgroup v1 (one hierarchy per controller, as on this hybrid
//! host) and cgroup v2 (the unified hierarchy). It creates the container's cgroup, joins a pid to
//! it before that pid can fork, writes the spec's resource limits, lists, freezes and kills its
//! processes, reads statistics and removes the cgroup again. cgroupfs is written directly.
//!
//! The manager is rebuilt from the spec's `cgroupsPath` alone (see [`CgroupManager::new`]), so a
//! process that did not create the container can still clean it up — as long as a relative
//! `cgroupsPath` is resolved from the same cgroup; otherwise keep the serialized manager.
//!
//! Modules: [`paths`] finds the hierarchies and resolves the path, [`v1`] and [`v2`] write the
//! limits, [`convert`] and [`devices`] hold the pure conversions, [`stats`] the statistics,
//! `files` the cgroupfs primitives.

pub mod bpf;
pub mod clone_into;
pub mod convert;
pub mod devices;
mod files;
mod limits;
pub mod oom;
pub mod oom_trace;
pub mod paths;
pub mod stats;
pub mod systemd;
mod v1;
mod v2;

#[cfg(test)]
mod root_tests;

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::Result;
use cgroups_rs::Manager as _;
use paths::{CgroupMount, CgroupsPath};
pub use stats::Stats;

/// Which cgroup layout this host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// cgroup v1 controllers (possibly with a cgroup2 mount beside them: hybrid).
    V1,
    /// cgroup v2 unified hierarchy at /sys/fs/cgroup.
    V2,
}

/// The container's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Hierarchy {
    /// v1 controllers of the hierarchy (`cpu`, `name=systemd`); empty for cgroup2.
    controllers: Vec<String>,
    /// A cgroup2 hierarchy (the only one on v2; the `unified` one on a hybrid host).
    unified: bool,
    /// The hierarchy's mount point: nothing at or above it is ever created or removed.
    mountpoint: PathBuf,
    /// The container's cgroup directory.
    dir: PathBuf,
}

/// v1 hierarchies in order of preference for reading `cgroup.procs`.
const MAIN_V1: &[&str] = &[
    "pids",
    "freezer",
    "memory",
    "cpu",
    "cpuacct",
    "devices",
    "blkio",
    "cpuset",
    "name=systemd",
];

/// Where the calling thread is in each of `v1`'s hierarchies (to move it back), if every one
/// is known and exists.
fn thread_cgroups(v1: &[&Hierarchy]) -> Option<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/thread-self/cgroup").ok()?;
    let own = paths::parse_proc_cgroup(&text);
    v1.iter()
        .map(|h| {
            let line = own.iter().find(|p| {
                p.controllers.len() == h.controllers.len()
                    && p.controllers.iter().all(|c| h.controllers.contains(c))
            })?;
            let dir = h.mountpoint.join(line.path.trim_start_matches('/'));
            dir.is_dir().then_some(dir)
        })
        .collect()
}

/// The cgroup of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupManager {
    layout: Layout,
    /// The cgroup path relative to the main hierarchy's root, e.g. `/myshim/ns/id`.
    path: PathBuf,
    /// The container's directory in every hierarchy it joins; the main one first.
    hierarchies: Vec<Hierarchy>,
    /// systemd driver: the container's transient unit (created and removed through systemd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    systemd: Option<systemd::Unit>,
}

impl CgroupManager {
    /// Resolve the container's cgroup from the spec's `cgroupsPath` (`None` or empty:
    /// `/myshim/<id>`). An absolute path is used as is below every hierarchy root; a relative
    /// one below our own cgroup in each hierarchy (`/proc/self/cgroup`), like runc. Systemd
    /// `slice:prefix:name` paths are refused ([`crate::Error::InvalidConfig`]).
    ///
    /// Touches nothing on disk: statfs of /sys/fs/cgroup, and reads /proc/self/mountinfo (v1,
    /// or v2 with a relative path) and /proc/self/cgroup (relative path) only.
    pub fn new(cgroups_path: Option<&Path>, id: &str) -> Result<Self> {
        Self::with_driver(cgroups_path, id, false)
    }

    /// [`CgroupManager::new`], with the systemd driver for a `slice:prefix:name` path (the
    /// runc option `SystemdCgroup` says it must be one: `systemd_driver`). The unit's cgroup is
    /// then used below every hierarchy as an absolute path would be.
    pub fn with_driver(
        cgroups_path: Option<&Path>,
        id: &str,
        systemd_driver: bool,
    ) -> Result<Self> {
        let text = cgroups_path.map(|p| p.to_string_lossy().into_owned());
        let unit = match text.as_deref() {
            Some(t) if systemd::is_systemd_path(t) => Some(systemd::parse(t)?),
            _ if systemd_driver => {
                return Err(crate::Error::invalid(format!(
                    "the systemd cgroup driver (SystemdCgroup) needs a cgroupsPath of the form \
                     slice:prefix:name, not {text:?}"
                )))
            }
            _ => None,
        };
        let unit_path = unit.as_ref().map(|u| PathBuf::from(&u.path));
        let spec_path = match &unit_path {
            Some(p) => CgroupsPath::Absolute(p.clone()),
            None => paths::parse_cgroups_path(cgroups_path, id)?,
        };
        let layout = detect_layout()?;
        let relative = matches!(spec_path, CgroupsPath::Relative(_));
        let proc = if relative {
            paths::parse_proc_cgroup(&paths::read_proc("/proc/self/cgroup")?)
        } else {
            Vec::new()
        };
        let mounts: Vec<CgroupMount> = match layout {
            Layout::V2 => {
                let root = if relative {
                    let all = paths::parse_mountinfo(&paths::read_proc("/proc/self/mountinfo")?);
                    paths::pick_unified(&all)
                        .filter(|m| m.mountpoint == Path::new(paths::CGROUP_ROOT))
                        .map(|m| m.root.clone())
                        .unwrap_or_else(|| PathBuf::from("/"))
                } else {
                    PathBuf::from("/")
                };
                vec![CgroupMount {
                    controllers: Vec::new(),
                    unified: true,
                    root,
                    mountpoint: PathBuf::from(paths::CGROUP_ROOT),
                }]
            }
            Layout::V1 => {
                let all = paths::parse_mountinfo(&paths::read_proc("/proc/self/mountinfo")?);
                let mut v1: Vec<CgroupMount> = all.iter().filter(|m| !m.unified).cloned().collect();
                if v1.is_empty() {
                    return Err(anyhow::anyhow!(
                        "{} is not cgroup2 and /proc/self/mountinfo lists no cgroup v1 hierarchy",
                        paths::CGROUP_ROOT
                    )
                    .into());
                }
                // Main hierarchy first.
                if let Some(i) = MAIN_V1
                    .iter()
                    .find_map(|c| v1.iter().position(|m| m.controllers.iter().any(|x| x == c)))
                {
                    v1[..=i].rotate_right(1);
                }
                v1.extend(paths::pick_unified(&all).cloned());
                v1
            }
        };
        let mut hierarchies = Vec::with_capacity(mounts.len());
        let mut main_path = None;
        for m in &mounts {
            let (rel, dir) = paths::resolve(m, &spec_path, paths::own_cgroup(m, &proc))?;
            main_path.get_or_insert(rel);
            hierarchies.push(Hierarchy {
                controllers: m.controllers.clone(),
                unified: m.unified,
                mountpoint: m.mountpoint.clone(),
                dir,
            });
        }
        let path = main_path.unwrap_or_default();
        Ok(CgroupManager {
            layout,
            path,
            hierarchies,
            systemd: unit,
        })
    }

    /// Create the cgroup (every hierarchy: all v1 ones including named ones, and the cgroup2
    /// one) and move `pid` into it. On v2 the controllers available at the root are enabled in
    /// every ancestor's `cgroup.subtree_control`; on v1 new cpuset levels get their parent's
    /// cpus/mems. On failure the directories made here are removed again (best effort: where
    /// `pid` already joined, removal fails until it leaves; kill it and call
    /// [`CgroupManager::destroy`]).
    pub fn apply(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(crate::Error::invalid(format!(
                "cannot add pid {pid} to a cgroup"
            )));
        }
        let mut created: Vec<PathBuf> = Vec::new();
        let result = self.apply_inner(pid, &mut created);
        if result.is_err() {
            // Deepest first: `created` is top-down per hierarchy.
            files::remove_created(&created);
        }
        result
    }

    fn apply_inner(&self, pid: i32, created: &mut Vec<PathBuf>) -> Result<()> {
        self.create_dirs(created)?;
        let pid = pid.to_string();
        for h in &self.hierarchies {
            files::write(&h.dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// Run `spawn` while the calling thread sits in the container's cgroup v1 hierarchies, so
    /// that the process it forks is born in the container's cgroup; return what `spawn`
    /// returned.
    ///
    /// Moving a process (`cgroup.procs`) makes the kernel wait for an RCU grace period (the
    /// threadgroup lock), 10-20 ms on a small host; moving only the calling thread (`0` written
    /// to v1 `tasks`) does not. The thread moves back right after the fork. Where that is not
    /// possible (a hierarchy that refuses the thread, an unknown own cgroup) this is
    /// [`CgroupManager::apply`] on the new pid.
    ///
    /// cgroup2 (the only hierarchy on v2, the unified one on a hybrid host) has no thread
    /// moves: its directory is created here and the spawned helper forks the container's
    /// process straight into it ([`clone_into`], with [`CgroupManager::cgroup2_dir`]); the
    /// caller then calls [`CgroupManager::join_cgroup2`] with what the helper reports.
    pub fn spawn_inside<T>(
        &self,
        spawn: impl FnOnce() -> Result<T>,
        pid_of: impl Fn(&T) -> i32,
    ) -> Result<T> {
        if let Some(unit) = &self.systemd {
            // systemd moves the helper into the new unit; the other hierarchies follow.
            let t = spawn()?;
            let pid = pid_of(&t);
            systemd::start(unit, pid, None)?;
            self.apply(pid)?;
            return Ok(t);
        }
        let v1: Vec<&Hierarchy> = self.hierarchies.iter().filter(|h| !h.unified).collect();
        let back = if v1.is_empty() {
            None
        } else {
            thread_cgroups(&v1)
        };
        let mut created = Vec::new();
        if let Err(e) = self.create_dirs(&mut created) {
            files::remove_created(&created);
            return Err(e);
        }
        let Some(back) = back else {
            let t = spawn()?;
            self.apply_v1(pid_of(&t))?;
            return Ok(t);
        };
        let mut entered = 0;
        let mut refused = None;
        for h in &v1 {
            match files::write(&h.dir, "tasks", "0") {
                Ok(()) => entered += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let move_back = || {
            for dir in back.iter().take(entered) {
                if let Err(e) = files::write(dir, "tasks", "0") {
                    log::error!("cgroups: move the shim's thread back: {e:#}");
                }
            }
        };
        if let Some(e) = refused {
            move_back();
            log::debug!("cgroups: thread join refused ({e:#}): migrating the process");
            let t = spawn()?;
            self.apply_v1(pid_of(&t))?;
            return Ok(t);
        }
        let spawned = spawn();
        move_back();
        spawned
    }

    /// Move `pid` into the v1 hierarchies (the slow path of [`CgroupManager::spawn_inside`]).
    fn apply_v1(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for h in self.hierarchies.iter().filter(|h| !h.unified) {
            files::write(&h.dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// The container's cgroup2 directory (v2: its cgroup; hybrid: its cgroup in the unified
    /// hierarchy), for the helper to fork the container's process into.
    pub fn cgroup2_dir(&self) -> Option<&Path> {
        self.hierarchies
            .iter()
            .find(|h| h.unified)
            .map(|h| h.dir.as_path())
    }

    /// After [`CgroupManager::spawn_inside`]: the helper forked `pid`, into the cgroup2 cgroup
    /// when `in_cgroup2` (nothing to do); else move it there now (the slow path).
    pub fn join_cgroup2(&self, pid: i32, in_cgroup2: bool) -> Result<()> {
        match self.cgroup2_dir() {
            Some(dir) if !in_cgroup2 => Ok(files::write(dir, "cgroup.procs", &pid.to_string())?),
            _ => Ok(()),
        }
    }

    /// Move `pid` into the container's existing cgroup in every hierarchy, the one that
    /// freezes last (v1: the freezer's; v2: the only one). For an exec into a paused container:
    /// its process cannot be born in the cgroup (the helper forking it would freeze before it
    /// answers), and once it joins the frozen cgroup it freezes at once, so it must be in every
    /// other hierarchy by then.
    pub fn enter(&self, pid: i32) -> Result<()> {
        let freezes = |h: &&Hierarchy| {
            if h.unified {
                self.layout == Layout::V2
            } else {
                h.controllers.iter().any(|c| c == "freezer")
            }
        };
        let pid = pid.to_string();
        let (last, first): (Vec<&Hierarchy>, Vec<&Hierarchy>) =
            self.hierarchies.iter().partition(freezes);
        for h in first.into_iter().chain(last) {
            files::write(&h.dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// Create the cgroup's directories in every hierarchy (nothing joins them).
    fn create_dirs(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        for h in &self.hierarchies {
            created.extend(files::create_levels(&h.mountpoint, &h.dir)?);
            if h.controllers.iter().any(|c| c == "cpuset") {
                v1::fill_cpuset(&h.mountpoint, &h.dir)?;
            }
            // On a hybrid host the cgroup2 hierarchy is joined for tracking only; hugetlb is
            // enabled there when limits ask for it.
            if h.unified && self.layout == Layout::V2 {
                v2::enable_controllers(&h.mountpoint, &h.dir, None)?;
            }
        }
        Ok(())
    }

    /// Write the spec's resource limits: cgroups-rs's `FsManager::set` writes cpuset, cpu,
    /// memory, pids, blkio and network; [`limits`] the rest (device rules, hugetlb with its
    /// reservation files, CFS burst and idle, v2 `unified`). What can never apply (`unified` on
    /// v1, a bad rule or key) is refused before anything is written.
    ///
    /// Device rules on v2 are an eBPF program attached to the cgroup ([`bpf`]), replaced on
    /// each call.
    pub fn set(&self, resources: &LinuxResources) -> Result<()> {
        let v2 = self.layout == Layout::V2;
        let (rest, own) = limits::split(resources, v2)?;
        if let Some(unit) = &self.systemd {
            // Unit properties first (systemd would write them back over ours), as runc.
            systemd::set(unit, resources)?;
        }
        // cgroups-rs writes at one path below every hierarchy's mount point.
        let rel = self.path.strip_prefix("/").unwrap_or(&self.path);
        if let Some(h) = self
            .hierarchies
            .iter()
            .find(|h| h.dir != h.mountpoint.join(rel))
        {
            return Err(anyhow::anyhow!(
                "cgroup {} is {} in another hierarchy (a relative cgroupsPath below different \
                 cgroups): limits need the same path in every hierarchy, use an absolute \
                 cgroupsPath",
                self.path.display(),
                h.dir.display()
            )
            .into());
        }
        self.fs_manager()?.set(&rest).map_err(|e| {
            anyhow::Error::new(e)
                .context(format!("set the limits of cgroup {}", self.path.display()))
        })?;
        if v2 {
            let dir = self.main_dir();
            if let Some(rules) = &own.devices {
                bpf::attach(dir, &bpf::program(rules)?)?;
            }
            limits::set_cpu_extras(dir, true, &own)?;
            limits::set_weights(dir, true, &own)?;
            limits::set_hugetlb(dir, true, &own.hugetlb)?;
            return limits::set_unified(dir, &own.unified);
        }
        if let Some(rules) = &own.devices {
            limits::set_devices_v1(v1::need(&self.hierarchies, "devices")?, rules)?;
        }
        if own.weight.is_some() || !own.weight_devices.is_empty() {
            limits::set_weights(v1::need(&self.hierarchies, "blkio")?, false, &own)?;
        }
        if own.cpu_burst.is_some() || own.cpu_idle.is_some() {
            limits::set_cpu_extras(v1::need(&self.hierarchies, "cpu")?, false, &own)?;
        }
        if own.hugetlb.is_empty() {
            return Ok(());
        }
        if let Some(dir) = v1::dir_of(&self.hierarchies, "hugetlb") {
            return limits::set_hugetlb(dir, false, &own.hugetlb);
        }
        // Hybrid host: hugetlb may be a cgroup2 controller in the unified hierarchy.
        let Some(h) = self.hierarchies.iter().find(|h| h.unified) else {
            return Err(anyhow::anyhow!(
                "the spec sets hugetlb limits but no hugetlb controller is mounted"
            )
            .into());
        };
        // The container's processes are there (spawn_inside): enable the controller for them.
        v2::enable_controllers(&h.mountpoint, &h.dir, Some(&["hugetlb"]))?;
        limits::set_hugetlb(&h.dir, true, &own.hugetlb)
    }

    /// cgroups-rs's manager of this cgroup (cgroupfs driver): rebuilt on use, it reads
    /// /proc/self/cgroup and /proc/self/mountinfo and touches nothing.
    fn fs_manager(&self) -> Result<cgroups_rs::FsManager> {
        let base = self.path.to_string_lossy();
        cgroups_rs::FsManager::new(base.trim_start_matches('/')).map_err(|e| {
            anyhow::Error::new(e)
                .context(format!("cgroups-rs: load cgroup {}", self.path.display()))
                .into()
        })
    }

    /// Every pid in the cgroup (read from the main hierarchy: v2's, or v1's pids/freezer/
    /// memory/...). A cgroup that does not exist has no pids.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let Some(text) = files::read_opt(self.main_dir(), "cgroup.procs")? else {
            return Ok(Vec::new());
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim().parse::<i32>().with_context(|| {
                    format!(
                        "parse pid {l:?} in {}",
                        self.main_dir().join("cgroup.procs").display()
                    )
                })
            })
            .collect::<anyhow::Result<Vec<i32>>>()
            .map_err(Into::into)
    }

    /// Freeze every process of the cgroup and wait until the kernel reports it frozen
    /// (v1 `freezer.state` FROZEN, retried; v2 `cgroup.events` `frozen 1`), a few seconds at
    /// most: on timeout the cgroup is thawed again and an error returned.
    pub fn freeze(&self) -> Result<()> {
        match self.layout {
            Layout::V1 => v1::freeze(self.freezer_dir()?),
            Layout::V2 => v2::set_frozen(self.main_dir(), true),
        }
    }

    /// Thaw the cgroup (v2: waits for `frozen 0`).
    pub fn thaw(&self) -> Result<()> {
        match self.layout {
            Layout::V1 => v1::thaw(self.freezer_dir()?),
            Layout::V2 => v2::set_frozen(self.main_dir(), false),
        }
    }

    /// Whether the cgroup is frozen (v1 `freezer.state` FROZEN, v2 `cgroup.events` `frozen 1`).
    /// One file read; a cgroup that does not exist (or has no freezer) is not frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match self.layout {
            Layout::V1 => {
                let Some(dir) = v1::dir_of(&self.hierarchies, "freezer") else {
                    return Ok(false);
                };
                let state = files::read_opt(dir, "freezer.state")?;
                Ok(state.is_some_and(|s| s.trim() == "FROZEN"))
            }
            Layout::V2 => {
                let events = files::read_opt(self.main_dir(), "cgroup.events")?;
                Ok(events
                    .is_some_and(|e| stats::parse_flat_keyed(&e).get("frozen").copied() == Some(1)))
            }
        }
    }

    /// Send `signal` to every process of the cgroup; processes that are already gone (ESRCH)
    /// are fine, as is a cgroup that does not exist. SIGKILL uses `cgroup.kill` on v2 when the
    /// kernel has it; on v1 the cgroup is frozen around a SIGKILL (when the freezer is there)
    /// so that forking processes cannot escape, and left thawed so that the kills land. Our own
    /// pid, should it be listed, is never signalled.
    pub fn kill_all(&self, signal: Signal) -> Result<()> {
        if !self.main_dir().exists() {
            return Ok(());
        }
        if signal == Signal::SIGKILL && self.layout == Layout::V2 && v2::kill(self.main_dir())? {
            return Ok(());
        }
        let freezer = match self.layout {
            Layout::V1 if signal == Signal::SIGKILL => {
                v1::dir_of(&self.hierarchies, "freezer").filter(|d| d.exists())
            }
            _ => None,
        };
        if let Some(dir) = freezer {
            if let Err(e) = v1::freeze(dir) {
                log::warn!("cgroups: kill_all: {e:#}; signalling without freezing");
            }
        }
        let result = self.signal_pids(signal);
        if let Some(dir) = freezer {
            if let Err(e) = v1::thaw(dir) {
                log::warn!("cgroups: kill_all: {e:#}");
            }
        }
        result
    }

    fn signal_pids(&self, signal: Signal) -> Result<()> {
        let me = std::process::id();
        let mut first_error = None;
        for pid in self.pids()? {
            if pid <= 0 || u32::try_from(pid) == Ok(me) {
                log::warn!("cgroups: kill_all: not signalling pid {pid}");
                continue;
            }
            match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    let e = anyhow::Error::from(e).context(format!("send {signal} to pid {pid}"));
                    log::warn!("cgroups: {e:#}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Resource usage statistics.
    pub fn stats(&self) -> Result<Stats> {
        let main = self.main_dir();
        if !main.exists() {
            return Err(anyhow::anyhow!("cgroup {} does not exist", main.display()).into());
        }
        match self.layout {
            Layout::V1 => stats::read_v1(&self.hierarchies),
            Layout::V2 => stats::read_v2(main),
        }
    }

    /// Remove the container's cgroup directory (with any cgroups the container made below it)
    /// in every hierarchy; parents are left alone. A missing cgroup is not an error; a busy
    /// one (processes still exiting) is retried for a short while. Every hierarchy is tried;
    /// the first error is returned.
    pub fn destroy(&self) -> Result<()> {
        let mut first_error = None;
        if let Some(unit) = &self.systemd {
            // The directories are removed below whatever systemd says.
            if let Err(e) = systemd::stop(unit) {
                log::warn!("cgroups: {e:#}");
            }
        }
        for h in &self.hierarchies {
            if let Err(e) = files::remove_tree(&h.dir) {
                log::warn!("cgroups: {e:#}");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The directory whose freezer stops the whole container (criu's `freeze_cgroup`): the
    /// cgroup2 directory on v2, the v1 freezer hierarchy's elsewhere.
    pub fn freezer_path(&self) -> Option<PathBuf> {
        match self.layout {
            Layout::V2 => self.cgroup2_dir().map(Path::to_path_buf),
            _ => self.freezer_dir().ok().map(Path::to_path_buf),
        }
    }

    /// Layout of this manager.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The systemd unit, under the systemd driver (systemd removes its cgroup when it empties).
    pub fn systemd_unit(&self) -> Option<&systemd::Unit> {
        self.systemd.as_ref()
    }

    /// Path relative to the hierarchy roots (of the main hierarchy: with a relative
    /// `cgroupsPath` on v1 it can differ between hierarchies, see [`CgroupManager::dirs`]).
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The container's cgroup directory in every hierarchy, the main one first.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.hierarchies.iter().map(|h| h.dir.as_path())
    }

    /// The directory `pids()` and `stats()` read first.
    fn main_dir(&self) -> &Path {
        self.hierarchies
            .first()
            .map(|h| h.dir.as_path())
            .unwrap_or_else(|| Path::new("/nonexistent-cgroup"))
    }

    fn freezer_dir(&self) -> Result<&Path> {
        v1::dir_of(&self.hierarchies, "freezer")
            .ok_or_else(|| anyhow::anyhow!("no cgroup v1 freezer hierarchy is mounted").into())
    }
}

/// v2 when /sys/fs/cgroup is a cgroup2 mount, else v1 (or hybrid).
fn detect_layout() -> Result<Layout> {
    let fs = nix::sys::statfs::statfs(paths::CGROUP_ROOT)
        .with_context(|| format!("statfs {}", paths::CGROUP_ROOT))?;
    Ok(
        if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
            Layout::V2
        } else {
            Layout::V1
        },
    )
}
