//! One stream of the I/O loop: a source fd copied into a [`Sink`], with splice(2) when both
//! are pipes and through a small buffer otherwise. A stream waits on one fd at a time (its
//! source while it has nothing to write, else its sink) and only that fd is in the epoll set.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

/// Bytes per splice(2) call, and the size of a copy buffer.
const CHUNK: usize = 64 * 1024;
/// Bytes one stream moves per wake-up before the others get their turn.
const ROUND: usize = 1024 * 1024;
/// `VEOF` when the terminal's settings cannot be read (`^D`).
const DEFAULT_EOF: u8 = 4;

/// Where a stream's bytes go.
pub enum Sink {
    /// A pipe or fifo, non-blocking (the fifo held `O_RDWR`: it never fails with EPIPE).
    Pipe(OwnedFd),
    /// A regular file opened for appending: writes never wait for readiness.
    File(Arc<File>),
    /// A pty master, non-blocking (a terminal's input).
    Tty(OwnedFd),
    /// Nowhere: read and dropped.
    Discard,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Pipe(fd) => write!(f, "Pipe({})", fd.as_raw_fd()),
            Sink::File(file) => write!(f, "File({})", file.as_raw_fd()),
            Sink::Tty(fd) => write!(f, "Tty({})", fd.as_raw_fd()),
            Sink::Discard => f.write_str("Discard"),
        }
    }
}

impl Sink {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Sink::Pipe(fd) | Sink::Tty(fd) => Some(fd.as_fd()),
            Sink::File(file) => Some(file.as_fd()),
            Sink::Discard => None,
        }
    }
}

/// A stream's role in its process's stdio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The process's output (pipe or pty master) to a sink.
    Output,
    /// The stdin fifo to the process's stdin pipe: closing the pipe is the end of input.
    Input,
    /// The stdin fifo to a pty master: the end of input is `VEOF` (CloseIO only).
    TtyInput,
}

/// A stream to add to a [`Group`].
#[derive(Debug)]
pub struct StreamSpec {
    /// For logs: "container c1 stdout".
    pub name: String,
    /// Read end (made non-blocking here).
    pub source: OwnedFd,
    /// Where the bytes go.
    pub sink: Sink,
    /// Its role.
    pub role: Role,
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
            data: vec![0; CHUNK],
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
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

/// Which fd a stream waits on (and has in the epoll set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    None,
    Source,
    Sink,
}

/// What a stream does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Wait(Wait),
    Done,
}

pub(super) struct Stream {
    pub(super) group: u64,
    pub(super) name: String,
    pub(super) role: Role,
    /// `None` once the source ended (a terminal's `VEOF` may still wait in `buf`).
    source: Option<OwnedFd>,
    sink: Sink,
    /// splice(2) from source to sink (both pipes); else copy through `buf`.
    splice: bool,
    buf: Option<Buf>,
    /// CloseIO: an empty source is the end of input.
    pub(super) closing: bool,
    pub(super) armed: Wait,
}

impl Stream {
    /// A stream of group `group`, waiting for nothing yet.
    pub(super) fn new(group: u64, spec: StreamSpec) -> Stream {
        let splice = matches!(spec.sink, Sink::Pipe(_)) && is_pipe(spec.source.as_fd());
        Stream {
            group,
            name: spec.name,
            role: spec.role,
            source: Some(spec.source),
            sink: spec.sink,
            splice,
            buf: None,
            closing: false,
            armed: Wait::None,
        }
    }

    /// Move what can be moved without blocking; `moved` counts the bytes read.
    pub(super) fn pump(&mut self, moved: &mut usize) -> Next {
        let start = *moved;
        loop {
            if let Some(next) = self.flush() {
                return next;
            }
            let Some(source) = self.source.as_ref() else {
                return Next::Done;
            };
            if *moved - start >= ROUND {
                // Level-triggered: the loop comes back after the others had their turn.
                return Next::Wait(Wait::Source);
            }
            let got = if self.splice {
                match self.sink.fd() {
                    Some(sink) => splice(source.as_fd(), sink, CHUNK),
                    None => Err(Errno::EINVAL),
                }
            } else {
                let buf = self.buf.get_or_insert_with(Buf::new);
                buf.clear();
                nix::unistd::read(source.as_raw_fd(), &mut buf.data).inspect(|&n| buf.end = n)
            };
            match got {
                Ok(0) => self.end_source(),
                Ok(n) => {
                    *moved += n;
                    if matches!(self.sink, Sink::Discard) {
                        if let Some(b) = self.buf.as_mut() {
                            b.clear();
                        }
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if self.splice && pending(source.as_fd()) > 0 {
                        // The source has data: the sink is full.
                        return Next::Wait(Wait::Sink);
                    }
                    if !self.closing {
                        return Next::Wait(Wait::Source);
                    }
                    self.end_source();
                }
                Err(Errno::EINVAL) if self.splice => {
                    self.splice = false;
                }
                Err(e) => {
                    // A pty master reads EIO once no slave is left; a pipe sink without readers
                    // (the process closed its stdin, the logger died) is EPIPE.
                    if !matches!(e, Errno::EIO | Errno::EPIPE) {
                        log::warn!("{}: copy: {e}", self.name);
                    }
                    if self.splice && e == Errno::EPIPE {
                        return Next::Done;
                    }
                    self.end_source();
                }
            }
        }
    }

    /// Write what is buffered; `Some` when the stream cannot go on now.
    fn flush(&mut self) -> Option<Next> {
        let buf = self.buf.as_mut().filter(|b| !b.is_empty())?;
        let fd = self.sink.fd()?;
        while !buf.is_empty() {
            match nix::unistd::write(fd, &buf.data[buf.start..buf.end]) {
                Ok(n) => {
                    buf.start += n;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Some(Next::Wait(Wait::Sink)),
                Err(e) => {
                    if !matches!(e, Errno::EIO | Errno::EPIPE) {
                        log::warn!("{}: write: {e}", self.name);
                    }
                    return Some(Next::Done);
                }
            }
        }
        buf.clear();
        None
    }

    fn end_source(&mut self) {
        self.source = None;
        if self.role == Role::TtyInput {
            if let Sink::Tty(master) = &self.sink {
                let eof = nix::sys::termios::tcgetattr(master.as_fd())
                    .map(|t| {
                        t.control_chars[nix::sys::termios::SpecialCharacterIndices::VEOF as usize]
                    })
                    .unwrap_or(DEFAULT_EOF);
                self.buf.get_or_insert_with(Buf::new).push(eof);
            }
        }
    }

    /// Put the fd the stream waits on (and only that one) in the epoll set.
    pub(super) fn arm(&mut self, epoll: &Epoll, id: u64, want: Wait) -> nix::Result<()> {
        if self.armed == want {
            return Ok(());
        }
        self.disarm(epoll);
        let (fd, flags, token) = match want {
            Wait::None => return Ok(()),
            Wait::Source => match &self.source {
                Some(fd) => (fd.as_fd(), EpollFlags::EPOLLIN, id << 1),
                None => return Ok(()),
            },
            Wait::Sink => match self.sink.fd() {
                Some(fd) => (fd, EpollFlags::EPOLLOUT, id << 1 | 1),
                None => return Ok(()),
            },
        };
        epoll.add(fd, EpollEvent::new(flags, token))?;
        self.armed = want;
        Ok(())
    }

    /// Take the stream's fd out of the epoll set (before closing it: the set holds the open file,
    /// which a duplicate may keep alive).
    pub(super) fn disarm(&mut self, epoll: &Epoll) {
        let fd = match self.armed {
            Wait::None => None,
            Wait::Source => self.source.as_ref().map(|f| f.as_fd()),
            Wait::Sink => self.sink.fd(),
        };
        if let Some(fd) = fd {
            if let Err(e) = epoll.delete(fd) {
                log::warn!("{}: epoll delete: {e}", self.name);
            }
        }
        self.armed = Wait::None;
    }
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> Result<usize, Errno> {
    // SAFETY: both fds are open for the duration of the call; null offsets make the kernel use
    // (and advance) the pipes' own positions.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// Bytes waiting in a pipe (0 when unknown).
fn pending(fd: BorrowedFd<'_>) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int to the pointer; the fd is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

fn is_pipe(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}
