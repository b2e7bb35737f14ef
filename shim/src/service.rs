//! The containerd task service (task API v2 over ttrpc): decodes requests, finds the task (and
//! with an exec id its exec process, see [`crate::exec`]) and turns results into responses.
//! Checkpoint and a Create from a checkpoint go to [`crate::checkpoint`] (CRIU). CloseIO closes a process's stdin (ctr and CRI send it when
//! their input ends); stdio is copied by [`crate::ioloop`]. Pause/Resume/Update/Stats are
//! in [`crate::control`], the metrics conversion in [`crate::metrics`], OOM events in
//! [`crate::oom`].

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim::shim::CheckpointTaskRequest;
use containerd_shim::protos::ttrpc;
use containerd_shim::{TtrpcContext, TtrpcResult};
use myshim_runtime::{Container, CreateOptions};

use crate::contract::daemon::ExitRequest;
use crate::errors;
use crate::events::{timestamp, Events};
use crate::exec::Exec;
use crate::io::{self, StdioPaths};
use crate::logger::Labels;
use crate::options::{self, OptionsError};
use crate::process::Process;
use crate::rootfs;
use crate::table::Table;
use crate::task::Task;

/// The task service of one shim daemon.
pub struct Service {
    root: PathBuf,
    table: Arc<Table>,
    events: Events,
    exit: Arc<ExitRequest>,
    /// the thread publishing TaskOOM for every task's memory cgroup
    oom: crate::oom::Monitor,
}

impl Service {
    /// A service keeping containers under `root`; `exit` is signalled by Shutdown.
    pub fn new(root: PathBuf, table: Arc<Table>, events: Events, exit: Arc<ExitRequest>) -> Self {
        Service {
            root,
            table,
            oom: crate::oom::Monitor::start(events.clone()),
            events,
            exit,
        }
    }

    /// The task `id` and, with a non-empty `exec_id`, that exec process.
    pub fn task_and_exec(
        &self,
        id: &str,
        exec_id: &str,
    ) -> TtrpcResult<(Arc<Task>, Option<Arc<Exec>>)> {
        let task = self.table.get(id)?;
        let exec = match exec_id {
            "" => None,
            _ => Some(task.exec(exec_id)?),
        };
        Ok((task, exec))
    }

    fn do_create(&self, req: &CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(errors::invalid("container id is empty"));
        }
        let opts = options::decode(req.options.as_ref()).map_err(|e| match e {
            OptionsError::Unsupported(m) => errors::unimplemented(m),
            OptionsError::Invalid(m) => errors::invalid(m),
        })?;
        let reservation = self.table.reserve(&req.id)?;
        let bundle = PathBuf::from(&req.bundle);
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let t0 = std::time::Instant::now();
        // The spec is validated before anything is made, the rootfs mount included.
        let spec = myshim_runtime::spec::load(&bundle).map_err(|e| errors::runtime(&e))?;
        let t_spec = t0.elapsed();
        let mounted = rootfs::mount(&bundle, &req.rootfs).map_err(|e| errors::unknown(&e))?;
        let t_mount = t0.elapsed();
        let undo_mount = |err: ttrpc::Error| {
            if let Some(target) = &mounted {
                if let Err(e) = rootfs::unmount(target) {
                    log::warn!("create {}: {e:#}", req.id);
                }
            }
            err
        };
        let (fds, mut process_io) =
            io::open(&stdio, opts.io_owner(), Labels::new(&req.id, &self.root))
                .map_err(|e| undo_mount(errors::unknown(&e)))?;
        let t_io = t0.elapsed();
        let create = CreateOptions {
            id: req.id.clone(),
            bundle: bundle.clone(),
            root: self.root.clone(),
            stdio: fds,
            systemd_cgroup: opts.systemd_cgroup,
        };
        let restoring = !req.checkpoint.is_empty();
        let mut container = if restoring {
            let ropts = crate::checkpoint::restore_options(
                &req.checkpoint,
                &req.parent_checkpoint,
                req.terminal,
                &opts,
            );
            Container::restore(create, spec, &ropts)
        } else {
            Container::create_with_spec(create, spec, myshim_runtime::container::Extras::default())
        }
        .map_err(|e| undo_mount(errors::runtime(&e)))?;
        // The pty master (config.json's process.terminal) and the request must agree.
        let attached = match (container.take_console(), req.terminal) {
            (Some(master), true) => process_io
                .attach_console(master, &format!("container {}", req.id))
                .map_err(|e| errors::unknown(&e)),
            (None, false) => Ok(()),
            (None, true) => Err(errors::invalid(
                "a terminal was asked for but config.json's process.terminal is not true",
            )),
            (Some(_), false) => Err(errors::invalid(
                "config.json's process.terminal is true but no terminal was asked for",
            )),
        };
        if let Err(e) = attached {
            if let Err(d) = container.delete(true) {
                log::warn!("create {}: delete after failure: {d:#}", req.id);
            }
            return Err(undo_mount(e));
        }
        // Before Start lets the process run: no OOM can be missed.
        let t_runtime = t0.elapsed();
        self.oom.watch(&req.id, container.cgroup_manager());
        let mut task = Task::new(
            container,
            self.root.clone(),
            bundle,
            stdio,
            mounted,
            Process::new(process_io),
        )
        .with_io_owner(opts.io_owner())
        .with_oom(self.oom.clone());
        if restoring {
            task = task.restored();
        }
        let task = Arc::new(task);
        let pid = task.pid;
        self.table
            .insert(reservation, task, &req.rootfs, &self.events);
        log::debug!(
            "created container {} (init pid {pid}) in {:?}: spec {t_spec:?}, rootfs +{:?}, stdio +{:?}, runtime +{:?}",
            req.id,
            t0.elapsed(),
            t_mount - t_spec,
            t_io - t_mount,
            t_runtime - t_io
        );
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let res = self.do_create(&req);
        if let Err(e) = &res {
            log::warn!("create {}: {}", req.id, errors::describe(e));
        }
        res
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let (task, exec) = self.task_and_exec(&req.id, &req.exec_id)?;
        let pid = match exec {
            Some(exec) => task.start_exec(&exec, &self.table, &self.events)?,
            None => task.start(&self.events)?,
        };
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let (task, exec) = self.task_and_exec(&req.id, &req.exec_id)?;
        let (id, pid, phase, stdio) = match &exec {
            Some(e) => (&e.id, e.pid(), e.process.phase(), &e.stdio),
            None => (&task.id, task.pid, task.init.phase(), &task.stdio),
        };
        let exit = phase.exit();
        Ok(StateResponse {
            id: id.clone(),
            bundle: task.bundle_str(),
            pid,
            status: phase.status().into(),
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: stdio.terminal,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map_or(MessageField::none(), |e| {
                MessageField::some(timestamp(e.at))
            }),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let (task, exec) = self.task_and_exec(&req.id, &req.exec_id)?;
        match exec {
            Some(exec) => task.kill_exec(&exec, req.signal)?,
            None => task.kill(req.signal, req.all)?,
        }
        Ok(Empty::default())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (task, exec) = self.task_and_exec(&req.id, &req.exec_id)?;
        if let Some(exec) = exec {
            // No event: containerd's runc shim publishes TaskDelete for the init only.
            let exit = task.delete_exec(&exec)?;
            return Ok(DeleteResponse {
                pid: exec.pid(),
                exit_status: exit.status,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            });
        }
        // An OOM not read yet goes out before the cgroup (and its notifier) is removed.
        self.oom.flush(&task.id);
        let exit = task.delete(&self.events)?;
        self.oom.remove(&task.id);
        self.table.remove(&task.id);
        log::debug!("deleted container {}", task.id);
        Ok(DeleteResponse {
            pid: task.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let task = self.table.get(&req.id)?;
        let processes = task
            .pids()?
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .map(|pid| task.process_info(pid))
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.table.get(&req.id).map_or(0, |t| t.pid);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.table.is_empty() {
            log::info!("shutdown: no task left, exiting");
            self.exit.signal();
        }
        Ok(Empty::default())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let task = self.table.get(&req.id)?;
        let added = crate::exec::decode_spec(req.spec.as_ref()).and_then(|spec| {
            let stdio = StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            task.add_exec(Exec::new(&req.exec_id, spec, stdio), &self.events)
        });
        if let Err(e) = &added {
            log::warn!(
                "exec {} in container {}: {}",
                req.exec_id,
                req.id,
                errors::describe(e)
            );
        }
        added.map(|()| Empty::default())
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        let task = self.table.get(&req.id)?;
        task.pause(&self.events)?;
        log::debug!("paused container {}", req.id);
        Ok(Empty::default())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        let task = self.table.get(&req.id)?;
        task.resume(&self.events)?;
        log::debug!("resumed container {}", req.id);
        Ok(Empty::default())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let task = self.table.get(&req.id)?;
        let resources = crate::control::decode_resources(req.resources.as_ref())?;
        task.update(&resources)?;
        log::debug!("updated the resources of container {}", req.id);
        Ok(Empty::default())
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let task = self.table.get(&req.id)?;
        let (stats, layout) = task.stats()?;
        let any = crate::metrics::to_any(&stats, layout).map_err(|e| errors::unknown(&e))?;
        Ok(StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let (task, exec) = self.task_and_exec(&req.id, &req.exec_id)?;
        if req.stdin {
            exec.as_ref()
                .map_or(&task.init, |e| &e.process)
                .close_stdin();
        }
        Ok(Empty::default())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        let (task, exec) = self.task_and_exec(&req.id, &req.exec_id)?;
        let process = exec.as_ref().map_or(&task.init, |e| &e.process);
        let resized = process
            .with_io(|io| io.console().map(|c| c.resize(req.width, req.height)))
            .flatten();
        match resized {
            Some(Err(e)) => Err(errors::unknown(
                &anyhow::Error::new(e).context("resize the terminal"),
            )),
            Some(Ok(())) => Ok(Empty::default()),
            // No terminal (any more, or not yet): like runc's shim, nothing to do; an exec that
            // is not started yet gets its terminal created with this size.
            None => {
                if let Some(e) = exec.as_ref().filter(|e| e.stdio.terminal && e.pid() == 0) {
                    e.set_console_size(req.width, req.height);
                }
                Ok(Empty::default())
            }
        }
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        let task = self.table.get(&req.id)?;
        let done = crate::checkpoint::checkpoint_options(&req)
            .and_then(|opts| crate::checkpoint::checkpoint(&task, &opts));
        match &done {
            Ok(()) => log::debug!("checkpointed container {} into {}", req.id, req.path),
            Err(e) => log::warn!("checkpoint {}: {}", req.id, errors::describe(e)),
        }
        done.map(|()| Empty::default())
    }
}
