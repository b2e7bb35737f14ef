//! The containerd task service (task API v2 over ttrpc): decodes requests, finds the task and
//! turns results into responses. Only the init process of each container exists today; exec,
//! pause/resume, update, stats, checkpoint and resize_pty answer UNIMPLEMENTED. CloseIO closes
//! the init's stdin (ctr and CRI send it when their input ends).

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::shim::shim::CheckpointTaskRequest;
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use myshim_runtime::{Container, CreateOptions};

use crate::errors;
use crate::events::{timestamp, Events};
use crate::io::{self, StdioPaths};
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
    exit: Arc<ExitSignal>,
}

impl Service {
    /// A service keeping containers under `root`; `exit` is signalled by Shutdown.
    pub fn new(root: PathBuf, table: Arc<Table>, events: Events, exit: Arc<ExitSignal>) -> Self {
        Service {
            root,
            table,
            events,
            exit,
        }
    }

    /// The task `id`, for requests about its init (`exec_id` empty; there are no execs yet).
    fn init_task(&self, id: &str, exec_id: &str) -> TtrpcResult<Arc<Task>> {
        let task = self.table.get(id)?;
        if !exec_id.is_empty() {
            return Err(errors::not_found(format!(
                "process {exec_id} not found in container {id}"
            )));
        }
        Ok(task)
    }

    fn do_create(&self, req: &CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(errors::invalid("container id is empty"));
        }
        if req.terminal {
            return Err(errors::unimplemented("terminal is not supported yet"));
        }
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(errors::unimplemented("checkpoint restore is not supported"));
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
        std::fs::create_dir_all(&self.root).map_err(|e| {
            errors::unknown(
                &anyhow::Error::new(e)
                    .context(format!("create runtime root {}", self.root.display())),
            )
        })?;
        let mounted = rootfs::mount(&bundle, &req.rootfs).map_err(|e| errors::unknown(&e))?;
        let undo_mount = |err: ttrpc::Error| {
            if let Some(target) = &mounted {
                if let Err(e) = rootfs::unmount(target) {
                    log::warn!("create {}: {e:#}", req.id);
                }
            }
            err
        };
        let (fds, process_io) =
            io::open(&stdio, opts.io_owner()).map_err(|e| undo_mount(errors::unknown(&e)))?;
        let container = Container::create(CreateOptions {
            id: req.id.clone(),
            bundle: bundle.clone(),
            root: self.root.clone(),
            stdio: fds,
        })
        .map_err(|e| undo_mount(errors::runtime(&e)))?;
        let task = Arc::new(Task::new(
            container,
            self.root.clone(),
            bundle,
            stdio,
            mounted,
            Process::new(process_io),
        ));
        let pid = task.pid;
        self.table
            .insert(reservation, task, &req.rootfs, &self.events);
        log::info!("created container {} (init pid {pid})", req.id);
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }
}

fn unsupported<T>(what: &str) -> TtrpcResult<T> {
    log::debug!("{what}: not supported yet");
    Err(errors::unimplemented(format!(
        "{what} is not supported yet"
    )))
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
        let task = self.init_task(&req.id, &req.exec_id)?;
        let pid = task.start(&self.events)?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let task = self.init_task(&req.id, &req.exec_id)?;
        let phase = task.init.phase();
        let exit = phase.exit();
        Ok(StateResponse {
            id: task.id.clone(),
            bundle: task.bundle_str(),
            pid: task.pid,
            status: phase.status().into(),
            stdin: task.stdio.stdin.clone(),
            stdout: task.stdio.stdout.clone(),
            stderr: task.stdio.stderr.clone(),
            terminal: task.stdio.terminal,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map_or(MessageField::none(), |e| {
                MessageField::some(timestamp(e.at))
            }),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    fn wait(&self, ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let task = self.init_task(&req.id, &req.exec_id)?;
        // The client going away (containerd restarting) ends the wait.
        let cancelled = || ctx.cancel_rx.try_recv().is_err_and(|e| e.is_disconnected());
        let exit = task.init.wait(cancelled).ok_or_else(|| {
            errors::status(
                ttrpc::Code::CANCELLED,
                format!("wait for container {}: cancelled", req.id),
            )
        })?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        let task = self.init_task(&req.id, &req.exec_id)?;
        task.kill(req.signal, req.all)?;
        Ok(Empty::default())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let task = self.init_task(&req.id, &req.exec_id)?;
        let exit = task.delete(&self.events)?;
        self.table.remove(&task.id);
        log::info!("deleted container {}", task.id);
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
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
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

    fn exec(&self, _ctx: &TtrpcContext, _req: ExecProcessRequest) -> TtrpcResult<Empty> {
        unsupported("exec")
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: PauseRequest) -> TtrpcResult<Empty> {
        unsupported("pause")
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: ResumeRequest) -> TtrpcResult<Empty> {
        unsupported("resume")
    }

    fn update(&self, _ctx: &TtrpcContext, _req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        unsupported("update")
    }

    fn stats(&self, _ctx: &TtrpcContext, _req: StatsRequest) -> TtrpcResult<StatsResponse> {
        unsupported("stats")
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        let task = self.init_task(&req.id, &req.exec_id)?;
        if req.stdin {
            task.init.close_stdin();
        }
        Ok(Empty::default())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, _req: ResizePtyRequest) -> TtrpcResult<Empty> {
        unsupported("resize_pty (terminal)")
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        unsupported("checkpoint")
    }
}
