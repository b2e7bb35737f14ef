//! The init side: what runs in the re-executed `<exe> init` process.
//!
//! The parent starts it with the init pipe at fd [`INIT_PIPE_FD`] (named by the environment
//! variable [`INIT_PIPE_ENV`]) and the container's stdio at fds 0-2. It follows the protocol in
//! [`crate::sync`]: the first child joins and creates namespaces, forks the container's init and
//! exits; the init builds the container's filesystem and credentials, reports `Created`, waits on
//! the exec fifo for start and execs the user's process. Every failure is sent to the parent
//! with its cause. This code runs single-threaded: no threads may be started here.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{anyhow, Context};
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::{Process, Spec};

use crate::hooks::{self, HookState};
use crate::sync::{ExecConfig, FromInit, InitConfig, InitEnd, ToInit};
use crate::{namespaces, rootfs, seccomp, security};

/// Environment variable that names the init pipe's fd.
pub const INIT_PIPE_ENV: &str = "_MYSHIM_INITPIPE";
/// The fd number the parent puts the init pipe at (when it passes no other fds).
pub const INIT_PIPE_FD: i32 = 3;
/// Environment variable that says how many fds from 3 on the process must inherit (runc's
/// `--preserve-fds`); the init pipe then sits right after them.
pub const PRESERVED_FDS_ENV: &str = "_MYSHIM_PRESERVED_FDS";

/// Entry point of `<exe> init`. Never returns: it execs the container's process or exits.
pub fn main() -> ! {
    // The container's process starts with default signal dispositions: Rust's start-up ignored
    // SIGPIPE in this copy of the binary, and ignored signals survive exec.
    // SAFETY: SIG_DFL installs no handler; no other thread exists.
    if let Err(e) = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    } {
        eprintln!("myshim init: restore SIGPIPE: {e}");
        std::process::exit(2);
    }
    // Non-dumpable while we work as root in the container's namespaces: no container process
    // may ptrace us or open our /proc files (exe, fds, mem). The execve of the container's
    // process makes it dumpable again.
    // SAFETY: PR_SET_DUMPABLE only changes a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fd = std::env::var(INIT_PIPE_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    let Some(fd) = fd else {
        eprintln!(
            "myshim init: {INIT_PIPE_ENV} is not set; this command is run by the runtime only"
        );
        std::process::exit(2);
    };
    let preserved = std::env::var(PRESERVED_FDS_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    // Nothing but stdio (and the fds the caller passes on) may reach the container's process:
    // mark every other fd close-on-exec.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32.saturating_add(preserved),
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    // SAFETY: the parent passed the init pipe at `fd`; nothing else in this process owns it.
    let mut pipe = unsafe { InitEnd::from_raw(fd) };
    let err = match first_child(&mut pipe) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let message = format!("{err:#}");
    if pipe
        .send(&FromInit::Error {
            message: message.clone(),
        })
        .is_err()
    {
        // The parent is gone (or the pipe was already closed after `Created`): stderr is all
        // that is left.
        eprintln!("myshim init: {message}");
    }
    std::process::exit(1);
}

/// Steps 1-4: namespaces, then fork the container's init.
fn first_child(pipe: &mut InitEnd) -> anyhow::Result<Infallible> {
    let ToInit::Bootstrap(boot) = pipe.expect("Bootstrap")? else {
        unreachable!("expect checked the variant")
    };
    // Opened in the shim's mount namespace, before any is joined.
    let cgroup2 = match &boot.cgroup2 {
        Some(dir) => Some(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(dir)
                .with_context(|| format!("open cgroup {}", dir.display()))?,
        ),
        None => None,
    };
    namespaces::join(&boot.join)?;
    if boot.clone_flags & libc::CLONE_NEWUSER != 0 {
        namespaces::unshare(libc::CLONE_NEWUSER)?;
        pipe.send(&FromInit::UserNsReady {
            pid: std::process::id() as i32,
        })?;
        pipe.expect("MappingsWritten")?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .context("become root gid in the user namespace")?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .context("become root in the user namespace")?;
    }
    // The cgroup namespace is created by the init once it is in its cgroup (step 5).
    namespaces::unshare(boot.clone_flags & !(libc::CLONE_NEWUSER | libc::CLONE_NEWCGROUP))?;
    let new_cgroupns = boot.clone_flags & libc::CLONE_NEWCGROUP != 0;
    // Born in the container's cgroup2 cgroup when the kernel lets us (no migration, see
    // cgroups::clone_into); else a plain fork and the shim moves the process.
    let mut in_cgroup2 = false;
    let mut forked = None;
    if let Some(dir) = &cgroup2 {
        // SAFETY: this process is single-threaded (the re-executed init starts no threads), so
        // the child may run arbitrary code after the fork.
        match unsafe { crate::cgroups::clone_into::fork_into(dir.as_fd()) } {
            Ok(pid) => {
                in_cgroup2 = true;
                forked = Some(pid);
            }
            Err(e) => log::debug!("clone3 into {:?}: {e}; forking plainly", boot.cgroup2),
        }
    }
    let child = match forked {
        Some(pid) => pid,
        // SAFETY: as above.
        None => match unsafe { nix::unistd::fork() }.context("fork the container init")? {
            ForkResult::Parent { child } => child.as_raw(),
            ForkResult::Child => 0,
        },
    };
    if child == 0 {
        drop(cgroup2);
        return container_init(pipe, new_cgroupns);
    }
    pipe.send(&FromInit::Pid {
        pid: child,
        in_cgroup2,
    })?;
    // SAFETY: _exit ends this process at once; nothing needs flushing.
    unsafe { libc::_exit(0) }
}

/// After the fork: a container's init (`Config`) or an exec'd process (`Exec`).
fn container_init(pipe: &mut InitEnd, new_cgroupns: bool) -> anyhow::Result<Infallible> {
    match pipe.recv()? {
        ToInit::Config(cfg) => init_process(pipe, *cfg, new_cgroupns),
        ToInit::Exec(cfg) => exec_process(pipe, &cfg),
        other => Err(anyhow!("init pipe: expected Config or Exec, got {other:?}")),
    }
}

/// Steps E5-E7: a new process in a running container (whose namespaces the first child joined).
fn exec_process(pipe: &mut InitEnd, cfg: &ExecConfig) -> anyhow::Result<Infallible> {
    let process = &cfg.process;
    nix::unistd::setsid().context("setsid")?;
    if process.terminal() == Some(true) {
        setup_terminal(pipe, process)?;
    }
    // The container's seccomp filter applies to every process in it, as with runc.
    let target = prepare_exec(pipe, process, cfg.seccomp.as_ref())?;
    if cfg.paused {
        // Step E6b: the parent moves us into the frozen cgroup; `Resume` is read once thawed.
        pipe.send(&FromInit::Ready)?;
        pipe.expect("Resume")?;
    }
    // The pipe is close-on-exec: the parent sees a clean end of file when execve succeeds.
    Err(target.exec())
}

/// Steps 5-10 and exec, in the container's init.
fn init_process(
    pipe: &mut InitEnd,
    cfg: InitConfig,
    new_cgroupns: bool,
) -> anyhow::Result<Infallible> {
    let InitConfig {
        spec,
        rootfs,
        exec_fifo,
        id,
        bundle,
    } = cfg;
    if new_cgroupns {
        namespaces::unshare(libc::CLONE_NEWCGROUP)?;
    }
    nix::unistd::setsid().context("setsid")?;
    rootfs::prepare(&spec, &rootfs)?;
    // Opened before pivot_root and before dropping privileges; read-write so that opening never
    // blocks and start can write into it from any process.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&exec_fifo)
        .with_context(|| format!("open exec fifo {}", exec_fifo.display()))?;
    let hooks = spec.hooks().clone().unwrap_or_default();
    let runtime_hooks =
        hooks.prestart().iter().flatten().count() + hooks.create_runtime().iter().flatten().count();
    if runtime_hooks > 0 {
        pipe.send(&FromInit::Hooks)?;
        pipe.expect("Resume")?;
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let pid = std::process::id() as i32;
    let state = |status| HookState {
        oci_version: "1.0.2",
        id: &id,
        status,
        pid: Some(pid),
        bundle: &bundle,
        annotations: &annotations,
    };
    hooks::run(
        "createContainer",
        hooks.create_container().as_deref().unwrap_or_default(),
        &state("created"),
    )?;
    rootfs::pivot(&rootfs)?;
    let process = spec.process().as_ref().context("process: missing")?;
    if process.terminal() == Some(true) {
        let slave = setup_terminal(pipe, process)?;
        rootfs::mount_console(&slave)?;
    }
    create_cwd(process)?;
    set_names(&spec)?;
    set_sysctls(&spec)?;
    rootfs::finalize(&spec)?;
    pipe.send(&FromInit::Ready)?;
    let ToInit::Run { seccomp: filter } = pipe.expect("Run")? else {
        unreachable!("expect checked the variant")
    };
    let target = prepare_exec(pipe, process, filter.as_ref())?;
    pipe.send(&FromInit::Created)?;
    // From here on the parent no longer listens: errors go to the container's stderr.
    pipe.close();
    wait_for_start(fifo)?;
    hooks::run(
        "startContainer",
        hooks.start_container().as_deref().unwrap_or_default(),
        &state("running"),
    )?;
    Err(target.exec())
}

/// A process ready to exec: credentials dropped, in its cwd, binary found.
struct ExecTarget<'a> {
    exe: std::path::PathBuf,
    c_exe: CString,
    c_args: Vec<CString>,
    c_env: Vec<CString>,
    /// A seccomp filter still to install, right before execve (never one that notifies).
    seccomp: Option<&'a seccomp::Filter>,
}

impl ExecTarget<'_> {
    /// Install the seccomp filter if one is left, then execve; returns only on failure.
    fn exec(self) -> anyhow::Error {
        if let Some(filter) = self.seccomp {
            if let Err(e) = filter.install() {
                return e;
            }
        }
        let err = match nix::unistd::execve(&self.c_exe, &self.c_args, &self.c_env) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        anyhow!("exec {:?}: {}", self.exe, err.desc())
    }
}

/// Credentials, capabilities, cwd, environment and the binary, in that order, so that the cwd
/// and the binary are checked with the rights the process will have.
///
/// The seccomp filter goes on as runc puts it: without no_new_privs only CAP_SYS_ADMIN may
/// install one, so it is installed here before the credentials are dropped (and filters every
/// syscall the init makes from then on); with no_new_privs it is left in the target, to be
/// installed just before execve so that the init's own syscalls are not filtered, unless it
/// notifies an agent: then it is installed at the end of this function, while the pipe that
/// carries the notify fd to the parent is still open (runc installs it before closing its pipe
/// too).
fn prepare_exec<'a>(
    pipe: &mut InitEnd,
    process: &Process,
    filter: Option<&'a seccomp::Filter>,
) -> anyhow::Result<ExecTarget<'a>> {
    let no_new_privs = process.no_new_privileges() == Some(true);
    let mut filter = filter;
    if !no_new_privs {
        if let Some(f) = filter.take() {
            install_seccomp(pipe, f)?;
        }
    }
    security::finalize_credentials(process)?;
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(|e| {
        anyhow!(
            "chdir to cwd ({:?}) set in config.json failed: {}",
            cwd,
            e.desc()
        )
    })?;
    let args = process.args().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let arg0 = args.first().context("process.args: empty")?;
    let exe = security::find_executable(arg0, &env).map_err(|m| anyhow!(m))?;
    if let Some(f) = filter.filter(|f| f.notify()) {
        install_seccomp(pipe, f)?;
        filter = None;
    }
    let c = |s: &[u8]| CString::new(s).context("argument contains a NUL byte");
    Ok(ExecTarget {
        c_exe: c(exe.as_os_str().as_bytes())?,
        c_args: args
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<anyhow::Result<Vec<_>>>()?,
        c_env: env
            .iter()
            .map(|e| c(e.as_bytes()))
            .collect::<anyhow::Result<Vec<_>>>()?,
        exe,
        seccomp: filter,
    })
}

/// Install `filter`; if it notifies an agent, hand the notify fd to the parent (steps 9a-9b)
/// and close ours once the parent has passed it on.
fn install_seccomp(pipe: &mut InitEnd, filter: &seccomp::Filter) -> anyhow::Result<()> {
    if let Some(fd) = filter.install()? {
        use std::os::fd::AsFd;
        pipe.send_seccomp(fd.as_fd())?;
        pipe.expect("SeccompDone")?;
    }
    Ok(())
}

/// Open a pty in the container's devpts, make its slave our controlling terminal and stdio,
/// and send the master to the parent. Returns the slave's path (for /dev/console).
fn setup_terminal(pipe: &mut InitEnd, process: &Process) -> anyhow::Result<std::path::PathBuf> {
    use nix::fcntl::OFlag;
    use std::os::fd::AsFd;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context("open /dev/ptmx")?;
    nix::pty::grantpt(&master).context("grantpt")?;
    nix::pty::unlockpt(&master).context("unlockpt")?;
    let name = nix::pty::ptsname_r(&master).context("ptsname")?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .with_context(|| format!("open pty slave {name}"))?;
    let user = process.user();
    nix::unistd::fchown(slave.as_raw_fd(), Some(Uid::from_raw(user.uid())), None)
        .with_context(|| format!("chown {name}"))?;
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
            ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a valid winsize from the pointer; the fd is our open pty.
        if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(std::io::Error::last_os_error()).context("set the terminal size");
        }
    }
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).context("make the pty our stdio")?;
    }
    // SAFETY: TIOCSCTTY takes an int argument; fd 0 is the pty slave and we lead our session.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("set the controlling terminal");
    }
    pipe.send_console(master.as_fd())?;
    Ok(std::path::PathBuf::from(name))
}

/// Block until start writes into the exec fifo.
fn wait_for_start(mut fifo: std::fs::File) -> anyhow::Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match fifo.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("wait on the exec fifo"),
        }
    }
}

/// Like runc, create a missing cwd (as root, before the rootfs may turn read-only).
fn create_cwd(process: &Process) -> anyhow::Result<()> {
    let cwd = process.cwd();
    if std::fs::symlink_metadata(cwd).is_err() {
        std::fs::create_dir_all(cwd)
            .map_err(|e| anyhow!("create cwd ({:?}) set in config.json: {e}", cwd))?;
    }
    Ok(())
}

fn set_names(spec: &Spec) -> anyhow::Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).with_context(|| format!("set hostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: d points to d.len() valid bytes for the duration of the call.
        let rc = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("set domainname {d:?}"));
        }
    }
    Ok(())
}

fn set_sysctls(spec: &Spec) -> anyhow::Result<()> {
    let sysctls = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default();
    for (key, value) in &sysctls {
        // The keys were checked at create (crate::validate).
        let path = crate::validate::sysctl_path(key);
        std::fs::write(&path, value).with_context(|| format!("set sysctl {key}={value}"))?;
    }
    Ok(())
}

/// The home directory of `uid` from the container's /etc/passwd, or `/`.
fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
        })
        .next()
        .unwrap_or_else(|| "/".to_string())
}
