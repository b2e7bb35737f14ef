//! One container (a task in containerd's words): its runtime handle, its init [`Process`] and
//! what was set up for it (rootfs mounts, stdio). Operations check the process state first,
//! then call the runtime without holding the state lock.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim::protos::ttrpc;
use myshim_runtime::{Container, Error as RuntimeError};

use crate::errors;
use crate::events::Events;
use crate::io::StdioPaths;
use crate::process::{Exit, Op, Process};
use crate::rootfs;

/// How long Delete of a never-started container waits for its killed init to be reaped.
const KILL_CREATED_TIMEOUT: Duration = Duration::from_secs(5);

/// A container and its init process.
pub struct Task {
    /// container id
    pub id: String,
    /// bundle directory
    pub bundle: PathBuf,
    /// host pid of the init
    pub pid: u32,
    /// stdio as containerd gave it
    pub stdio: StdioPaths,
    /// `<bundle>/rootfs` when the shim mounted it
    pub rootfs: Option<PathBuf>,
    /// the init's state
    pub init: Process,
    /// exec processes (see [`crate::exec`])
    pub execs: crate::exec::Execs,
    /// owner (uid, gid) for the stdio of exec processes, from the task options
    pub io_owner: Option<(u32, u32)>,
    /// runtime root the container lives under
    pub(crate) root: PathBuf,
    /// restored from a checkpoint: the init already runs, Start only reports it
    restored: bool,
    /// the container has a pid namespace of its own
    pub(crate) own_pid_namespace: bool,
    /// the OOM monitor watching the container's cgroup (asked before TaskExit)
    pub(crate) oom: Option<crate::oom::Monitor>,
    /// The runtime handle; held across runtime calls. Lock order: this before the init's state.
    /// `None` after a failed delete consumed it (the next delete reloads it from disk).
    container: Mutex<Option<Container>>,
}

impl Task {
    /// A created task (its container exists, the init waits for Start).
    pub fn new(
        container: Container,
        root: PathBuf,
        bundle: PathBuf,
        stdio: StdioPaths,
        rootfs: Option<PathBuf>,
        init: Process,
    ) -> Task {
        Task {
            id: container.id().to_string(),
            pid: u32::try_from(container.pid()).unwrap_or(0),
            bundle,
            stdio,
            rootfs,
            init,
            execs: Default::default(),
            io_owner: None,
            restored: false,
            root,
            own_pid_namespace: container.own_pid_namespace(),
            oom: None,
            container: Mutex::new(Some(container)),
        }
    }

    /// The owner (uid, gid) exec processes' stdio gets.
    pub fn with_io_owner(mut self, owner: Option<(u32, u32)>) -> Task {
        self.io_owner = owner;
        self
    }

    /// The OOM monitor watching the container: an OOM kill it has not published yet goes out
    /// before the init's TaskExit.
    pub fn with_oom(mut self, oom: crate::oom::Monitor) -> Task {
        self.oom = Some(oom);
        self
    }

    /// A task whose container was restored from a checkpoint (already running).
    pub fn restored(mut self) -> Task {
        self.restored = true;
        self
    }

    fn what(&self) -> String {
        format!("container {}", self.id)
    }

    fn container(&self) -> MutexGuard<'_, Option<Container>> {
        self.container.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the runtime handle (reloading it from disk if a failed delete consumed it).
    pub(crate) fn with_container<T>(
        &self,
        f: impl FnOnce(&mut Container) -> myshim_runtime::Result<T>,
    ) -> ttrpc::Result<T> {
        let mut guard = self.container();
        if guard.is_none() {
            *guard = Some(Container::load(&self.root, &self.id).map_err(|e| errors::runtime(&e))?);
        }
        match guard.as_mut() {
            Some(c) => f(c).map_err(|e| errors::runtime(&e)),
            None => Err(errors::not_found(format!("{} not found", self.what()))),
        }
    }

    /// Start the init; TaskStart (and an early TaskExit) are published in order.
    pub fn start(&self, events: &Events) -> ttrpc::Result<u32> {
        let mut guard = self.container();
        self.init.begin_start(&self.what())?;
        let result = match guard.as_mut() {
            // criu restored it running: Start only makes it official.
            Some(_) if self.restored => Ok(()),
            Some(c) => c.start().map_err(|e| errors::runtime(&e)),
            None => Err(errors::not_found(format!("{} not found", self.what()))),
        };
        self.init.started(
            result.is_ok(),
            || events.task_start(&self.id, self.pid),
            |exit| events.task_exit(&self.id, &self.id, self.pid, exit),
        );
        drop(guard);
        result.map(|()| self.pid)
    }

    /// Signal the init (or with `all` every process of the container).
    pub fn kill(&self, signal: u32, all: bool) -> ttrpc::Result<()> {
        let what = self.what();
        self.init.check(Op::Kill, &what)?;
        let signal = i32::try_from(signal)
            .map_err(|_| errors::invalid(format!("invalid signal {signal}")))?;
        let finished = || errors::not_found("process already finished");
        let sent = self.with_container(|c| {
            // It may have exited while we waited for the handle (reaped: its exit may still
            // wait for its terminal's output).
            if self.init.is_reaped() {
                return Ok(false);
            }
            c.kill(signal, all)?;
            crate::control::after_kill(c, &self.init, signal);
            Ok(true)
        });
        match sent {
            Ok(true) => Ok(()),
            Ok(false) => Err(finished()),
            Err(_) if self.init.is_reaped() => Err(finished()),
            Err(e) => Err(e),
        }
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> ttrpc::Result<Vec<i32>> {
        self.with_container(|c| c.pids())
    }

    /// Delete the container (it must be stopped, or never started: then its init is killed
    /// first), unmount the rootfs the shim mounted, publish TaskDelete. Returns the init's exit.
    pub fn delete(&self, events: &Events) -> ttrpc::Result<Exit> {
        let what = self.what();
        self.init.check(Op::Delete, &what)?;
        if !self.init.has_exited() {
            // Created: the init is parked waiting for Start. Kill it and let the exit thread
            // record its exit (and publish TaskExit) as for any other exit.
            if let Err(e) = self.with_container(|c| c.kill(libc::SIGKILL, true)) {
                log::warn!("delete {what}: kill created init: {}", errors::describe(&e));
            }
            if self.init.wait_timeout(KILL_CREATED_TIMEOUT).is_none() {
                log::warn!("delete {what}: init {} not reaped after SIGKILL", self.pid);
            }
        }
        let mut guard = self.container();
        self.init.check(Op::Delete, &what)?;
        // Exec processes that outlived the init (no pid namespace of its own) are killed, and
        // their exits reported, before the container goes.
        self.stop_execs();
        let force = !self.init.has_exited();
        let container = match guard.take() {
            Some(c) => Some(c),
            None => match Container::load(&self.root, &self.id) {
                Ok(c) => Some(c),
                Err(RuntimeError::NotFound(_)) => None,
                Err(e) => return Err(errors::runtime(&e)),
            },
        };
        if let Some(c) = container {
            c.delete(force).map_err(|e| errors::runtime(&e))?;
        }
        if let Some(target) = &self.rootfs {
            rootfs::unmount(target).map_err(|e| errors::unknown(&e))?;
        }
        let exit = self.init.deleted(&what, |exit| {
            events.task_delete(&self.id, &self.id, self.pid, exit)
        })?;
        self.clear_execs();
        drop(guard);
        Ok(exit)
    }

    /// The bundle as a string (for events and State).
    pub fn bundle_str(&self) -> String {
        self.bundle.display().to_string()
    }
}

/// `<root>/<id>` exists: the runtime has state for this container.
pub fn has_state(root: &Path, id: &str) -> bool {
    root.join(id).exists()
}
