//! The runc-compatible command line (the binary invoked as `myshim`): parse the arguments
//! ([`args`]), set up logging ([`log`]), run one command, and report a failure as runc does: the
//! message on stderr (and as an error line in `--log`), exit status 1.

pub mod args;
mod console;
mod events;
mod exec;
mod fds;
mod lifecycle;
mod log;
mod ps;
mod resources;
mod spec;
mod state;
mod time;
mod tty;
mod wait;

use clap::Parser;

use args::{Cli, Command};

/// Run the command line; returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 1,
                _ => 1,
            };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        print!("{}", version_text());
        return 0;
    }
    let Some(command) = &cli.command else {
        eprintln!("myshim: no command given (see myshim --help)");
        return 1;
    };
    let to_file = cli.log.is_some();
    if let Err(e) = log::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("myshim: {e:#}");
        return 1;
    }
    match run(&cli, command) {
        Ok(code) => code,
        Err(e) => {
            let message = format!("{e:#}");
            if to_file {
                ::log::error!("{message}");
            }
            eprintln!("{message}");
            1
        }
    }
}

/// `--version`
fn version_text() -> String {
    format!(
        "myshim version {}\ncommit: {}\nspec: {}\n",
        myshim_shim::contract::info::VERSION,
        myshim_shim::contract::info::REVISION,
        myshim_runtime::features::OCI_VERSION_MAX
    )
}

/// One command; `Ok` carries the exit status (a container's, for attached run and exec).
fn run(cli: &Cli, command: &Command) -> anyhow::Result<i32> {
    let root = cli.root.as_path();
    match command {
        Command::Create(a) => lifecycle::create(cli, &a.common, true).map(|_| 0),
        Command::Start(a) => lifecycle::start(root, &a.id).map(|()| 0),
        Command::Run(a) => lifecycle::run(cli, a),
        Command::State(a) => state::state(root, &a.id).map(|()| 0),
        Command::List(a) => state::list(root, a).map(|()| 0),
        Command::Kill(a) => lifecycle::kill(root, a).map(|()| 0),
        Command::Delete(a) => lifecycle::delete(root, a).map(|()| 0),
        Command::Exec(a) => exec::exec(root, a),
        Command::Ps(a) => ps::ps(root, a).map(|()| 0),
        Command::Pause(a) => resources::pause(root, &a.id).map(|()| 0),
        Command::Resume(a) => resources::resume(root, &a.id).map(|()| 0),
        Command::Update(a) => resources::update(root, a).map(|()| 0),
        Command::Events(a) => events::events(root, a).map(|()| 0),
        Command::Spec(a) => spec::spec(a).map(|()| 0),
        Command::Features => {
            let doc = serde_json::to_string_pretty(&myshim_runtime::features::features())?;
            println!("{doc}");
            Ok(0)
        }
    }
}

/// Load a container, with runc's wording when it does not exist.
fn load(root: &std::path::Path, id: &str) -> anyhow::Result<myshim_runtime::Container> {
    myshim_runtime::Container::load(root, id).map_err(|e| match e {
        myshim_runtime::Error::NotFound(_) => anyhow::anyhow!("container {id} does not exist"),
        other => anyhow::Error::new(other),
    })
}
