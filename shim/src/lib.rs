//! myshim-shim: the containerd task service (task API v2 and v3 over ttrpc) on top of
//! myshim-runtime.
//!
//! [`run`] is the shim process: [`contract`] holds everything a shim owes containerd (flags,
//! the `start` and `delete` actions, the bootstrap answer, the daemon's loop and signals); the
//! daemon's task service is [`service::Service`].

pub mod checkpoint;
pub mod console;
pub mod contract;
pub mod control;
pub mod errors;
pub mod events;
pub mod exec;
pub mod io;
pub mod ioloop;
pub mod logger;
pub mod metrics;
pub mod oom;
pub mod options;
pub mod process;
pub mod rootfs;
pub mod service;
pub mod table;
pub mod task;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.myshim.v2";

/// Parent of the runtime roots; each namespace gets `<RUNTIME_ROOT>/<namespace>`.
pub const RUNTIME_ROOT: &str = "/run/myshim";

/// The runtime root for `namespace`.
pub fn runtime_root(namespace: &str) -> std::path::PathBuf {
    std::path::Path::new(RUNTIME_ROOT).join(namespace)
}

/// Run the shim (any action); returns the process's exit status.
pub fn run() -> i32 {
    contract::run()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_root_is_per_namespace() {
        assert_eq!(
            super::runtime_root("k8s.io"),
            std::path::Path::new("/run/myshim/k8s.io")
        );
    }
}
