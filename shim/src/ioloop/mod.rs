//! The shim's one I/O thread: every byte between the container processes' pipes (or pty
//! masters) and containerd's fifos, log files and logger pipes goes through a single epoll loop,
//! whatever the number of processes.
//!
//! A *stream* copies one source fd into one [`Sink`]: pipe to pipe with splice(2) (no copy
//! through user space), anything else with read/write through a small buffer. A stream waits on
//! one fd at a time (its source while it has nothing to write, else its sink); only that fd is in
//! the epoll set, so a hung-up fd the stream is not interested in cannot wake the loop.
//!
//! The streams of one process form a *group* ([`Group`], owned by the process's stdio):
//! - input streams end at the source's end of file (the last writer of the stdin fifo closed it),
//!   on [`Group::close_input`] (CloseIO: what is in the fifo is still copied), and when the
//!   process was reaped ([`Group::when_drained`]);
//! - output streams end at the source's end of file (every writer of the process's pipe is gone,
//!   or the pty has no slave left) once everything read was written;
//! - [`Group::when_drained`] runs its callback (which records the exit and publishes TaskExit)
//!   on the loop thread once every output stream has ended and its sink was closed, so output is
//!   complete when containerd learns of the exit. If another process still holds the pipe or the
//!   terminal, it runs after [`DRAIN_QUIET`] without output, and at the latest after
//!   [`DRAIN_MAX`] (containerd does not read); pipe streams then go on until their end of file,
//!   terminal streams are closed (as runc's shim closes the console at exit);
//! - dropping the [`Group`] (the process is deleted) closes everything at once.
//!
//! Callbacks run on the loop thread after the loop's lock is released; the lock is never held
//! while waiting for anything but the loop's own bookkeeping, so any thread may add streams or
//! drop groups while holding its own locks.

mod stream;

use std::collections::HashMap;
use std::fmt;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use stream::{Next, Stream, Wait};
pub use stream::{Role, Sink, StreamSpec};

/// What runs once a process's output is drained (records the exit).
pub type OnDrained = Box<dyn FnOnce() + Send>;

/// After the exit: the output is complete once the sources stayed silent this long.
pub const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// After the exit: the exit is reported after this long at the latest (containerd does not
/// read, or a surviving process keeps writing).
pub const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Stack of the loop thread (buffers are on the heap).
const STACK: usize = 128 * 1024;
/// Epoll token of the wake eventfd; stream tokens are `id << 1 | (0 source, 1 sink)`.
const WAKE: u64 = 0;

/// A process's exit waiting for its output.
struct Drain {
    on_drained: OnDrained,
    until: Instant,
    last_output: Instant,
}

#[derive(Default)]
struct GroupState {
    streams: Vec<u64>,
    drain: Option<Drain>,
    /// Close the streams once the exit is reported (terminals).
    end_at_exit: bool,
}

#[derive(Default)]
struct State {
    streams: HashMap<u64, Stream>,
    groups: HashMap<u64, GroupState>,
    next_id: u64,
    /// Callbacks to run on the loop thread, outside the lock.
    ready: Vec<OnDrained>,
}

struct Shared {
    epoll: Epoll,
    wake: EventFd,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        if let Err(e) = self.wake.write(1) {
            log::warn!("io loop: wake: {e}");
        }
    }
}

impl State {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Pump stream `id` and arm it for what it waits on next, or remove it.
    fn step(&mut self, epoll: &Epoll, id: u64, now: Instant) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        let mut moved = 0;
        let next = stream.pump(&mut moved);
        let (group, role) = (stream.group, stream.role);
        let next = match next {
            Next::Wait(w) => match stream.arm(epoll, id, w) {
                Ok(()) => next,
                Err(e) => {
                    log::warn!("{}: epoll add: {e}", stream.name);
                    Next::Done
                }
            },
            Next::Done => Next::Done,
        };
        if moved > 0 && role == Role::Output {
            if let Some(d) = self.groups.get_mut(&group).and_then(|g| g.drain.as_mut()) {
                d.last_output = now;
            }
        }
        if next == Next::Done {
            self.remove_stream(epoll, id);
            self.check_group(epoll, group, now);
        }
    }

    fn remove_stream(&mut self, epoll: &Epoll, id: u64) {
        if let Some(mut s) = self.streams.remove(&id) {
            s.disarm(epoll);
            if let Some(g) = self.groups.get_mut(&s.group) {
                g.streams.retain(|&x| x != id);
            }
            log::debug!("{}: stream ended", s.name);
        }
    }

    fn outputs<'a>(&'a self, group: &'a GroupState) -> impl Iterator<Item = &'a Stream> + 'a {
        group
            .streams
            .iter()
            .filter_map(|id| self.streams.get(id))
            .filter(|s| s.role == Role::Output)
    }

    /// Report the exit of a draining group once its output is done (or the drain timed out).
    fn check_group(&mut self, epoll: &Epoll, group: u64, now: Instant) {
        let Some(g) = self.groups.get(&group) else {
            return;
        };
        let Some(d) = &g.drain else {
            return;
        };
        let done = if self.outputs(g).next().is_none() {
            true
        } else if now >= d.until {
            log::warn!("output not drained within {DRAIN_MAX:?} after the exit");
            true
        } else {
            // Quiet: nothing read for a while and nothing waiting for a full sink.
            self.outputs(g).all(|s| s.armed == Wait::Source) && now >= d.last_output + DRAIN_QUIET
        };
        if !done {
            return;
        }
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        let drain = g.drain.take();
        if g.end_at_exit {
            for id in g.streams.clone() {
                self.remove_stream(epoll, id);
            }
        }
        if let Some(d) = drain {
            self.ready.push(d.on_drained);
        }
    }

    /// How long the loop may sleep: until the next drain deadline.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        self.groups
            .values()
            .filter_map(|g| {
                let d = g.drain.as_ref()?;
                let quiet = self.outputs(g).all(|s| s.armed == Wait::Source);
                let at = if quiet {
                    d.until.min(d.last_output + DRAIN_QUIET)
                } else {
                    d.until
                };
                Some(at.saturating_duration_since(now))
            })
            .min()
    }
}

static LOOP: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

/// The loop, started on first use.
fn the_loop() -> anyhow::Result<Arc<Shared>> {
    let mut guard = LOOP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(shared) = guard.as_ref() {
        return Ok(shared.clone());
    }
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .context("create the io loop's eventfd")?;
    epoll
        .add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))
        .context("epoll add eventfd")?;
    let shared = Arc::new(Shared {
        epoll,
        wake,
        state: Mutex::new(State::default()),
    });
    let s = shared.clone();
    std::thread::Builder::new()
        .name("io".into())
        .stack_size(STACK)
        .spawn(move || run(&s))
        .context("start the io thread")?;
    *guard = Some(shared.clone());
    Ok(shared)
}

fn run(shared: &Shared) {
    let mut events = vec![EpollEvent::empty(); 64];
    loop {
        let timeout = shared.lock().timeout(Instant::now());
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                // Round up: waking before the deadline would only loop again.
                let ms = t.as_millis().saturating_add(1).min(u128::from(u16::MAX));
                EpollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
            }
        };
        let n = match shared.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => {
                log::error!("io loop: epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(100));
                0
            }
        };
        let ready = {
            let now = Instant::now();
            let mut st = shared.lock();
            for ev in &events[..n] {
                match ev.data() {
                    WAKE => {
                        let _ = shared.wake.read();
                    }
                    token => st.step(&shared.epoll, token >> 1, now),
                }
            }
            let groups: Vec<u64> = st
                .groups
                .iter()
                .filter(|(_, g)| g.drain.is_some())
                .map(|(&id, _)| id)
                .collect();
            for g in groups {
                st.check_group(&shared.epoll, g, now);
            }
            std::mem::take(&mut st.ready)
        };
        for f in ready {
            f();
        }
    }
}

/// The streams of one process; dropping it closes them all at once.
pub struct Group {
    shared: Arc<Shared>,
    id: u64,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").field("id", &self.id).finish()
    }
}

impl Group {
    /// A new, empty group (starts the loop thread on first use).
    pub fn new() -> anyhow::Result<Group> {
        let shared = the_loop()?;
        let id = {
            let mut st = shared.lock();
            let id = st.new_id();
            st.groups.insert(id, GroupState::default());
            id
        };
        Ok(Group { shared, id })
    }

    /// Close the streams once the exit is reported instead of waiting for their end (a
    /// terminal another process may keep open).
    pub fn end_at_exit(&self) {
        if let Some(g) = self.shared.lock().groups.get_mut(&self.id) {
            g.end_at_exit = true;
        }
    }

    /// Start copying `spec`.
    pub fn add(&self, spec: StreamSpec) -> anyhow::Result<()> {
        crate::io::set_nonblocking(&spec.source).with_context(|| spec.name.clone())?;
        let mut st = self.shared.lock();
        let id = st.new_id();
        let mut stream = Stream::new(self.id, spec);
        stream
            .arm(&self.shared.epoll, id, Wait::Source)
            .with_context(|| format!("{}: epoll add", stream.name))?;
        st.streams.insert(id, stream);
        st.groups.entry(self.id).or_default().streams.push(id);
        Ok(())
    }

    /// CloseIO: the input streams copy what their source holds, then end (the process reads end
    /// of file, or `VEOF` on a terminal).
    pub fn close_input(&self) {
        let mut st = self.shared.lock();
        let inputs: Vec<u64> = st
            .groups
            .get(&self.id)
            .map(|g| g.streams.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| {
                st.streams
                    .get(id)
                    .is_some_and(|s| s.role != Role::Output && !s.closing)
            })
            .collect();
        for id in inputs {
            if let Some(s) = st.streams.get_mut(&id) {
                s.closing = true;
            }
            st.step(&self.shared.epoll, id, Instant::now());
        }
    }

    /// The process was reaped: its input ends now; `f` runs on the loop thread once its output
    /// is drained (see the module doc). `Err(f)` when there is nothing to drain: the caller runs
    /// `f` itself.
    pub fn when_drained(&self, f: OnDrained) -> Result<(), OnDrained> {
        let mut st = self.shared.lock();
        let ids = st
            .groups
            .get(&self.id)
            .map(|g| g.streams.clone())
            .unwrap_or_default();
        for id in ids {
            if st.streams.get(&id).is_some_and(|s| s.role != Role::Output) {
                st.remove_stream(&self.shared.epoll, id);
            }
        }
        let now = Instant::now();
        let has_output = st
            .groups
            .get(&self.id)
            .is_some_and(|g| st.outputs(g).next().is_some());
        let Some(g) = st.groups.get_mut(&self.id).filter(|_| has_output) else {
            return Err(f);
        };
        g.drain = Some(Drain {
            on_drained: f,
            until: now + DRAIN_MAX,
            last_output: now,
        });
        drop(st);
        self.shared.wake();
        Ok(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let Some(g) = st.groups.remove(&self.id) else {
            return;
        };
        for id in g.streams {
            if let Some(mut s) = st.streams.remove(&id) {
                s.disarm(&self.shared.epoll);
            }
        }
        // A pending exit is still reported (on the loop thread: the dropper may hold the
        // process's lock).
        if let Some(d) = g.drain {
            st.ready.push(d.on_drained);
            drop(st);
            self.shared.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::sync::mpsc;

    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;

    use super::*;

    fn pipe() -> (File, File) {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
        (File::from(r), File::from(w))
    }

    #[test]
    fn pipe_to_pipe_moves_everything_then_drains() {
        let (proc_r, mut proc_w) = pipe();
        let (ctr_r, ctr_w) = pipe();
        let group = Group::new().unwrap();
        crate::io::set_nonblocking(&ctr_w).unwrap();
        group
            .add(StreamSpec {
                name: "test out".into(),
                source: proc_r.into(),
                sink: Sink::Pipe(ctr_w.into()),
                role: Role::Output,
            })
            .unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let expect = data.clone();
        let writer = std::thread::spawn(move || {
            proc_w.write_all(&data).unwrap();
        });
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut r = ctr_r;
            r.read_to_end(&mut got).unwrap();
            got
        });
        writer.join().unwrap();
        let (tx, rx) = mpsc::channel();
        let f: OnDrained = Box::new(move || tx.send(()).unwrap());
        if let Err(f) = group.when_drained(f) {
            f();
        }
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // the sink is closed before the exit is reported: the reader has its end of file
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect);
    }

    /// A group discarding the output read from `source`, with a drain asked for: the receiver
    /// gets a message when the drain is reported.
    fn draining_group(source: File) -> (Group, mpsc::Receiver<()>) {
        let group = Group::new().unwrap();
        group
            .add(StreamSpec {
                name: "test out".into(),
                source: source.into(),
                sink: Sink::Discard,
                role: Role::Output,
            })
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let f: OnDrained = Box::new(move || tx.send(()).unwrap());
        assert!(group.when_drained(f).is_ok());
        (group, rx)
    }

    #[test]
    fn a_silent_holder_ends_the_drain() {
        let (proc_r, proc_w) = pipe();
        let (_group, rx) = draining_group(proc_r);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(proc_w);
        // dropping a group with a pending drain still reports it
        let (proc_r, _proc_w) = pipe();
        let (group, rx) = draining_group(proc_r);
        drop(group);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn input_ends_when_the_writer_closes_and_on_close() {
        let (src_r, mut src_w) = pipe();
        let (proc_r, proc_w) = pipe();
        let group = Group::new().unwrap();
        crate::io::set_nonblocking(&proc_w).unwrap();
        group
            .add(StreamSpec {
                name: "test in".into(),
                source: src_r.into(),
                sink: Sink::Pipe(proc_w.into()),
                role: Role::Input,
            })
            .unwrap();
        src_w.write_all(b"abc").unwrap();
        drop(src_w);
        let mut got = String::new();
        let mut r = proc_r;
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "abc");
        // CloseIO with the writer still there
        let (src_r, mut src_w) = pipe();
        let (proc_r, proc_w) = pipe();
        crate::io::set_nonblocking(&proc_w).unwrap();
        group
            .add(StreamSpec {
                name: "test in 2".into(),
                source: src_r.into(),
                sink: Sink::Pipe(proc_w.into()),
                role: Role::Input,
            })
            .unwrap();
        src_w.write_all(b"xyz").unwrap();
        group.close_input();
        let mut got = String::new();
        let mut r = proc_r;
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "xyz");
        drop(src_w);
    }
}
