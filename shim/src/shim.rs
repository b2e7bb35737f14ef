//! The shim binary's entry points as containerd-shim drives them: `start` (spawn or reuse the
//! daemon for this container's group), `delete` (clean up after a dead daemon), and the daemon
//! itself (build the task service, wait for Shutdown).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, DeleteResponse, Error, ExitSignal, Flags, StartOpts};
use myshim_runtime::Container;

use crate::events::{timestamp, Events};
use crate::service::Service;
use crate::table::Table;
use crate::{exits, rootfs, task};

/// Parent of the runtime roots; each namespace gets `<RUNTIME_ROOT>/<namespace>`.
pub const RUNTIME_ROOT: &str = "/run/myshim";

/// The annotation CRI puts on every container of a pod (the pod sandbox's id).
const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// How long the daemon waits for queued events to go out before exiting.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// After SIGTERM: if the orderly exit (event flush, ttrpc server shutdown) takes longer than
/// this, the daemon exits anyway.
const SIGNAL_EXIT_GRACE: Duration = Duration::from_secs(5);

/// The runtime root for `namespace`.
pub fn runtime_root(namespace: &str) -> PathBuf {
    Path::new(RUNTIME_ROOT).join(namespace)
}

/// The shim, as containerd-shim's [`containerd_shim::Shim`].
pub struct MyShim {
    id: String,
    namespace: String,
    /// containerd's address (the shim's socket name is derived from it).
    address: String,
    /// The daemon's own socket (`-socket`, empty in the start and delete actions).
    socket: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
    events: OnceLock<Events>,
}

/// The grouping key for `start`: the pod's sandbox id from the bundle's config.json when CRI set
/// one (all containers of a pod share one shim), else the container id.
fn grouping(id: &str, config_json: &Path) -> String {
    let sandbox = std::fs::read(config_json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.get("annotations")?
                .get(SANDBOX_ID_ANNOTATION)?
                .as_str()
                .map(str::to_string)
        });
    match sandbox {
        Some(s) if !s.is_empty() => s,
        _ => id.to_string(),
    }
}

impl containerd_shim::Shim for MyShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            // containerd runs every action with the bundle as working directory.
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        MyShim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            address: args.address.clone(),
            socket: args.socket.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
            events: OnceLock::new(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let group = grouping(&opts.id, &self.bundle.join("config.json"));
        let (_pid, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        exits::forward_to_runtime().map_err(|e| Error::Other(e.to_string()))?;
        let root = runtime_root(&self.namespace);
        let mut pid = 0;
        if task::has_state(&root, &self.id) {
            let container = Container::load(&root, &self.id);
            match container {
                Ok(c) => {
                    pid = u32::try_from(c.pid()).unwrap_or(0);
                    c.delete(true).map_err(|e| {
                        Error::Other(format!("delete container {}: {e:#}", self.id))
                    })?;
                }
                Err(myshim_runtime::Error::NotFound(_)) => {}
                Err(e) => return Err(Error::Other(format!("load container {}: {e:#}", self.id))),
            }
        }
        rootfs::unmount(&self.bundle.join("rootfs")).map_err(|e| Error::Other(format!("{e:#}")))?;
        self.remove_dead_socket();
        Ok(DeleteResponse {
            pid,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.wait_inner()
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        self.task_service(publisher)
    }
}

impl MyShim {
    /// A daemon that died (killed, crashed) leaves its socket behind; containerd runs the
    /// delete action right after. Remove the socket unless a daemon still answers on it (a pod's
    /// shim serving other containers).
    fn remove_dead_socket(&self) {
        let group = grouping(&self.id, &self.bundle.join("config.json"));
        let address = containerd_shim::socket_address(&self.address, &self.namespace, &group);
        let path = address.strip_prefix("unix://").unwrap_or(&address);
        if Path::new(path).exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
            if let Err(e) = std::fs::remove_file(path) {
                log::warn!("remove the dead shim's socket {path}: {e}");
            }
        }
    }

    fn wait_inner(&mut self) {
        self.exit.wait();
        if let Some(events) = self.events.get() {
            events.flush(FLUSH_TIMEOUT);
        }
        // containerd-shim removes the socket only if it can still read the bundle's address
        // file, which containerd may already have removed (after SIGTERM, say): do it here.
        if let Some(path) = self.socket.strip_prefix("unix://") {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("remove socket {path}: {e}");
                }
            }
        }
    }

    fn task_service(&self, publisher: RemotePublisher) -> Service {
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").ok();
        // Our publisher sends events without protobuf reflection (see events.rs); the generic
        // one is closed at once.
        drop(publisher);
        let events = match Events::start(self.namespace.clone(), ttrpc_address) {
            Ok(ev) => ev,
            // Without threads the shim cannot work; containerd sees the daemon exit.
            Err(e) => fatal(&format!("start event publisher: {e}")),
        };
        let _ = self.events.set(events.clone());
        let table = Arc::new(Table::default());
        if let Err(e) = exits::start(table.clone(), events.clone()) {
            fatal(&format!("start exit monitor: {e}"));
        }
        if let Err(e) = exit_on_signals(self.exit.clone()) {
            fatal(&format!("handle SIGTERM: {e}"));
        }
        // Compiled seccomp filters are shared by the host's shims (one per container).
        myshim_runtime::seccomp::set_cache_dir(Path::new(RUNTIME_ROOT).join("seccomp-cache"));
        Service::new(
            runtime_root(&self.namespace),
            table,
            events,
            self.exit.clone(),
        )
    }
}

/// SIGTERM or SIGINT (host shutdown, an administrator): the daemon exits like containerd's Go
/// shims do on these signals (containerd-shim's own signal loop only logs them, which would
/// leave the shim running until the host's shutdown timeout kills it). Nothing is killed: the
/// containers keep running; [`MyShim::wait`] flushes the queued events first.
fn exit_on_signals(exit: Arc<ExitSignal>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT])?;
    std::thread::Builder::new()
        .name("exit-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("received signal {sig}: exiting (containers keep running)");
                exit.signal();
                std::thread::sleep(SIGNAL_EXIT_GRACE);
                log::warn!("still running {SIGNAL_EXIT_GRACE:?} after signal {sig}: exiting now");
                std::process::exit(0);
            }
        })?;
    Ok(())
}

/// Log and exit: the daemon cannot run without its threads.
fn fatal(msg: &str) -> ! {
    log::error!("{msg}");
    eprintln!("containerd-shim-myshim-v2: {msg}");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_uses_sandbox_id() {
        let dir = std::env::temp_dir().join(format!("myshim-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.json");
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::write(&cfg, r#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","x":"y"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("c1", &cfg), "pod1");
        std::fs::write(&cfg, "not json").unwrap();
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn runtime_root_is_per_namespace() {
        assert_eq!(runtime_root("k8s.io"), Path::new("/run/myshim/k8s.io"));
    }
}
