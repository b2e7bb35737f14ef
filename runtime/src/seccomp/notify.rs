//! The seccomp agent hand-over (OCI runtime spec, `listenerPath`): the parent connects to the
//! agent's unix socket and sends the container process state as JSON with the notify fd attached
//! (SCM_RIGHTS, named `seccompFd` in `fds`), then closes the connection: one state per
//! connection.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::Serialize;

use crate::hooks::HookState;

/// The document the agent receives.
#[derive(Debug, Serialize)]
pub struct ProcessState<'a> {
    /// OCI version
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    /// names of the fds sent with the message, in order
    pub fds: [&'a str; 1],
    /// pid of the process the filter belongs to (the init, or an exec'd process)
    pub pid: i32,
    /// `listenerMetadata`
    #[serde(skip_serializing_if = "str::is_empty")]
    pub metadata: &'a str,
    /// the container's state
    pub state: &'a HookState<'a>,
}

/// Send `fd` and the state of process `pid` of container `state` to the agent at `listener`.
pub fn send_to_listener(
    listener: &Path,
    metadata: &str,
    fd: BorrowedFd<'_>,
    pid: i32,
    state: &HookState<'_>,
) -> anyhow::Result<()> {
    let doc = ProcessState {
        oci_version: state.oci_version,
        fds: ["seccompFd"],
        pid,
        metadata,
        state,
    };
    let body = serde_json::to_vec(&doc).context("encode the container process state")?;
    let what = || format!("send the seccomp fd to {}", listener.display());
    let mut sock = UnixStream::connect(listener).with_context(what)?;
    let raw = [fd.as_raw_fd()];
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&body)],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .with_context(what)?;
    // A stream socket may take the message in parts; the fd went with the first.
    sock.write_all(&body[sent..]).with_context(what)?;
    Ok(())
}
