//! `exec`: a new process in a running container, from `--process` (an OCI process JSON, as
//! containerd's runc shim passes it) or from the container's own process in config.json with the
//! command line's arguments and overrides. Detached, the process is reparented to the caller's
//! subreaper; attached, to this process, which exits with its status. Into a paused container
//! only with `--ignore-paused`: the process then sits frozen in the container until `resume`.

use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{bail, Context};
use myshim_runtime::{ExecOptions, Status, Stdio};
use oci_spec::runtime::{Capability, Process, Spec};

use super::args::Exec;
use super::tty::Relay;
use super::{console, fds, load, wait};

/// `exec`; returns the exit status (0 when detached).
pub fn exec(root: &Path, a: &Exec) -> anyhow::Result<i32> {
    let container = load(root, &a.id)?;
    match container.status() {
        Status::Running => {}
        // The process joins the frozen cgroup and runs once the container is resumed.
        Status::Paused if a.ignore_paused => {}
        Status::Paused => {
            bail!("cannot exec in a paused container (use --ignore-paused to override)")
        }
        _ => bail!("cannot exec in a stopped container"),
    }
    let process = process_of(container.bundle(), a)?;
    let terminal = process.terminal() == Some(true);
    console::check(terminal, a.console_socket.as_deref(), a.detach)?;
    let mut extras = fds::passed(a.preserve_fds, false)?;
    extras.ignore_paused = a.ignore_paused;
    let waiter = if a.detach {
        None
    } else {
        Some(wait::Waiter::new()?)
    };
    let started = container.exec_with(
        ExecOptions {
            process,
            stdio: Stdio::default_inherit(),
        },
        extras,
    )?;
    let pid = started.pid;
    let relay = match finish(a, pid, started.console) {
        Ok(r) => r,
        Err(e) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
    };
    match waiter {
        Some(w) => w.wait(pid, relay.as_ref()),
        None => Ok(0),
    }
}

/// After the exec: the pid file, then the pty master to the console socket, or relayed here
/// when attached without one (console::check refused that when detached).
fn finish(a: &Exec, pid: i32, console: Option<OwnedFd>) -> anyhow::Result<Option<Relay>> {
    if let Some(p) = &a.pid_file {
        fds::write_pid_file(p, pid)?;
    }
    match (console, a.console_socket.as_deref()) {
        (Some(master), Some(socket)) => {
            console::send_master(socket, &master)?;
            Ok(None)
        }
        (Some(master), None) => Ok(Some(Relay::start(master)?)),
        (None, _) => Ok(None),
    }
}

/// The process to run.
fn process_of(bundle: &Path, a: &Exec) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        if !a.command.is_empty() {
            bail!("--process and a command are mutually exclusive");
        }
        let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        return serde_json::from_slice(&text)
            .with_context(|| format!("parse process {}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).with_context(|| format!("load {}", config.display()))?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(a.env.iter().cloned());
        p.set_env(Some(env));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    let mut user = p.user().clone();
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        user.set_uid(
            uid.parse()
                .with_context(|| format!("invalid uid in --user {u:?}"))?,
        );
        user.set_gid(match gid {
            Some(g) => g
                .parse()
                .with_context(|| format!("invalid gid in --user {u:?}"))?,
            None => 0,
        });
    }
    if !a.additional_gids.is_empty() {
        user.set_additional_gids(Some(a.additional_gids.clone()));
    }
    p.set_user(user);
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: Capability = serde_json::from_value(serde_json::Value::from(name.as_str()))
                .map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}
