//! The container lifecycle seen from the parent side: create, start, state, kill, delete.
//!
//! `create` re-executes the caller's binary as the init (see [`crate::init`]) and drives it
//! through the init pipe protocol ([`crate::sync`]); every later operation works from the state
//! on disk ([`crate::state`]) so that any process can perform it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::state::{State, Status};
use crate::Result;

/// The container process's standard streams (`None`: /dev/null).
#[derive(Debug, Default)]
pub struct Stdio {
    /// fd 0
    pub stdin: Option<OwnedFd>,
    /// fd 1
    pub stdout: Option<OwnedFd>,
    /// fd 2
    pub stderr: Option<OwnedFd>,
}

/// What `create` needs.
#[derive(Debug)]
pub struct CreateOptions {
    /// Container id (unique under `root`).
    pub id: String,
    /// The OCI bundle: `config.json` and usually `rootfs/`.
    pub bundle: PathBuf,
    /// Runtime root: container state lives in `<root>/<id>/`.
    pub root: PathBuf,
    /// Standard streams of the container process.
    pub stdio: Stdio,
}

/// A container that exists on disk.
#[derive(Debug)]
pub struct Container {
    state: State,
    root: PathBuf,
}

impl Container {
    /// Create the container: namespaces, cgroup, rootfs, hooks; the init then waits for
    /// [`Container::start`]. On failure nothing is left behind.
    pub fn create(opts: CreateOptions) -> Result<Container> {
        let _ = opts;
        Err(anyhow::anyhow!("create: not implemented").into())
    }

    /// Load a container's state from `<root>/<id>/state.json`.
    pub fn load(root: &std::path::Path, id: &str) -> Result<Container> {
        let _ = (root, id);
        Err(anyhow::anyhow!("load: not implemented").into())
    }

    /// Release the init (it execs the user's process), then run poststart hooks.
    pub fn start(&mut self) -> Result<()> {
        Err(anyhow::anyhow!("start: not implemented").into())
    }

    /// Send `signal` to the init, or with `all` to every process of the container.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        let _ = (signal, all);
        Err(anyhow::anyhow!("kill: not implemented").into())
    }

    /// Remove the container: with `force` kill what still runs; then cgroup, state directory,
    /// poststop hooks. Deleting a container that is already gone is not an error.
    pub fn delete(self, force: bool) -> Result<()> {
        let _ = force;
        Err(anyhow::anyhow!("delete: not implemented").into())
    }

    /// The current status (checks that the init still lives).
    pub fn status(&self) -> Status {
        Status::Stopped
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Err(anyhow::anyhow!("pids: not implemented").into())
    }

    /// Host pid of the container's init.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// Container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Runtime root this container lives under.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}
