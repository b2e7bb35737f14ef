//! The shim daemon: serves the task service on the socket `start` bound, and owns the process's
//! signals.
//!
//! Signals never run a handler: TERM, INT and CHLD are blocked in every thread from the first
//! instruction (threads inherit the mask; the runtime's children get a clean one) and read from
//! a signalfd by the main thread, which also reaps every child (`waitpid(-1)`: the daemon is a
//! subreaper) and routes each exit, first to the runtime's own waiters (hooks), then to
//! containerd-shim's monitor (its rootfs mount helper) and the task table. SIGPIPE is ignored. The main thread leaves its loop on TERM/INT (the containers keep
//! running) or when Shutdown asks ([`ExitRequest`]); then the queued events go out (bounded),
//! the socket is removed and the process exits. Nothing is joined on the way out, so no thread
//! can keep a finished daemon alive.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use containerd_shim::protos::ttrpc::Server;
use myshim_runtime::reaper;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::flags::Flags;
use super::serve;
use super::socket;
use super::start::LISTENER_FD;
use crate::events::Events;
use crate::service::Service;
use crate::table::Table;

/// How long the daemon waits for queued events to go out before exiting.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// ttrpc worker threads per connection: the pool never needs to be large because no request
/// holds a worker for long (Wait is parked, see [`serve`]). ttrpc-rs adds workers when fewer
/// than MIN wait, and a worker exits when more than MAX wait: a burst of requests leaves at
/// most MAX idle workers behind.
const WORKERS_MIN: usize = 1;
const WORKERS_DEFAULT: usize = 2;
const WORKERS_MAX: usize = 3;

/// Asks the daemon's main thread to exit (Shutdown with no task left).
pub struct ExitRequest(EventFd);

impl ExitRequest {
    fn new() -> std::io::Result<ExitRequest> {
        Ok(ExitRequest(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?))
    }

    /// Ask for the exit; the daemon finishes the work in flight and exits.
    pub fn signal(&self) {
        if let Err(e) = self.0.write(1) {
            log::error!("request the daemon's exit: {e}");
        }
    }
}

/// The signals the main thread reads, blocked everywhere else.
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGCHLD);
    set
}

/// Block the daemon's signals and ignore SIGPIPE: the first thing the daemon does, before any
/// thread exists.
pub fn block_signals() -> anyhow::Result<SignalFd> {
    let set = handled_signals();
    set.thread_block().context("block TERM, INT and CHLD")?;
    // SAFETY: SIG_IGN installs no handler code; nothing else in the process sets SIGPIPE.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.context("ignore SIGPIPE")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("create the signalfd")
}

/// The daemon's listening socket: inherited from `start` as fd 3, or bound from `-socket` when
/// the daemon is run by hand.
fn listener(flags: &Flags) -> anyhow::Result<OwnedFd> {
    if let Some(fd) = socket::inherited(LISTENER_FD) {
        return Ok(fd);
    }
    anyhow::ensure!(
        !flags.socket.is_empty(),
        "no listening socket: fd 3 is not one and -socket is empty"
    );
    match socket::bind(&flags.socket)? {
        socket::Bound::New(l) => Ok(l.into()),
        socket::Bound::Served => anyhow::bail!("{} is already served", flags.socket),
    }
}

/// Run the daemon; returns only on a set-up error (the daemon itself ends in `process::exit`).
pub fn run(flags: &Flags, signals: SignalFd) -> anyhow::Result<()> {
    anyhow::ensure!(!flags.id.is_empty(), "-id is required");
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("become a subreaper");
    }
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        // No log fifo (run by hand): log nowhere rather than fail.
        eprintln!("containerd-shim-myshim-v2: no log: {e}");
    }
    // A panic in any thread goes to containerd's log, not to the /dev/null of stderr.
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
    let listener = listener(flags)?;
    // A pod's containers share this daemon: several fds each (see runtime::nofile).
    match myshim_runtime::nofile::raise() {
        Ok(n) => log::debug!("open-file limit {n}"),
        Err(e) => log::warn!("raise the open-file limit: {e}"),
    }
    reaper::use_external_reaper();
    // Compiled seccomp filters are shared by the host's shims (one per container).
    myshim_runtime::seccomp::set_cache_dir(
        std::path::Path::new(crate::RUNTIME_ROOT).join("seccomp-cache"),
    );
    let events = Events::start(flags.namespace.clone(), std::env::var("TTRPC_ADDRESS").ok())
        .context("start the event publisher")?;
    let table = Arc::new(Table::default());
    let exit = Arc::new(ExitRequest::new().context("create the exit eventfd")?);
    let service = Arc::new(Service::new(
        crate::runtime_root(&flags.namespace),
        table.clone(),
        events.clone(),
        exit.clone(),
    ));
    let mut server = Server::new()
        .add_listener(listener.into_raw_fd())
        .context("serve the listening socket")?
        .register_service(serve::methods(service))
        .set_thread_count_min(WORKERS_MIN)
        .set_thread_count_default(WORKERS_DEFAULT)
        .set_thread_count_max(WORKERS_MAX);
    server.start().context("start the ttrpc server")?;
    log::info!(
        "shim daemon serving {} (pid {})",
        flags.socket,
        std::process::id()
    );
    let why = main_loop(&signals, &exit, &table, &events);
    log::info!("shim daemon exiting: {why}");
    events.flush(FLUSH_TIMEOUT);
    if !flags.socket.is_empty() {
        if let Err(e) = socket::remove(&flags.socket) {
            log::warn!("remove socket {}: {e}", flags.socket);
        }
    }
    // The server is not shut down: its threads end with the process.
    std::mem::forget(server);
    log::logger().flush();
    std::process::exit(0)
}

/// Reap and route exits until a signal or Shutdown ends the daemon; says why.
fn main_loop(signals: &SignalFd, exit: &ExitRequest, table: &Table, events: &Events) -> String {
    loop {
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(exit.0.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log::error!("poll the signalfd: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if fds[1].any().unwrap_or(false) {
            return "Shutdown with no task left".into();
        }
        loop {
            match signals.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => reap(table, events),
                    Ok(sig) => return format!("{sig} (the containers keep running)"),
                    Err(_) => {}
                },
                Ok(None) => break,
                Err(e) => {
                    log::error!("read the signalfd: {e}");
                    break;
                }
            }
        }
        // A SIGCHLD may coalesce with one read above: reap whatever is there anyway.
        reap(table, events);
    }
}

/// Reap every exited child and route its exit.
fn reap(table: &Table, events: &Events) {
    loop {
        let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::error!("waitpid: {e}");
                return;
            }
        };
        if reaper::notify_exit(pid, code) {
            continue;
        }
        // containerd-shim's mount helper (rootfs mounts with long options) waits through its
        // own monitor; a pid nobody subscribed to costs a lookup there.
        if let Err(e) = containerd_shim::monitor::monitor_notify_by_pid(pid, code) {
            log::debug!("exit monitor: {e}");
        }
        table.process_exited(pid, code, events);
    }
}
