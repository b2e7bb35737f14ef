//! The init pipe: a `SOCK_STREAM` socketpair between the parent (the runtime inside the shim)
//! and the re-executed init. Each message is a little-endian `u32` length followed by that many
//! bytes of JSON. Each direction has its own message enum and its own end type, so a side can
//! only send what that side may send.
//!
//! The whole protocol, in order (`P` = parent, `I` = init; "first child" is the re-executed
//! process, "init" the child it forks, which becomes the container's pid 1):
//!
//! | step | sender      | message             | the receiver then                                        |
//! |------|-------------|---------------------|----------------------------------------------------------|
//! | 0    | -           | -                   | P spawns the first child and moves it into the container's cgroup |
//! | 1    | P           | `Bootstrap`         | first child joins the namespace paths, creates the new ones |
//! | 2    | first child | `UserNsReady{pid}`  | (only with a new user namespace) P writes uid/gid maps    |
//! | 3    | P           | `MappingsWritten`   | first child becomes root in the user namespace, goes on   |
//! | 4    | first child | `Pid{pid}`          | first child forks the init (born in the cgroup), reports its host pid, exits; P adopts the pid |
//! | 5    | P           | `Config`            | init unshares its cgroup namespace, mounts the rootfs     |
//! | 6    | I           | `Hooks`             | (only with prestart/createRuntime hooks) P runs them      |
//! | 7    | P           | `Resume`            | init runs createContainer hooks, pivot_root, hostname, sysctls, masked/readonly paths |
//! | 7a   | I           | `Console` + fd      | (only with a terminal) the pty master travels to P (SCM_RIGHTS) |
//! | 8    | I           | `Ready`             | P writes cgroup limits, oom_score_adj, rlimits            |
//! | 9    | P           | `Run{seccomp}`      | init sets credentials, capabilities, cwd, finds the binary; with a seccomp filter (compiled by P while the init did steps 5-8) it installs it where runc does (see [`crate::init`]) |
//! | 9a   | I           | `Seccomp` + fd      | (only with a `SCMP_ACT_NOTIFY` filter, right after installing it) the notify fd travels to P (SCM_RIGHTS); P sends it with the container process state to `listenerPath` and closes its copy |
//! | 9b   | P           | `SeccompDone`       | init closes its copy of the notify fd and goes on          |
//! | 10   | I           | `Created`           | init closes its end and waits on the exec fifo for start  |
//! | any  | I / first child | `Error{message}` | P kills the init, undoes its work, and fails create with `message` |
//!
//! An exec (a new process in a running container) uses the same pipe and the same first child;
//! `Bootstrap` then only joins the container's namespaces, and after step 4:
//!
//! | step | sender      | message             | the receiver then                                        |
//! |------|-------------|---------------------|----------------------------------------------------------|
//! | E5   | P           | `Exec`              | P has joined the process to the cgroup and set its rlimits; it sets up its terminal, credentials, cwd, installs the container's seccomp filter (sent compiled in `Exec`) and execs |
//! | E6   | I           | `Console` + fd      | (only with a terminal) as step 7a                         |
//! | E6a  | I / P       | `Seccomp` + fd, `SeccompDone` | (only with a notify filter) as steps 9a-9b, with the exec'd process's pid in the state sent to the agent |
//! | E6b  | I           | `Ready`             | (only into a paused container) the process is ready to exec; P moves it into the frozen cgroup, where it freezes, sends `Resume` and stops listening: it execs once thawed |
//! | E7   | -           | end of file         | the pipe is close-on-exec: a clean end of file means exec succeeded |
//!
//! Into a paused container, nothing may freeze before it has answered: step 0 and step 4 then
//! leave the first child and the process outside the cgroup, which the process joins at E6b.
//!
//! An end of file where a message was due means the other side died; the parent reports that
//! as "init exited without reporting".

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::seccomp::Filter;
use crate::{Error, Result};

/// Largest message accepted (a config.json is a few KiB; this bounds a corrupt length).
const MAX_MESSAGE: u32 = 16 << 20;

/// A namespace the init must join by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsPath {
    /// clone flag of the namespace (`CLONE_NEWNET`, ...)
    pub flag: i32,
    /// e.g. `/proc/1234/ns/net`
    pub path: PathBuf,
}

/// One line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// id inside the namespace
    pub container_id: u32,
    /// id on the host
    pub host_id: u32,
    /// how many ids
    pub size: u32,
}

/// What the first child needs to set up namespaces (step 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Namespaces to join, user namespace first.
    pub join: Vec<NsPath>,
    /// Clone flags of the namespaces to create (the cgroup namespace is created later, by the
    /// init, once it is in its cgroup).
    pub clone_flags: i32,
    /// uid map of a new user namespace
    pub uid_map: Vec<IdMap>,
    /// gid map of a new user namespace
    pub gid_map: Vec<IdMap>,
    /// The cgroup2 cgroup to fork the process into (`clone3(CLONE_INTO_CGROUP)`): opened before
    /// any namespace is joined.
    #[serde(default)]
    pub cgroup2: Option<PathBuf>,
}

/// What the init needs to build the container (step 5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    /// The validated spec.
    pub spec: oci_spec::runtime::Spec,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// The exec fifo in the state directory.
    pub exec_fifo: PathBuf,
    /// Container id (for hooks' state).
    pub id: String,
    /// Bundle path (for hooks' state).
    pub bundle: PathBuf,
}

/// What an exec'd process needs (step E5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The process to run.
    pub process: oci_spec::runtime::Process,
    /// The container's seccomp filter (compiled from its profile), which binds every process
    /// in it.
    #[serde(default)]
    pub seccomp: Option<Filter>,
    /// The container is paused: the process is not in its cgroup yet; once ready to exec it
    /// reports `Ready` and waits for `Resume` (step E6b).
    #[serde(default)]
    pub paused: bool,
}

/// Messages the parent sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToInit {
    /// step 1
    Bootstrap(Bootstrap),
    /// step 3
    MappingsWritten,
    /// step 5
    Config(Box<InitConfig>),
    /// step 7
    Resume,
    /// step 9, with the container's compiled seccomp filter
    Run {
        /// the filter the init installs, if the spec has a profile
        seccomp: Option<Filter>,
    },
    /// step E5
    Exec(Box<ExecConfig>),
    /// step 9b / E6a: the agent has the notify fd
    SeccompDone,
}

/// Messages the first child and the init send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromInit {
    /// step 2: the first child created a user namespace
    UserNsReady {
        /// host pid of the first child
        pid: i32,
    },
    /// step 4: host pid of the init
    Pid {
        /// host pid
        pid: i32,
        /// Born in `Bootstrap::cgroup2` (else the parent moves it there).
        #[serde(default)]
        in_cgroup2: bool,
    },
    /// step 6
    Hooks,
    /// step 7a / E6: the pty master follows as an fd
    Console,
    /// step 8
    Ready,
    /// step 9a / E6a: the seccomp notify fd follows as an fd
    Seccomp,
    /// step 10
    Created,
    /// the init failed; the text goes to the user verbatim
    Error {
        /// what failed, with its cause
        message: String,
    },
}

/// Create the socketpair: (parent end, init end). Both are close-on-exec; the caller makes the
/// init's end survive exec by duplicating it to the fd number it passes to the child.
pub fn pair() -> Result<(ParentEnd, OwnedFd)> {
    let (a, b) = UnixStream::pair().context("create init pipe")?;
    Ok((ParentEnd(a), OwnedFd::from(b)))
}

fn write_msg<T: Serialize>(stream: &mut UnixStream, msg: &T) -> anyhow::Result<()> {
    let body = serde_json::to_vec(msg).context("encode message")?;
    let len = u32::try_from(body.len()).context("message too large")?;
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&body);
    stream.write_all(&buf).context("write to init pipe")
}

/// `Ok(None)` on a clean end of file before a message starts.
fn read_msg<T: DeserializeOwned>(stream: &mut UnixStream) -> anyhow::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        let n = stream
            .read(&mut len[got..])
            .context("read from init pipe")?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            bail!("init pipe closed inside a message header");
        }
        got += n;
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        bail!("init pipe message of {len} bytes is too large");
    }
    let mut body = vec![0u8; len as usize];
    stream
        .read_exact(&mut body)
        .context("read from init pipe")?;
    Ok(Some(
        serde_json::from_slice(&body).context("decode init pipe message")?,
    ))
}

/// The parent's end: sends [`ToInit`], receives [`FromInit`].
#[derive(Debug)]
pub struct ParentEnd(UnixStream);

impl ParentEnd {
    /// Send one message.
    pub fn send(&mut self, msg: &ToInit) -> Result<()> {
        Ok(write_msg(&mut self.0, msg)?)
    }

    /// Receive one message; an `Error` from the init becomes [`Error::Init`], an end of file
    /// an error that says the init died.
    pub fn recv(&mut self) -> Result<FromInit> {
        match read_msg(&mut self.0)? {
            Some(FromInit::Error { message }) => Err(Error::Init(message)),
            Some(msg) => Ok(msg),
            None => Err(Error::Init(
                "container init exited without reporting".into(),
            )),
        }
    }

    /// Receive the fd that follows a `Console` or `Seccomp` message.
    pub fn recv_fd(&mut self) -> Result<OwnedFd> {
        Ok(recv_fd(&self.0)?)
    }

    /// Receive until end of file: `Ok(None)` for a clean end, the message otherwise (an
    /// `Error` becomes [`Error::Init`]).
    pub fn recv_or_eof(&mut self) -> Result<Option<FromInit>> {
        match read_msg(&mut self.0)? {
            Some(FromInit::Error { message }) => Err(Error::Init(message)),
            other => Ok(other),
        }
    }

    /// Receive and require a given message.
    pub fn expect(&mut self, want: &FromInit) -> Result<()> {
        let got = self.recv()?;
        if &got != want {
            return Err(anyhow::anyhow!("init pipe: expected {want:?}, got {got:?}").into());
        }
        Ok(())
    }
}

/// The init's end: receives [`ToInit`], sends [`FromInit`]. Closed after `Created`.
#[derive(Debug)]
pub struct InitEnd(Option<UnixStream>);

impl InitEnd {
    /// Wrap the inherited fd.
    ///
    /// # Safety
    /// `fd` must be an open socket that nothing else owns.
    pub unsafe fn from_raw(fd: i32) -> Self {
        // SAFETY: the caller guarantees fd is an open socket owned by no one else.
        InitEnd(Some(unsafe { UnixStream::from_raw_fd(fd) }))
    }

    fn stream(&mut self) -> anyhow::Result<&mut UnixStream> {
        self.0.as_mut().context("init pipe already closed")
    }

    /// Close the pipe: the parent sees end of file and stops listening.
    pub fn close(&mut self) {
        self.0 = None;
    }

    /// Send one message.
    pub fn send(&mut self, msg: &FromInit) -> anyhow::Result<()> {
        write_msg(self.stream()?, msg)
    }

    /// Send `Console` and the pty master with it.
    pub fn send_console(&mut self, master: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<()> {
        self.send(&FromInit::Console)?;
        send_fd(self.stream()?, master)
    }

    /// Send `Seccomp` and the seccomp notify fd with it.
    pub fn send_seccomp(&mut self, notify: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<()> {
        self.send(&FromInit::Seccomp)?;
        send_fd(self.stream()?, notify)
    }

    /// Receive one message; end of file is an error (the parent gave up).
    pub fn recv(&mut self) -> anyhow::Result<ToInit> {
        read_msg(self.stream()?)?.context("parent closed the init pipe")
    }

    /// Receive and require the message `want` names (compared by variant).
    pub fn expect(&mut self, want: &str) -> anyhow::Result<ToInit> {
        let got = self.recv()?;
        let name = match &got {
            ToInit::Bootstrap(_) => "Bootstrap",
            ToInit::MappingsWritten => "MappingsWritten",
            ToInit::Config(_) => "Config",
            ToInit::Resume => "Resume",
            ToInit::Run { .. } => "Run",
            ToInit::Exec(_) => "Exec",
            ToInit::SeccompDone => "SeccompDone",
        };
        if name != want {
            bail!("init pipe: expected {want}, got {name}");
        }
        Ok(got)
    }
}

/// Send one byte carrying `fd` as SCM_RIGHTS.
fn send_fd(stream: &UnixStream, fd: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let raw = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"F")];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::empty(),
        None,
    )
    .context("send fd over init pipe")?;
    Ok(())
}

/// Receive the byte sent by [`send_fd`] and the fd it carries (close-on-exec).
fn recv_fd(stream: &UnixStream) -> anyhow::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive fd over init pipe")?;
    for cmsg in msg.cmsgs().context("read control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("init pipe: expected an fd, got none")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_pipe_in_order() {
        let (mut parent, child) = pair().unwrap();
        let mut init = InitEnd(Some(UnixStream::from(child)));
        let boot = Bootstrap {
            join: vec![NsPath {
                flag: libc::CLONE_NEWNET,
                path: "/proc/1/ns/net".into(),
            }],
            clone_flags: libc::CLONE_NEWPID | libc::CLONE_NEWNS,
            cgroup2: Some(PathBuf::from("/sys/fs/cgroup/ns/c1")),
            uid_map: vec![],
            gid_map: vec![IdMap {
                container_id: 0,
                host_id: 1000,
                size: 1,
            }],
        };
        parent.send(&ToInit::Bootstrap(boot.clone())).unwrap();
        match init.expect("Bootstrap").unwrap() {
            ToInit::Bootstrap(b) => assert_eq!(b, boot),
            other => panic!("unexpected {other:?}"),
        }
        let pid = FromInit::Pid {
            pid: 42,
            in_cgroup2: true,
        };
        init.send(&pid).unwrap();
        assert_eq!(parent.recv().unwrap(), pid);
        parent.send(&ToInit::Run { seccomp: None }).unwrap();
        assert!(init.expect("Resume").is_err());
    }

    #[test]
    fn init_error_reaches_parent_verbatim() {
        let (mut parent, child) = pair().unwrap();
        let mut init = InitEnd(Some(UnixStream::from(child)));
        let message = "exec \"nosuch\": No such file or directory".to_string();
        init.send(&FromInit::Error {
            message: message.clone(),
        })
        .unwrap();
        match parent.recv() {
            Err(Error::Init(m)) => assert_eq!(m, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn end_of_file_means_init_died() {
        let (mut parent, child) = pair().unwrap();
        drop(child);
        let err = parent.recv().unwrap_err().to_string();
        assert!(err.contains("exited without reporting"), "{err}");
    }

    #[test]
    fn console_fd_crosses_with_its_message() {
        use std::os::fd::AsFd;
        let (mut parent, child) = pair().unwrap();
        let mut init = InitEnd(Some(UnixStream::from(child)));
        let (r, w) = nix::unistd::pipe().unwrap();
        init.send_console(w.as_fd()).unwrap();
        init.send(&FromInit::Ready).unwrap();
        assert_eq!(parent.recv().unwrap(), FromInit::Console);
        let got = parent.recv_fd().unwrap();
        assert_eq!(parent.recv().unwrap(), FromInit::Ready);
        nix::unistd::write(&got, b"x").unwrap();
        let mut b = [0u8; 1];
        nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn oversized_length_is_refused() {
        let (parent, child) = pair().unwrap();
        let mut raw = parent.0;
        raw.write_all(&(MAX_MESSAGE + 1).to_le_bytes()).unwrap();
        let mut init = InitEnd(Some(UnixStream::from(child)));
        assert!(init.recv().is_err());
    }
}
