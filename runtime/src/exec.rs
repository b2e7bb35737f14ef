//! Exec: a new process in a running container. A re-executed first child joins the container's
//! namespaces and forks the process, which the parent joins to the container's cgroup before it
//! lets it go on (protocol steps E1-E7 in [`crate::sync`]).
//!
//! Into a paused container (only when asked, runc's `--ignore-paused`) nothing may freeze
//! before it has answered: the first child starts outside the cgroup, and the process joins the
//! frozen cgroup only once it is ready to exec (step E6b), where it waits for the thaw.

use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::container::{init_command, pass_notify_fd, Container, Extras, Stdio};
use crate::hooks::HookState;
use crate::state::Status;
use crate::sync::{self, Bootstrap, ExecConfig, FromInit, ToInit};
use crate::{namespaces, reaper, security, validate, Result};

/// What an exec needs.
#[derive(Debug)]
pub struct ExecOptions {
    /// The process (args, env, cwd, user, capabilities, terminal, ...).
    pub process: Process,
    /// Its standard streams (ignored when it has a terminal).
    pub stdio: Stdio,
}

/// A started exec process.
#[derive(Debug)]
pub struct ExecProcess {
    /// Host pid.
    pub pid: i32,
    /// The pty master when the process has a terminal.
    pub console: Option<OwnedFd>,
}

impl Container {
    /// Run a new process inside the running container. Refused unless the container is
    /// running (or paused, with [`Extras::ignore_paused`]); on failure the process is killed and
    /// nothing remains.
    pub fn exec(&self, opts: ExecOptions) -> Result<ExecProcess> {
        self.exec_with(opts, Extras::default())
    }

    /// [`Container::exec`] with fds and environment entries added to the process.
    pub fn exec_with(&self, mut opts: ExecOptions, extras: Extras) -> Result<ExecProcess> {
        if !extras.env.is_empty() {
            let mut env = opts.process.env().clone().unwrap_or_default();
            env.extend(extras.env.iter().cloned());
            opts.process.set_env(Some(env));
        }
        let status = self.status();
        let paused = match status {
            Status::Running => false,
            Status::Paused if extras.ignore_paused => true,
            _ => return Err(self.bad_state(status, "exec")),
        };
        validate::process(&opts.process)?;
        let join = namespaces::of_process(self.pid()).context("read the container's namespaces")?;
        let (mut pipe, child_end) = sync::pair()?;
        let mut cmd = init_command(
            std::path::Path::new("/"),
            self.root(),
            &opts.stdio,
            &child_end,
            &extras.fds,
        )?;
        let spawn = |cmd: &mut std::process::Command| -> Result<reaper::Waitable> {
            Ok(reaper::spawn(cmd).context("start the exec helper")?)
        };
        let mut first = if paused {
            // Outside: in the frozen cgroup it could not answer (see enter_frozen below).
            spawn(&mut cmd)?
        } else {
            // Born in the container's cgroup (see CgroupManager::spawn_inside).
            self.state
                .cgroup
                .spawn_inside(|| spawn(&mut cmd), reaper::Waitable::pid)?
        };
        drop(cmd);
        drop(child_end);
        let mut undo = KillOnDrop(first.pid());
        let cgroup2 = match paused {
            false => self
                .state
                .cgroup
                .cgroup2_dir()
                .map(std::path::Path::to_path_buf),
            true => None,
        };
        pipe.send(&ToInit::Bootstrap(Bootstrap {
            join,
            clone_flags: 0,
            uid_map: vec![],
            gid_map: vec![],
            cgroup2,
        }))?;
        let FromInit::Pid { pid, in_cgroup2 } = pipe.recv()? else {
            return Err(anyhow::anyhow!("init pipe: expected Pid").into());
        };
        undo.0 = pid;
        if !paused {
            self.state.cgroup.join_cgroup2(pid, in_cgroup2)?;
        }
        if let Some(adj) = opts.process.oom_score_adj() {
            security::set_oom_score_adj(pid, adj)?;
        }
        security::set_rlimits(pid, opts.process.rlimits().as_deref().unwrap_or_default())?;
        let seccomp = self
            .state
            .seccomp
            .as_ref()
            .map(crate::seccomp::compile)
            .transpose()?;
        pipe.send(&ToInit::Exec(Box::new(ExecConfig {
            process: opts.process,
            seccomp: seccomp.as_deref().cloned(),
            paused,
        })))?;
        let mut console = None;
        loop {
            match pipe.recv_or_eof()? {
                None if paused => {
                    return Err(crate::Error::Init(
                        "exec'd process exited without reporting".into(),
                    ))
                }
                None => break,
                Some(FromInit::Ready) if paused => {
                    enter_frozen(self, &mut pipe, pid)?;
                    // It execs once thawed: neither its end of file nor an exec failure can
                    // come before, and nothing is left to wait for.
                    break;
                }
                Some(FromInit::Console) => console = Some(pipe.recv_fd()?),
                Some(FromInit::Seccomp) => {
                    let st = HookState {
                        oci_version: "1.0.2",
                        id: &self.state.id,
                        status: "running",
                        pid: Some(self.state.pid),
                        bundle: &self.state.bundle,
                        annotations: &self.state.annotations,
                    };
                    pass_notify_fd(&mut pipe, self.state.seccomp.as_ref(), pid, &st)?;
                }
                Some(other) => {
                    return Err(anyhow::anyhow!("init pipe: unexpected {other:?}").into())
                }
            }
        }
        undo.0 = 0;
        let _ = first.wait_timeout(Some(Duration::from_secs(2)));
        Ok(ExecProcess { pid, console })
    }
}

/// Step E6b: the process of an exec into a paused container is ready to exec; move it into the
/// container's (frozen) cgroup, where it freezes, and let it go on once thawed.
fn enter_frozen(c: &Container, pipe: &mut sync::ParentEnd, pid: i32) -> Result<()> {
    c.state
        .cgroup
        .enter(pid)
        .context("move the exec'd process into the paused container's cgroup")?;
    pipe.send(&ToInit::Resume)
}

/// Kills the exec'd process if exec fails after it was forked.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 {
            let _ = signal::kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}
