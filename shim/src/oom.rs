//! OOM events: one thread watches the memory cgroups of every task of the shim and publishes
//! TaskOOM when the kernel's OOM killer strikes in one of them.
//!
//! Each task gets a [`myshim_runtime::cgroups::oom::OomWatcher`] (v1: an eventfd on
//! `memory.oom_control`; v2: inotify on `memory.events`) registered at Create, right after the
//! runtime created the container and before Start lets its process run, so no OOM is missed.
//! The thread sleeps in `epoll_wait` on all watchers plus an eventfd through which RPC threads
//! hand it commands (add, flush, remove). A watcher is dropped when its cgroup goes away (its
//! drain fails) or when the task is deleted. The init's exit and Delete first flush it (a flush
//! reads the counters without waiting for the kernel's notification, which comes up to 20 ms
//! late and never for a cgroup removed meanwhile), so an OOM kill is published before the
//! TaskExit it caused, before the cgroup is removed and before TaskDelete.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use myshim_runtime::cgroups::oom::OomWatcher;
use myshim_runtime::cgroups::CgroupManager;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::events::Events;

/// Stack of the OOM thread: it only reads small files and formats log lines.
const STACK: usize = 256 * 1024;
/// epoll token of the command eventfd; watchers get tokens from 1 on.
const WAKE: u64 = 0;
/// How long Flush/Remove wait for the thread.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// What runs on the monitor thread after a flush.
type Then = Box<dyn FnOnce() + Send>;

enum Cmd {
    Add(String, OomWatcher),
    /// Publish an OOM the watcher has pending, then run the continuation.
    Flush(String, Then),
    /// Flush, then drop the watcher (then reply).
    Remove(String, SyncSender<()>),
}

/// Where OOM events are published from.
pub trait Sink: Send + 'static {
    /// The container `id` had an OOM kill.
    fn oom(&self, id: &str);
}

impl Sink for Events {
    fn oom(&self, id: &str) {
        self.task_oom(id);
    }
}

#[derive(Clone)]
struct Handle {
    tx: Sender<Cmd>,
    wake: Arc<EventFd>,
}

/// The OOM monitor of the shim daemon: a handle on its thread (clones share it).
#[derive(Clone)]
pub struct Monitor {
    /// `None` when the thread could not be started (OOM events are then not published).
    handle: Option<Handle>,
}

impl Monitor {
    /// Start the thread, publishing to `sink`. On failure the monitor logs and does nothing.
    pub fn start(sink: impl Sink) -> Monitor {
        match Self::try_start(sink) {
            Ok(handle) => Monitor {
                handle: Some(handle),
            },
            Err(e) => {
                log::error!("oom: cannot start the monitor thread, no OOM events: {e}");
                Monitor { handle: None }
            }
        }
    }

    fn try_start(sink: impl Sink) -> std::io::Result<Handle> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let wake = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
        let (tx, rx) = mpsc::channel();
        let thread = Thread {
            epoll,
            wake: wake.clone(),
            rx,
            sink,
            watchers: HashMap::new(),
            next_token: WAKE + 1,
        };
        std::thread::Builder::new()
            .name("oom".into())
            .stack_size(STACK)
            .spawn(move || thread.run())?;
        Ok(Handle { tx, wake })
    }

    /// Hand `cmd` to the thread; `Err(cmd)` when there is none.
    fn send(&self, cmd: Cmd) -> Result<(), Cmd> {
        let Some(h) = &self.handle else {
            return Err(cmd);
        };
        if let Err(mpsc::SendError(cmd)) = h.tx.send(cmd) {
            log::error!("oom: the monitor thread is gone");
            return Err(cmd);
        }
        if let Err(e) = h.wake.write(1) {
            log::error!("oom: wake the monitor thread: {e}");
        }
        Ok(())
    }

    fn send_and_wait(&self, make: impl FnOnce(SyncSender<()>) -> Cmd) {
        let (done, reply) = mpsc::sync_channel(1);
        if self.send(make(done)).is_ok() && reply.recv_timeout(REPLY_TIMEOUT).is_err() {
            log::warn!("oom: the monitor thread did not answer within {REPLY_TIMEOUT:?}");
        }
    }

    /// Watch the memory cgroup of container `id` (replacing an older watcher for that id). A
    /// cgroup that cannot be watched (no memory controller) is logged and skipped.
    pub fn watch(&self, id: &str, cgroup: &CgroupManager) {
        if self.handle.is_none() {
            return;
        }
        match OomWatcher::new(cgroup) {
            Ok(w) => {
                let _ = self.send(Cmd::Add(id.to_string(), w));
            }
            Err(e) => log::warn!("container {id}: no OOM events: {e:#}"),
        }
    }

    /// Publish an OOM of container `id` that happened but was not read yet; returns once done.
    pub fn flush(&self, id: &str) {
        self.send_and_wait(|done| {
            Cmd::Flush(
                id.to_string(),
                Box::new(move || {
                    let _ = done.send(());
                }),
            )
        });
    }

    /// [`Monitor::flush`] without waiting: `then` runs on the monitor thread once an OOM of
    /// container `id` not read yet is published (right here when there is no thread), so what
    /// it publishes comes after that TaskOOM.
    pub fn flush_then(&self, id: &str, then: Box<dyn FnOnce() + Send>) {
        if let Err(Cmd::Flush(_, then)) = self.send(Cmd::Flush(id.to_string(), then)) {
            then();
        }
    }

    /// Flush and stop watching container `id`; returns once done.
    pub fn remove(&self, id: &str) {
        self.send_and_wait(|done| Cmd::Remove(id.to_string(), done));
    }
}

struct Thread<S> {
    epoll: Epoll,
    wake: Arc<EventFd>,
    rx: Receiver<Cmd>,
    sink: S,
    /// epoll token → (container id, watcher)
    watchers: HashMap<u64, (String, OomWatcher)>,
    next_token: u64,
}

impl<S: Sink> Thread<S> {
    fn run(mut self) {
        let mut ready = [EpollEvent::empty(); 32];
        loop {
            let n = match self.epoll.wait(&mut ready, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("oom: epoll_wait: {e}; no more OOM events");
                    return;
                }
            };
            for ev in &ready[..n] {
                match ev.data() {
                    WAKE => {
                        if !self.commands() {
                            return;
                        }
                    }
                    token => self.check(token),
                }
            }
        }
    }

    /// Handle the queued commands; false once every sender is gone.
    fn commands(&mut self) -> bool {
        // Reset the eventfd first: a command sent after the loop below finds the queue empty
        // writes to it again.
        match self.wake.read() {
            Ok(_) | Err(Errno::EAGAIN) => {}
            Err(e) => log::warn!("oom: read wake eventfd: {e}"),
        }
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Add(id, w)) => self.add(id, w),
                Ok(Cmd::Flush(id, then)) => {
                    if let Some(token) = self.token_of(&id) {
                        self.check_now(token);
                    }
                    then();
                }
                Ok(Cmd::Remove(id, done)) => {
                    if let Some(token) = self.token_of(&id) {
                        self.check_now(token);
                        self.drop_watcher(token);
                    }
                    let _ = done.send(());
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn token_of(&self, id: &str) -> Option<u64> {
        self.watchers
            .iter()
            .find(|(_, (i, _))| i == id)
            .map(|(t, _)| *t)
    }

    fn add(&mut self, id: String, watcher: OomWatcher) {
        if let Some(old) = self.token_of(&id) {
            self.drop_watcher(old);
        }
        let token = self.next_token;
        self.next_token += 1;
        if let Err(e) = self
            .epoll
            .add(&watcher, EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            log::warn!("container {id}: no OOM events: epoll_ctl: {e}");
            return;
        }
        log::debug!("oom: watching container {id}");
        self.watchers.insert(token, (id, watcher));
    }

    fn drop_watcher(&mut self, token: u64) {
        if let Some((id, w)) = self.watchers.remove(&token) {
            if let Err(e) = self.epoll.delete(&w) {
                log::debug!("oom: container {id}: epoll_ctl del: {e}");
            }
            log::debug!("oom: stopped watching container {id}");
        }
    }

    /// Check the watcher without waiting for its fd ([`OomWatcher::drain_now`]): the kernel
    /// notifies `memory.events` up to 20 ms late, and not at all when the cgroup is removed
    /// meanwhile (systemd's scopes), so v2 counters are read whether or not it has.
    fn check_now(&mut self, token: u64) {
        self.check_with(token, OomWatcher::drain_now);
    }

    /// The watcher's fd is readable: publish an OOM, or drop a watcher whose cgroup is gone.
    fn check(&mut self, token: u64) {
        self.check_with(token, OomWatcher::drain);
    }

    fn check_with(
        &mut self,
        token: u64,
        drain: impl FnOnce(&mut OomWatcher) -> myshim_runtime::Result<bool>,
    ) {
        let Some((id, w)) = self.watchers.get_mut(&token) else {
            return;
        };
        match drain(w) {
            Ok(true) => {
                log::info!("container {id}: OOM kill");
                self.sink.oom(id);
            }
            Ok(false) => {}
            Err(e) => {
                log::debug!("oom: container {id}: {e:#}");
                self.drop_watcher(token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Record(Arc<Mutex<Vec<String>>>);

    impl Sink for Record {
        fn oom(&self, id: &str) {
            self.0.lock().unwrap().push(id.to_string());
        }
    }

    #[test]
    fn commands_without_watchers_are_answered() {
        let rec = Record::default();
        let m = Monitor::start(rec.clone());
        assert!(m.handle.is_some());
        // Unknown ids: flush and remove still return (no timeout) and publish nothing.
        let start = std::time::Instant::now();
        m.flush("nope");
        m.remove("nope");
        assert!(start.elapsed() < REPLY_TIMEOUT);
        assert!(rec.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_monitor_that_did_not_start_is_inert() {
        let m = Monitor { handle: None };
        m.flush("c1");
        m.remove("c1");
        // the continuation of a flush still runs, at once
        let (tx, rx) = mpsc::channel();
        m.flush_then("c1", Box::new(move || tx.send(()).unwrap()));
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn flush_then_runs_its_continuation_on_the_thread() {
        let m = Monitor::start(Record::default());
        let (tx, rx) = mpsc::channel();
        m.flush_then(
            "nope",
            Box::new(move || {
                tx.send(std::thread::current().name().map(String::from))
                    .unwrap()
            }),
        );
        let on = rx.recv_timeout(REPLY_TIMEOUT).expect("continuation ran");
        assert_eq!(on.as_deref(), Some("oom"));
    }
}
