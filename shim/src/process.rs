//! One container process's lifecycle as the shim sees it: a state machine whose states each
//! allow only their legal operations ([`Phase::check`] is the one place that refuses), plus the
//! exit record that Wait blocks on or parks a callback on ([`Process::on_exit`]: a Wait RPC
//! holds no thread while its process runs).
//!
//! Event order is kept by publishing under the process's state lock: TaskStart is enqueued
//! while the state moves out of `Starting`, TaskExit when it moves to `Stopped` (an exit seen
//! during `Starting` is parked until TaskStart is out), TaskDelete when it moves to `Deleted`.
//! The lock is never held across a runtime call, so the exit thread never waits on Start
//! (which may itself wait on hook exits that only the exit thread can deliver).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::api::Status;
use containerd_shim::protos::ttrpc;

use crate::errors;
use crate::io::ProcessIo;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// exit code, or 128 + signal
    pub status: u32,
    /// when the shim saw it
    pub at: SystemTime,
}

impl Exit {
    /// An exit seen now.
    pub fn now(code: i32) -> Exit {
        Exit {
            status: u32::try_from(code).unwrap_or(u32::MAX),
            at: SystemTime::now(),
        }
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Created, waiting for Start.
    Created,
    /// The runtime is starting it; an exit seen meanwhile waits here for TaskStart.
    Starting(Option<Exit>),
    /// Started and not exited.
    Running,
    /// Started, not exited, and frozen by Pause (the whole container is).
    Paused,
    /// Exited.
    Stopped(Exit),
    /// Deleted; the entry is about to disappear.
    Deleted,
}

/// Operations whose legality depends on the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Start
    Start,
    /// Kill
    Kill,
    /// Delete
    Delete,
    /// Pause (freeze the container)
    Pause,
    /// Resume (thaw the container)
    Resume,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Kill => "kill",
            Op::Delete => "delete",
            Op::Pause => "pause",
            Op::Resume => "resume",
        }
    }
}

impl Phase {
    /// Refuse `op` if it is not legal now; `what` names the process ("container c1").
    pub fn check(&self, op: Op, what: &str) -> ttrpc::Result<()> {
        use Phase::*;
        match (self, op) {
            (Created | Starting(_), Op::Pause | Op::Resume) => Err(errors::failed_precondition(
                format!("{what} is not running: cannot {}", op.verb()),
            )),
            (Created, _) => Ok(()),
            (Starting(_) | Running | Paused, Op::Kill) => Ok(()),
            (Running, Op::Pause) | (Paused, Op::Resume) => Ok(()),
            (Stopped(_), Op::Delete) => Ok(()),
            (Stopped(_), Op::Kill) => Err(errors::not_found("process already finished")),
            (Deleted, _) => Err(errors::not_found(format!("{what} not found"))),
            (Starting(_) | Running | Paused | Stopped(_), _) => Err(errors::failed_precondition(
                format!("{what} is {}: cannot {}", self.name(), op.verb()),
            )),
        }
    }

    /// The status containerd sees.
    pub fn status(&self) -> Status {
        match self {
            Phase::Created => Status::CREATED,
            Phase::Starting(None) | Phase::Running => Status::RUNNING,
            Phase::Paused => Status::PAUSED,
            Phase::Starting(Some(_)) | Phase::Stopped(_) | Phase::Deleted => Status::STOPPED,
        }
    }

    /// The exit, once there is one.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            Phase::Starting(exit) => *exit,
            Phase::Stopped(exit) => Some(*exit),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Starting(_) => "starting",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Stopped(_) => "stopped",
            Phase::Deleted => "deleted",
        }
    }
}

struct Inner {
    phase: Phase,
    /// Released at delete (after the lock): closes the process's streams, stops its logger.
    io: Option<ProcessIo>,
    /// The shim reaped the process (its exit may still wait for its output to be drained).
    reaped: bool,
    /// Parked Waits: called once with the exit, or with `None` if the process is deleted
    /// without one.
    waiters: Vec<Parked>,
}

/// A parked Wait (see [`Process::on_exit`]).
pub struct Parked {
    /// Whether the client went away (its callback is then dropped unanswered).
    pub cancelled: Box<dyn Fn() -> bool + Send>,
    /// Called once with the exit, or `None` when the process is deleted without one.
    pub respond: Box<dyn FnOnce(Option<Exit>) + Send>,
}

impl Parked {
    /// A parked wait whose client never goes away.
    pub fn new(respond: impl FnOnce(Option<Exit>) + Send + 'static) -> Parked {
        Parked {
            cancelled: Box::new(|| false),
            respond: Box::new(respond),
        }
    }
}

/// Wake every parked Wait of `inner` with `exit` (called with the state lock held: the callbacks
/// only queue a response).
fn wake(inner: &mut Inner, exit: Option<Exit>) {
    for w in inner.waiters.drain(..) {
        (w.respond)(exit);
    }
}

/// A process's state and exit; see the module doc for the locking rules.
pub struct Process {
    inner: Mutex<Inner>,
    exited: Condvar,
}

impl Process {
    /// A created process that holds `io` until it exits.
    pub fn new(io: ProcessIo) -> Process {
        Process {
            inner: Mutex::new(Inner {
                phase: Phase::Created,
                io: Some(io),
                reaped: false,
                waiters: Vec::new(),
            }),
            exited: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lock().phase.clone()
    }

    /// Refuse `op` if it is not legal now.
    pub fn check(&self, op: Op, what: &str) -> ttrpc::Result<()> {
        self.lock().phase.check(op, what)
    }

    /// Enter `Starting` (the caller then runs the runtime's start and calls [`Self::started`]).
    pub fn begin_start(&self, what: &str) -> ttrpc::Result<()> {
        let mut inner = self.lock();
        inner.phase.check(Op::Start, what)?;
        inner.phase = Phase::Starting(None);
        Ok(())
    }

    /// Leave `Starting`: on success publish TaskStart via `on_start` (and then the parked exit, if
    /// any, via `on_exit`); on failure go back to `Created` unless the process died meanwhile.
    pub fn started(&self, ok: bool, on_start: impl FnOnce(), on_exit: impl FnOnce(&Exit)) {
        let mut inner = self.lock();
        let parked = match inner.phase {
            Phase::Starting(exit) => exit,
            // Only the start path leaves `Starting`; nothing to do otherwise.
            _ => return,
        };
        if ok {
            on_start();
        }
        inner.phase = match parked {
            Some(exit) => {
                on_exit(&exit);
                wake(&mut inner, Some(exit));
                Phase::Stopped(exit)
            }
            None if ok => Phase::Running,
            None => Phase::Created,
        };
    }

    /// Give the process its stdio (an exec's is opened when it starts).
    pub fn set_io(&self, io: ProcessIo) {
        self.lock().io = Some(io);
    }

    /// Run `f` on the process's stdio, unless it was released.
    pub fn with_io<T>(&self, f: impl FnOnce(&ProcessIo) -> T) -> Option<T> {
        self.lock().io.as_ref().map(f)
    }

    /// The shim reaped the process: `record` records its exit (it calls [`Self::exited`]) once
    /// the process's output is drained (on the I/O thread), or right away when the shim copies
    /// none, so that output is complete when Wait returns.
    pub fn reaped(&self, record: Box<dyn FnOnce() + Send>) {
        let deferred = {
            let mut inner = self.lock();
            inner.reaped = true;
            match inner.io.as_ref() {
                Some(io) => io.when_drained(record),
                None => Err(record),
            }
        };
        if let Err(record) = deferred {
            record();
        }
    }

    /// Whether the process was reaped (or its exit recorded): it can no longer be signalled.
    pub fn is_reaped(&self) -> bool {
        let inner = self.lock();
        inner.reaped || inner.phase.exit().is_some()
    }

    /// Record the process's exit (once): wake waiters, and publish TaskExit via `on_exit` unless a
    /// start in progress will do it after TaskStart. Its stdio stays until delete (output still
    /// in a pipe keeps flowing to containerd).
    pub fn exited(&self, exit: Exit, on_exit: impl FnOnce(&Exit)) {
        let mut inner = self.lock();
        inner.reaped = true;
        match inner.phase {
            Phase::Created | Phase::Running | Phase::Paused => {
                on_exit(&exit);
                inner.phase = Phase::Stopped(exit);
            }
            Phase::Starting(None) => inner.phase = Phase::Starting(Some(exit)),
            Phase::Starting(Some(_)) | Phase::Stopped(_) | Phase::Deleted => return,
        }
        if let Phase::Stopped(exit) = inner.phase {
            wake(&mut inner, Some(exit));
        }
        self.exited.notify_all();
    }

    /// Call `parked` once with the exit: now if there is one (or with `None` if the process
    /// is deleted), else when it is recorded. TaskStart precedes it as it precedes TaskExit.
    /// Waits of clients that went away are dropped here.
    pub fn on_exit(&self, parked: Parked) {
        let mut inner = self.lock();
        match &inner.phase {
            Phase::Stopped(exit) => {
                let exit = *exit;
                drop(inner);
                (parked.respond)(Some(exit));
            }
            Phase::Deleted => {
                drop(inner);
                (parked.respond)(None);
            }
            _ => {
                inner.waiters.retain(|w| !(w.cancelled)());
                inner.waiters.push(parked);
            }
        }
    }

    /// After the runtime froze (`paused`) or thawed the container: move between `Running` and
    /// `Paused`, publishing via `on_change` under the state lock. False (nothing published) if
    /// the process is not in the state it is moved from (it exited meanwhile).
    pub fn set_paused(&self, paused: bool, on_change: impl FnOnce()) -> bool {
        let mut inner = self.lock();
        let next = match (&inner.phase, paused) {
            (Phase::Running, true) => Phase::Paused,
            (Phase::Paused, false) => Phase::Running,
            _ => return false,
        };
        on_change();
        inner.phase = next;
        true
    }

    /// CloseIO for stdin (a no-op once the process has exited).
    pub fn close_stdin(&self) {
        if let Some(io) = self.lock().io.as_mut() {
            io.close_stdin();
        }
    }

    /// Whether an exit has been recorded.
    pub fn has_exited(&self) -> bool {
        self.lock().phase.exit().is_some()
    }

    /// Wait at most `timeout` for the exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if let Some(exit) = inner.phase.exit() {
                return Some(exit);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || inner.phase == Phase::Deleted {
                return None;
            }
            inner = self
                .exited
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Enter `Deleted` (checking legality again), publish TaskDelete via `on_delete`, and return
    /// the exit to report: a process never started (an exec created and deleted) reports 0, as
    /// containerd expects; one deleted without an exit otherwise counts as killed now.
    pub fn deleted(&self, what: &str, on_delete: impl FnOnce(&Exit)) -> ttrpc::Result<Exit> {
        let io;
        let exit = {
            let mut inner = self.lock();
            let exit = Self::delete_locked(&mut inner, what, on_delete)?;
            io = inner.io.take();
            self.exited.notify_all();
            exit
        };
        // Outside the lock: a logging binary may take a moment to finish.
        drop(io);
        Ok(exit)
    }

    fn delete_locked(
        inner: &mut Inner,
        what: &str,
        on_delete: impl FnOnce(&Exit),
    ) -> ttrpc::Result<Exit> {
        inner.phase.check(Op::Delete, what)?;
        let exit = match inner.phase {
            Phase::Created => Exit::now(0),
            _ => inner
                .phase
                .exit()
                .unwrap_or_else(|| Exit::now(128 + libc::SIGKILL)),
        };
        on_delete(&exit);
        inner.phase = Phase::Deleted;
        wake(inner, None);
        Ok(exit)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::Arc;

    use containerd_shim::protos::ttrpc::Code;

    use super::*;

    fn code(r: ttrpc::Result<()>) -> Option<(Code, String)> {
        match r {
            Ok(()) => None,
            Err(ttrpc::Error::RpcStatus(s)) => Some((s.code(), s.message().to_string())),
            Err(e) => panic!("{e:?}"),
        }
    }

    fn exit(status: u32) -> Exit {
        Exit {
            status,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn legality_table() {
        let what = "container c1";
        let ok = None;
        let fp = |p: &str, op: &str| {
            Some((
                Code::FAILED_PRECONDITION,
                format!("container c1 is {p}: cannot {op}"),
            ))
        };
        let finished = Some((Code::NOT_FOUND, "process already finished".to_string()));
        let gone = Some((Code::NOT_FOUND, "container c1 not found".to_string()));
        let stopped = Phase::Stopped(exit(0));
        let cases = [
            (Phase::Created, [ok.clone(), ok.clone(), ok.clone()]),
            (
                Phase::Starting(None),
                [
                    fp("starting", "start"),
                    ok.clone(),
                    fp("starting", "delete"),
                ],
            ),
            (
                Phase::Running,
                [fp("running", "start"), ok.clone(), fp("running", "delete")],
            ),
            (
                Phase::Paused,
                [fp("paused", "start"), ok.clone(), fp("paused", "delete")],
            ),
            (stopped, [fp("stopped", "start"), finished, ok]),
            (Phase::Deleted, [gone.clone(), gone.clone(), gone]),
        ];
        for (phase, expect) in cases {
            for (op, want) in [Op::Start, Op::Kill, Op::Delete].into_iter().zip(expect) {
                assert_eq!(code(phase.check(op, what)), want, "{phase:?} {op:?}");
            }
        }
    }

    #[test]
    fn pause_and_resume_legality() {
        let what = "container c1";
        let cases = [
            (
                Phase::Created,
                Some(Code::FAILED_PRECONDITION),
                Some(Code::FAILED_PRECONDITION),
            ),
            (
                Phase::Starting(None),
                Some(Code::FAILED_PRECONDITION),
                Some(Code::FAILED_PRECONDITION),
            ),
            (Phase::Running, None, Some(Code::FAILED_PRECONDITION)),
            (Phase::Paused, Some(Code::FAILED_PRECONDITION), None),
            (
                Phase::Stopped(exit(0)),
                Some(Code::FAILED_PRECONDITION),
                Some(Code::FAILED_PRECONDITION),
            ),
            (Phase::Deleted, Some(Code::NOT_FOUND), Some(Code::NOT_FOUND)),
        ];
        for (phase, pause, resume) in cases {
            let c = |op| code(phase.check(op, what)).map(|(c, _)| c);
            assert_eq!(c(Op::Pause), pause, "{phase:?} pause");
            assert_eq!(c(Op::Resume), resume, "{phase:?} resume");
        }
        assert_eq!(
            code(Phase::Paused.check(Op::Pause, what)).unwrap().1,
            "container c1 is paused: cannot pause"
        );
    }

    #[test]
    fn pause_resume_and_exit_while_paused() {
        let p = Process::new(ProcessIo::default());
        let log = RefCell::new(Vec::new());
        assert!(!p.set_paused(true, || log.borrow_mut().push("paused")));
        p.begin_start("c").unwrap();
        p.started(true, || {}, |_| {});
        assert!(p.set_paused(true, || log.borrow_mut().push("paused")));
        assert_eq!(p.phase(), Phase::Paused);
        assert_eq!(p.phase().status(), Status::PAUSED);
        assert!(!p.set_paused(true, || log.borrow_mut().push("again")));
        assert!(p.set_paused(false, || log.borrow_mut().push("resumed")));
        assert_eq!(p.phase(), Phase::Running);
        assert!(p.set_paused(true, || log.borrow_mut().push("paused")));
        // SIGKILLed while paused: the exit is recorded and published as usual
        p.exited(exit(137), |_| log.borrow_mut().push("exit"));
        assert_eq!(p.phase(), Phase::Stopped(exit(137)));
        assert!(!p.set_paused(false, || log.borrow_mut().push("late")));
        assert_eq!(*log.borrow(), ["paused", "resumed", "paused", "exit"]);
    }

    #[test]
    fn status_mapping() {
        assert_eq!(Phase::Created.status(), Status::CREATED);
        assert_eq!(Phase::Starting(None).status(), Status::RUNNING);
        assert_eq!(Phase::Running.status(), Status::RUNNING);
        assert_eq!(Phase::Starting(Some(exit(1))).status(), Status::STOPPED);
        assert_eq!(Phase::Stopped(exit(1)).status(), Status::STOPPED);
        assert_eq!(Phase::Deleted.status(), Status::STOPPED);
    }

    #[test]
    fn exit_during_start_is_published_after_start() {
        let p = Process::new(ProcessIo::default());
        let log = RefCell::new(Vec::new());
        p.begin_start("c").unwrap();
        p.exited(exit(3), |_| log.borrow_mut().push("exit-early"));
        assert!(log.borrow().is_empty());
        assert!(p.has_exited());
        p.started(
            true,
            || log.borrow_mut().push("start"),
            |e| {
                assert_eq!(e.status, 3);
                log.borrow_mut().push("exit")
            },
        );
        assert_eq!(*log.borrow(), ["start", "exit"]);
        assert_eq!(p.phase(), Phase::Stopped(exit(3)));
        // a second exit report is ignored
        p.exited(exit(9), |_| log.borrow_mut().push("again"));
        assert_eq!(log.borrow().len(), 2);
    }

    #[test]
    fn failed_start_returns_to_created() {
        let p = Process::new(ProcessIo::default());
        p.begin_start("c").unwrap();
        p.started(false, || panic!("no TaskStart"), |_| panic!("no exit"));
        assert_eq!(p.phase(), Phase::Created);
        assert!(p.begin_start("c").is_ok());
    }

    #[test]
    fn wait_then_delete() {
        let p = Arc::new(Process::new(ProcessIo::default()));
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.wait_timeout(Duration::from_secs(30)));
        p.begin_start("c").unwrap();
        p.started(true, || {}, |_| {});
        p.exited(exit(0), |_| {});
        assert_eq!(waiter.join().unwrap(), Some(exit(0)));
        let mut published = None;
        let got = p.deleted("container c", |e| published = Some(*e)).unwrap();
        assert_eq!((got, published), (exit(0), Some(exit(0))));
        assert!(p.deleted("container c", |_| {}).is_err());
        assert_eq!(p.wait_timeout(Duration::from_millis(1)), None);
    }

    #[test]
    fn deleting_a_created_process_wakes_waiters() {
        let p = Arc::new(Process::new(ProcessIo::default()));
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || p2.wait_timeout(Duration::from_secs(30)));
        assert_eq!(p.wait_timeout(Duration::from_millis(10)), None);
        let parked = Arc::new(Mutex::new(Vec::new()));
        let sink = parked.clone();
        p.on_exit(Parked::new(move |e| sink.lock().unwrap().push(e)));
        let got = p.deleted("container c", |_| {}).unwrap();
        assert_eq!(got.status, 0, "never started: status 0");
        assert_eq!(waiter.join().unwrap(), None);
        assert_eq!(*parked.lock().unwrap(), vec![None]);
    }

    #[test]
    fn parked_waits_get_the_exit_once() {
        let p = Process::new(ProcessIo::default());
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        p.on_exit(Parked::new(move |e| sink.lock().unwrap().push(e)));
        p.begin_start("c").unwrap();
        // an exit seen while starting is delivered after TaskStart
        p.exited(exit(3), |_| {});
        assert!(got.lock().unwrap().is_empty());
        p.started(true, || {}, |_| {});
        assert_eq!(*got.lock().unwrap(), vec![Some(exit(3))]);
        // a Wait after the exit is answered at once
        let sink = got.clone();
        p.on_exit(Parked::new(move |e| sink.lock().unwrap().push(e)));
        assert_eq!(got.lock().unwrap().len(), 2);
        p.deleted("c", |_| {}).unwrap();
        assert_eq!(got.lock().unwrap().len(), 2);
    }

    #[test]
    fn parked_waits_of_a_running_process() {
        let p = Process::new(ProcessIo::default());
        p.begin_start("c").unwrap();
        p.started(true, || {}, |_| {});
        let got = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..3 {
            let sink = got.clone();
            p.on_exit(Parked::new(move |e| sink.lock().unwrap().push(e)));
        }
        p.exited(exit(7), |_| {});
        assert_eq!(*got.lock().unwrap(), vec![Some(exit(7)); 3]);
    }
}
