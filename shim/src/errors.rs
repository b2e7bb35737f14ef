//! Mapping of failures to ttrpc statuses: containerd turns the status code into its own error
//! kind (not found, already exists, ...) and prints the message verbatim, so every message
//! carries the full cause chain.

use containerd_shim::protos::ttrpc::{self, Code};
use myshim_runtime::Error as RuntimeError;

/// A ttrpc error with `code` and `msg`.
pub fn status(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::error::get_rpc_status(code, msg)
}

/// NOT_FOUND
pub fn not_found(msg: impl ToString) -> ttrpc::Error {
    status(Code::NOT_FOUND, msg)
}

/// FAILED_PRECONDITION
pub fn failed_precondition(msg: impl ToString) -> ttrpc::Error {
    status(Code::FAILED_PRECONDITION, msg)
}

/// INVALID_ARGUMENT
pub fn invalid(msg: impl ToString) -> ttrpc::Error {
    status(Code::INVALID_ARGUMENT, msg)
}

/// UNIMPLEMENTED
pub fn unimplemented(msg: impl ToString) -> ttrpc::Error {
    status(Code::UNIMPLEMENTED, msg)
}

/// UNKNOWN: a failure without a more specific code; `{:#}` prints an anyhow chain in full.
pub fn unknown(err: &anyhow::Error) -> ttrpc::Error {
    status(Code::UNKNOWN, format!("{err:#}"))
}

/// A ttrpc error as one log line: `CODE: message`.
pub fn describe(err: &ttrpc::Error) -> String {
    match err {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// The status code for a runtime error.
pub fn runtime_code(err: &RuntimeError) -> Code {
    match err {
        RuntimeError::NotFound(_) => Code::NOT_FOUND,
        RuntimeError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        RuntimeError::BadState { .. } => Code::FAILED_PRECONDITION,
        RuntimeError::InvalidConfig(_) => Code::INVALID_ARGUMENT,
        RuntimeError::Unavailable(_) => Code::FAILED_PRECONDITION,
        RuntimeError::Init(_) | RuntimeError::Other(_) => Code::UNKNOWN,
    }
}

/// A runtime error as a ttrpc status; the message is the error's full text.
pub fn runtime(err: &RuntimeError) -> ttrpc::Error {
    status(runtime_code(err), format!("{err:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(err: ttrpc::Error) -> (Code, String) {
        match err {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn runtime_errors_map_to_codes() {
        let cases = [
            (RuntimeError::NotFound("c1".into()), Code::NOT_FOUND),
            (
                RuntimeError::AlreadyExists("c1".into()),
                Code::ALREADY_EXISTS,
            ),
            (
                RuntimeError::BadState {
                    id: "c1".into(),
                    status: "running".into(),
                    op: "delete",
                },
                Code::FAILED_PRECONDITION,
            ),
            (RuntimeError::invalid("no process"), Code::INVALID_ARGUMENT),
            (RuntimeError::Init("boom".into()), Code::UNKNOWN),
            (RuntimeError::Other(anyhow::anyhow!("x")), Code::UNKNOWN),
        ];
        for (err, code) in cases {
            assert_eq!(runtime_code(&err), code, "{err}");
            assert_eq!(parts(runtime(&err)).0, code);
        }
    }

    #[test]
    fn messages_keep_the_whole_chain() {
        let err = RuntimeError::Other(
            anyhow::anyhow!("No such file or directory").context("exec \"nosuch\""),
        );
        assert_eq!(
            parts(runtime(&err)).1,
            "exec \"nosuch\": No such file or directory"
        );
        let err = RuntimeError::Init("exec \"nosuch\": No such file or directory".into());
        assert_eq!(
            parts(runtime(&err)),
            (
                Code::UNKNOWN,
                "exec \"nosuch\": No such file or directory".to_string()
            )
        );
        let err = RuntimeError::BadState {
            id: "c1".into(),
            status: "running".into(),
            op: "delete",
        };
        assert_eq!(
            parts(runtime(&err)).1,
            "container c1 is running: cannot delete"
        );
    }

    #[test]
    fn describe_is_one_line() {
        assert_eq!(
            describe(&not_found("process already finished")),
            "NOT_FOUND: process already finished"
        );
    }

    #[test]
    fn anyhow_chains_are_printed_in_full() {
        let err = anyhow::anyhow!("permission denied").context("open stdout fifo /x");
        assert_eq!(
            parts(unknown(&err)),
            (
                Code::UNKNOWN,
                "open stdout fifo /x: permission denied".into()
            )
        );
    }
}
