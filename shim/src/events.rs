//! Task events to containerd: RPCs enqueue them on a channel (never blocking), and one publisher
//! thread forwards them in order over ttrpc. A failed publish is retried once on a fresh
//! connection (containerd may have restarted), then logged and dropped.

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::protos::types::mount::Mount;
use containerd_shim::publisher::RemotePublisher;

use crate::io::StdioPaths;
use crate::process::Exit;

/// Deadline of one forward call.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

enum Msg {
    Event(&'static str, Box<dyn MessageDyn>),
    Flush(mpsc::SyncSender<()>),
}

/// Handle for enqueueing events; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: Sender<Msg>,
}

impl Events {
    /// Start the publisher thread for `namespace`. `ttrpc_address` is used to reconnect.
    pub fn start(
        publisher: RemotePublisher,
        namespace: String,
        ttrpc_address: Option<String>,
    ) -> std::io::Result<Events> {
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            publisher,
            namespace,
            ttrpc_address,
        };
        std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || worker.run(rx))?;
        Ok(Events { tx })
    }

    /// An `Events` whose messages go nowhere (for tests).
    #[cfg(test)]
    pub fn discard() -> Events {
        let (tx, rx) = mpsc::channel::<Msg>();
        std::thread::spawn(move || {
            for msg in rx {
                if let Msg::Flush(done) = msg {
                    let _ = done.send(());
                }
            }
        });
        Events { tx }
    }

    fn send(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        if self.tx.send(Msg::Event(topic, event)).is_err() {
            log::error!("event publisher is gone; dropping {topic}");
        }
    }

    /// Wait (at most `timeout`) until everything enqueued so far has been handled.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(done_tx)).is_ok() && done_rx.recv_timeout(timeout).is_err() {
            log::warn!("events not flushed within {timeout:?}");
        }
    }

    /// /tasks/create
    pub fn task_create(
        &self,
        id: &str,
        bundle: &str,
        rootfs: &[Mount],
        stdio: &StdioPaths,
        pid: u32,
    ) {
        let event = TaskCreate {
            container_id: id.into(),
            bundle: bundle.into(),
            rootfs: rootfs.to_vec(),
            io: MessageField::some(TaskIO {
                stdin: stdio.stdin.clone(),
                stdout: stdio.stdout.clone(),
                stderr: stdio.stderr.clone(),
                terminal: stdio.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        };
        self.send(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/start
    pub fn task_start(&self, id: &str, pid: u32) {
        let event = TaskStart {
            container_id: id.into(),
            pid,
            ..Default::default()
        };
        self.send(topics::TASK_START_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/exec-added
    pub fn task_exec_added(&self, id: &str, exec_id: &str) {
        let event = TaskExecAdded {
            container_id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/exec-started
    pub fn task_exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        let event = TaskExecStarted {
            container_id: id.into(),
            exec_id: exec_id.into(),
            pid,
            ..Default::default()
        };
        self.send(topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/exit (`exec_id` is the container id for the init)
    pub fn task_exit(&self, id: &str, exec_id: &str, pid: u32, exit: &Exit) {
        let event = TaskExit {
            container_id: id.into(),
            id: exec_id.into(),
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        };
        self.send(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/delete
    pub fn task_delete(&self, id: &str, exec_id: &str, pid: u32, exit: &Exit) {
        let event = TaskDelete {
            container_id: id.into(),
            id: exec_id.into(),
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        };
        self.send(topics::TASK_DELETE_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/paused
    pub fn task_paused(&self, id: &str) {
        let event = containerd_shim::protos::events::task::TaskPaused {
            container_id: id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_PAUSED_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/resumed
    pub fn task_resumed(&self, id: &str) {
        let event = containerd_shim::protos::events::task::TaskResumed {
            container_id: id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_RESUMED_EVENT_TOPIC, Box::new(event));
    }

    /// /tasks/oom
    pub fn task_oom(&self, id: &str) {
        let event = containerd_shim::protos::events::task::TaskOOM {
            container_id: id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_OOM_EVENT_TOPIC, Box::new(event));
    }
}

/// A protobuf timestamp for `at`.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

struct Worker {
    publisher: RemotePublisher,
    namespace: String,
    ttrpc_address: Option<String>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        for msg in rx {
            match msg {
                Msg::Event(topic, event) => self.publish(topic, event),
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn publish(&mut self, topic: &str, event: Box<dyn MessageDyn>) {
        let ctx = || context::with_duration(PUBLISH_TIMEOUT);
        let Err(first) = self
            .publisher
            .publish(ctx(), topic, &self.namespace, event.clone_box())
        else {
            return;
        };
        let retried = self.reconnect().and_then(|()| {
            self.publisher
                .publish(ctx(), topic, &self.namespace, event)
                .map_err(|e| e.to_string())
        });
        if let Err(second) = retried {
            log::error!("publish {topic}: {first}; retry: {second}");
        }
    }

    fn reconnect(&mut self) -> Result<(), String> {
        let addr = self
            .ttrpc_address
            .as_deref()
            .ok_or_else(|| "no ttrpc address to reconnect to".to_string())?;
        self.publisher = RemotePublisher::new(addr).map_err(|e| format!("reconnect: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        let ts = timestamp(at);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123));
        assert_eq!(timestamp(UNIX_EPOCH).seconds, 0);
    }

    #[test]
    fn flush_returns_after_queue_drains() {
        let ev = Events::discard();
        ev.task_start("c", 1);
        ev.flush(Duration::from_secs(5));
    }
}
