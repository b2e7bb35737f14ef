//! The container lifecycle seen from the parent side: create, start, state, kill, delete.
//!
//! `create` re-executes the caller's binary as the init (see [`crate::init`]) and drives it
//! through the init pipe protocol ([`crate::sync`]), following that protocol's table step by
//! step; every later operation works from the state on disk ([`crate::state`]) so that any
//! process can perform it.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroups::CgroupManager;
use crate::hooks::{self, HookState};
use crate::init::{INIT_PIPE_ENV, INIT_PIPE_FD, PRESERVED_FDS_ENV};
use crate::state::{self, State, Status, EXEC_FIFO};
use crate::sync::{self, Bootstrap, FromInit, InitConfig, ParentEnd, ToInit};
use crate::{namespaces, reaper, security, spec, validate, Error, Result};

/// The container process's standard streams (`None`: /dev/null).
#[derive(Debug, Default)]
pub struct Stdio {
    /// fd 0
    pub stdin: Option<OwnedFd>,
    /// fd 1
    pub stdout: Option<OwnedFd>,
    /// fd 2
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    /// The caller's own fds 0-2 (a developer's tool runs containers in its terminal).
    pub fn default_inherit() -> Stdio {
        let dup = |fd: i32| {
            // SAFETY: borrowing our own stdio fd only for the duration of the dup.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
                .try_clone_to_owned()
                .ok()
        };
        Stdio {
            stdin: dup(0),
            stdout: dup(1),
            stderr: dup(2),
        }
    }
}

/// What `create` needs.
#[derive(Debug)]
pub struct CreateOptions {
    /// Container id (unique under `root`).
    pub id: String,
    /// The OCI bundle: `config.json` and usually `rootfs/`.
    pub bundle: PathBuf,
    /// Runtime root: container state lives in `<root>/<id>/`.
    pub root: PathBuf,
    /// Standard streams of the container process.
    pub stdio: Stdio,
    /// The systemd cgroup driver was asked for (runc's `SystemdCgroup`): the spec's
    /// `cgroupsPath` must then be `slice:prefix:name` (such a path selects it anyway).
    pub systemd_cgroup: bool,
}

/// What a command line adds to a create or an exec beyond [`CreateOptions`] / [`ExecOptions`]
/// (runc's `--preserve-fds` and systemd socket activation).
///
/// [`ExecOptions`]: crate::ExecOptions
#[derive(Debug, Default)]
pub struct Extras {
    /// Open fds the process gets as 3, 4, ... in this order (the init pipe moves above them).
    pub fds: Vec<OwnedFd>,
    /// `KEY=value` entries appended to the process's environment.
    pub env: Vec<String>,
    /// Exec also into a paused container (runc's `--ignore-paused`): the process joins the
    /// frozen cgroup and runs once the container is resumed. Create ignores it.
    pub ignore_paused: bool,
}

/// A container that exists on disk.
#[derive(Debug)]
pub struct Container {
    pub(crate) state: State,
    pub(crate) root: PathBuf,
    /// The pty master of a container created with a terminal (only in the creating process).
    pub(crate) console: Option<OwnedFd>,
}

/// How long delete waits for killed processes to leave the cgroup.
const KILL_WAIT: Duration = Duration::from_secs(5);

impl Container {
    /// Create the container: namespaces, cgroup, rootfs, hooks; the init then waits for
    /// [`Container::start`]. On failure nothing is left behind: no process, cgroup or state.
    pub fn create(opts: CreateOptions) -> Result<Container> {
        Container::create_with(opts, Extras::default())
    }

    /// [`Container::create`] with fds and environment entries added to the process.
    pub fn create_with(opts: CreateOptions, extras: Extras) -> Result<Container> {
        let spec = spec::load(&opts.bundle)?;
        Container::create_with_spec(opts, spec, extras)
    }

    /// [`Container::create_with`] with the bundle's spec already loaded and validated by
    /// [`spec::load`] (a caller that must validate before it mounts the rootfs).
    pub fn create_with_spec(
        opts: CreateOptions,
        mut spec: Spec,
        extras: Extras,
    ) -> Result<Container> {
        if !extras.env.is_empty() {
            if let Some(process) = spec.process_mut() {
                let mut env = process.env().clone().unwrap_or_default();
                env.extend(extras.env.iter().cloned());
                process.set_env(Some(env));
            }
        }
        let (dir, cgroup, mut undo) = prepare(&opts, &spec)?;
        let (state, console) = create_in(&spec, opts, &extras.fds, &dir, cgroup, &mut undo)?;
        undo.disarm();
        Ok(Container {
            root: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            state,
            console,
        })
    }

    /// Load a container's state from `<root>/<id>/state.json`.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let dir = state::dir(root, id)?;
        let state = State::load(&dir, id)?;
        Ok(Container {
            state,
            root: root.to_path_buf(),
            console: None,
        })
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.root.join(&self.state.id)
    }

    fn cgroup(&self) -> &CgroupManager {
        &self.state.cgroup
    }

    /// Release the init (it execs the user's process), then run poststart hooks.
    pub fn start(&mut self) -> Result<()> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.bad_state(status, "start"));
        }
        let fifo = self.dir().join(EXEC_FIFO);
        // Non-blocking: the init holds the fifo open for reading while it waits, so opening
        // fails at once (ENXIO) instead of hanging when the init is gone.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => Error::Init("container init is not running".into()),
                _ => anyhow::Error::new(e)
                    .context(format!("open {}", fifo.display()))
                    .into(),
            })?;
        f.write_all(b"0").context("release the container init")?;
        self.state.started = true;
        self.state.save(&self.dir())?;
        let poststart = self
            .state
            .hooks
            .as_ref()
            .and_then(|h| h.poststart().clone());
        if let Some(list) = poststart {
            if let Err(e) = hooks::run("poststart", &list, &self.hook_state("running")) {
                log::warn!("container {}: {e:#}", self.state.id);
            }
        }
        Ok(())
    }

    /// Send `signal` to the init, or with `all` to every process of the container.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        let sig = Signal::try_from(signal)
            .map_err(|_| Error::invalid(format!("invalid signal {signal}")))?;
        if all {
            return self.cgroup().kill_all(sig);
        }
        if !self.state.init_alive() {
            return Err(self.bad_state(Status::Stopped, "kill"));
        }
        match signal::kill(Pid::from_raw(self.state.pid), sig) {
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("send {sig} to {}", self.state.pid))
                .into()),
        }
    }

    /// Remove the container: with `force` kill what still runs; then cgroup, state directory,
    /// poststop hooks. A running container without `force` is refused.
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(self.bad_state(status, "delete"));
        }
        kill_and_remove(self.state.pid, self.state.pid_start, self.cgroup())?;
        let poststop = self.state.hooks.as_ref().and_then(|h| h.poststop().clone());
        if let Some(list) = poststop {
            if let Err(e) = hooks::run("poststop", &list, &self.hook_state("stopped")) {
                log::warn!("container {}: {e:#}", self.state.id);
            }
        }
        remove_dir(&self.dir())
    }

    /// Freeze every process of the running container.
    pub fn pause(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Running {
            return Err(self.bad_state(status, "pause"));
        }
        self.cgroup().freeze()
    }

    /// Thaw the paused container.
    pub fn resume(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Paused {
            return Err(self.bad_state(status, "resume"));
        }
        self.cgroup().thaw()
    }

    /// Change the live resource limits. A non-empty device list replaces the container's
    /// device rules (followed by the default allow-list, as at create); an absent or empty one
    /// leaves them as they are (CRI's updates carry none).
    pub fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let status = self.status();
        if matches!(status, Status::Stopped | Status::Creating) {
            return Err(self.bad_state(status, "update"));
        }
        let res = match resources.devices() {
            Some(rules) if !rules.is_empty() => with_default_devices(resources),
            _ => {
                let mut res = resources.clone();
                res.set_devices(None);
                res
            }
        };
        self.cgroup().set(&res)
    }

    /// Resource usage of the container's cgroup.
    pub fn stats(&self) -> Result<crate::cgroups::Stats> {
        self.cgroup().stats()
    }

    /// The current status (checks that the init still lives).
    pub fn status(&self) -> Status {
        if !self.state.init_alive() {
            Status::Stopped
        } else if !self.state.started {
            Status::Created
        } else if self.cgroup().is_frozen().unwrap_or(false) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.cgroup().pids()
    }

    /// The container's cgroup.
    pub fn cgroup_manager(&self) -> &CgroupManager {
        self.cgroup()
    }

    /// The pty master, for a container whose process has a terminal (once, to its creator).
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Whether the container has a pid namespace of its own.
    pub fn own_pid_namespace(&self) -> bool {
        self.state.own_pid_namespace
    }

    /// Host pid of the container's init.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// Container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Bundle path.
    pub fn bundle(&self) -> &Path {
        &self.state.bundle
    }

    /// Runtime root this container lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn bad_state(&self, status: Status, op: &'static str) -> Error {
        Error::BadState {
            id: self.state.id.clone(),
            status: status.to_string(),
            op,
        }
    }

    fn hook_state<'a>(&'a self, status: &'a str) -> HookState<'a> {
        HookState {
            oci_version: "1.0.2",
            id: &self.state.id,
            status,
            pid: (status != "stopped").then_some(self.state.pid),
            bundle: &self.state.bundle,
            annotations: &self.state.annotations,
        }
    }
}

/// What create and restore make first, in this order: the container's cgroup manager (from the
/// spec's `cgroupsPath` and the systemd option; the cgroup must be unused), then its state
/// directory `<root>/<id>` (an id in use is refused as such, before its busy cgroup is). The
/// returned [`Undo`] removes the directory again unless disarmed.
pub(crate) fn prepare(opts: &CreateOptions, spec: &Spec) -> Result<(PathBuf, CgroupManager, Undo)> {
    let dir = state::dir(&opts.root, &opts.id)?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux: missing"))?;
    let cgroup = CgroupManager::with_driver(
        linux.cgroups_path().as_deref(),
        &opts.id,
        opts.systemd_cgroup,
    )?;
    if dir.exists() {
        return Err(Error::AlreadyExists(opts.id.clone()));
    }
    validate::cgroup_unused(&cgroup)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&opts.root)
        .with_context(|| format!("create runtime root {}", opts.root.display()))?;
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(opts.id.clone()))
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("create state directory {}", dir.display()))
                .into())
        }
    }
    let undo = Undo {
        dir: Some(dir.clone()),
        pid: 0,
        cgroup: None,
    };
    Ok((dir, cgroup, undo))
}

/// What a failed create must take back, in reverse order of creation.
pub(crate) struct Undo {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) pid: i32,
    pub(crate) cgroup: Option<CgroupManager>,
}

impl Undo {
    pub(crate) fn disarm(&mut self) {
        self.dir = None;
        self.pid = 0;
        self.cgroup = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = kill_and_remove(self.pid, 0, &cg) {
                log::warn!("undo create: {e:#}");
            }
        } else if self.pid > 0 {
            wait_gone(self.pid, 0);
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = remove_dir(&dir) {
                log::warn!("undo create: {e:#}");
            }
        }
    }
}

/// The body of create, after the state directory exists; `undo` learns each thing made.
fn create_in(
    spec: &Spec,
    opts: CreateOptions,
    fds: &[OwnedFd],
    dir: &Path,
    cgroup: CgroupManager,
    undo: &mut Undo,
) -> Result<(State, Option<OwnedFd>)> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux: missing"))?;
    let plan = namespaces::plan(linux)?;
    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("create exec fifo {}", fifo.display()))?;
    // The init opens it after switching to the container's user: let any user write into it.
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))
        .with_context(|| format!("chmod {}", fifo.display()))?;
    // In a new user namespace the init is root of that namespace, not of ours: give it the fifo.
    let host_root = |maps| namespaces::host_id_of_root(&namespaces::id_maps(maps));
    if let (Some(uid), Some(gid)) = (
        host_root(linux.uid_mappings()),
        host_root(linux.gid_mappings()),
    ) {
        nix::unistd::chown(
            &fifo,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .with_context(|| format!("chown {}", fifo.display()))?;
    }

    // Step 0: start the first child with the init pipe at INIT_PIPE_FD.
    let (mut pipe, child_end) = sync::pair()?;
    // The first child is born in the container's cgroup (so is the init it forks): see
    // CgroupManager::spawn_inside for why that beats moving it there.
    undo.cgroup = Some(cgroup.clone());
    let mut cmd = init_command(&opts.bundle, &opts.root, &opts.stdio, &child_end, fds)?;
    let mut first = cgroup.spawn_inside(
        || Ok(reaper::spawn(&mut cmd).context("start the container init")?),
        reaper::Waitable::pid,
    )?;
    drop(cmd);
    drop(child_end);

    // Steps 1-4.
    pipe.send(&ToInit::Bootstrap(Bootstrap {
        join: plan.join.clone(),
        clone_flags: plan.clone_flags,
        uid_map: namespaces::id_maps(linux.uid_mappings()),
        gid_map: namespaces::id_maps(linux.gid_mappings()),
        cgroup2: cgroup.cgroup2_dir().map(Path::to_path_buf),
    }))?;
    let mut msg = pipe.recv()?;
    if let FromInit::UserNsReady { pid } = msg {
        write_id_maps(pid, linux)?;
        pipe.send(&ToInit::MappingsWritten)?;
        msg = pipe.recv()?;
    }
    let FromInit::Pid { pid, in_cgroup2 } = msg else {
        return Err(anyhow::anyhow!("init pipe: expected Pid, got {msg:?}").into());
    };
    undo.pid = pid;
    // Before the init gets its config (and creates its cgroup namespace).
    cgroup.join_cgroup2(pid, in_cgroup2)?;
    let (pid_start, _) = state::proc_start(pid).context("container init died at once")?;
    let state = State {
        id: opts.id.clone(),
        bundle: opts.bundle.clone(),
        pid,
        pid_start,
        started: false,
        cgroup: cgroup.clone(),
        hooks: spec.hooks().clone(),
        own_pid_namespace: plan.clone_flags & libc::CLONE_NEWPID != 0,
        seccomp: linux.seccomp().clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        created_ns: state::now_ns(),
    };
    state.save(dir)?;

    // Steps 5-10.
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    pipe.send(&ToInit::Config(Box::new(InitConfig {
        spec: spec.clone(),
        rootfs,
        exec_fifo: fifo,
        id: opts.id.clone(),
        bundle: opts.bundle.clone(),
    })))?;
    // Compiled while the init works on steps 5-8 (mounts, pivot_root): off the critical path
    // unless it takes longer than they do. Sent with `Run`.
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(crate::seccomp::compile)
        .transpose()?;
    let console = drive_sync(&mut pipe, spec, &state, &cgroup, seccomp.as_deref())?;
    // The first child exited right after step 4 (its status carries nothing): reap it now that
    // it is surely gone, off the path of the steps above.
    let _ = first.wait_timeout(Some(Duration::from_secs(2)));
    Ok((state, console))
}

/// Steps 6-10: answer the init until it reports `Created`; returns the pty master if the init
/// sent one.
fn drive_sync(
    pipe: &mut ParentEnd,
    spec: &Spec,
    state: &State,
    cgroup: &CgroupManager,
    seccomp: Option<&crate::seccomp::Filter>,
) -> Result<Option<OwnedFd>> {
    let mut console = None;
    let st = HookState {
        oci_version: "1.0.2",
        id: &state.id,
        status: "creating",
        pid: Some(state.pid),
        bundle: &state.bundle,
        annotations: &state.annotations,
    };
    loop {
        match pipe.recv()? {
            FromInit::Hooks => {
                hooks::run_create_runtime(spec.hooks().as_ref(), &st)?;
                pipe.send(&ToInit::Resume)?;
            }
            FromInit::Ready => {
                if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
                    cgroup.set(&with_default_devices(res))?;
                }
                if let Some(process) = spec.process() {
                    if let Some(adj) = process.oom_score_adj() {
                        security::set_oom_score_adj(state.pid, adj)?;
                    }
                    security::set_rlimits(
                        state.pid,
                        process.rlimits().as_deref().unwrap_or_default(),
                    )?;
                }
                pipe.send(&ToInit::Run {
                    seccomp: seccomp.cloned(),
                })?;
            }
            FromInit::Console => console = Some(pipe.recv_fd()?),
            FromInit::Seccomp => {
                let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
                pass_notify_fd(pipe, profile, state.pid, &st)?;
            }
            FromInit::Created => return Ok(console),
            other => return Err(anyhow::anyhow!("init pipe: unexpected {other:?}").into()),
        }
    }
}

/// Steps 9a-9b (and E6a): receive the notify fd that follows `Seccomp`, send it with the state
/// of process `pid` to the profile's listener, close our copy and let the init go on.
pub(crate) fn pass_notify_fd(
    pipe: &mut ParentEnd,
    profile: Option<&oci_spec::runtime::LinuxSeccomp>,
    pid: i32,
    state: &HookState<'_>,
) -> Result<()> {
    use std::os::fd::AsFd;
    let fd = pipe.recv_fd()?;
    let listener = profile
        .and_then(|p| p.listener_path().as_deref())
        .ok_or_else(|| Error::invalid("linux.seccomp.listenerPath: missing"))?;
    let metadata = profile
        .and_then(|p| p.listener_metadata().as_deref())
        .unwrap_or_default();
    crate::seccomp::notify::send_to_listener(listener, metadata, fd.as_fd(), pid, state)?;
    drop(fd);
    pipe.send(&ToInit::SeccompDone)
}

/// The spec's resources with the devices every container needs (null, zero, full, tty, random,
/// urandom, pts, ptmx) allowed after the spec's own device rules, as runc does.
pub(crate) fn with_default_devices(
    res: &oci_spec::runtime::LinuxResources,
) -> oci_spec::runtime::LinuxResources {
    let mut res = res.clone();
    if let Some(rules) = res.devices().clone() {
        let mut rules = rules;
        rules.extend(crate::cgroups::devices::default_allowed());
        res.set_devices(Some(rules));
    }
    res
}

/// `<exe> init` with a clean environment, the container's stdio, `fds` at 3, 4, ... and the init
/// pipe right after them (fd 3 when there are none). The binary is the sealed view of our own
/// ([`crate::sealed`]; `root`: the runtime root, where it may make a scratch directory), never
/// the host's file.
pub(crate) fn init_command(
    cwd: &Path,
    root: &Path,
    stdio: &Stdio,
    child_end: &OwnedFd,
    fds: &[OwnedFd],
) -> Result<Command> {
    let to_std = |fd: &Option<OwnedFd>| -> Result<std::process::Stdio> {
        Ok(match fd {
            Some(fd) => std::process::Stdio::from(fd.try_clone().context("dup container stdio")?),
            None => std::process::Stdio::null(),
        })
    };
    let pipe_fd = INIT_PIPE_FD + i32::try_from(fds.len()).context("too many fds to pass")?;
    let mut cmd = Command::new(crate::sealed::exe_path(root)?);
    cmd.arg0("myshim")
        .arg("init")
        .env_clear()
        .env(INIT_PIPE_ENV, pipe_fd.to_string())
        .current_dir(cwd)
        .stdin(to_std(&stdio.stdin)?)
        .stdout(to_std(&stdio.stdout)?)
        .stderr(to_std(&stdio.stderr)?);
    if !fds.is_empty() {
        cmd.env(PRESERVED_FDS_ENV, fds.len().to_string());
    }
    let raw = child_end.as_raw_fd();
    // The fds to place at 3, 4, ..., the init pipe last; allocated here, not after fork.
    let mut moves: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    moves.push(raw);
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (sigmask, rlimit, dup2, fcntl; no allocation); the caller keeps `child_end` and
    // `fds` open until after spawn, so the raw fds are valid when the child runs.
    unsafe {
        cmd.pre_exec(move || {
            crate::reaper::clear_signal_mask()?;
            crate::nofile::restore_in_child()?;
            if moves.len() > 1 {
                return place_fds(&mut moves, pipe_fd);
            }
            if raw == INIT_PIPE_FD {
                if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, INIT_PIPE_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// In the child before exec: move `fds` to 3, 4, ... in order. Each is first copied above
/// `last` (close-on-exec), since a source may sit on a target's number.
fn place_fds(fds: &mut [i32], last: i32) -> std::io::Result<()> {
    place_fds_from(fds, INIT_PIPE_FD, last)
}

/// In the child before exec: move `fds` to `first`, `first + 1`, ... (up to `last`) in order,
/// without close-on-exec; async-signal-safe.
pub(crate) fn place_fds_from(fds: &mut [i32], first: i32, last: i32) -> std::io::Result<()> {
    for fd in fds.iter_mut() {
        // SAFETY: F_DUPFD_CLOEXEC on an fd this process holds; async-signal-safe.
        let copy = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, last + 1) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        *fd = copy;
    }
    for (target, fd) in (first..).zip(fds.iter()) {
        // SAFETY: dup2 of an fd we hold onto a number we own in this child; it clears
        // close-on-exec on the target.
        if unsafe { libc::dup2(*fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn write_id_maps(pid: i32, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let uid = namespaces::map_text(&namespaces::id_maps(linux.uid_mappings()));
    let gid = namespaces::map_text(&namespaces::id_maps(linux.gid_mappings()));
    std::fs::write(format!("/proc/{pid}/uid_map"), uid).context("write uid_map")?;
    std::fs::write(format!("/proc/{pid}/gid_map"), gid).context("write gid_map")?;
    Ok(())
}

/// Kill the init and everything in its cgroup, wait until they are gone, remove the cgroup.
pub(crate) fn kill_and_remove(pid: i32, pid_start: u64, cgroup: &CgroupManager) -> Result<()> {
    if pid > 0
        && state::proc_start(pid)
            .is_some_and(|(s, alive)| alive && (pid_start == 0 || s == pid_start))
    {
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    // A frozen cgroup would keep SIGKILLed processes alive.
    let _ = cgroup.thaw();
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = cgroup.pids().unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        let _ = cgroup.kill_all(Signal::SIGKILL);
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!("processes {pids:?} survived SIGKILL").into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if pid > 0 {
        wait_gone(pid, pid_start);
    }
    cgroup.destroy()
}

/// Wait (bounded) until `pid` is dead or a zombie.
fn wait_gone(pid: i32, pid_start: u64) {
    let deadline = Instant::now() + KILL_WAIT;
    while Instant::now() < deadline {
        match state::proc_start(pid) {
            Some((s, true)) if pid_start == 0 || s == pid_start => {
                std::thread::sleep(Duration::from_millis(2))
            }
            _ => return,
        }
    }
}

pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("remove {}", dir.display()))
            .into()),
    }
}
