//! cgroup v1: one hierarchy per controller set. The cpuset fix-up a new cgroup needs before it
//! can take a process, and the freezer (waiting for FROZEN, which cgroups-rs does not). The
//! limits are written by cgroups-rs ([`super::limits`]).

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{files, Hierarchy};
use crate::Result;

/// The directory of the v1 hierarchy holding `controller`, if mounted.
pub(super) fn dir_of<'a>(hierarchies: &'a [Hierarchy], controller: &str) -> Option<&'a Path> {
    hierarchies
        .iter()
        .find(|h| !h.unified && h.controllers.iter().any(|c| c == controller))
        .map(|h| h.dir.as_path())
}

/// Like [`dir_of`], for a limit the spec asks for: a missing controller is an error.
pub(super) fn need<'a>(hierarchies: &'a [Hierarchy], controller: &str) -> Result<&'a Path> {
    dir_of(hierarchies, controller).ok_or_else(|| {
        anyhow::anyhow!(
            "the spec sets {controller} limits but no cgroup v1 {controller} hierarchy is mounted"
        )
        .into()
    })
}

/// A new cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses processes
/// (ENOSPC) until they are set: give every level from the hierarchy root down to `dir` that
/// still has them empty the values of its nearest parent.
pub(super) fn fill_cpuset(mountpoint: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(mountpoint).with_context(|| {
        format!(
            "cgroup {} is not below {}",
            dir.display(),
            mountpoint.display()
        )
    })?;
    let mut inherited = [
        (
            "cpuset.cpus",
            files::read(mountpoint, "cpuset.cpus")?.trim().to_string(),
        ),
        (
            "cpuset.mems",
            files::read(mountpoint, "cpuset.mems")?.trim().to_string(),
        ),
    ];
    let mut level = mountpoint.to_path_buf();
    for c in rel.components() {
        level.push(c);
        for (file, value) in inherited.iter_mut() {
            let own = files::read(&level, file)?;
            let own = own.trim();
            if own.is_empty() {
                files::write(&level, file, value)?;
            } else {
                *value = own.to_string();
            }
        }
    }
    Ok(())
}

/// Upper bound on one freeze attempt loop.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Freeze the cgroup: write FROZEN until `freezer.state` reads FROZEN. A v1 freeze can stay in
/// FREEZING while processes fork or join, so retry (runc's empirical loop: now and then thaw
/// and sleep a little), bounded in time; on failure thaw again and error out.
pub(super) fn freeze(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    for i in 0..1000u32 {
        if i % 50 == 49 {
            let _ = files::write(dir, "freezer.state", "THAWED");
            sleep(Duration::from_millis(10));
        }
        files::write(dir, "freezer.state", "FROZEN")?;
        if i % 25 == 24 {
            sleep(Duration::from_micros(100));
        }
        let state = files::read(dir, "freezer.state")?;
        match state.trim() {
            "FROZEN" => {
                if i > 1 {
                    log::debug!("cgroups: {} frozen after {i} retries", dir.display());
                }
                return Ok(());
            }
            "FREEZING" => {}
            other => {
                return Err(anyhow::anyhow!(
                    "unexpected freezer state {other:?} in {} while freezing",
                    dir.display()
                )
                .into())
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let _ = files::write(dir, "freezer.state", "THAWED");
    Err(anyhow::anyhow!("unable to freeze {}: it stays FREEZING", dir.display()).into())
}

/// Thaw the cgroup (immediate on v1).
pub(super) fn thaw(dir: &Path) -> Result<()> {
    Ok(files::write(dir, "freezer.state", "THAWED")?)
}
