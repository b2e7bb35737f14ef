//! Waiting for the runtime's own short-lived children (hooks) in a process that may have a
//! global reaper.
//!
//! A shim is a subreaper that reaps every child with `waitpid(-1)`; a plain `Child::wait` would
//! race it for the exit status. The embedding process calls [`use_external_reaper`] once and then
//! forwards each exit it reaps to [`notify_exit`]. [`spawn_and_wait`] registers the child's pid
//! under the same lock that [`notify_exit`] takes, so no exit can be delivered before its waiter
//! exists. Without an external reaper it falls back to `Child::wait`.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;

static EXTERNAL: AtomicBool = AtomicBool::new(false);
static WAITERS: Mutex<Option<HashMap<i32, Sender<i32>>>> = Mutex::new(None);

/// Unblock every signal in the calling thread: for a child between fork and exec. An embedding
/// process that reads its signals from a signalfd (the shim) blocks them in every thread, and a
/// child inherits that mask through exec: a container process or hook would never see SIGTERM.
/// Async-signal-safe.
pub fn clear_signal_mask() -> std::io::Result<()> {
    // SAFETY: sigemptyset fills a local set; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Declare that another part of this process reaps children and forwards their exits.
pub fn use_external_reaper() {
    EXTERNAL.store(true, Ordering::SeqCst);
}

/// Hand an exit reaped elsewhere to whoever waits for `pid`. `code` is the exit code, or
/// 128 + signal for a killed process. Returns whether a waiter took it.
pub fn notify_exit(pid: i32, code: i32) -> bool {
    let mut guard = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut().and_then(|m| m.remove(&pid)) {
        Some(tx) => tx.send(code).is_ok(),
        None => false,
    }
}

/// A spawned child whose exit code arrives either from the external reaper or from `wait`.
pub struct Waitable {
    child: Child,
    rx: Option<Receiver<i32>>,
}

impl Waitable {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    /// The child (for its stdin and pid).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Wait for the exit code (128 + signal when killed); `None` when `timeout` passed first.
    pub fn wait_timeout(&mut self, timeout: Option<Duration>) -> anyhow::Result<Option<i32>> {
        match &self.rx {
            Some(rx) => match timeout {
                Some(t) => match rx.recv_timeout(t) {
                    Ok(code) => Ok(Some(code)),
                    Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
                    Err(e) => Err(anyhow::anyhow!("waiting for pid {}: {e}", self.child.id())),
                },
                None => rx
                    .recv()
                    .map(Some)
                    .with_context(|| format!("waiting for pid {}", self.child.id())),
            },
            None => wait_local(&mut self.child, timeout),
        }
    }
}

impl Drop for Waitable {
    fn drop(&mut self) {
        if self.rx.is_some() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let mut guard = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(m) = guard.as_mut() {
                    m.remove(&pid);
                }
            }
        }
    }
}

fn wait_local(child: &mut Child, timeout: Option<Duration>) -> anyhow::Result<Option<i32>> {
    use std::os::unix::process::ExitStatusExt;
    let code = |s: std::process::ExitStatus| s.code().or(s.signal().map(|n| 128 + n)).unwrap_or(-1);
    let Some(t) = timeout else {
        return Ok(Some(code(child.wait().context("wait for child")?)));
    };
    let deadline = std::time::Instant::now() + t;
    loop {
        if let Some(s) = child.try_wait().context("wait for child")? {
            return Ok(Some(code(s)));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Spawn `cmd` so that its exit code can be waited for whoever reaps it.
pub fn spawn(cmd: &mut Command) -> anyhow::Result<Waitable> {
    if !EXTERNAL.load(Ordering::SeqCst) {
        let child = cmd.spawn()?;
        return Ok(Waitable { child, rx: None });
    }
    let mut guard = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel();
    let pid = i32::try_from(child.id()).context("child pid out of range")?;
    guard.get_or_insert_with(HashMap::new).insert(pid, tx);
    Ok(Waitable {
        child,
        rx: Some(rx),
    })
}

/// A child started outside `std::process` (e.g. with `posix_spawn`, whose failure path does not
/// wait for the child itself in a way that races the external reaper); its exit code arrives
/// from the external reaper, or from `waitpid` on its pid when there is none.
pub struct PidWaitable {
    pid: i32,
    rx: Option<Receiver<i32>>,
}

/// Start a child with `start` (which returns its pid) so that its exit can be waited for.
pub fn spawn_pid(start: impl FnOnce() -> anyhow::Result<i32>) -> anyhow::Result<PidWaitable> {
    if !EXTERNAL.load(Ordering::SeqCst) {
        return Ok(PidWaitable {
            pid: start()?,
            rx: None,
        });
    }
    let mut guard = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
    let pid = start()?;
    let (tx, rx) = mpsc::channel();
    guard.get_or_insert_with(HashMap::new).insert(pid, tx);
    Ok(PidWaitable { pid, rx: Some(rx) })
}

impl PidWaitable {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Wait for the exit code (128 + signal when killed); `None` when `timeout` passed first.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        match &self.rx {
            Some(rx) => match rx.recv_timeout(timeout) {
                Ok(code) => Ok(Some(code)),
                Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
                Err(e) => Err(anyhow::anyhow!("waiting for pid {}: {e}", self.pid)),
            },
            None => wait_pid(self.pid, timeout),
        }
    }
}

impl Drop for PidWaitable {
    fn drop(&mut self) {
        if self.rx.is_some() {
            let mut guard = WAITERS.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = guard.as_mut() {
                m.remove(&self.pid);
            }
        }
    }
}

fn wait_pid(pid: i32, timeout: Duration) -> anyhow::Result<Option<i32>> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            .with_context(|| format!("wait for pid {pid}"))?
        {
            WaitStatus::Exited(_, code) => return Ok(Some(code)),
            WaitStatus::Signaled(_, sig, _) => return Ok(Some(128 + sig as i32)),
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
