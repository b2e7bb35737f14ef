//! The command line as plain data: runc's global flags and one struct per subcommand (clap
//! derive). Nothing here acts; `super::main` dispatches on [`Command`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `myshim [global flags] <command> ...`
#[derive(Debug, Parser)]
#[command(
    name = "myshim",
    about = "myshim: a runc-compatible command line over the myshim OCI runtime",
    disable_version_flag = true
)]
pub struct Cli {
    /// Where container state lives (`<root>/<id>/`); the shim uses `/run/myshim/<namespace>`.
    #[arg(long, global = true, default_value = "/run/myshim")]
    pub root: PathBuf,
    /// Log to this file (appended) instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log at debug level.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use the systemd cgroup driver (`cgroupsPath` of the form `slice:prefix:name`).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// runc's rootless mode: `true`, `false` or `auto` (default). Accepted for compatibility:
    /// myshim decides from the caller's rights and the spec's user namespace.
    #[arg(long, value_enum, default_value_t = Rootless::Auto)]
    pub rootless: Rootless,
    /// Accepted for runc compatibility (checkpoint/restore is not supported).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    pub version: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Values of the global `--rootless`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rootless {
    /// rootless
    True,
    /// not rootless
    False,
    /// rootless when not run as root
    Auto,
}

/// Log line formats (runc's `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time=... level=... msg=...`
    Text,
    /// one JSON object per line: `level`, `msg`, `time`
    Json,
}

/// Output formats of `list` and `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// aligned columns
    Table,
    /// JSON
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (its process waits for `start`).
    Create(Create),
    /// Start the user process of a created container.
    Start(Id),
    /// Create and start a container; without -d wait for it and exit with its status.
    Run(Run),
    /// Print the state of a container as JSON.
    State(Id),
    /// List containers.
    #[command(alias = "ls")]
    List(List),
    /// Send a signal to the init (or with --all to every process) of a container.
    Kill(Kill),
    /// Delete a container.
    Delete(Delete),
    /// Run a new process in a running container.
    Exec(Exec),
    /// List the processes of a container.
    Ps(Ps),
    /// Freeze every process of a container.
    Pause(Id),
    /// Thaw a paused container.
    Resume(Id),
    /// Change the resource limits of a container.
    Update(Update),
    /// Print resource usage (--stats: once) of a container as JSON events.
    Events(Events),
    /// Write a default config.json into a bundle.
    Spec(SpecArgs),
    /// Print the runtime's OCI features document.
    Features,
}

/// A container id alone.
#[derive(Debug, Args)]
pub struct Id {
    /// Container id.
    pub id: String,
}

/// What create and run share.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle directory (config.json, rootfs).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket the pty master is sent to (SCM_RIGHTS) when process.terminal is true.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Pass fds 3 .. 3+N-1 (after any LISTEN_FDS) on to the container process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility; the rootfs is always entered with pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; no session keyring is created anyway.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Container id.
    pub id: String,
}

/// `create`
#[derive(Debug, Args)]
pub struct Create {
    /// Shared with run.
    #[command(flatten)]
    pub common: CreateArgs,
}

/// `run`
#[derive(Debug, Args)]
pub struct Run {
    /// Shared with create.
    #[command(flatten)]
    pub common: CreateArgs,
    /// Detach: return once the container runs.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container after it exits (attached run).
    #[arg(long)]
    pub keep: bool,
}

/// `list`
#[derive(Debug, Args)]
pub struct List {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `kill`
#[derive(Debug, Args)]
pub struct Kill {
    /// Signal every process of the container.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Container id.
    pub id: String,
    /// Signal name (KILL, SIGKILL) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `delete`
#[derive(Debug, Args)]
pub struct Delete {
    /// Kill a running container first; no error for a missing one.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container id.
    pub id: String,
}

/// `exec`
#[derive(Debug, Args)]
pub struct Exec {
    /// Unix socket the pty master is sent to.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Add an environment entry (KEY=value).
    #[arg(short = 'e', long)]
    pub env: Vec<String>,
    /// Allocate a pseudo terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// uid[:gid]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// The process as an OCI process JSON file (the command line then gives only the id).
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Detach: return once the process runs.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Add a capability (CAP_...).
    #[arg(short = 'c', long)]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass fds 3 .. 3+N-1 on to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Exec even when the container is paused.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Container id.
    pub id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `ps`
#[derive(Debug, Args)]
pub struct Ps {
    /// Output format: a table from ps(1), or the pids as JSON.
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Container id.
    pub id: String,
    /// Arguments for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `update`
#[derive(Debug, Args)]
pub struct Update {
    /// An OCI linux.resources JSON file ("-": stdin); flags override it.
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU CFS quota in microseconds (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares.
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPUs allowed (cpuset).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed (cpuset).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks (-1 or 0: none).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight.
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds per period (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU CFS burst in microseconds.
    #[arg(long)]
    pub cpu_burst: Option<u64>,
    /// 1: SCHED_IDLE for the cgroup, 0: the default.
    #[arg(long)]
    pub cpu_idle: Option<i64>,
    /// Deprecated (kernel memory limits are gone): accepted and ignored with a warning.
    #[arg(long, hide = true)]
    pub kernel_memory: Option<String>,
    /// Deprecated (kernel memory limits are gone): accepted and ignored with a warning.
    #[arg(long, hide = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Intel RDT L3 cache schema (not supported: refused).
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported: refused).
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    /// Container id.
    pub id: String,
}

/// `events`
#[derive(Debug, Args)]
pub struct Events {
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats events (Go duration: 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container id.
    pub id: String,
}

/// `spec`
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Where to write config.json.
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// A spec for a rootless container (user namespace mapping the caller).
    #[arg(long)]
    pub rootless: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["myshim"].iter().chain(argv))
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_rootless_takes_runcs_values() {
        for (value, want) in [
            ("true", Rootless::True),
            ("false", Rootless::False),
            ("auto", Rootless::Auto),
        ] {
            let cli = parse(&["--rootless", value, "list"]).expect(value);
            assert_eq!(cli.rootless, want);
        }
        assert_eq!(parse(&["list"]).unwrap().rootless, Rootless::Auto);
        assert!(parse(&["--rootless", "maybe", "list"]).is_err());
        // spec's own --rootless (a switch) is another flag
        let cli = parse(&["--rootless", "false", "spec", "--rootless"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Spec(SpecArgs { rootless: true, .. }))
        ));
    }
}
