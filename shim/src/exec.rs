//! Exec processes: additional processes in a task's container (`ctr task exec`).
//!
//! Exec records the process (its OCI process spec and stdio) as a created [`Exec`] of the task
//! and publishes TaskExecAdded; Start opens its stdio and has the runtime run it in the
//! container ([`Container::exec`](myshim_runtime::Container::exec): a re-executed helper joins
//! the container's namespaces and cgroup), then publishes TaskExecStarted. Its exit (the shim
//! reaps it: the helper that forked it exits at once) is published as TaskExit with the exec id,
//! after TaskExecStarted, like the init's after TaskStart ([`crate::process`]). Delete of an exec
//! returns its exit status and removes it; it publishes nothing (containerd's runc shim publishes
//! TaskDelete for the init only).
//!
//! Exec processes die with the container's pid namespace, before its init is reaped (the kernel
//! holds the init back until they are reaped too), so their exits are reported first. In a
//! container that shares the host's pid namespace they survive the init: Delete of the init
//! kills them and waits (briefly) until their exits are reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::task::ProcessInfo;
use myshim_runtime::{ExecOptions, Status as RuntimeStatus};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::errors;
use crate::events::Events;
use crate::io::{self, StdioPaths};
use crate::logger::Labels;
use crate::process::{Exit, Op, Phase, Process};
use crate::table::Table;
use crate::task::Task;

/// Type URL of the `ProcessInfo.info` of an exec process, as containerd's runc shim sends it.
pub const PROCESS_DETAILS: &str = "containerd.runc.v1.ProcessDetails";

/// How long Delete of the init waits for the exits of the exec processes it killed.
const EXEC_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// An exec process of a task.
pub struct Exec {
    /// exec id
    pub id: String,
    /// stdio as containerd gave it
    pub stdio: StdioPaths,
    /// The process to run (kept after start for a retry after a failed start).
    spec: Mutex<oci_spec::runtime::Process>,
    /// host pid once started (0 before)
    pid: AtomicU32,
    /// its lifecycle and exit
    pub process: Process,
}

impl Exec {
    /// A created exec process; the spec's `terminal` follows `stdio.terminal`.
    pub fn new(id: &str, mut spec: oci_spec::runtime::Process, stdio: StdioPaths) -> Exec {
        spec.set_terminal(Some(stdio.terminal));
        Exec {
            id: id.to_string(),
            stdio,
            spec: Mutex::new(spec),
            pid: AtomicU32::new(0),
            process: Process::new(io::ProcessIo::default()),
        }
    }

    /// Host pid (0 until started).
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Set the pid once started (by [`Table::exec_started`], under the table's lock).
    pub(crate) fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::SeqCst);
    }

    /// "exec e1 in container c1"
    pub fn what(&self, container_id: &str) -> String {
        format!("exec {} in container {container_id}", self.id)
    }

    fn spec(&self) -> MutexGuard<'_, oci_spec::runtime::Process> {
        self.spec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resize before start: the runtime creates the terminal with this size.
    pub fn set_console_size(&self, width: u32, height: u32) {
        let size = oci_spec::runtime::BoxBuilder::default()
            .width(width)
            .height(height)
            .build();
        match size {
            Ok(size) => {
                self.spec().set_console_size(Some(size));
            }
            Err(e) => log::warn!("exec {}: console size: {e}", self.id),
        }
    }
}

/// The exec processes of a task, by exec id.
#[derive(Default)]
pub struct Execs(Mutex<HashMap<String, Arc<Exec>>>);

impl Execs {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Exec>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exec process `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Exec>> {
        self.lock().get(id).cloned()
    }

    /// The live (not yet reaped) exec process with host pid `pid`.
    pub fn by_pid(&self, pid: u32) -> Option<Arc<Exec>> {
        if pid == 0 {
            return None;
        }
        self.lock()
            .values()
            .find(|e| e.pid() == pid && !e.process.is_reaped())
            .cloned()
    }

    /// Every exec process.
    pub fn all(&self) -> Vec<Arc<Exec>> {
        self.lock().values().cloned().collect()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Decode the `spec` of an Exec request: an `Any` holding an OCI process as JSON
/// (`types.containerd.io/opencontainers/runtime-spec/1/Process`).
pub fn decode_spec(any: Option<&Any>) -> ttrpc::Result<oci_spec::runtime::Process> {
    let any = any.ok_or_else(|| errors::invalid("exec: no process spec given"))?;
    let decode_error = |e: serde_json::Error| {
        errors::invalid(format!(
            "exec: decode the process spec ({}): {e}",
            any.type_url
        ))
    };
    let mut value: serde_json::Value = serde_json::from_slice(&any.value).map_err(decode_error)?;
    // As runc: unknown capability names are ignored with a warning.
    let dropped = myshim_runtime::validate::drop_unknown_capabilities(&mut value);
    if !dropped.is_empty() {
        log::warn!(
            "exec: ignoring unknown capabilities: {}",
            dropped.join(", ")
        );
    }
    serde_json::from_value(value).map_err(decode_error)
}

/// `containerd.runc.v1.ProcessDetails{exec_id}` as an `Any` (the protos crate lacks the type:
/// field 1, a string, encoded by hand).
pub fn process_details(exec_id: &str) -> Any {
    let mut value = Vec::with_capacity(exec_id.len() + 6);
    value.push(0x0a); // field 1, wire type 2 (length-delimited)
    let mut len = exec_id.len();
    while len >= 0x80 {
        value.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    value.push(len as u8);
    value.extend_from_slice(exec_id.as_bytes());
    Any {
        type_url: PROCESS_DETAILS.to_string(),
        value,
        ..Default::default()
    }
}

impl Task {
    /// Exec: record a created exec process and publish TaskExecAdded. Refused when the container
    /// is stopped or paused, or the id is taken.
    pub fn add_exec(&self, exec: Exec, events: &Events) -> ttrpc::Result<()> {
        if exec.id.is_empty() {
            return Err(errors::invalid("exec id is empty"));
        }
        let refuse = |status: &str| {
            errors::failed_precondition(format!("container {} is {status}: cannot exec", self.id))
        };
        if self.init.is_reaped() || self.init.check(Op::Kill, "").is_err() {
            return Err(refuse("stopped"));
        }
        if self.init.phase() == Phase::Paused {
            return Err(refuse("paused"));
        }
        match self.with_container(|c| Ok(c.status()))? {
            RuntimeStatus::Stopped => return Err(refuse("stopped")),
            RuntimeStatus::Paused => return Err(refuse("paused")),
            _ => {}
        }
        let mut execs = self.execs.lock();
        if execs.contains_key(&exec.id) {
            return Err(errors::status(
                ttrpc::Code::ALREADY_EXISTS,
                format!(
                    "process {} already exists in container {}",
                    exec.id, self.id
                ),
            ));
        }
        // Under the map's lock: a Start cannot find the exec before its TaskExecAdded is queued.
        events.task_exec_added(&self.id, &exec.id);
        log::debug!("{}: added", exec.what(&self.id));
        execs.insert(exec.id.clone(), Arc::new(exec));
        Ok(())
    }

    /// The exec process `exec_id`.
    pub fn exec(&self, exec_id: &str) -> ttrpc::Result<Arc<Exec>> {
        self.execs.get(exec_id).ok_or_else(|| {
            errors::not_found(format!(
                "process {exec_id} not found in container {}",
                self.id
            ))
        })
    }

    /// Start an exec process; TaskExecStarted (and an early TaskExit) are published in order.
    /// On failure nothing is left: no process, no stdio held; the exec stays created.
    pub fn start_exec(
        self: &Arc<Self>,
        exec: &Arc<Exec>,
        table: &Table,
        events: &Events,
    ) -> ttrpc::Result<u32> {
        let what = exec.what(&self.id);
        let t0 = std::time::Instant::now();
        exec.process.begin_start(&what)?;
        let result = self.run_exec(exec, &what, table, events);
        let pid = *result.as_ref().unwrap_or(&0);
        exec.process.started(
            result.is_ok(),
            || events.task_exec_started(&self.id, &exec.id, pid),
            |exit| events.task_exit(&self.id, &exec.id, pid, exit),
        );
        match &result {
            Ok(pid) => log::debug!("{what}: started (pid {pid}) in {:?}", t0.elapsed()),
            Err(e) => log::warn!("{what}: start: {}", errors::describe(e)),
        }
        result
    }

    fn run_exec(
        self: &Arc<Self>,
        exec: &Arc<Exec>,
        what: &str,
        table: &Table,
        events: &Events,
    ) -> ttrpc::Result<u32> {
        let (stdio, mut pio) = io::open(
            &exec.stdio,
            self.io_owner,
            Labels::new(&self.id, &self.root),
        )
        .map_err(|e| errors::unknown(&e))?;
        let process = exec.spec().clone();
        let t0 = std::time::Instant::now();
        let started = self.with_container(|c| c.exec(ExecOptions { process, stdio }))?;
        log::debug!("{what}: runtime exec took {:?}", t0.elapsed());
        let pid = u32::try_from(started.pid)
            .map_err(|_| errors::invalid(format!("{what}: bad pid {}", started.pid)))?;
        if exec.stdio.terminal {
            let attached = match started.console {
                Some(master) => pio.attach_console(master, what),
                None => Err(anyhow::anyhow!("the runtime created no terminal")),
            };
            if let Err(e) = attached {
                // Its exit finds no owner and is dropped.
                let _ = signal::kill(Pid::from_raw(started.pid), Signal::SIGKILL);
                return Err(errors::unknown(&e.context(format!("{what}: terminal"))));
            }
        }
        exec.process.set_io(pio);
        table.exec_started(self, exec, pid, events);
        Ok(pid)
    }

    /// Kill an exec process (`all` is meaningless for one process).
    pub fn kill_exec(&self, exec: &Exec, signal: u32) -> ttrpc::Result<()> {
        let what = exec.what(&self.id);
        exec.process.check(Op::Kill, &what)?;
        let finished = || errors::not_found("process already finished");
        if exec.process.is_reaped() {
            return Err(finished());
        }
        let pid = exec.pid();
        if pid == 0 {
            return Err(errors::failed_precondition(format!(
                "{what} is not started: cannot kill"
            )));
        }
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or_else(|| errors::invalid(format!("invalid signal {signal}")))?;
        let pid = i32::try_from(pid).map_err(|_| finished())?;
        match signal::kill(Pid::from_raw(pid), sig) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(finished()),
            Err(e) => Err(errors::unknown(
                &anyhow::Error::new(e).context(format!("send {sig} to {what} (pid {pid})")),
            )),
        }
    }

    /// Delete an exec process (created or stopped): remove it and return its exit.
    pub fn delete_exec(&self, exec: &Exec) -> ttrpc::Result<Exit> {
        let what = exec.what(&self.id);
        let exit = exec.process.deleted(&what, |_| {})?;
        self.execs.lock().remove(&exec.id);
        log::debug!("{what}: deleted");
        Ok(exit)
    }

    /// The init was reaped with `exit`: record it (after a terminal's output is drained) and
    /// publish TaskExit.
    pub fn init_reaped(self: &Arc<Self>, exit: Exit, events: &Events) {
        if !self.own_pid_namespace {
            // Without a pid namespace of its own nothing ends the container's other processes
            // with its init: kill them (runc's shim does too). From the state on disk, not
            // through the container lock: an RPC holding it may be waiting for this thread.
            match myshim_runtime::Container::load(&self.root, &self.id) {
                Ok(c) => {
                    if let Err(e) = c.kill(libc::SIGKILL, true) {
                        log::warn!("container {}: kill the rest after the init: {e:#}", self.id);
                    }
                }
                Err(e) => log::warn!("container {}: {e:#}", self.id),
            }
        }
        let task = self.clone();
        let ev = events.clone();
        self.init.reaped(Box::new(move || {
            let (oom, id) = (task.oom.clone(), task.id.clone());
            let record = Box::new(move || {
                task.init
                    .exited(exit, |e| ev.task_exit(&task.id, &task.id, task.pid, e))
            });
            // An OOM kill goes out before the exit it caused (CRI reads the reason from it), also
            // one whose notification the kernel dropped with a cgroup systemd removed; the exit
            // is recorded on the OOM thread, after its look, so the I/O thread never waits.
            match oom {
                Some(oom) => oom.flush_then(&id, record),
                None => record(),
            }
        }));
    }

    /// Exec process `exec` was reaped with `exit`: record it and publish TaskExit (id = exec id).
    pub fn exec_reaped(&self, exec: &Arc<Exec>, exit: Exit, events: &Events) {
        let id = self.id.clone();
        let ev = events.clone();
        let e = exec.clone();
        exec.process.reaped(Box::new(move || {
            e.process
                .exited(exit, |x| ev.task_exit(&id, &e.id, e.pid(), x))
        }));
    }

    /// Before the container is deleted: SIGKILL every exec process still alive and wait (at most
    /// [`EXEC_STOP_TIMEOUT`] in all) until their exits are recorded, so they are reported.
    pub(crate) fn stop_execs(&self) {
        let execs = self.execs.all();
        let mut waiting = Vec::new();
        for e in execs {
            let pid = e.pid();
            if pid == 0 || e.process.has_exited() {
                continue;
            }
            // A reaped one only waits for its terminal's output to be drained.
            if !e.process.is_reaped() {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            waiting.push(e);
        }
        let deadline = Instant::now() + EXEC_STOP_TIMEOUT;
        for e in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            if e.process.wait_timeout(left).is_none() {
                log::warn!("{}: no exit within {EXEC_STOP_TIMEOUT:?}", e.what(&self.id));
            }
        }
    }

    /// After the container was deleted: forget every exec process (waking their waiters).
    pub(crate) fn clear_execs(&self) {
        let execs: Vec<Arc<Exec>> = self.execs.lock().drain().map(|(_, e)| e).collect();
        for e in execs {
            let _ = e.process.deleted(&e.what(&self.id), |_| {});
        }
    }

    /// `ProcessInfo` for `pid`: exec processes carry their exec id.
    pub fn process_info(&self, pid: u32) -> ProcessInfo {
        let info = self.execs.by_pid(pid).map_or(MessageField::none(), |e| {
            MessageField::some(process_details(&e.id))
        });
        ProcessInfo {
            pid,
            info,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::{CodedInputStream, Message};

    use super::*;

    #[test]
    fn process_details_is_field_one() {
        let any = process_details("exec-1");
        assert_eq!(any.type_url, "containerd.runc.v1.ProcessDetails");
        assert_eq!(any.value, b"\x0a\x06exec-1");
        // a long id needs a two-byte length
        let long = "x".repeat(200);
        let any = process_details(&long);
        let mut is = CodedInputStream::from_bytes(&any.value);
        assert_eq!(is.read_raw_tag_or_eof().unwrap(), Some(0x0a));
        assert_eq!(is.read_string().unwrap(), long);
        assert!(is.eof().unwrap());
        // what containerd's Any wrapper carries survives a round trip
        let bytes = any.write_to_bytes().unwrap();
        assert_eq!(Any::parse_from_bytes(&bytes).unwrap(), any);
    }

    fn any(value: &str) -> Any {
        Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn spec_is_decoded_from_json() {
        let spec = decode_spec(Some(&any(
            r#"{"args":["sh","-c","echo hi"],"cwd":"/","user":{"uid":0,"gid":0},"terminal":true}"#,
        )))
        .unwrap();
        assert_eq!(
            spec.args().as_deref(),
            Some(&["sh".to_string(), "-c".into(), "echo hi".into()][..])
        );
        assert_eq!(spec.terminal(), Some(true));
        let err = decode_spec(Some(&any("{not json"))).unwrap_err();
        assert!(matches!(err, ttrpc::Error::RpcStatus(ref s)
            if s.code() == ttrpc::Code::INVALID_ARGUMENT && s.message().contains("Process")));
        assert!(decode_spec(None).is_err());
    }

    fn exec(id: &str, terminal: bool) -> Exec {
        let spec = decode_spec(Some(&any(
            r#"{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0},"terminal":true}"#,
        )));
        Exec::new(
            id,
            spec.unwrap(),
            StdioPaths {
                terminal,
                ..Default::default()
            },
        )
    }

    #[test]
    fn terminal_follows_the_request() {
        let e = exec("e1", false);
        assert_eq!(e.spec().terminal(), Some(false));
        let e = exec("e1", true);
        assert_eq!(e.spec().terminal(), Some(true));
        e.set_console_size(120, 40);
        let size = e.spec().console_size().unwrap();
        assert_eq!((size.width(), size.height()), (120, 40));
        assert_eq!(e.what("c1"), "exec e1 in container c1");
    }

    #[test]
    fn terminal_output_is_complete_when_the_exit_is_recorded() {
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;

        let dir = std::env::temp_dir().join(format!("myshim-exec-tty-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        nix::unistd::mkfifo(&out, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let paths = StdioPaths {
            stdout: out.to_str().unwrap().into(),
            terminal: true,
            ..Default::default()
        };
        let labels = Labels {
            container_id: "c1",
            namespace: "n",
        };
        let (stdio, mut pio) = io::open(&paths, None, labels).unwrap();
        assert!(
            stdio.stdout.is_none(),
            "a terminal process gets no fifo fds"
        );
        let mut ctr = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&out)
            .unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        pio.attach_console(pty.master, "test").unwrap();
        let p = Arc::new(Process::new(pio));
        p.begin_start("e").unwrap();
        p.started(true, || {}, |_| {});
        let mut slave = std::fs::File::from(pty.slave);
        slave.write_all(b"bye\n").unwrap();
        // The shim reaps the process; its last output is still in the terminal.
        let p2 = p.clone();
        p.reaped(Box::new(move || {
            p2.exited(Exit::now(7), |_| {});
        }));
        assert!(p.is_reaped());
        drop(slave);
        let exit = p
            .wait_timeout(Duration::from_secs(5))
            .expect("exit recorded");
        assert_eq!(exit.status, 7);
        // Wait returned: everything is in the fifo already.
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = ctr.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"bye\r\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn execs_are_found_by_live_pid() {
        let execs = Execs::default();
        let e = Arc::new(exec("e1", false));
        execs.lock().insert("e1".into(), e.clone());
        assert!(execs.by_pid(0).is_none());
        assert!(execs.by_pid(42).is_none());
        e.pid.store(42, Ordering::SeqCst);
        assert_eq!(execs.by_pid(42).map(|e| e.id.clone()), Some("e1".into()));
        e.process.begin_start("e").unwrap();
        e.process.started(true, || {}, |_| {});
        e.process.reaped(Box::new(|| {}));
        assert!(
            execs.by_pid(42).is_none(),
            "a reaped exec no longer owns its pid"
        );
        assert_eq!(execs.len(), 1);
        assert!(!execs.is_empty());
    }
}
