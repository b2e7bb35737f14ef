//! Attached `run` and `exec`: this process becomes a child subreaper (the container's process is
//! a grandchild whose parent exits at once: it is reparented here), forwards the signals it gets
//! to that process, reaps whatever is reparented to it, and returns the process's exit status
//! (its code, or 128 + the signal that killed it), as runc does.

use anyhow::Context;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::tty::Relay;

/// Signals forwarded to the container's process (SIGCHLD is for us).
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGWINCH,
    Signal::SIGURG,
];

/// Set up before the process is created: subreaper, and the signals blocked (to be read by
/// [`Waiter::wait`]; children start with an empty mask, see the runtime's reaper).
pub struct Waiter {
    set: SigSet,
}

impl Waiter {
    /// Become a subreaper and block the forwarded signals and SIGCHLD.
    pub fn new() -> anyhow::Result<Waiter> {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error()).context("become a child subreaper");
        }
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        for s in FORWARDED {
            set.add(*s);
        }
        signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .context("block signals")?;
        Ok(Waiter { set })
    }

    /// Forward signals to `pid` until it exits (a window size change resizes the pty of
    /// `relay` instead); returns its exit status.
    pub fn wait(&self, pid: i32, relay: Option<&Relay>) -> anyhow::Result<i32> {
        loop {
            let sig = self.set.wait().context("wait for a signal")?;
            if let (Signal::SIGWINCH, Some(r)) = (sig, relay) {
                r.resize();
                continue;
            }
            if sig != Signal::SIGCHLD {
                match signal::kill(Pid::from_raw(pid), sig) {
                    Ok(()) | Err(nix::Error::ESRCH) => {}
                    Err(e) => log::warn!("forward {sig} to {pid}: {e}"),
                }
                continue;
            }
            if let Some(code) = reap(pid)? {
                if let Some(r) = relay {
                    r.drain();
                }
                return Ok(code);
            }
        }
    }
}

/// Reap every exited child; the exit status of `pid` if it was among them.
fn reap(pid: i32) -> anyhow::Result<Option<i32>> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => found = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                found = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(found),
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e).context("wait for children"),
        }
    }
}
