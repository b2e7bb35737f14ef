//! A terminal process's stdio: the runtime makes a pty slave the process's stdio and controlling
//! terminal and hands the master to the shim. The master goes through the shim's one I/O loop
//! ([`crate::ioloop`]) like a pipe: its output to the stdout sink (fifo, log file or logger), the
//! stdin fifo into it; CloseIO sends the terminal's `VEOF`. The stdin fifo is held `O_RDWR`, so
//! the client closing it is not an end of input (only CloseIO is). The loop reports the
//! process's exit once the master is drained (it reads EIO after the last slave closed and all
//! output was read), or after a quiet period if another process still holds the terminal; the
//! terminal's streams are then closed. [`Console`] keeps the master for resizing.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::Context;

use crate::io::set_nonblocking;
use crate::ioloop::{Group, Role, Sink, StreamSpec};

/// A terminal process's stdin and output sink, opened before the process exists so that a bad
/// path fails early; [`Terminal::attach`] starts copying once the pty master is known.
#[derive(Debug)]
pub struct Terminal {
    stdin: Option<File>,
    stdout: Sink,
}

impl Terminal {
    /// `stdin`: the stdin fifo (`O_RDWR`); `stdout`: where the terminal's output goes.
    pub fn new(stdin: Option<File>, stdout: Sink) -> Terminal {
        Terminal { stdin, stdout }
    }

    /// Copy between the master and the fifos through `group`; `what` names the process in logs.
    pub fn attach(self, master: OwnedFd, group: &Group, what: &str) -> anyhow::Result<Console> {
        set_nonblocking(&master).context("pty master")?;
        group.end_at_exit();
        let dup = || master.try_clone().context("duplicate the pty master");
        group.add(StreamSpec {
            name: format!("{what} terminal output"),
            source: dup()?,
            sink: self.stdout,
            role: Role::Output,
        })?;
        if let Some(stdin) = self.stdin {
            group.add(StreamSpec {
                name: format!("{what} terminal input"),
                source: stdin.into(),
                sink: Sink::Tty(dup()?),
                role: Role::TtyInput,
            })?;
        }
        Ok(Console { master })
    }
}

/// The shim's handle on a terminal: its master, for the window size.
pub struct Console {
    master: OwnedFd,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("master", &self.master)
            .finish()
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

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use nix::sys::stat::Mode;

    use crate::io::{self, ProcessIo, StdioPaths};
    use crate::ioloop::{OnDrained, DRAIN_MAX, DRAIN_QUIET};
    use crate::logger::Labels;

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

    fn open_terminal(stdin: &str, stdout: &str) -> ProcessIo {
        let paths = StdioPaths {
            stdin: stdin.into(),
            stdout: stdout.into(),
            terminal: true,
            ..Default::default()
        };
        let labels = Labels {
            container_id: "c",
            namespace: "n",
        };
        let (stdio, pio) = io::open(&paths, None, labels).unwrap();
        assert!(stdio.stdin.is_none() && stdio.stdout.is_none() && stdio.stderr.is_none());
        pio
    }

    #[test]
    fn output_is_drained_before_the_exit_is_recorded() {
        let dir = tempdir("out");
        let out = mkfifo(&dir, "out");
        let mut pio = open_terminal("", &out);
        let ctr = reader(&out);
        let (master, slave) = pty();
        raw(&slave);
        pio.attach_console(master, "test").unwrap();
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
        if let Err(f) = pio.when_drained(f) {
            f();
        }
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let got = got.join().unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect);
        drop(pio);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn drain_ends_when_another_process_holds_the_terminal() {
        let mut pio = open_terminal("", "");
        let (master, slave) = pty();
        pio.attach_console(master, "test").unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let f: OnDrained = Box::new(move || tx.send(()).unwrap());
        assert!(pio.when_drained(f).is_ok());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(start.elapsed() >= DRAIN_QUIET);
        assert!(start.elapsed() < DRAIN_MAX);
        drop(slave);
    }

    #[test]
    fn input_reaches_the_terminal_and_close_sends_eof() {
        let dir = tempdir("in");
        let input = mkfifo(&dir, "in");
        let mut pio = open_terminal(&input, "");
        let (master, slave) = pty();
        pio.attach_console(master, "test").unwrap();
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
        pio.close_stdin();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(n, 0, "VEOF reads as end of file");
        pio.console().unwrap().resize(100, 40).unwrap();
        let mut ws = winsize(0, 0);
        // SAFETY: TIOCGWINSZ writes one winsize to the pointer; the fd is the open slave.
        let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));
        drop(pio);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn winsize_clamps() {
        let ws = winsize(80, 1 << 20);
        assert_eq!((ws.ws_col, ws.ws_row), (80, u16::MAX));
    }
}
