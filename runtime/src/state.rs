//! The container's state on disk: `<root>/<id>/state.json` and the exec fifo beside it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// being created
    Creating,
    /// created, init waiting for start
    Created,
    /// user process running
    Running,
    /// frozen
    Paused,
    /// init gone
    Stopped,
}

/// What a later process needs to manage the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// container id
    pub id: String,
    /// bundle path
    pub bundle: PathBuf,
    /// host pid of the init
    pub pid: i32,
}
