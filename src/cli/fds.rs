//! What the caller hands the container besides stdio, as runc does: systemd's socket activation
//! fds (`LISTEN_FDS`, when `LISTEN_PID` is this process) first, then `--preserve-fds N` more,
//! all from fd 3 on and in that order; and the pid file.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context};

/// The fds to pass (copies, close-on-exec here) and the environment entries that go with them.
pub fn passed(preserve: u32, activation: bool) -> anyhow::Result<myshim_runtime::Extras> {
    let mut extras = myshim_runtime::Extras::default();
    let listen = if activation { listen_fds() } else { 0 };
    if listen > 0 {
        extras.env.push(format!("LISTEN_FDS={listen}"));
        extras.env.push("LISTEN_PID=1".to_string());
    }
    let count = listen
        .checked_add(preserve)
        .filter(|n| *n < 65_536)
        .context("too many fds to preserve")?;
    for fd in 3..3 + count {
        extras.fds.push(dup_open(fd as i32)?);
    }
    Ok(extras)
}

/// How many socket-activation fds systemd gave this process (0 when `LISTEN_PID` names another).
fn listen_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn dup_open(fd: i32) -> anyhow::Result<OwnedFd> {
    // SAFETY: F_GETFD only asks whether `fd` is open in this process.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("fd {fd} is not open: cannot preserve it");
    }
    // SAFETY: `fd` is open (checked above) and borrowed only for the duration of the dup.
    unsafe { BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .with_context(|| format!("duplicate fd {fd}"))
}

/// Write `pid` to `path` (no newline) through a temporary file renamed into place, as runc does:
/// a reader never sees a partial pid.
pub fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("pid file {}: no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, pid.to_string())
        .with_context(|| format!("write pid file {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("rename pid file into {}", path.display()));
    }
    Ok(())
}
