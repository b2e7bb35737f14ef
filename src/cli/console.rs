//! runc's console socket protocol: the caller listens on a unix socket (`--console-socket`); the
//! runtime connects and sends the pty master of the container's process as one message whose
//! data is the master's name and whose SCM_RIGHTS control message carries the fd.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// The name sent with the master (the device every pty master is opened from).
const MASTER_NAME: &[u8] = b"/dev/ptmx";

/// Send `master` to the socket at `path`.
pub fn send_master(path: &Path, master: &OwnedFd) -> anyhow::Result<()> {
    let sock = UnixStream::connect(path)
        .with_context(|| format!("connect to console socket {}", path.display()))?;
    let fds = [master.as_raw_fd()];
    let iov = [std::io::IoSlice::new(MASTER_NAME)];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("send the pty master to {}", path.display()))?;
    Ok(())
}

/// runc's rules between a terminal and a console socket.
pub fn check(terminal: bool, socket: Option<&Path>, detached: bool) -> anyhow::Result<()> {
    match (terminal, socket.is_some()) {
        (true, false) if detached => anyhow::bail!(
            "cannot allocate a terminal for a detached process without --console-socket"
        ),
        (false, true) => anyhow::bail!(
            "--console-socket given but the process has no terminal (process.terminal is false)"
        ),
        _ => Ok(()),
    }
}
