//! A terminal process's stdio: the runtime makes a pty slave the process's stdio and controlling
//! terminal and hands the master to the shim; one thread per master copies, with poll(2), the
//! master's output into the stdout fifo and the stdin fifo into the master.
//!
//! Both fifos are held `O_RDWR` (see [`crate::io`]): the stdout fifo is written through that
//! keepalive fd itself, so a write never fails with EPIPE and output waits in the fifo while
//! containerd is away (restarting); the stdin fifo never reads end of file. The thread only
//! stops when the master reports that no slave is left (EIO), when the process's exit was
//! handed over ([`Console::when_drained`]) and its output is drained, or when the [`Console`]
//! handle is dropped (the process was deleted).
//!
//! Exit and output: the shim hands the reaped exit to [`Console::when_drained`]; the thread
//! copies what the process wrote (until EIO, which the kernel reports only after all buffered
//! output was read) and only then runs the callback that records the exit and publishes
//! TaskExit, so output is complete when Wait returns. If another process still holds the
//! terminal, draining ends after [`DRAIN_QUIET`] without output, at the latest after
//! [`DRAIN_MAX`].

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::io::{open_fifo, set_nonblocking, StdioPaths};

/// Copy buffer per direction.
const BUF: usize = 32 * 1024;
/// Stack of the copier thread (its buffers are on the heap).
const STACK: usize = 128 * 1024;
/// After the exit: the output is complete once the master stayed silent this long.
pub const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// After the exit: the exit is reported after this long at the latest (stdout blocked because
/// containerd does not read, or a surviving process keeps writing).
pub const DRAIN_MAX: Duration = Duration::from_secs(2);
/// `VEOF` when the terminal's settings cannot be read (`^D`).
const DEFAULT_EOF: u8 = 4;

/// What runs once the output is drained (records the exit).
pub type OnDrained = Box<dyn FnOnce() + Send>;

/// A terminal process's fifos, opened before the process exists so that a bad path fails early;
/// the copier starts with [`Fifos::start`] once the pty master is known.
#[derive(Debug)]
pub struct Fifos {
    stdin: Option<File>,
    stdout: Option<File>,
}

impl Fifos {
    /// Open the stdin and stdout fifos (`O_RDWR`, non-blocking). stderr is not used: a terminal
    /// has one output stream.
    pub fn open(paths: &StdioPaths) -> anyhow::Result<Fifos> {
        let open = |name: &str, path: &str| -> anyhow::Result<Option<File>> {
            if path.is_empty() {
                return Ok(None);
            }
            let f = open_fifo(name, path)?;
            set_nonblocking(&f).with_context(|| format!("{name} fifo"))?;
            Ok(Some(f))
        };
        Ok(Fifos {
            stdin: open("stdin", &paths.stdin)?,
            stdout: open("stdout", &paths.stdout)?,
        })
    }

    /// Start copying between the fifos and `master`; `what` names the process in logs.
    pub fn start(self, master: OwnedFd, what: &str) -> anyhow::Result<Console> {
        set_nonblocking(&master).context("pty master")?;
        let copy = File::from(master.try_clone().context("duplicate the pty master")?);
        let (wake_read, wake_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .context("create the console's wake pipe")?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let copier = Copier {
            what: what.to_string(),
            master: copy,
            stdin: self.stdin,
            stdout: self.stdout,
            wake: File::from(wake_read),
            shared: shared.clone(),
            out: Buf::new(),
            inp: Buf::new(),
            master_done: false,
            closing_stdin: false,
            drain_until: None,
        };
        std::thread::Builder::new()
            .name("console".into())
            .stack_size(STACK)
            .spawn(move || copier.run())
            .context("start the console copy thread")?;
        Ok(Console {
            master,
            wake: File::from(wake_write),
            shared,
        })
    }
}

/// What the handle tells the copier.
#[derive(Default)]
struct Shared {
    /// CloseIO: forward what is buffered, then end of file (`VEOF`).
    close_stdin: bool,
    /// The process exited: run this once its output is drained.
    on_drained: Option<OnDrained>,
    /// The copier has stopped: nothing will be drained any more.
    finished: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shim's handle on a running console copier; dropping it stops the copier at once.
pub struct Console {
    /// The pty master (for the window size); the copier has its own duplicate.
    master: OwnedFd,
    /// Write end of the wake pipe.
    wake: File,
    shared: Arc<Mutex<Shared>>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Set the terminal's window size (TIOCSWINSZ; the process gets SIGWINCH).
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let ws = winsize(width, height);
        // SAFETY: TIOCSWINSZ reads one valid `winsize` from the pointer; the fd is our open pty
        // master.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// CloseIO: the process reads end of file (`VEOF`) after what containerd wrote so far.
    pub fn close_stdin(&self) {
        lock(&self.shared).close_stdin = true;
        self.wake();
    }

    /// Run `f` once the process's output is drained (the process has exited). `Err(f)` when
    /// the copier has already stopped: the caller runs `f` itself.
    pub fn when_drained(&self, f: OnDrained) -> Result<(), OnDrained> {
        let mut shared = lock(&self.shared);
        if shared.finished {
            return Err(f);
        }
        shared.on_drained = Some(f);
        drop(shared);
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        // Non-blocking: a full pipe already holds a wake-up.
        let _ = (&self.wake).write(&[1]);
    }
}

/// A `winsize` for `width` x `height` cells (clamped to what the kernel takes).
pub fn winsize(width: u32, height: u32) -> libc::winsize {
    libc::winsize {
        ws_row: u16::try_from(height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Data read but not yet written.
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            data: vec![0; BUF],
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Read into the (empty) buffer: `Ok(0)` is end of file.
    fn fill(&mut self, from: &mut File) -> std::io::Result<usize> {
        self.clear();
        let n = from.read(&mut self.data)?;
        self.end = n;
        Ok(n)
    }

    fn push(&mut self, byte: u8) {
        if self.is_empty() {
            self.clear();
        }
        if self.end < self.data.len() {
            self.data[self.end] = byte;
            self.end += 1;
        }
    }
}

/// Why copying stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// No slave left and all output written.
    Eof,
    /// The process exited and its output is drained (or the drain timed out).
    Drained,
    /// The handle was dropped, or polling failed.
    Abort,
}

/// The copy thread's state.
struct Copier {
    what: String,
    master: File,
    stdin: Option<File>,
    /// `None`: output is read and discarded.
    stdout: Option<File>,
    wake: File,
    shared: Arc<Mutex<Shared>>,
    /// master → stdout
    out: Buf,
    /// stdin → master
    inp: Buf,
    /// The master reported EIO or end of file: no slave is open any more.
    master_done: bool,
    /// CloseIO came: read the fifo until it is empty, then send `VEOF`.
    closing_stdin: bool,
    /// The exit was handed over: drain until this deadline at the latest.
    drain_until: Option<Instant>,
}

/// What one poll asked for (indexes into the poll set).
#[derive(Default)]
struct Want {
    master: Option<usize>,
    stdout: Option<usize>,
    stdin: Option<usize>,
    /// Whether the master was polled for input (a silent master ends a drain).
    reading_master: bool,
}

impl Copier {
    fn run(mut self) {
        let stop = self.copy();
        log::debug!("{}: console copier stopped ({stop:?})", self.what);
        let pending = {
            let mut shared = lock(&self.shared);
            shared.finished = true;
            shared.on_drained.take()
        };
        drop(self);
        // Every fd is closed now (containerd reads end of file on stdout) before the exit is
        // recorded.
        if let Some(f) = pending {
            f();
        }
    }

    fn copy(&mut self) -> Stop {
        loop {
            if self.master_done && self.out.is_empty() {
                return Stop::Eof;
            }
            let now = Instant::now();
            if self.drain_until.is_some_and(|d| now >= d) {
                log::warn!(
                    "{}: terminal output not drained within {DRAIN_MAX:?}",
                    self.what
                );
                return Stop::Drained;
            }
            let timeout = match self.drain_until {
                Some(d) => DRAIN_QUIET.min(d.saturating_duration_since(now)),
                None => Duration::MAX,
            };
            let (ready, want, woken) = match self.poll(timeout) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("{}: console poll: {e}", self.what);
                    return Stop::Abort;
                }
            };
            if woken && !self.handle_wake() {
                return Stop::Abort;
            }
            if ready.is_empty() && !woken {
                // Timed out: only while draining.
                if want.reading_master {
                    return Stop::Drained;
                }
                continue;
            }
            let is_ready = |i: Option<usize>| i.is_some_and(|i| ready.contains(&i));
            if is_ready(want.master) {
                self.master_io();
            }
            if is_ready(want.stdout) {
                self.write_stdout();
            }
            if is_ready(want.stdin) || (self.closing_stdin && self.inp.is_empty()) {
                self.read_stdin();
            }
        }
    }

    /// Poll what there is to do; returns the ready indexes, what was asked, and whether the
    /// wake pipe spoke.
    fn poll(&mut self, timeout: Duration) -> nix::Result<(Vec<usize>, Want, bool)> {
        let mut want = Want::default();
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        if !self.master_done {
            let mut ev = PollFlags::empty();
            if self.out.is_empty() {
                ev |= PollFlags::POLLIN;
                want.reading_master = true;
            }
            if !self.inp.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            if !ev.is_empty() {
                want.master = Some(fds.len());
                fds.push(PollFd::new(self.master.as_fd(), ev));
            }
        }
        if let Some(out) = self.stdout.as_ref().filter(|_| !self.out.is_empty()) {
            want.stdout = Some(fds.len());
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(inp) = self.stdin.as_ref().filter(|_| self.inp.is_empty()) {
            want.stdin = Some(fds.len());
            fds.push(PollFd::new(inp.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if timeout == Duration::MAX {
            PollTimeout::NONE
        } else {
            let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
            PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
        };
        loop {
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect();
        let woken = ready.first() == Some(&0);
        let ready = ready.into_iter().filter(|&i| i != 0).collect();
        Ok((ready, want, woken))
    }

    /// Read the wake pipe and take over requests; false: the handle is gone.
    fn handle_wake(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.wake.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("{}: console wake pipe: {e}", self.what);
                    return false;
                }
            }
        }
        let shared = lock(&self.shared);
        if shared.close_stdin {
            self.closing_stdin = true;
        }
        if shared.on_drained.is_some() && self.drain_until.is_none() {
            self.drain_until = Some(Instant::now() + DRAIN_MAX);
        }
        true
    }

    /// The master is readable and/or writable (or hung up).
    fn master_io(&mut self) {
        if self.out.is_empty() {
            match self.out.fill(&mut self.master) {
                Ok(0) => self.master_done = true,
                Ok(_) => {
                    if self.stdout.is_none() {
                        self.out.clear();
                    } else {
                        // Most of the time the fifo has room: no extra poll round.
                        self.write_stdout();
                    }
                }
                Err(e) if is_transient(&e) => {}
                // EIO: no slave is open any more (after all buffered output was read).
                Err(e) => {
                    if e.raw_os_error() != Some(libc::EIO) {
                        log::warn!("{}: read pty master: {e}", self.what);
                    }
                    self.master_done = true;
                }
            }
        }
        if !self.inp.is_empty() && !self.master_done {
            match self.master.write(self.inp.pending()) {
                Ok(n) => self.inp.consume(n),
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    if e.raw_os_error() != Some(libc::EIO) {
                        log::warn!("{}: write pty master: {e}", self.what);
                    }
                    self.inp.clear();
                    self.stdin = None;
                }
            }
        }
        if self.master_done {
            // Nobody can read input any more.
            self.inp.clear();
            self.stdin = None;
        }
    }

    fn write_stdout(&mut self) {
        let Some(out) = self.stdout.as_mut() else {
            self.out.clear();
            return;
        };
        while !self.out.is_empty() {
            match out.write(self.out.pending()) {
                Ok(n) => self.out.consume(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("{}: write stdout fifo: {e}; discarding output", self.what);
                    break;
                }
            }
        }
        if !self.out.is_empty() {
            self.stdout = None;
            self.out.clear();
        }
    }

    /// Read stdin into the (empty) input buffer; after CloseIO, an empty fifo means end of
    /// input: queue `VEOF` and stop reading.
    fn read_stdin(&mut self) {
        let Some(inp) = self.stdin.as_mut() else {
            return;
        };
        match self.inp.fill(inp) {
            Ok(0) => self.end_stdin(),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock && self.closing_stdin => self.end_stdin(),
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                log::warn!("{}: read stdin fifo: {e}", self.what);
                self.stdin = None;
            }
        }
        if !self.inp.is_empty() && !self.master_done {
            // Usually the terminal takes it at once.
            self.master_io();
        }
    }

    fn end_stdin(&mut self) {
        self.stdin = None;
        if !self.master_done {
            let eof = nix::sys::termios::tcgetattr(self.master.as_fd())
                .map(|t| t.control_chars[nix::sys::termios::SpecialCharacterIndices::VEOF as usize])
                .unwrap_or(DEFAULT_EOF);
            self.inp.push(eof);
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;

    use nix::sys::stat::Mode;

    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("myshim-console-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mkfifo(dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o600)).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// A pty pair: (master, slave) as the runtime would hand them out.
    fn pty() -> (OwnedFd, File) {
        let pty = nix::pty::openpty(None, None).unwrap();
        (pty.master, File::from(pty.slave))
    }

    fn raw(slave: &File) {
        let mut t = nix::sys::termios::tcgetattr(slave.as_fd()).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
            .unwrap();
    }

    fn reader(path: &str) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap()
    }

    fn read_to_eof(mut f: File) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no end of file");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn output_is_drained_before_the_exit_is_recorded() {
        let dir = tempdir("out");
        let out = mkfifo(&dir, "out");
        let paths = StdioPaths {
            stdout: out.clone(),
            terminal: true,
            ..Default::default()
        };
        let fifos = Fifos::open(&paths).unwrap();
        let ctr = reader(&out);
        let (master, slave) = pty();
        raw(&slave);
        let console = fifos.start(master, "test").unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut w = slave;
        let expect = data.clone();
        let (done_tx, done_rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            drop(w); // the process exits
        });
        let got = std::thread::spawn(move || read_to_eof(ctr));
        writer.join().unwrap();
        let f: OnDrained = Box::new(move || done_tx.send(()).unwrap());
        if let Err(f) = console.when_drained(f) {
            f();
        }
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let got = got.join().unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect);
        drop(console);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn drain_ends_when_another_process_holds_the_terminal() {
        let (master, slave) = pty();
        let console = Fifos {
            stdin: None,
            stdout: None,
        }
        .start(master, "test")
        .unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let f: OnDrained = Box::new(move || tx.send(()).unwrap());
        assert!(console.when_drained(f).is_ok());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(start.elapsed() >= DRAIN_QUIET);
        assert!(start.elapsed() < DRAIN_MAX);
        // The copier stopped: later requests are handed back.
        let f: OnDrained = Box::new(|| {});
        assert!(console.when_drained(f).is_err());
        drop(slave);
    }

    #[test]
    fn input_reaches_the_terminal_and_close_sends_eof() {
        let dir = tempdir("in");
        let input = mkfifo(&dir, "in");
        let paths = StdioPaths {
            stdin: input.clone(),
            terminal: true,
            ..Default::default()
        };
        let fifos = Fifos::open(&paths).unwrap();
        let (master, slave) = pty();
        let console = fifos.start(master, "test").unwrap();
        // Canonical mode, no echo: a line, then VEOF on an empty line reads as end of file.
        let mut t = nix::sys::termios::tcgetattr(slave.as_fd()).unwrap();
        t.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
            .unwrap();
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap();
        w.write_all(b"hello\n").unwrap();
        drop(w);
        let mut s = slave;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
        console.close_stdin();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(n, 0, "VEOF reads as end of file");
        console.resize(100, 40).unwrap();
        let mut ws = winsize(0, 0);
        // SAFETY: TIOCGWINSZ writes one winsize to the pointer; the fd is the open slave.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));
        drop(console);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn winsize_clamps() {
        let ws = winsize(80, 1 << 20);
        assert_eq!((ws.ws_col, ws.ws_row), (80, u16::MAX));
    }
}
