//! create, start, run, kill and delete, as runc's command line has them, over
//! `myshim_runtime::Container`. The container's init is never this process's child: it is
//! reparented to the caller's subreaper (containerd's runc shim) or to this process for an
//! attached run.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use myshim_runtime::{Container, CreateOptions, Error, Status, Stdio};

use super::args::Cli;
use super::args::{CreateArgs, Delete, Kill, Run};
use super::tty::Relay;
use super::{console, fds, load, wait};

/// `create`: the container exists and its init waits for `start`. Returns the pty master when
/// the process has a terminal and no console socket takes it (an attached run relays it).
pub fn create(
    cli: &Cli,
    a: &CreateArgs,
    detached: bool,
) -> anyhow::Result<(Container, Option<OwnedFd>)> {
    let bundle = std::fs::canonicalize(&a.bundle)
        .with_context(|| format!("bundle {}", a.bundle.display()))?;
    let terminal = process_terminal(&bundle)?;
    console::check(terminal, a.console_socket.as_deref(), detached)?;
    let extras = fds::passed(a.preserve_fds, true)?;
    if a.no_pivot {
        log::warn!("--no-pivot is ignored: the rootfs is always entered with pivot_root");
    }
    let mut container = Container::create_with(
        CreateOptions {
            id: a.id.clone(),
            bundle,
            root: cli.root.clone(),
            stdio: Stdio::default_inherit(),
            systemd_cgroup: cli.systemd_cgroup,
        },
        extras,
    )
    .map_err(|e| match e {
        Error::AlreadyExists(id) => anyhow::anyhow!("container with id {id} already exists"),
        other => anyhow::Error::new(other),
    })?;
    match finish_create(&mut container, a) {
        Ok(master) => Ok((container, master)),
        Err(e) => {
            if let Err(d) = container.delete(true) {
                log::warn!("delete {} after a failed create: {d:#}", a.id);
            }
            Err(e)
        }
    }
}

/// After the runtime's create: the pid file, the pty master to the console socket (or back to
/// the caller without one).
fn finish_create(container: &mut Container, a: &CreateArgs) -> anyhow::Result<Option<OwnedFd>> {
    if let Some(p) = &a.pid_file {
        fds::write_pid_file(p, container.pid())?;
    }
    let master = container.take_console();
    match (master, a.console_socket.as_deref()) {
        (Some(m), Some(socket)) => {
            console::send_master(socket, &m)?;
            Ok(None)
        }
        (master, _) => Ok(master),
    }
}

/// config.json's `process.terminal`.
fn process_terminal(bundle: &Path) -> anyhow::Result<bool> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))?;
    Ok(v["process"]["terminal"].as_bool().unwrap_or(false))
}

/// `start`
pub fn start(root: &Path, id: &str) -> anyhow::Result<()> {
    let mut c = load(root, id)?;
    match c.status() {
        Status::Created => Ok(c.start()?),
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Running | Status::Paused => bail!("cannot start an already running container"),
        Status::Creating => bail!("cannot start a container that is still being created"),
    }
}

/// `run`: create and start; attached, wait for the init and exit with its status, then delete
/// the container (unless --keep).
pub fn run(cli: &Cli, a: &Run) -> anyhow::Result<i32> {
    if a.detach {
        let (mut c, _) = create(cli, &a.common, true)?;
        if let Err(e) = c.start() {
            let _ = c.delete(true);
            return Err(e.into());
        }
        return Ok(0);
    }
    let waiter = wait::Waiter::new()?;
    let (mut c, master) = create(cli, &a.common, false)?;
    let id = a.common.id.clone();
    let root: PathBuf = cli.root.clone();
    let relay = match master.map(Relay::start).transpose() {
        Ok(r) => r,
        Err(e) => {
            let _ = c.delete(true);
            return Err(e);
        }
    };
    if let Err(e) = c.start() {
        drop(relay);
        let _ = c.delete(true);
        return Err(e.into());
    }
    let pid = c.pid();
    drop(c);
    let code = waiter.wait(pid, relay.as_ref());
    drop(relay);
    let code = code?;
    if !a.keep {
        match Container::load(&root, &id) {
            Ok(c) => c.delete(true).with_context(|| format!("delete {id}"))?,
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(code)
}

/// `kill`
pub fn kill(root: &Path, a: &Kill) -> anyhow::Result<()> {
    let sig = parse_signal(&a.signal)?;
    let c = load(root, &a.id)?;
    if !a.all && c.status() == Status::Stopped {
        bail!("container not running");
    }
    Ok(c.kill(sig, a.all)?)
}

/// `delete`: a missing container is an error unless --force (its directory, if any, goes).
pub fn delete(root: &Path, a: &Delete) -> anyhow::Result<()> {
    match Container::load(root, &a.id) {
        Ok(c) => {
            let status = c.status();
            if matches!(status, Status::Running | Status::Paused) && !a.force {
                bail!(
                    "cannot delete container {} that is not stopped: {status}",
                    a.id
                );
            }
            Ok(c.delete(a.force || status == Status::Created)?)
        }
        Err(Error::NotFound(_)) => {
            // A create that died before writing its state leaves a directory only.
            if let Ok(dir) = myshim_runtime::state::dir(root, &a.id) {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("remove {}", dir.display())),
                }
            }
            if a.force {
                Ok(())
            } else {
                bail!("container {} does not exist", a.id)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A signal by number (`9`) or name (`KILL`, `SIGKILL`, `sigkill`).
pub fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if nix::sys::signal::Signal::try_from(n).is_ok() {
            return Ok(n);
        }
        bail!("invalid signal {text:?}");
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("unknown signal {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
