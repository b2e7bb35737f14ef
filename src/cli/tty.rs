//! An attached `run` or `exec` whose process has a terminal and no `--console-socket`: this
//! process relays between its own stdio and the pty master (its terminal in raw mode meanwhile,
//! the pty resized with it), as runc does for `runc run` in a terminal.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::termios::{self, SetArg, Termios};

/// How long the output is drained after the process exited.
const DRAIN: Duration = Duration::from_secs(2);

/// The relay; dropping it restores the terminal.
pub struct Relay {
    master: OwnedFd,
    saved: Option<Termios>,
    output_done: mpsc::Receiver<()>,
}

impl Relay {
    /// Start copying stdin → master and master → stdout.
    pub fn start(master: OwnedFd) -> anyhow::Result<Relay> {
        let stdin = std::io::stdin();
        let saved = match termios::tcgetattr(&stdin) {
            Ok(t) => {
                let mut raw = t.clone();
                termios::cfmakeraw(&mut raw);
                termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw)
                    .context("put the terminal in raw mode")?;
                Some(t)
            }
            Err(_) => None,
        };
        let mut relay = Relay {
            master,
            saved,
            output_done: mpsc::channel().1,
        };
        relay.resize();
        let mut to_pty = File::from(relay.master.try_clone().context("dup the pty master")?);
        let mut from_pty = File::from(relay.master.try_clone().context("dup the pty master")?);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            // EIO once no process holds the slave any more
            while let Ok(n) = from_pty.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
            let _ = tx.send(());
        });
        relay.output_done = rx;
        Ok(relay)
    }

    /// Give the pty the size of this process's terminal (on start and on SIGWINCH).
    pub fn resize(&self) {
        let mut ws: libc::winsize = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize into `ws`; TIOCSWINSZ reads it; both fds are open.
        unsafe {
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// After the process exited: let the last output through (bounded).
    pub fn drain(&self) {
        let _ = self.output_done.recv_timeout(DRAIN);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, t);
        }
    }
}
