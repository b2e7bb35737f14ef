//! The shim's tasks by container id, the ids being created, and exits the shim could not yet
//! attribute (an init can die before its entry exists: killed or failed between fork and
//! `Container::create` returning; an exec process before `Container::exec` returned its pid).
//!
//! Lock order: the table lock before a task's exec map, before a process's state lock, never
//! the reverse.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::mount::Mount;

use crate::errors;
use crate::events::Events;
use crate::exec::Exec;
use crate::process::Exit;
use crate::task::Task;

/// How many unattributed exits are remembered, and for how long.
const RECENT_EXITS: usize = 128;
const RECENT_EXIT_AGE: Duration = Duration::from_secs(60);

/// Exits of pids that had no entry when they were reaped (bounded, oldest dropped first).
#[derive(Default)]
struct RecentExits(VecDeque<(i32, Exit, Instant)>);

impl RecentExits {
    fn record(&mut self, pid: i32, exit: Exit) {
        let now = Instant::now();
        self.0
            .retain(|(p, _, seen)| *p != pid && now.duration_since(*seen) < RECENT_EXIT_AGE);
        if self.0.len() >= RECENT_EXITS {
            self.0.pop_front();
        }
        self.0.push_back((pid, exit, now));
    }

    fn take(&mut self, pid: i32) -> Option<Exit> {
        let i = self.0.iter().position(|(p, _, _)| *p == pid)?;
        let (_, exit, seen) = self.0.remove(i)?;
        (seen.elapsed() < RECENT_EXIT_AGE).then_some(exit)
    }
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Arc<Task>>,
    creating: HashSet<String>,
    unattributed: RecentExits,
}

/// All tasks of this shim.
#[derive(Default)]
pub struct Table {
    inner: Mutex<Inner>,
}

/// An id reserved for a Create in progress; released on drop unless the task was inserted.
pub struct Reservation<'a> {
    table: &'a Table,
    id: String,
    inserted: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.inserted {
            self.table.lock().creating.remove(&self.id);
        }
    }
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve `id` for a Create; refused if a task with that id exists or is being created.
    pub fn reserve(&self, id: &str) -> ttrpc::Result<Reservation<'_>> {
        let mut inner = self.lock();
        if inner.tasks.contains_key(id) || !inner.creating.insert(id.to_string()) {
            return Err(errors::status(
                ttrpc::Code::ALREADY_EXISTS,
                format!("container {id} already exists"),
            ));
        }
        Ok(Reservation {
            table: self,
            id: id.to_string(),
            inserted: false,
        })
    }

    /// Insert a created task and publish TaskCreate; if its init already died (an exit for its
    /// pid came in before), record that exit right away (publishing TaskExit after TaskCreate).
    pub fn insert(
        &self,
        mut reservation: Reservation<'_>,
        task: Arc<Task>,
        rootfs: &[Mount],
        ev: &Events,
    ) {
        let mut inner = self.lock();
        inner.creating.remove(&reservation.id);
        reservation.inserted = true;
        inner.tasks.insert(task.id.clone(), task.clone());
        ev.task_create(&task.id, &task.bundle_str(), rootfs, &task.stdio, task.pid);
        let pid = i32::try_from(task.pid).unwrap_or(0);
        if let Some(exit) = inner.unattributed.take(pid) {
            // The pid may have been reused since: believe the exit only if the pid is free.
            if pid_is_free(pid) {
                task.init_reaped(exit, ev);
            }
        }
    }

    /// Exec process `exec` of `task` started as `pid`: from now on its exit is attributed to it;
    /// an exit reaped before (it may have died at once) is recorded now.
    pub fn exec_started(&self, task: &Arc<Task>, exec: &Arc<Exec>, pid: u32, ev: &Events) {
        let mut inner = self.lock();
        exec.set_pid(pid);
        let Ok(raw) = i32::try_from(pid) else {
            return;
        };
        if let Some(exit) = inner.unattributed.take(raw) {
            if pid_is_free(raw) {
                task.exec_reaped(exec, exit, ev);
            }
        }
    }

    /// The task with container id `id`.
    pub fn get(&self, id: &str) -> ttrpc::Result<Arc<Task>> {
        self.lock()
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| errors::not_found(format!("container {id} not found")))
    }

    /// Forget task `id` (after its delete).
    pub fn remove(&self, id: &str) {
        self.lock().tasks.remove(id);
    }

    /// No task exists and none is being created.
    pub fn is_empty(&self) -> bool {
        let inner = self.lock();
        inner.tasks.is_empty() && inner.creating.is_empty()
    }

    /// Attribute an exit reaped by the shim: to the live init or exec process with that pid
    /// (recording it and publishing TaskExit), else remember it for a task being created or an
    /// exec being started.
    pub fn process_exited(&self, pid: i32, code: i32, ev: &Events) {
        let exit = Exit::now(code);
        let mut inner = self.lock();
        let init = inner
            .tasks
            .values()
            .find(|t| i32::try_from(t.pid) == Ok(pid) && !t.init.is_reaped())
            .cloned();
        if let Some(t) = init {
            t.init_reaped(exit, ev);
            return;
        }
        let exec = u32::try_from(pid).ok().and_then(|upid| {
            inner
                .tasks
                .values()
                .find_map(|t| t.execs.by_pid(upid).map(|e| (t.clone(), e)))
        });
        match exec {
            Some((t, e)) => t.exec_reaped(&e, exit, ev),
            None => inner.unattributed.record(pid, exit),
        }
    }
}

/// Whether no process has `pid` (a remembered exit is only believed then: pids get reused).
fn pid_is_free(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn exit(status: u32) -> Exit {
        Exit {
            status,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn recent_exits_are_bounded_and_taken_once() {
        let mut r = RecentExits::default();
        for pid in 0..(RECENT_EXITS as i32 + 10) {
            r.record(pid, exit(1));
        }
        assert_eq!(r.0.len(), RECENT_EXITS);
        assert_eq!(r.take(0), None);
        assert_eq!(r.take(20), Some(exit(1)));
        assert_eq!(r.take(20), None);
        r.record(7, exit(2));
        r.record(7, exit(3));
        assert_eq!(r.take(7), Some(exit(3)));
        assert_eq!(r.take(7), None);
    }

    #[test]
    fn reservations() {
        let t = Table::default();
        let r = t.reserve("a").unwrap();
        assert!(t.reserve("a").is_err());
        assert!(!t.is_empty());
        drop(r);
        assert!(t.is_empty());
        assert!(t.reserve("a").is_ok());
        assert!(t.get("a").is_err());
    }

    #[test]
    fn unknown_exits_are_remembered() {
        let t = Table::default();
        t.process_exited(424242, 137, &Events::discard());
        assert_eq!(
            t.lock().unattributed.take(424242).map(|e| e.status),
            Some(137)
        );
    }
}
