//! `binary://` stdio: a logging binary started by the shim with containerd's conventions.
//!
//! The binary gets the read ends of the process's stdout and stderr pipes as fds 3 and 4 and the
//! write end of a readiness pipe as fd 5, the environment `CONTAINER_ID` and
//! `CONTAINER_NAMESPACE` (nothing else), and the URI's query parameters as arguments (`?k=v&x`
//! gives `k v x ""`, first value of each key, in the URI's order). It closes fd 5 (or writes a
//! byte to it) once ready; the shim waits for that at most [`READY_TIMEOUT`], and refuses a
//! binary that exits instead. The process's pipes' write ends go straight to the container
//! (no copying in the shim).
//!
//! The logger is the shim's child: its exit is reaped by the shim's one reaper and handed over
//! through [`myshim_runtime::reaper`]. When the process is deleted ([`Logger`] dropped), the
//! logger has normally seen the end of its input and exits by itself; after [`EXIT_GRACE`] it
//! gets SIGTERM, then SIGKILL.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use myshim_runtime::reaper::{self, PidWaitable};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};

/// How long the shim waits for the logger to signal readiness.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// After the process was deleted: how long the logger may take to finish by itself.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);
/// After SIGTERM (then SIGKILL): how long to wait for the exit.
const SIGNAL_WAIT: Duration = Duration::from_secs(2);
/// `PF_EXITING` in /proc/<pid>/stat's flags: the process is in exit(2).
const PF_EXITING: u64 = 0x4;

/// A `binary://` URI: the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// absolute path of the program
    pub path: PathBuf,
    /// arguments from the query
    pub args: Vec<OsString>,
}

/// Who the process is, for the logger's environment.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// container id
    pub container_id: &'a str,
    /// containerd namespace
    pub namespace: &'a str,
}

impl<'a> Labels<'a> {
    /// Labels for container `id` kept under the runtime root `root` (`/run/myshim/<namespace>`:
    /// the root's last component is the namespace).
    pub fn new(container_id: &'a str, root: &'a std::path::Path) -> Labels<'a> {
        Labels {
            container_id,
            namespace: root.file_name().and_then(|n| n.to_str()).unwrap_or(""),
        }
    }
}

/// A running logger; dropping it waits for (and if needed stops) it.
pub struct Logger {
    child: PidWaitable,
    path: PathBuf,
    /// Its exit status, once reaped.
    status: Option<i32>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger")
            .field("pid", &self.child.pid())
            .field("path", &self.path)
            .finish()
    }
}

impl Logger {
    /// Start the logger and wait until it is ready; returns it with the write ends of the
    /// stdout and stderr pipes (for the process). On failure nothing is left.
    pub fn start(bin: &Binary, labels: Labels<'_>) -> anyhow::Result<(Logger, OwnedFd, OwnedFd)> {
        Self::start_within(bin, labels, READY_TIMEOUT)
    }

    fn start_within(
        bin: &Binary,
        labels: Labels<'_>,
        ready_timeout: Duration,
    ) -> anyhow::Result<(Logger, OwnedFd, OwnedFd)> {
        let shown = bin.path.display();
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).context("create stdout pipe")?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).context("create stderr pipe")?;
        let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).context("create readiness pipe")?;
        let child = reaper::spawn_pid(|| spawn(bin, labels, [&out_r, &err_r, &ready_w]))
            .with_context(|| format!("start the logging binary {shown}"))?;
        drop((out_r, err_r, ready_w));
        let mut logger = Logger {
            child,
            path: bin.path.clone(),
            status: None,
        };
        match logger.wait_ready(File::from(ready_r), ready_timeout) {
            Ok(()) => {
                log::debug!("logging binary {shown} ready (pid {})", logger.child.pid());
                Ok((logger, out_w, err_w))
            }
            Err(e) => {
                logger.kill_now();
                Err(e)
            }
        }
    }

    fn wait_ready(&mut self, mut ready: File, within: Duration) -> anyhow::Result<()> {
        let shown = self.path.display().to_string();
        let timeout = PollTimeout::try_from(within).unwrap_or(PollTimeout::MAX);
        loop {
            let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => bail!(
                    "the logging binary {shown} did not signal readiness (close fd 5) within {within:?}"
                ),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("wait for the logging binary"),
            }
        }
        let mut byte = [0u8; 1];
        match ready.read(&mut byte) {
            // A byte (containerd's binary-v2 convention) is ready too.
            Ok(1) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e).context("read the logging binary's readiness pipe"),
        }
        // End of file: closed, or the binary is exiting (exit closes it too).
        if self.exiting() {
            let status = match self.wait(SIGNAL_WAIT) {
                Some(code) => format!("status {code}"),
                None => "still exiting".into(),
            };
            bail!("the logging binary {shown} exited ({status}) before signalling readiness");
        }
        Ok(())
    }

    /// Whether the logger has exited or is in exit(2) (no waiting).
    fn exiting(&mut self) -> bool {
        if self.wait(Duration::ZERO).is_some() {
            return true;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.pid())) else {
            // Reaped meanwhile.
            return true;
        };
        // Fields after the command name: state (3rd field), ..., flags (9th field).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first().copied().unwrap_or("");
        let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
        matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
    }

    fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.child.pid()), sig);
        }
    }

    /// Its exit status, waiting at most `timeout` (-1: could not be waited for).
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        if self.status.is_none() {
            self.status = match self.child.wait_timeout(timeout) {
                Ok(status) => status,
                Err(e) => {
                    log::warn!("logging binary {}: {e:#}", self.path.display());
                    Some(-1)
                }
            };
        }
        self.status
    }

    fn kill_now(&mut self) {
        self.signal(Signal::SIGKILL);
        if self.wait(SIGNAL_WAIT).is_none() {
            log::warn!(
                "logging binary {} (pid {}) not reaped after SIGKILL",
                self.path.display(),
                self.child.pid()
            );
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        if self.wait(EXIT_GRACE).is_some() {
            return;
        }
        log::warn!(
            "logging binary {} (pid {}) still running {EXIT_GRACE:?} after its process: SIGTERM",
            self.path.display(),
            self.child.pid()
        );
        self.signal(Signal::SIGTERM);
        if self.wait(SIGNAL_WAIT).is_none() {
            self.kill_now();
        }
    }
}

/// posix_spawn the logger with `fds` at 3, 4 and 5, stdio on /dev/null, the default signal
/// dispositions and an empty signal mask; returns its pid. (Not `std::process::Command`: placing
/// fds needs `pre_exec`, and then a failed exec makes std wait for the child, racing the shim's
/// reaper; glibc's posix_spawn reports the error without caring who reaps.)
fn spawn(bin: &Binary, labels: Labels<'_>, fds: [&OwnedFd; 3]) -> anyhow::Result<i32> {
    let cstr = |b: &[u8]| CString::new(b).context("a NUL byte in the logging binary's command");
    let path = cstr(bin.path.as_os_str().as_bytes())?;
    let mut argv = vec![path.clone()];
    for a in &bin.args {
        argv.push(cstr(a.as_bytes())?);
    }
    let envp = [
        cstr(format!("CONTAINER_ID={}", labels.container_id).as_bytes())?,
        cstr(format!("CONTAINER_NAMESPACE={}", labels.namespace).as_bytes())?,
    ];
    let ptrs = |v: &[CString]| -> Vec<*mut libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr().cast_mut())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect()
    };
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
    // Copies at 10 or above, so that no dup2 into 3..=5 overwrites a source not yet placed.
    let high = fds
        .iter()
        .map(|fd| {
            fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(10))
                // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
                .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
                .context("duplicate a logger fd")
        })
        .collect::<anyhow::Result<Vec<OwnedFd>>>()?;
    let null = c"/dev/null";
    let mut actions = SpawnActions::new()?;
    actions.open(0, null, libc::O_RDONLY)?;
    actions.open(1, null, libc::O_WRONLY)?;
    actions.open(2, null, libc::O_WRONLY)?;
    for (target, fd) in (3..).zip(&high) {
        actions.dup2(fd.as_raw_fd(), target)?;
    }
    let attr = SpawnAttr::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: path, NUL-terminated argv and envp arrays of
    // live CStrings, initialised file actions and attributes.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            &actions.0,
            &attr.0,
            argv_p.as_ptr(),
            envp_p.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc).into());
    }
    Ok(pid)
}

/// `posix_spawn_file_actions_t`, destroyed on drop.
struct SpawnActions(libc::posix_spawn_file_actions_t);

impl SpawnActions {
    fn new() -> anyhow::Result<SpawnActions> {
        // SAFETY: an all-zero value is a valid argument to _init, which initialises it.
        let mut a: libc::posix_spawn_file_actions_t = unsafe { std::mem::zeroed() };
        // SAFETY: `a` is a valid, writable posix_spawn_file_actions_t.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut a) })?;
        Ok(SpawnActions(a))
    }

    fn open(&mut self, fd: i32, path: &CStr, flags: i32) -> anyhow::Result<()> {
        // SAFETY: initialised actions; `path` is NUL-terminated and 'static here.
        check(unsafe {
            libc::posix_spawn_file_actions_addopen(&mut self.0, fd, path.as_ptr(), flags, 0)
        })
    }

    fn dup2(&mut self, from: RawFd, to: i32) -> anyhow::Result<()> {
        // SAFETY: initialised actions; plain integers.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) })
    }
}

impl Drop for SpawnActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// `posix_spawnattr_t` with an empty signal mask and default dispositions, destroyed on drop.
struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    fn new() -> anyhow::Result<SpawnAttr> {
        // SAFETY: an all-zero value is a valid argument to _init, which initialises it.
        let mut a: libc::posix_spawnattr_t = unsafe { std::mem::zeroed() };
        // SAFETY: `a` is a valid, writable posix_spawnattr_t.
        check(unsafe { libc::posix_spawnattr_init(&mut a) })?;
        let mut attr = SpawnAttr(a);
        // SAFETY: sigset_t is plain data that sigemptyset/sigfillset initialise.
        let (mut empty, mut all): (libc::sigset_t, libc::sigset_t) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: valid sigset_t pointers; the attributes are initialised.
        unsafe {
            libc::sigemptyset(&mut empty);
            libc::sigfillset(&mut all);
            check(libc::posix_spawnattr_setsigmask(&mut attr.0, &empty))?;
            check(libc::posix_spawnattr_setsigdefault(&mut attr.0, &all))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr.0,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
        }
        Ok(attr)
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in new() and destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

fn check(rc: i32) -> anyhow::Result<()> {
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc)).context("posix_spawn setup");
    }
    Ok(())
}

/// Parse a `binary://` URI's path and query (after `binary://`).
pub fn parse(rest: &str) -> anyhow::Result<Binary> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = PathBuf::from(OsString::from_vec(unescape(path, false)?));
    let mut args: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (unescape(k, true)?, unescape(v, true)?);
        if !args.iter().any(|(seen, _)| *seen == k) {
            args.push((k, v));
        }
    }
    Ok(Binary {
        path,
        args: args
            .into_iter()
            .flat_map(|(k, v)| [OsString::from_vec(k), OsString::from_vec(v)])
            .collect(),
    })
}

/// Percent-decoding (and `+` as a space in a query).
pub fn unescape(s: &str, query: bool) -> anyhow::Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => out.push(byte),
                    None => bail!("bad percent-escape in {s:?}"),
                }
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_becomes_arguments() {
        let b = parse("/usr/bin/my%20logger?file=/tmp/a+b.log&flag&file=again&x=%2F").unwrap();
        assert_eq!(b.path, PathBuf::from("/usr/bin/my logger"));
        assert_eq!(b.args, ["file", "/tmp/a b.log", "flag", "", "x", "/"]);
        assert!(parse("/bin/x?a=%zz").is_err());
        assert_eq!(parse("/bin/x").unwrap().args, Vec::<OsString>::new());
    }

    fn labels() -> Labels<'static> {
        Labels {
            container_id: "c1",
            namespace: "ns1",
        }
    }

    #[test]
    fn missing_binary_fails_cleanly() {
        let bin = Binary {
            path: PathBuf::from("/nonexistent/logger"),
            args: vec![],
        };
        let err = Logger::start(&bin, labels()).unwrap_err();
        assert!(
            format!("{err:#}").contains("start the logging binary /nonexistent/logger"),
            "{err:#}"
        );
    }

    #[test]
    fn exit_before_ready_is_refused() {
        let bin = Binary {
            path: PathBuf::from("/bin/true"),
            args: vec![],
        };
        let err = Logger::start(&bin, labels()).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("/bin/true exited (status 0) before signalling"),
            "{err}"
        );
    }

    #[test]
    fn a_logger_that_never_gets_ready_is_stopped() {
        let bin = Binary {
            path: PathBuf::from("/bin/sleep"),
            args: vec!["100".into()],
        };
        let err = Logger::start_within(&bin, labels(), Duration::from_millis(200)).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("did not signal readiness (close fd 5) within 200ms"),
            "{err}"
        );
    }

    #[test]
    fn logger_gets_fds_env_and_args() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("myshim-logger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("logger");
        std::fs::write(
            &script,
            "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_ID $CONTAINER_NAMESPACE $1 ${HOME:-nohome}\" > \"$2.env\"\n\
             cat <&3 > \"$2.out\" & cat <&4 > \"$2.err\" & wait\n",
        )
        .unwrap();
        let mut perm = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm).unwrap();
        let base = dir.join("log");
        let bin = parse(&format!("{}?file={}", script.display(), base.display())).unwrap();
        let (logger, out, err) = Logger::start(&bin, labels()).unwrap();
        File::from(out).write_all(b"to stdout").unwrap();
        File::from(err).write_all(b"to stderr").unwrap();
        // Both ends closed: the logger finishes by itself.
        drop(logger);
        let read = |ext: &str| std::fs::read_to_string(dir.join(format!("log.{ext}"))).unwrap();
        assert_eq!(read("out"), "to stdout");
        assert_eq!(read("err"), "to stderr");
        assert_eq!(read("env").trim_end(), "c1 ns1 file nohome");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
