//! The systemd cgroup driver (Kubernetes nodes with `SystemdCgroup = true`): a `cgroupsPath` of
//! the form `slice:prefix:name` names a transient scope unit `<prefix>-<name>.scope` in `slice`,
//! which systemd creates (with the spec's cpu, memory and pids limits as unit properties) when
//! asked over D-Bus, and removes when the unit is stopped. The D-Bus side is cgroups-rs's
//! `SystemdManager`; this module parses the path and wraps its calls with our errors.

use std::time::{Duration, Instant};

use anyhow::Context;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The slice used when the path leaves it empty (`:prefix:name`), as runc.
const DEFAULT_SLICE: &str = "system.slice";

/// A container's systemd unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The spec's `slice:prefix:name`, as given (cgroups-rs parses it again).
    pub spec: String,
    /// The slice, e.g. `kubepods-besteffort-pod123.slice`.
    pub slice: String,
    /// The unit, e.g. `cri-containerd-abc.scope`.
    pub unit: String,
    /// The unit's cgroup below the hierarchy roots, e.g.
    /// `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod123.slice/cri-containerd-abc.scope`.
    pub path: String,
}

/// Whether `path` has the systemd form `slice:prefix:name` (three fields, no `/`).
pub fn is_systemd_path(path: &str) -> bool {
    path.split(':').count() == 3 && !path.starts_with('/')
}

/// Parse `slice:prefix:name` (runc's rules: an empty slice is `system.slice`; a name ending in
/// `.slice` is a slice unit itself, else the unit is `<prefix>-<name>.scope`, or
/// `<name>.scope` without prefix).
pub fn parse(path: &str) -> Result<Unit> {
    let bad = |why: &str| Error::invalid(format!("systemd cgroupsPath {path:?}: {why}"));
    let mut fields = path.split(':');
    let (Some(slice), Some(prefix), Some(name), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad("expected slice:prefix:name"));
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if [slice, prefix, name].iter().any(|f| f.contains('/')) {
        return Err(bad("a field contains '/'"));
    }
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    let parent = cgroups_rs::systemd::utils::expand_slice(slice)
        .map_err(|e| bad(&format!("slice {slice:?}: {e}")))?;
    let path_below = if parent.is_empty() {
        format!("/{unit}")
    } else {
        format!("/{parent}/{unit}")
    };
    Ok(Unit {
        spec: path.to_string(),
        slice: slice.to_string(),
        unit,
        path: path_below,
    })
}

/// The error for a systemd that cannot be reached, with what was being done.
fn unreachable(unit: &Unit, doing: &str, e: cgroups_rs::manager::Error) -> Error {
    anyhow::Error::new(e)
        .context(format!(
            "systemd cgroup driver: {doing} unit {} in {}: is systemd running (pid 1) with its \
             D-Bus system bus at /run/dbus/system_bus_socket?",
            unit.unit, unit.slice
        ))
        .into()
}

fn manager(unit: &Unit) -> Result<cgroups_rs::SystemdManager<'static>> {
    cgroups_rs::SystemdManager::new(&unit.spec)
        .map_err(|e| unreachable(unit, "prepare", e))
        .context("systemd cgroup driver")
        .map_err(Into::into)
}

/// Start the transient unit with `pid` in it (systemd moves it there), with the spec's limits as
/// unit properties.
pub fn start(unit: &Unit, pid: i32, resources: Option<&LinuxResources>) -> Result<()> {
    use cgroups_rs::Manager as _;
    let mut m = manager(unit)?;
    if let Some(r) = resources {
        // Before the unit exists these are kept and sent with StartTransientUnit.
        m.set(r)
            .map_err(|e| unreachable(unit, "set the limits of", e))?;
    }
    let pid_u64 = u64::try_from(pid).map_err(|_| Error::invalid(format!("bad pid {pid}")))?;
    m.add_proc(pid_u64.into())
        .map_err(|e| unreachable(unit, "start", e))?;
    wait_placed(unit, pid)
}

/// How long systemd has to run the start job of a new unit (runc waits as long).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait until systemd has run the unit's start job, which moves `pid` into the unit's cgroup.
///
/// StartTransientUnit only queues the job (cgroups-rs does not wait for it). Until it has run,
/// the unit's first process must stay alive: a job that finds none of its PIDs fails the unit
/// ("No PIDs left to attach"), which leaves the container running in the cgroup of a failed
/// unit that nothing will ever stop. The caller lets `pid` go on only after this returns.
fn wait_placed(unit: &Unit, pid: i32) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).with_context(|| {
            format!(
                "systemd cgroup driver: process {pid} exited before systemd placed it in unit {}",
                unit.unit
            )
        })?;
        if in_cgroup(&text, &unit.path) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(anyhow::anyhow!(
                "systemd cgroup driver: systemd did not start unit {} in {} within {:?} \
                 (see `systemctl status {}`)",
                unit.unit,
                unit.slice,
                START_TIMEOUT,
                unit.unit
            )
            .into());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Whether a `/proc/<pid>/cgroup` text puts the process at `path` in some hierarchy.
fn in_cgroup(proc_cgroup: &str, path: &str) -> bool {
    proc_cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .any(|p| p == path)
}

/// Update the unit's properties from the spec's limits (cpu, memory, pids).
pub fn set(unit: &Unit, resources: &LinuxResources) -> Result<()> {
    use cgroups_rs::Manager as _;
    manager(unit)?
        .set(resources)
        .map_err(|e| unreachable(unit, "set the limits of", e))
}

/// Stop the unit (systemd removes its cgroup); a unit that does not exist is fine.
pub fn stop(unit: &Unit) -> Result<()> {
    use cgroups_rs::Manager as _;
    manager(unit)?
        .destroy()
        .map_err(|e| unreachable(unit, "stop", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_in_the_unit() {
        let unit = "/kubepods.slice/cri-containerd-abc.scope";
        assert!(in_cgroup(&format!("0::{unit}\n"), unit));
        assert!(in_cgroup(
            &format!("4:cpu,cpuacct:/myshim/x\n1:name=systemd:{unit}\n0::/\n"),
            unit
        ));
        assert!(!in_cgroup("0::/system.slice/containerd.service\n", unit));
        assert!(!in_cgroup(&format!("0::{unit}/sub\n"), unit));
    }

    #[test]
    fn kubernetes_path() {
        let u = parse("kubepods-besteffort-pod12.slice:cri-containerd:abc").unwrap();
        assert_eq!(u.slice, "kubepods-besteffort-pod12.slice");
        assert_eq!(u.unit, "cri-containerd-abc.scope");
        assert_eq!(
            u.path,
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
        );
    }

    #[test]
    fn defaults_and_forms() {
        let u = parse(":myshim:c1").unwrap();
        assert_eq!(
            (u.slice.as_str(), u.path.as_str()),
            ("system.slice", "/system.slice/myshim-c1.scope")
        );
        assert_eq!(parse("system.slice::c1").unwrap().unit, "c1.scope");
        assert_eq!(parse("-.slice:p:c1").unwrap().path, "/p-c1.scope");
        assert_eq!(parse("a.slice:p:b.slice").unwrap().unit, "b.slice");
        assert!(is_systemd_path("system.slice:p:n"));
        assert!(!is_systemd_path("/a:b:c"));
        assert!(!is_systemd_path("/myshim/c1"));
    }

    #[test]
    fn bad_paths() {
        for bad in [
            "a.slice:p:",
            "a.slice:p:x/y",
            "nosuffix:p:n",
            "a--b.slice:p:n",
            "a:b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
