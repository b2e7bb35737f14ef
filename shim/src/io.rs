//! The stdio of the container's processes.
//!
//! A process never gets a host file: its stdin, stdout and stderr are pipes (a pty when it has a
//! terminal, see [`crate::console`]), so `/proc/self/fd/{0,1,2}` inside the container shows
//! `pipe:[...]` and leads nowhere on the host. The shim moves the bytes between those pipes and
//! what containerd asked for, all in the one I/O thread ([`crate::ioloop`]):
//!
//! - a fifo path (containerd's default): output is spliced from the process's pipe into the
//!   fifo, which the shim holds `O_RDWR` (it never fails with EPIPE, and output waits in it
//!   while containerd is away, e.g. restarting); stdout and stderr given the same fifo share one
//!   pipe. The stdin fifo is read read-only and non-blocking: when its last writer closes it (the
//!   client's input ended) the process's stdin pipe is closed, so the process reads end of file;
//!   CloseIO does the same once what is in the fifo was copied.
//! - `file:///abs/path` (`ctr run --log-uri file://...`): stdout and stderr share one pipe whose
//!   bytes are appended to that file (created 0640 with its parent directories).
//! - `binary:///abs/path?k=v` (nerdctl's logging): a logging binary gets the read ends of the
//!   stdout and stderr pipes, see [`crate::logger`]; nothing is copied by the shim.
//!
//! A `file://` or `binary://` stdout takes stderr too (containerd gives both the same URI), as
//! runc's shim does. An unknown scheme, a relative path, a missing fifo or a logger that fails
//! fails the request and leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use myshim_runtime::Stdio;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::{fchown, pipe2, Gid, Uid};

use crate::console::{Console, Terminal};
use crate::ioloop::{Group, OnDrained, Role, Sink, StreamSpec};
use crate::logger::{self, Binary, Labels, Logger};

/// Mode of a log file the shim creates for `file://`.
const LOG_FILE_MODE: u32 = 0o640;

/// The stdio as containerd described it (kept for State and the TaskCreate event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// stdin fifo ("" = none)
    pub stdin: String,
    /// stdout fifo or URI ("" = none)
    pub stdout: String,
    /// stderr fifo or URI ("" = none)
    pub stderr: String,
    /// whether a terminal was asked for
    pub terminal: bool,
}

/// Where an output stream goes, from containerd's string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Fifo(String),
    File(PathBuf),
    Binary(Binary),
}

impl Target {
    fn parse(name: &str, s: &str) -> anyhow::Result<Target> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Target::Fifo(s.to_string()));
        };
        let path_part = rest.split_once('?').map_or(rest, |(p, _)| p);
        if !path_part.starts_with('/') {
            bail!("{name} {s:?}: {scheme}:// needs an absolute path ({scheme}:///path)");
        }
        let path = || -> anyhow::Result<PathBuf> {
            use std::os::unix::ffi::OsStringExt;
            let bytes =
                logger::unescape(path_part, false).with_context(|| format!("{name} {s:?}"))?;
            Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
        };
        match scheme {
            "fifo" => Ok(Target::Fifo(path()?.to_string_lossy().into_owned())),
            "file" => Ok(Target::File(path()?)),
            "binary" => Ok(Target::Binary(
                logger::parse(rest).with_context(|| format!("{name} {s:?}"))?,
            )),
            _ => bail!(
                "{name} {s:?}: unknown stdio scheme {scheme:?} (fifo paths, file:// and binary:// are supported)"
            ),
        }
    }

    fn is_uri(&self) -> bool {
        !matches!(self, Target::Fifo(_))
    }
}

/// What the shim holds for a process's stdio; dropping it releases everything (the logging
/// binary last, once the streams are closed).
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// The process's streams in the I/O loop (created with the first one).
    group: Option<Group>,
    /// A terminal process's stdin and output, until its pty master is known.
    terminal: Option<Terminal>,
    /// A terminal process's master.
    console: Option<Console>,
    /// The `binary://` logger.
    logger: Option<Logger>,
}

impl ProcessIo {
    fn group(&mut self) -> anyhow::Result<&Group> {
        if self.group.is_none() {
            self.group = Some(Group::new()?);
        }
        self.group.as_ref().context("no stream group")
    }

    /// A pipe whose read end is copied to `sink`; returns the write end (for the process).
    fn output(&mut self, labels: Labels<'_>, name: &str, sink: Sink) -> anyhow::Result<OwnedFd> {
        let (read, write) =
            pipe2(OFlag::O_CLOEXEC).with_context(|| format!("create {name} pipe"))?;
        self.group()?.add(StreamSpec {
            name: format!("container {} {name}", labels.container_id),
            source: read,
            sink,
            role: Role::Output,
        })?;
        Ok(write)
    }

    /// Start copying between a terminal process's fifos and its pty `master`.
    pub fn attach_console(&mut self, master: OwnedFd, what: &str) -> anyhow::Result<()> {
        let terminal = self.terminal.take().context("no terminal was asked for")?;
        let console = terminal.attach(master, self.group()?, what)?;
        self.console = Some(console);
        Ok(())
    }

    /// The terminal, for a terminal process.
    pub fn console(&self) -> Option<&Console> {
        self.console.as_ref()
    }

    /// CloseIO for stdin: the process reads end of file once what containerd wrote is copied.
    pub fn close_stdin(&mut self) {
        if let Some(g) = &self.group {
            g.close_input();
        }
    }

    /// The process was reaped: `f` runs once its output is drained (on the I/O thread), or
    /// `Err(f)` when there is nothing to wait for.
    pub fn when_drained(&self, f: OnDrained) -> Result<(), OnDrained> {
        match &self.group {
            Some(g) => g.when_drained(f),
            None => Err(f),
        }
    }
}

/// Open the process's stdio: the fds to give the process and what the shim keeps. `owner`
/// (uid, gid) is applied to the process's pipe ends; `labels` are for a logging binary. A
/// terminal process gets no fds (its stdio is the pty the runtime sets up): its sinks are opened
/// here and the caller hands the pty master to [`ProcessIo::attach_console`].
pub fn open(
    paths: &StdioPaths,
    owner: Option<(u32, u32)>,
    labels: Labels<'_>,
) -> anyhow::Result<(Stdio, ProcessIo)> {
    let mut stdio = Stdio::default();
    let mut io = ProcessIo::default();
    let parse = |name: &str, s: &str| -> anyhow::Result<Option<Target>> {
        if s.is_empty() {
            return Ok(None);
        }
        Target::parse(name, s).map(Some)
    };
    let stdout = parse("stdout", &paths.stdout)?;
    let stderr = parse("stderr", &paths.stderr)?;
    let stdin = match parse("stdin", &paths.stdin)? {
        None => None,
        Some(Target::Fifo(p)) => Some(p),
        Some(_) => bail!("stdin {:?}: stdin must be a fifo", paths.stdin),
    };
    if stdout.as_ref().is_none_or(|t| !t.is_uri()) && stderr.as_ref().is_some_and(Target::is_uri) {
        bail!(
            "stderr {:?}: a file:// or binary:// stderr needs the same stdout",
            paths.stderr
        );
    }

    if paths.terminal {
        let sink = match stdout {
            None => Sink::Discard,
            Some(Target::Fifo(p)) => Sink::Pipe(open_fifo("stdout", &p)?.into()),
            Some(Target::File(p)) => Sink::File(Arc::new(open_log_file(&p)?)),
            Some(Target::Binary(b)) => {
                let (logger, out, _err) = Logger::start(&b, labels)?;
                io.logger = Some(logger);
                set_nonblocking(&out).context("logger pipe")?;
                Sink::Pipe(out)
            }
        };
        let stdin = match stdin {
            Some(p) => {
                let f = open_fifo("stdin", &p)?;
                set_nonblocking(&f).context("stdin fifo")?;
                Some(f)
            }
            None => None,
        };
        io.terminal = Some(Terminal::new(stdin, sink));
        return Ok((stdio, io));
    }

    let mut shared_stderr = false;
    match stdout {
        Some(Target::Binary(b)) => {
            let (logger, out, err) = Logger::start(&b, labels)?;
            io.logger = Some(logger);
            stdio.stdout = Some(out);
            stdio.stderr = Some(err);
            shared_stderr = true;
        }
        Some(Target::File(p)) => {
            let file = Arc::new(open_log_file(&p)?);
            let w = io.output(labels, "stdout/stderr", Sink::File(file))?;
            stdio.stderr = Some(w.try_clone().context("duplicate the output pipe")?);
            stdio.stdout = Some(w);
            shared_stderr = true;
        }
        Some(Target::Fifo(p)) => {
            let w = io.output(
                labels,
                "stdout",
                Sink::Pipe(open_fifo("stdout", &p)?.into()),
            )?;
            if paths.stderr == paths.stdout {
                stdio.stderr = Some(w.try_clone().context("duplicate the output pipe")?);
                shared_stderr = true;
            }
            stdio.stdout = Some(w);
        }
        None => {}
    }
    if !shared_stderr {
        if let Some(Target::Fifo(p)) = stderr {
            let w = io.output(
                labels,
                "stderr",
                Sink::Pipe(open_fifo("stderr", &p)?.into()),
            )?;
            stdio.stderr = Some(w);
        }
    }
    if let Some(p) = stdin {
        let fifo = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .with_context(|| format!("open stdin fifo {p}"))?;
        check_fifo("stdin", &p, &fifo)?;
        let (read, write) = pipe2(OFlag::O_CLOEXEC).context("create stdin pipe")?;
        set_nonblocking(&write).context("stdin pipe")?;
        io.group()?.add(StreamSpec {
            name: format!("container {} stdin", labels.container_id),
            source: fifo.into(),
            sink: Sink::Pipe(write),
            role: Role::Input,
        })?;
        stdio.stdin = Some(read);
    }
    for fd in [&stdio.stdin, &stdio.stdout, &stdio.stderr]
        .into_iter()
        .flatten()
    {
        chown(fd, owner)?;
    }
    Ok((stdio, io))
}

/// Open a fifo `O_RDWR` and non-blocking (never blocks; as a reader it keeps the fifo from
/// failing writes with EPIPE) and check that it is one.
fn open_fifo(name: &str, path: &str) -> anyhow::Result<File> {
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("open {name} fifo {path}"))?;
    check_fifo(name, path, &fifo)?;
    Ok(fifo)
}

fn check_fifo(name: &str, path: &str, f: &File) -> anyhow::Result<()> {
    let meta = f
        .metadata()
        .with_context(|| format!("stat {name} fifo {path}"))?;
    if !meta.file_type().is_fifo() {
        bail!("{name} {path} is not a fifo");
    }
    Ok(())
}

/// Open (or create, 0640, with its parent directories) a log file for appending.
fn open_log_file(path: &Path) -> anyhow::Result<File> {
    let shown = path.display();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("create the log file's directory {}", parent.display()))?;
    }
    let mut opts = OpenOptions::new();
    // Non-blocking: a fifo or device there must not hang the open (it is refused below).
    opts.append(true).custom_flags(libc::O_NONBLOCK);
    let file = match opts.clone().create_new(true).mode(LOG_FILE_MODE).open(path) {
        Ok(f) => {
            // Whatever the umask.
            f.set_permissions(std::fs::Permissions::from_mode(LOG_FILE_MODE))
                .with_context(|| format!("chmod log file {shown}"))?;
            f
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => opts
            .open(path)
            .with_context(|| format!("open log file {shown}"))?,
        Err(e) => return Err(e).with_context(|| format!("create log file {shown}")),
    };
    // The I/O thread writes to it without waiting for readiness: only a regular file will do.
    let meta = file
        .metadata()
        .with_context(|| format!("stat log file {shown}"))?;
    if !meta.is_file() {
        bail!("log file {shown} is not a regular file");
    }
    Ok(file)
}

fn chown(fd: &impl AsRawFd, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        )
        .with_context(|| format!("chown a stdio pipe to {uid}:{gid}"))?;
    }
    Ok(())
}

pub(crate) fn set_nonblocking(fd: &impl AsRawFd) -> anyhow::Result<()> {
    let raw = fd.as_raw_fd();
    let flags = OFlag::from_bits_retain(fcntl(raw, FcntlArg::F_GETFL).context("F_GETFL")?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).context("F_SETFL O_NONBLOCK")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use nix::sys::stat::Mode;

    use super::*;

    fn mkfifo(dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o600)).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("myshim-io-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn labels() -> Labels<'static> {
        Labels {
            container_id: "c1",
            namespace: "ns",
        }
    }

    fn paths(stdin: &str, stdout: &str, stderr: &str) -> StdioPaths {
        StdioPaths {
            stdin: stdin.into(),
            stdout: stdout.into(),
            stderr: stderr.into(),
            terminal: false,
        }
    }

    fn is_anonymous_pipe(fd: &OwnedFd) -> bool {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        link.to_string_lossy().starts_with("pipe:[")
    }

    fn err(p: StdioPaths) -> String {
        format!("{:#}", open(&p, None, labels()).unwrap_err())
    }

    #[test]
    fn bad_uris_are_refused() {
        let e = err(paths("", "syslog:///x", ""));
        assert!(e.contains("unknown stdio scheme \"syslog\""), "{e}");
        let e = err(paths("", "file://relative/out.log", ""));
        assert!(e.contains("file:// needs an absolute path"), "{e}");
        let e = err(paths("", "/no/such/fifo", "file:///tmp/x.log"));
        assert!(e.contains("needs the same stdout"), "{e}");
        let e = err(paths("file:///tmp/in", "", ""));
        assert!(e.contains("stdin must be a fifo"), "{e}");
        let e = err(paths("", "binary:///no/such/logger?a=b", ""));
        assert!(
            e.contains("start the logging binary /no/such/logger"),
            "{e}"
        );
        let e = err(paths("", "binary:///no/such/logger?a=%z", ""));
        assert!(e.contains("bad percent-escape"), "{e}");
    }

    #[test]
    fn targets_are_parsed() {
        let t = |s: &str| Target::parse("stdout", s).unwrap();
        assert_eq!(t("/run/x/stdout"), Target::Fifo("/run/x/stdout".into()));
        assert_eq!(t("fifo:///run/x/out"), Target::Fifo("/run/x/out".into()));
        assert_eq!(
            t("file:///var/log/a%20b.log"),
            Target::File("/var/log/a b.log".into())
        );
        let Target::Binary(b) = t("binary:///usr/bin/logger?id=c1") else {
            panic!("not a binary")
        };
        assert_eq!(b.path, Path::new("/usr/bin/logger"));
        assert_eq!(b.args, ["id", "c1"]);
    }

    #[test]
    fn empty_paths_give_no_fds() {
        let (stdio, _io) = open(&StdioPaths::default(), None, labels()).unwrap();
        assert!(stdio.stdin.is_none() && stdio.stdout.is_none() && stdio.stderr.is_none());
    }

    #[test]
    fn output_goes_through_pipes_to_the_fifo_and_eof_follows() {
        let dir = tempdir("out");
        let out = mkfifo(&dir, "out");
        let (stdio, io) = open(&paths("", &out, &out), None, labels()).unwrap();
        // containerd's reader
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&out)
            .unwrap();
        let (w1, w2) = (stdio.stdout.unwrap(), stdio.stderr.unwrap());
        assert!(is_anonymous_pipe(&w1) && is_anonymous_pipe(&w2));
        let (mut w1, mut w2) = (File::from(w1), File::from(w2));
        w1.write_all(b"out ").unwrap();
        w2.write_all(b"err").unwrap();
        // the process exits: once the pipe is drained the shim closes the fifo
        drop((w1, w2));
        set_blocking(&reader);
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "out err");
        drop(io);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn set_blocking(f: &File) {
        let raw = f.as_raw_fd();
        let flags = OFlag::from_bits_retain(fcntl(raw, FcntlArg::F_GETFL).unwrap());
        fcntl(raw, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK)).unwrap();
    }

    #[test]
    fn file_uri_appends_both_streams() {
        let dir = tempdir("file");
        let log = dir.join("sub/dir/out.log");
        let uri = format!("file://{}", log.display());
        let (stdio, io) = open(&paths("", &uri, &uri), None, labels()).unwrap();
        let (w1, w2) = (stdio.stdout.unwrap(), stdio.stderr.unwrap());
        assert!(is_anonymous_pipe(&w1));
        let (mut w1, mut w2) = (File::from(w1), File::from(w2));
        w1.write_all(b"one\n").unwrap();
        w2.write_all(b"two\n").unwrap();
        drop((w1, w2));
        let (tx, rx) = mpsc::channel();
        if let Err(f) = io.when_drained(Box::new(move || tx.send(()).unwrap())) {
            f();
        }
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        drop(io);
        // appended, not truncated
        let (stdio, io) = open(&paths("", &uri, &uri), None, labels()).unwrap();
        File::from(stdio.stdout.unwrap())
            .write_all(b"three\n")
            .unwrap();
        drop(stdio.stderr);
        let (tx, rx) = mpsc::channel();
        if let Err(f) = io.when_drained(Box::new(move || tx.send(()).unwrap())) {
            f();
        }
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\nthree\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_uri_must_be_a_regular_file() {
        let dir = tempdir("file-fifo");
        let fifo = mkfifo(&dir, "log");
        let uri = format!("file://{fifo}");
        // refused, without hanging on the fifo (no reader: ENXIO; with one: not a regular file)
        let e = err(paths("", &uri, &uri));
        assert!(e.contains(&format!("log file {fifo}")), "{e}");
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let e = err(paths("", &uri, &uri));
        assert!(e.contains("is not a regular file"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stdin_ends_when_the_client_closes_the_fifo() {
        let dir = tempdir("in");
        let input = mkfifo(&dir, "in");
        let (stdio, io) = open(&paths(&input, "", ""), None, labels()).unwrap();
        let container = stdio.stdin.unwrap();
        assert!(is_anonymous_pipe(&container));
        let mut writer = OpenOptions::new().write(true).open(&input).unwrap();
        writer.write_all(b"hello").unwrap();
        drop(writer);
        let mut got = String::new();
        File::from(container).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
        drop(io);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stdin_ends_when_the_process_exits() {
        let dir = tempdir("in-exit");
        let input = mkfifo(&dir, "in");
        let (stdio, io) = open(&paths(&input, "", ""), None, labels()).unwrap();
        // the client keeps its end open
        let _writer = OpenOptions::new().write(true).open(&input).unwrap();
        assert!(
            io.when_drained(Box::new(|| {})).is_err(),
            "no output to wait for"
        );
        let mut rest = Vec::new();
        File::from(stdio.stdin.unwrap())
            .read_to_end(&mut rest)
            .unwrap();
        assert!(rest.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn close_stdin_delivers_everything_then_eof() {
        let dir = tempdir("close");
        let input = mkfifo(&dir, "in");
        let (stdio, mut io) = open(&paths(&input, "", ""), None, labels()).unwrap();
        // More than a fifo and a pipe hold, so the copier is mid-way when CloseIO comes.
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let ctr = std::thread::spawn(move || {
            let mut writer = OpenOptions::new().write(true).open(&input).unwrap();
            writer.write_all(&data).unwrap();
            io.close_stdin();
            io.close_stdin(); // idempotent
                              // the client's end stays open: only CloseIO ends the input
            (io, writer)
        });
        let mut container = File::from(stdio.stdin.unwrap());
        let mut got = Vec::new();
        container.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect);
        drop(ctr.join().unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn non_fifo_is_refused() {
        let dir = tempdir("reg");
        let file = dir.join("plain");
        std::fs::write(&file, b"").unwrap();
        let e = err(paths("", file.to_str().unwrap(), ""));
        assert!(e.ends_with("is not a fifo"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn output_survives_a_reader_that_comes_late() {
        // containerd away (restarting): output waits in the pipe and the fifo
        let dir = tempdir("late");
        let out = mkfifo(&dir, "out");
        let (stdio, io) = open(&paths("", &out, ""), None, labels()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let expect = data.clone();
        let mut w = File::from(stdio.stdout.unwrap());
        let writer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut reader = OpenOptions::new().read(true).open(&out).unwrap();
        writer.join().unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert!(got == expect);
        let _ = reader.as_fd();
        drop(io);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
