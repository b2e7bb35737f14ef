//! Task events to containerd: RPCs enqueue them on a channel (never blocking), and one publisher
//! thread forwards them in order over ttrpc. An event containerd could not be reached for
//! (restarting, say) is retried on a fresh connection, with a growing pause, until containerd
//! takes it or the shim exits: no TaskExit is lost to a containerd restart. An event containerd
//! answered with an error is logged and dropped (retrying would not change the answer).
//!
//! Each event is encoded when it is enqueued and wrapped in its `Any` by name here, not through
//! protobuf reflection: reflection would parse every descriptor the event depends on into the
//! heap of each shim (a few hundred KiB per container on the host).

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim::EventsClient;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context;
use containerd_shim::protos::types::mount::Mount;

use crate::io::StdioPaths;
use crate::process::Exit;

/// Deadline of one forward call.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the connection to containerd stays open after the last event.
const IDLE_DISCONNECT: Duration = Duration::from_secs(2);

/// First and longest pause between tries of an event containerd could not be reached for.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// An event ready to send: its topic and its `Any`.
struct Encoded {
    topic: &'static str,
    any: Any,
}

enum Msg {
    Event(Encoded),
    Flush(mpsc::SyncSender<()>),
}

/// The `Any` of a containerd event message (`containerd.events.<name>`).
fn to_any(name: &str, event: &impl Message) -> Option<Any> {
    match event.write_to_bytes() {
        Ok(value) => Some(Any {
            type_url: format!("containerd.events.{name}"),
            value,
            ..Default::default()
        }),
        Err(e) => {
            log::error!("encode event {name}: {e}");
            None
        }
    }
}

/// Handle for enqueueing events; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: Sender<Msg>,
}

impl Events {
    /// Start the publisher thread for `namespace`, which connects to containerd's ttrpc
    /// address (`TTRPC_ADDRESS`) when the first event is sent.
    pub fn start(namespace: String, ttrpc_address: Option<String>) -> std::io::Result<Events> {
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            client: None,
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

    fn send(&self, topic: &'static str, name: &str, event: &impl Message) {
        let Some(any) = to_any(name, event) else {
            return;
        };
        if self.tx.send(Msg::Event(Encoded { topic, any })).is_err() {
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
        self.send(topics::TASK_CREATE_EVENT_TOPIC, "TaskCreate", &event);
    }

    /// /tasks/start
    pub fn task_start(&self, id: &str, pid: u32) {
        let event = TaskStart {
            container_id: id.into(),
            pid,
            ..Default::default()
        };
        self.send(topics::TASK_START_EVENT_TOPIC, "TaskStart", &event);
    }

    /// /tasks/exec-added
    pub fn task_exec_added(&self, id: &str, exec_id: &str) {
        let event = TaskExecAdded {
            container_id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_EXEC_ADDED_EVENT_TOPIC, "TaskExecAdded", &event);
    }

    /// /tasks/exec-started
    pub fn task_exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        let event = TaskExecStarted {
            container_id: id.into(),
            exec_id: exec_id.into(),
            pid,
            ..Default::default()
        };
        self.send(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            "TaskExecStarted",
            &event,
        );
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
        self.send(topics::TASK_EXIT_EVENT_TOPIC, "TaskExit", &event);
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
        self.send(topics::TASK_DELETE_EVENT_TOPIC, "TaskDelete", &event);
    }

    /// /tasks/paused
    pub fn task_paused(&self, id: &str) {
        let event = containerd_shim::protos::events::task::TaskPaused {
            container_id: id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_PAUSED_EVENT_TOPIC, "TaskPaused", &event);
    }

    /// /tasks/resumed
    pub fn task_resumed(&self, id: &str) {
        let event = containerd_shim::protos::events::task::TaskResumed {
            container_id: id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_RESUMED_EVENT_TOPIC, "TaskResumed", &event);
    }

    /// /tasks/oom
    pub fn task_oom(&self, id: &str) {
        let event = containerd_shim::protos::events::task::TaskOOM {
            container_id: id.into(),
            ..Default::default()
        };
        self.send(topics::TASK_OOM_EVENT_TOPIC, "TaskOOM", &event);
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

/// Why a publish failed.
enum Failure {
    /// containerd answered with an error.
    Refused(String),
    /// containerd was not reached (or did not answer): worth another try.
    Unreachable(String),
}

struct Worker {
    client: Option<EventsClient>,
    namespace: String,
    ttrpc_address: Option<String>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let msg = match rx.recv_timeout(IDLE_DISCONNECT) {
                Ok(msg) => msg,
                // Quiet: close the connection (ttrpc-rs's client threads poll every 10 ms while
                // connected, which would cost every idle shim CPU time); the next event
                // reconnects.
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.client = None;
                    match rx.recv() {
                        Ok(msg) => msg,
                        Err(_) => return,
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            match msg {
                Msg::Event(event) => self.publish(event),
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn publish(&mut self, event: Encoded) {
        let req = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: MessageField::some(timestamp(SystemTime::now())),
                namespace: self.namespace.clone(),
                topic: event.topic.to_string(),
                event: MessageField::some(event.any),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut pause = RETRY_FIRST;
        let mut tries = 0u32;
        loop {
            match self.forward(&req) {
                Ok(()) => {
                    if tries > 0 {
                        log::info!("published {} after {tries} failed tries", event.topic);
                    }
                    return;
                }
                Err(Failure::Refused(e)) => {
                    log::error!("publish {}: containerd refused it: {e}", event.topic);
                    return;
                }
                Err(Failure::Unreachable(e)) => {
                    // containerd may be restarting: a fresh connection, after a pause.
                    if tries == 0 {
                        log::warn!(
                            "publish {}: {e}; retrying until containerd is back",
                            event.topic
                        );
                    }
                    tries += 1;
                    self.client = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    fn forward(&mut self, req: &ForwardRequest) -> Result<(), Failure> {
        if self.client.is_none() {
            self.client = Some(self.connect().map_err(Failure::Unreachable)?);
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| Failure::Unreachable("no connection".into()))?;
        client
            .forward(context::with_duration(PUBLISH_TIMEOUT), req)
            .map(|_| ())
            .map_err(|e| match e {
                containerd_shim::protos::ttrpc::Error::RpcStatus(s) => {
                    Failure::Refused(format!("{:?}: {}", s.code(), s.message()))
                }
                other => Failure::Unreachable(other.to_string()),
            })
    }

    fn connect(&self) -> Result<EventsClient, String> {
        let addr = self
            .ttrpc_address
            .as_deref()
            .ok_or_else(|| "no ttrpc address (TTRPC_ADDRESS) to publish to".to_string())?;
        let fd =
            containerd_shim::util::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let client = containerd_shim::protos::ttrpc::Client::new(fd)
            .map_err(|e| format!("ttrpc client for {addr}: {e}"))?;
        Ok(EventsClient::new(client))
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
    fn events_are_wrapped_by_name() {
        let ev = TaskStart {
            container_id: "c1".into(),
            pid: 7,
            ..Default::default()
        };
        let any = to_any("TaskStart", &ev).unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskStart");
        assert_eq!(TaskStart::parse_from_bytes(&any.value).unwrap(), ev);
    }

    #[test]
    fn flush_returns_after_queue_drains() {
        let ev = Events::discard();
        ev.task_start("c", 1);
        ev.flush(Duration::from_secs(5));
    }
}
