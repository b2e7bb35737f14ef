//! OOM notification for one container's cgroup, as a pollable fd.
//!
//! v1: an eventfd registered on `memory.oom_control` through `cgroup.event_control`; it becomes
//! readable on each OOM of the cgroup (and when the cgroup is removed). v2: an inotify watch on
//! `memory.events`, whose `oom_kill` counter is compared with the last value read. Register the
//! watcher before the container's process can run, and no OOM is missed. A cgroup that systemd
//! removes on its own (the systemd driver) can take `memory.events` away before the read: for
//! those the kernel-side counter of [`super::oom_trace`] says whether an OOM kill was missed.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::oom_trace::{self, Tracer};
use super::{CgroupManager, Layout};
use crate::Result;

/// A watcher whose fd becomes readable when something happened; then call [`OomWatcher::drain`].
pub enum OomWatcher {
    /// cgroup v1
    V1 {
        /// the eventfd
        event: EventFd,
        /// kept open while registered
        _control: std::fs::File,
        /// memory cgroup directory (to tell removal from OOM)
        dir: PathBuf,
    },
    /// cgroup v2
    V2 {
        /// inotify on memory.events
        inotify: Inotify,
        /// memory.events
        events: PathBuf,
        /// oom_kill seen so far
        seen: u64,
        /// the kernel-side counter and the cgroup's id in it, for a cgroup systemd removes
        trace: Option<(&'static Tracer, u64)>,
        /// the cgroup is gone (its last OOM, if any, was reported)
        gone: bool,
    },
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OomWatcher")
    }
}

impl OomWatcher {
    /// Watch the memory cgroup of `cg`.
    pub fn new(cg: &CgroupManager) -> Result<OomWatcher> {
        match cg.layout() {
            Layout::V1 => {
                let dir = cg
                    .dirs()
                    .find(|d| is_memory_dir(d))
                    .context("no memory cgroup to watch for OOM")?
                    .to_path_buf();
                let event = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
                    .context("create OOM eventfd")?;
                let control_path = dir.join("memory.oom_control");
                let control = std::fs::File::open(&control_path)
                    .with_context(|| format!("open {}", control_path.display()))?;
                let line = format!("{} {}", event.as_fd().as_raw_fd(), control.as_raw_fd());
                std::fs::write(dir.join("cgroup.event_control"), line)
                    .with_context(|| format!("register OOM eventfd in {}", dir.display()))?;
                Ok(OomWatcher::V1 {
                    event,
                    _control: control,
                    dir,
                })
            }
            Layout::V2 => {
                let dir = cg.dirs().next().context("no cgroup to watch for OOM")?;
                let events = dir.join("memory.events");
                let trace = match cg.systemd_unit() {
                    Some(_) => Tracer::shared().zip(
                        oom_trace::cgroup_id(dir)
                            .map_err(|e| log::warn!("oom: no kernel-side count: {e:#}"))
                            .ok(),
                    ),
                    None => None,
                };
                let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                    .context("create inotify")?;
                inotify
                    .add_watch(&events, AddWatchFlags::IN_MODIFY)
                    .with_context(|| format!("watch {}", events.display()))?;
                let seen = read_oom_kill(&events).unwrap_or(0);
                Ok(OomWatcher::V2 {
                    inotify,
                    events,
                    seen,
                    trace,
                    gone: false,
                })
            }
        }
    }

    /// Consume what made the fd readable. `Ok(true)`: the cgroup had an OOM kill; `Err`: the
    /// cgroup is gone and the watcher should be dropped.
    pub fn drain(&mut self) -> Result<bool> {
        match self {
            OomWatcher::V1 { event, dir, .. } => {
                let mut buf = [0u8; 8];
                let mut f =
                    std::fs::File::from(event.as_fd().try_clone_to_owned().context("dup eventfd")?);
                f.read_exact(&mut buf).context("read OOM eventfd")?;
                if !dir.exists() {
                    return Err(anyhow::anyhow!("memory cgroup {} removed", dir.display()).into());
                }
                Ok(true)
            }
            OomWatcher::V2 {
                inotify,
                events,
                seen,
                trace,
                gone,
            } => {
                let _ = inotify.read_events();
                match read_oom_kill(events) {
                    Ok(now) => {
                        let fired = now > *seen;
                        *seen = now;
                        Ok(fired)
                    }
                    Err(e) if !*gone => {
                        *gone = true;
                        // Removed by systemd: what did the kernel count before that?
                        if let Some((tracer, id)) = trace {
                            let kills = tracer.kills(*id)?;
                            log::debug!(
                                "oom: {} removed before it was read ({} OOM kills read, {kills} \
                                 counted by the kernel)",
                                events.display(),
                                *seen
                            );
                            if kills > *seen {
                                return Ok(true);
                            }
                        }
                        Err(e.context("memory cgroup removed").into())
                    }
                    Err(e) => Err(e.context("memory cgroup removed").into()),
                }
            }
        }
    }
}

impl OomWatcher {
    /// [`OomWatcher::drain`] without waiting for the fd: v1 reads the eventfd only if it is
    /// readable; v2 compares the counter whether or not inotify has told yet (the kernel
    /// notifies a little after the kill). For a last look before giving up on a cgroup.
    pub fn drain_now(&mut self) -> Result<bool> {
        if let OomWatcher::V1 { event, .. } = self {
            let mut fds = [PollFd::new(event.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::ZERO).context("poll OOM eventfd")? == 0 {
                return Ok(false);
            }
        }
        self.drain()
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            OomWatcher::V1 { event, .. } => event.as_fd(),
            OomWatcher::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}

fn is_memory_dir(d: &Path) -> bool {
    d.join("memory.oom_control").exists()
}

fn read_oom_kill(events: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(events)?;
    Ok(parse_oom_kill(&text))
}

/// The `oom_kill` counter of a `memory.events` file.
pub fn parse_oom_kill(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counter_is_parsed() {
        let t = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(t), 2);
        assert_eq!(parse_oom_kill("low 0\n"), 0);
    }
}
