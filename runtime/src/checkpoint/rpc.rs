//! One `criu swrk` session: CRIU's RPC (the `rpc.proto` messages of the `rust-criu` crate) over
//! a `SOCK_SEQPACKET` socketpair, one request and its answers, notifications included.
//!
//! The criu child gets the container's stdio as its fds 0-2 (a restore hands them on with
//! `inherit_fd`), its end of the socket at fd 3 and the caller's extra fds (namespace files for
//! `inherit_fd`) at 4, 5, ... — placed between fork and exec, so no fd of ours is ever left
//! inheritable for the shim's other children. The image and work directories are not passed:
//! criu opens `images_dir_fd` and `work_dir_fd` as `/proc/<peer>/fd/<n>` of the process at the
//! other end of its socket, i.e. they are fd numbers of the caller. It is spawned through
//! [`crate::reaper`] (the shim reaps every child itself), killed and reaped if the session is
//! dropped before it finished, and every read is bounded: a criu that dies closes the socket, a
//! criu that hangs is killed after [`REPLY_TIMEOUT`].

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::socket::{
    recv, recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use protobuf::Message;
use rust_criu::rust_criu_protobuf::rpc::{Criu_notify, Criu_req, Criu_req_type, Criu_resp};

use crate::reaper::{self, Waitable};

/// fd number of the RPC socket in the criu child.
const SOCKET_FD: i32 = 3;
/// How long one answer of criu may take (a dump of a large container takes a while).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long criu may take to exit after its final answer.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the criu child gets besides its socket.
#[derive(Default)]
pub(crate) struct Child<'a> {
    /// fds 0, 1, 2 (`None`: /dev/null).
    pub stdio: [Option<BorrowedFd<'a>>; 3],
    /// Placed at fds 4, 5, ... in this order (see [`Child::fd_number`]).
    pub fds: Vec<BorrowedFd<'a>>,
}

impl Child<'_> {
    /// The fd number the `i`-th extra fd has in the criu child.
    pub fn fd_number(i: usize) -> i32 {
        SOCKET_FD + 1 + i32::try_from(i).unwrap_or(i32::MAX - SOCKET_FD - 1)
    }
}

/// A notification from criu (`notify_scripts`): the script name, the pid it names and the fd
/// it may carry (`orphan-pts-master`).
pub(crate) struct Notify<'a> {
    /// "setup-namespaces", "post-restore", "orphan-pts-master", ...
    pub script: &'a str,
    /// the pid the notification is about (0 when none)
    pub pid: i32,
    /// an fd passed with SCM_RIGHTS
    pub fd: Option<OwnedFd>,
}

/// A running `criu swrk`.
pub(crate) struct Session {
    criu: Waitable,
    sock: OwnedFd,
    done: bool,
}

impl Session {
    /// Start `criu swrk 3` (binary `criu`) with `child`'s fds.
    pub fn start(criu: &Path, child: &Child<'_>) -> anyhow::Result<Session> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("create the criu socketpair")?;
        let stdio = |fd: &Option<BorrowedFd<'_>>| -> anyhow::Result<std::process::Stdio> {
            Ok(match fd {
                Some(fd) => std::process::Stdio::from(
                    fd.try_clone_to_owned().context("dup stdio for criu")?,
                ),
                None => std::process::Stdio::null(),
            })
        };
        let mut cmd = Command::new(criu);
        cmd.arg("swrk")
            .arg(SOCKET_FD.to_string())
            .current_dir("/")
            .stdin(stdio(&child.stdio[0])?)
            .stdout(stdio(&child.stdio[1])?)
            .stderr(stdio(&child.stdio[2])?);
        let mut moves: Vec<RawFd> = vec![theirs.as_raw_fd()];
        moves.extend(child.fds.iter().map(AsRawFd::as_raw_fd));
        let last = SOCKET_FD + i32::try_from(moves.len()).context("too many fds for criu")? - 1;
        // SAFETY: runs in the forked child before exec and only calls async-signal-safe
        // functions (pthread_sigmask, fcntl, dup2) on fds the parent keeps open until spawn
        // returned; `moves` was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                reaper::clear_signal_mask()?;
                crate::container::place_fds_from(&mut moves, SOCKET_FD, last)
            });
        }
        let criu_proc =
            reaper::spawn(&mut cmd).with_context(|| format!("start {} swrk", criu.display()))?;
        drop(cmd);
        // Only criu holds its end now: if it dies, our reads see the end of the stream.
        drop(theirs);
        Ok(Session {
            criu: criu_proc,
            sock: ours,
            done: false,
        })
    }

    /// The criu process's pid.
    pub fn pid(&self) -> i32 {
        self.criu.pid()
    }

    /// Send `req` and read answers until the one of `req`'s type: each notification goes to
    /// `notify` (an error there fails the request) and is acknowledged. A failed request is
    /// an error naming its type and errno (the caller adds criu's log).
    pub fn call(
        &mut self,
        req: &Criu_req,
        notify: &mut dyn FnMut(Notify<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Criu_resp> {
        let want = req.type_();
        self.send(req)?;
        loop {
            let (resp, fd) = self.recv()?;
            if !resp.success() {
                let mut msg = format!("criu {want:?} failed");
                if resp.cr_errno() != 0 {
                    msg.push_str(&format!(
                        " ({})",
                        std::io::Error::from_raw_os_error(resp.cr_errno())
                    ));
                }
                if resp.has_cr_errmsg() && !resp.cr_errmsg().is_empty() {
                    msg.push_str(&format!(": {}", resp.cr_errmsg()));
                }
                bail!(msg);
            }
            match resp.type_() {
                Criu_req_type::NOTIFY => {
                    let n: &Criu_notify = &resp.notify;
                    let result = notify(Notify {
                        script: n.script(),
                        pid: n.pid(),
                        fd,
                    });
                    let mut ack = Criu_req::new();
                    ack.set_type(Criu_req_type::NOTIFY);
                    ack.set_notify_success(result.is_ok());
                    self.send(&ack)?;
                    result.with_context(|| format!("criu notification {:?}", n.script()))?;
                }
                t if t == want => return Ok(resp),
                t => bail!("criu answered {t:?} to a {want:?} request"),
            }
        }
    }

    /// Wait for criu to exit after its final answer; an exit status other than 0 is an error.
    pub fn finish(mut self) -> anyhow::Result<()> {
        // criu exits once the requester is gone: close our end.
        let sock = std::mem::replace(&mut self.sock, dev_null()?);
        drop(sock);
        let code = self.criu.wait_timeout(Some(EXIT_TIMEOUT))?;
        self.done = true;
        match code {
            Some(0) => Ok(()),
            Some(c) => bail!("criu exited with status {c}"),
            None => {
                self.kill();
                bail!("criu did not exit within {EXIT_TIMEOUT:?} after its answer")
            }
        }
    }

    fn kill(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.criu.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.criu.wait_timeout(Some(EXIT_TIMEOUT));
        self.done = true;
    }

    fn send(&self, req: &Criu_req) -> anyhow::Result<()> {
        let bytes = req.write_to_bytes().context("encode the criu request")?;
        let n = nix::unistd::write(self.sock.as_fd(), &bytes).context("send to criu")?;
        if n != bytes.len() {
            bail!("short write to criu ({n} of {} bytes)", bytes.len());
        }
        Ok(())
    }

    fn recv(&self) -> anyhow::Result<(Criu_resp, Option<OwnedFd>)> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(REPLY_TIMEOUT).unwrap_or(PollTimeout::MAX);
        loop {
            match poll(&mut fds, timeout) {
                Ok(0) => bail!("criu gave no answer within {REPLY_TIMEOUT:?}"),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll the criu socket"),
            }
        }
        let raw = self.sock.as_raw_fd();
        // The datagram's size, without taking it.
        let len = recv(raw, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC)
            .context("read from criu")?;
        if len == 0 {
            bail!("criu closed the connection without an answer (it died; see its log)");
        }
        let mut buf = vec![0u8; len];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(raw, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .context("read from criu")?;
        let n = msg.bytes;
        let mut fd = None;
        for c in msg.cmsgs().context("criu control message")? {
            if let ControlMessageOwned::ScmRights(list) = c {
                for raw in list {
                    // SAFETY: the kernel just installed this fd in our table for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        let resp = Criu_resp::parse_from_bytes(&buf[..n]).context("decode criu's answer")?;
        Ok((resp, fd))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.done {
            self.kill();
        }
    }
}

fn dev_null() -> anyhow::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")
        .context("open /dev/null")?
        .into())
}
