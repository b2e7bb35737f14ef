//! myshim-shim: the containerd task service (task API v2 over ttrpc) on top of myshim-runtime.
//!
//! [`run`] hands control to containerd-shim, which parses the command line and calls back into
//! [`shim::MyShim`] for the `start` and `delete` actions and for the daemon, whose ttrpc task
//! service is [`service::Service`].

pub mod console;
pub mod control;
pub mod errors;
pub mod events;
pub mod exec;
pub mod exits;
pub mod io;
pub mod ioloop;
pub mod logger;
pub mod metrics;
pub mod oom;
pub mod options;
pub mod process;
pub mod rootfs;
pub mod service;
pub mod shim;
pub mod table;
pub mod task;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.myshim.v2";

/// Run the shim (any action); returns only when the action is done.
pub fn run() {
    containerd_shim::run::<shim::MyShim>(RUNTIME_ID, None)
}
