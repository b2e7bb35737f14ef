//! The runtime's error type: every failure says what was being done and keeps its cause.

use std::fmt;

/// Runtime errors. `Init` carries an error reported by the container's init process verbatim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle or its config.json is invalid or asks for something we do not support.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A container with this id already exists.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// No container with this id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The operation is not legal in the container's current state.
    #[error("container {id} is {status}: cannot {op}")]
    BadState {
        /// container id
        id: String,
        /// current status
        status: String,
        /// what was asked
        op: &'static str,
    },
    /// The init process reported an error while setting up the container.
    #[error("{0}")]
    Init(String),
    /// A facility the operation needs is missing on this host (criu for checkpoint/restore).
    #[error("{0}")]
    Unavailable(String),
    /// Any other failure, with its context chain.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Result with the runtime's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Build an [`Error::InvalidConfig`] from anything printable.
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Error::InvalidConfig(msg.to_string())
    }
}
