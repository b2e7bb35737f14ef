//! The container process's stdio, wired straight to containerd's fifos.
//!
//! Output needs no copying: the shim opens each stdout/stderr fifo `O_RDWR` (never blocks, and
//! this reader keeps the fifo alive so the container never gets SIGPIPE while containerd is away,
//! e.g. restarting), then opens it again write-only and hands that fd to the container. The
//! `O_RDWR` keepalive is closed when the process exits so containerd's readers see EOF.
//!
//! Input goes through one copy thread per process: the stdin fifo (opened read-only and
//! non-blocking, so the open never waits for a writer) is copied into a pipe whose read end is
//! the container's fd 0. When the last writer of the fifo closes it (the client's input ended),
//! the thread sees end of file and closes the pipe, so the container reads EOF, as with runc's
//! shim; the kernel reports no hang-up on the fifo before a first writer has come. The thread is
//! also steered through a control pipe: CloseIO ([`ProcessIo::close_stdin`]) writes a byte, and
//! the thread copies what is still in the fifo, then closes the pipe; dropping [`ProcessIo`]
//! (process exit) hangs the control pipe up, and the thread stops at once.
//!
//! A terminal process's stdio is a pty instead: [`crate::console`] copies between its master
//! and the fifos.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context};
use myshim_runtime::Stdio;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::{fchown, pipe2, Gid, Uid};

use crate::console::{Console, Fifos};

/// Stack size of the stdin copy thread: it only needs its 32 KiB heap buffer.
const COPY_STACK: usize = 64 * 1024;
const COPY_BUF: usize = 32 * 1024;

/// The stdio as containerd described it (kept for State and the TaskCreate event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// stdin fifo ("" = none)
    pub stdin: String,
    /// stdout fifo ("" = none)
    pub stdout: String,
    /// stderr fifo ("" = none)
    pub stderr: String,
    /// whether a terminal was asked for
    pub terminal: bool,
}

/// What the shim holds for a live process's stdio; dropping it releases everything.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// `O_RDWR` fds of the stdout/stderr fifos.
    _keepalive: Vec<OwnedFd>,
    /// Write end of the stdin copier's control pipe (see the module doc).
    stdin_ctl: Option<File>,
    /// CloseIO was already passed on.
    stdin_closed: bool,
    /// A terminal process's fifos, until its pty master is known ([`Self::attach_console`]).
    terminal_fifos: Option<Fifos>,
    /// A terminal process's copier (see [`crate::console`]).
    console: Option<Console>,
}

impl ProcessIo {
    /// Start copying between a terminal process's fifos and its pty `master`.
    pub fn attach_console(&mut self, master: OwnedFd, what: &str) -> anyhow::Result<()> {
        let fifos = self
            .terminal_fifos
            .take()
            .context("no terminal was asked for")?;
        self.console = Some(fifos.start(master, what)?);
        Ok(())
    }

    /// The terminal's copier, for a terminal process.
    pub fn console(&self) -> Option<&Console> {
        self.console.as_ref()
    }

    /// CloseIO for stdin: the container reads EOF once what containerd wrote is copied.
    pub fn close_stdin(&mut self) {
        if let Some(console) = &self.console {
            console.close_stdin();
            return;
        }
        if let Some(ctl) = self.stdin_ctl.as_mut().filter(|_| !self.stdin_closed) {
            // One byte into an empty pipe: cannot block.
            if let Err(e) = ctl.write_all(&[CTL_CLOSE]) {
                log::warn!("stdin: signal close: {e}");
            }
            self.stdin_closed = true;
        }
    }
}

/// Open the process's stdio: the fds to give the container and what the shim keeps.
/// `owner` (uid, gid) is applied to the fifos and pipes the container gets. A terminal process
/// gets no fds (its stdio is the pty the runtime sets up): the fifos are opened here and the
/// caller hands the pty master to [`ProcessIo::attach_console`].
pub fn open(paths: &StdioPaths, owner: Option<(u32, u32)>) -> anyhow::Result<(Stdio, ProcessIo)> {
    let mut stdio = Stdio::default();
    let mut io = ProcessIo::default();
    if paths.terminal {
        io.terminal_fifos = Some(Fifos::open(paths)?);
        return Ok((stdio, io));
    }

    if !paths.stdout.is_empty() {
        let (keep, fd) = open_output("stdout", &paths.stdout, owner)?;
        io._keepalive.push(keep);
        if paths.stderr == paths.stdout {
            stdio.stderr = Some(fd.try_clone().context("duplicate stdout fd for stderr")?);
        }
        stdio.stdout = Some(fd);
    }
    if !paths.stderr.is_empty() && paths.stderr != paths.stdout {
        let (keep, fd) = open_output("stderr", &paths.stderr, owner)?;
        io._keepalive.push(keep);
        stdio.stderr = Some(fd);
    }
    if !paths.stdin.is_empty() {
        let (read, ctl) = open_input(&paths.stdin, owner)?;
        stdio.stdin = Some(read);
        io.stdin_ctl = Some(File::from(ctl));
    }
    Ok((stdio, io))
}

/// Refuse URIs (`binary://`, `file://`, ...): only fifo paths are supported.
fn check_path(name: &str, path: &str) -> anyhow::Result<()> {
    if let Some((scheme, _)) = path.split_once("://") {
        bail!("{name} {path:?}: {scheme}:// stdio is not supported, only fifo paths");
    }
    Ok(())
}

/// Open a fifo `O_RDWR` (does not block) and check that it is one.
pub(crate) fn open_fifo(name: &str, path: &str) -> anyhow::Result<File> {
    open_fifo_as(name, path, OpenOptions::new().read(true).write(true))
}

/// Open a fifo with `opts` and check that it is one (std adds O_CLOEXEC).
fn open_fifo_as(name: &str, path: &str, opts: &OpenOptions) -> anyhow::Result<File> {
    check_path(name, path)?;
    let fifo = opts
        .open(path)
        .with_context(|| format!("open {name} fifo {path}"))?;
    let meta = fifo
        .metadata()
        .with_context(|| format!("stat {name} fifo {path}"))?;
    if !meta.file_type().is_fifo() {
        bail!("{name} {path} is not a fifo");
    }
    Ok(fifo)
}

fn chown(name: &str, fd: &impl AsRawFd, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .with_context(|| format!("chown {name} to {uid}:{gid}"))?;
    }
    Ok(())
}

/// (keepalive, container's write fd) for an output fifo.
fn open_output(
    name: &str,
    path: &str,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let keep = open_fifo(name, path)?;
    chown(name, &keep, owner)?;
    // Cannot block: `keep` is a reader.
    let write = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("open {name} fifo {path} for writing"))?;
    Ok((keep.into(), write.into()))
}

/// (container's read fd, control pipe write end) for stdin; starts the copy thread.
fn open_input(path: &str, owner: Option<(u32, u32)>) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let fifo = open_fifo_as(
        "stdin",
        path,
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK),
    )?;
    let (read, write) = pipe2(OFlag::O_CLOEXEC).context("create stdin pipe")?;
    chown("stdin pipe", &read, owner)?;
    // Only the shim's end is non-blocking: the container's end stays blocking.
    set_nonblocking(&write).context("stdin pipe")?;
    let (ctl_read, ctl_write) = pipe2(OFlag::O_CLOEXEC).context("create stdin control pipe")?;
    let copier = StdinCopier {
        fifo,
        pipe: File::from(write),
        ctl: File::from(ctl_read),
        closing: false,
    };
    std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(COPY_STACK)
        .spawn(move || copier.run())
        .context("start stdin copy thread")?;
    Ok((read, ctl_write))
}

pub(crate) fn set_nonblocking(fd: &impl AsRawFd) -> anyhow::Result<()> {
    let raw = fd.as_raw_fd();
    let flags = OFlag::from_bits_retain(fcntl(raw, FcntlArg::F_GETFL).context("F_GETFL")?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).context("F_SETFL O_NONBLOCK")?;
    Ok(())
}

/// The control byte for "close after draining".
const CTL_CLOSE: u8 = b'c';

/// Copies the stdin fifo into the container's stdin pipe until closed, aborted, or the
/// container closes its end.
struct StdinCopier {
    fifo: File,
    pipe: File,
    ctl: File,
    /// CloseIO came: drain the fifo, then stop.
    closing: bool,
}

/// How waiting for an fd ended.
enum Ready {
    /// the fd is ready
    Fd,
    /// CloseIO: copy what is buffered, then close
    Close,
    /// process gone (control pipe hung up) or a poll failure: stop now
    Abort,
}

impl StdinCopier {
    fn run(mut self) {
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            if !self.closing {
                match self.wait(Which::Fifo) {
                    Ready::Fd | Ready::Close => {}
                    Ready::Abort => break,
                }
            }
            let n = match self.fifo.read(&mut buf) {
                // Every writer closed the fifo: the client's input ended.
                Ok(0) => break,
                Ok(n) => n,
                // Drained after CloseIO: done.
                Err(e) if e.kind() == ErrorKind::WouldBlock && self.closing => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue
                }
                Err(e) => {
                    log::warn!("stdin: read fifo: {e}");
                    break;
                }
            };
            if !self.write_all(&buf[..n]) {
                break;
            }
        }
        // Dropping `self` closes the pipe: the container reads EOF.
    }

    /// Write everything unless aborted or the container closed its stdin; false: give up.
    fn write_all(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            match self.pipe.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => match self.wait(Which::Pipe) {
                    // After a close request the data is still written first.
                    Ready::Fd | Ready::Close => {}
                    Ready::Abort => return false,
                },
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // BrokenPipe: the container closed its stdin.
                Err(e) => {
                    if e.kind() != ErrorKind::BrokenPipe {
                        log::warn!("stdin: write pipe: {e}");
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Wait until the fifo is readable / the pipe writable, or the control pipe speaks.
    fn wait(&mut self, which: Which) -> Ready {
        loop {
            let (fd, events) = match which {
                Which::Fifo => (self.fifo.as_fd(), PollFlags::POLLIN),
                Which::Pipe => (self.pipe.as_fd(), PollFlags::POLLOUT),
            };
            let mut fds = [
                PollFd::new(fd, events),
                PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("stdin: poll: {e}");
                    return Ready::Abort;
                }
                Ok(_) => {}
            }
            let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            let (fd_ready, ctl_ready) = (ready(&fds[0]), ready(&fds[1]));
            if ctl_ready {
                let mut byte = [0u8; 1];
                return match self.ctl.read(&mut byte) {
                    Ok(1) => {
                        self.closing = true;
                        Ready::Close
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // 0: every writer is gone, i.e. the process exited.
                    _ => Ready::Abort,
                };
            }
            if fd_ready {
                return Ready::Fd;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    Fifo,
    Pipe,
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    use std::path::Path;

    use nix::sys::stat::Mode;

    use super::*;

    fn mkfifo(dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o600)).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("myshim-io-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn uris_are_refused() {
        let paths = StdioPaths {
            stdout: "binary:///bin/logger?x=y".into(),
            ..Default::default()
        };
        let err = open(&paths, None).unwrap_err().to_string();
        assert!(err.contains("binary:// stdio is not supported"), "{err}");
    }

    #[test]
    fn empty_paths_give_no_fds() {
        let (stdio, _io) = open(&StdioPaths::default(), None).unwrap();
        assert!(stdio.stdin.is_none() && stdio.stdout.is_none() && stdio.stderr.is_none());
    }

    #[test]
    fn output_reaches_the_fifo_and_eof_follows_close() {
        let dir = tempdir("out");
        let out = mkfifo(&dir, "out");
        let paths = StdioPaths {
            stdout: out.clone(),
            stderr: out.clone(),
            ..Default::default()
        };
        let (stdio, io) = open(&paths, None).unwrap();
        // containerd's reader
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&out)
            .unwrap();
        let mut w1 = File::from(stdio.stdout.unwrap());
        let mut w2 = File::from(stdio.stderr.unwrap());
        w1.write_all(b"out ").unwrap();
        w2.write_all(b"err").unwrap();
        drop((w1, w2));
        drop(io);
        set_blocking(&reader);
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "out err");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn set_blocking(f: &File) {
        let raw = f.as_raw_fd();
        let flags = OFlag::from_bits_retain(fcntl(raw, FcntlArg::F_GETFL).unwrap());
        fcntl(raw, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK)).unwrap();
    }

    #[test]
    fn stdin_is_copied_and_closed_on_stop() {
        let dir = tempdir("in");
        let input = mkfifo(&dir, "in");
        let paths = StdioPaths {
            stdin: input.clone(),
            ..Default::default()
        };
        let (stdio, io) = open(&paths, None).unwrap();
        let mut writer = OpenOptions::new().write(true).open(&input).unwrap();
        writer.write_all(b"hello").unwrap();
        let mut container = File::from(stdio.stdin.unwrap());
        let mut buf = [0u8; 5];
        container.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // containerd going away does not end the stream (the fifo is kept open) ...
        drop(writer);
        std::thread::sleep(Duration::from_millis(50));
        // ... the process exiting does.
        drop(io);
        let mut rest = Vec::new();
        container.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn close_stdin_delivers_everything_then_eof() {
        let dir = tempdir("close");
        let input = mkfifo(&dir, "in");
        let paths = StdioPaths {
            stdin: input.clone(),
            ..Default::default()
        };
        let (stdio, mut io) = open(&paths, None).unwrap();
        // More than a fifo and a pipe hold, so the copier is mid-way when CloseIO comes.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let ctr = std::thread::spawn(move || {
            let mut writer = OpenOptions::new().write(true).open(&input).unwrap();
            writer.write_all(&data).unwrap();
            drop(writer);
            io.close_stdin();
            io.close_stdin(); // idempotent
            io
        });
        let mut container = File::from(stdio.stdin.unwrap());
        let mut got = Vec::new();
        container.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect);
        drop(ctr.join().unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn non_fifo_is_refused() {
        let dir = tempdir("reg");
        let file = dir.join("plain");
        std::fs::write(&file, b"").unwrap();
        let paths = StdioPaths {
            stdout: file.to_str().unwrap().into(),
            ..Default::default()
        };
        let err = open(&paths, None).unwrap_err().to_string();
        assert!(err.ends_with("is not a fifo"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
