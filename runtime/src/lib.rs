//! myshim-runtime: an OCI runtime as a library.
//!
//! It knows OCI bundles and Linux, nothing of containerd. The parent side (create, start, kill,
//! delete, ...) runs inside the caller's process; the init side runs in a re-executed copy of the
//! caller's binary (`<exe> init`, see [`init::main`]) that sets up namespaces, mounts and
//! credentials before it execs the container's process. State lives on disk under a runtime root
//! so that a later process can still kill and delete a container.

pub mod cgroups;
pub mod checkpoint;
pub mod container;
pub mod error;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod init;
pub mod namespaces;
pub mod nofile;
pub mod reaper;
pub mod rootfs;
pub mod sealed;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod state;
pub mod sync;
pub mod validate;

pub use container::{Container, CreateOptions, Extras, Stdio};
pub use error::{Error, Result};
pub use exec::{ExecOptions, ExecProcess};
pub use state::Status;
