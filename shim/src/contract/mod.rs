//! What a shim process owes containerd, in one place (containerd's `core/runtime/v2/README.md`
//! read against this code):
//!
//! | invocation                         | who runs it                       | module        |
//! |------------------------------------|-----------------------------------|---------------|
//! | `-v` / `-version`                  | users, tooling                    | [`info`]      |
//! | `-info` (options `Any` on stdin)   | containerd 2.x before task create | [`info`]      |
//! | `-namespace N -id I -address A … start` (stdin: options or `BootstrapParams`) | containerd, per new task | [`start`], answer in [`bootstrap`] |
//! | `-namespace N -id I -address A [-bundle B] delete` | containerd, after a daemon died | [`delete`] |
//! | `-namespace N -id I -address A -socket S` (fd 3: the socket) | the `start` action | [`daemon`], methods in [`serve`] |
//!
//! Flags follow Go's `flag` rules ([`flags`]); the socket naming is containerd's ([`socket`]).
//! Generations: containerd 1.6 wants a plain address from `start` and speaks task API v2;
//! 1.7+ sets `MAX_SHIM_VERSION` and takes the JSON bootstrap; 2.3+ writes `BootstrapParams` and
//! gets task API v3 (see [`bootstrap`]). The daemon serves v2 and v3 alike.

pub mod bootstrap;
pub mod daemon;
pub mod delete;
pub mod flags;
pub mod info;
pub mod serve;
pub mod socket;
pub mod start;

use std::io::Write;

/// Run the shim for the process's command line; returns the exit status.
pub fn run() -> i32 {
    let program = std::env::args()
        .next()
        .and_then(|p| p.rsplit('/').next().map(str::to_string))
        .unwrap_or_else(|| "containerd-shim-myshim-v2".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match flags::parse(&args) {
        Ok(f) => f,
        Err(e) => return fail(&program, &e),
    };
    match dispatch(&program, &flags) {
        Ok(()) => 0,
        Err(e) => fail(&program, &e),
    }
}

fn fail(program: &str, e: &anyhow::Error) -> i32 {
    log::error!("{e:#}");
    let _ = writeln!(std::io::stderr(), "{program}: {e:#}");
    1
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

fn dispatch(program: &str, flags: &flags::Flags) -> anyhow::Result<()> {
    if flags.version {
        return write_stdout(info::version_text(program).as_bytes());
    }
    if flags.info {
        return write_stdout(&info::run()?);
    }
    anyhow::ensure!(
        !flags.namespace.is_empty(),
        "shim namespace cannot be empty (-namespace)"
    );
    match flags.action.as_str() {
        "start" => write_stdout(start::run(flags)?.as_bytes()),
        "delete" => write_stdout(&delete::run(flags)?),
        "" => {
            let signals = daemon::block_signals()?;
            daemon::run(flags, signals)
        }
        other => anyhow::bail!("unknown action {other:?} (start, delete, or none for the daemon)"),
    }
}
