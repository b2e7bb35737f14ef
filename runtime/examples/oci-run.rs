//! A developer's tool: run a bundle with the runtime library alone, without containerd.
//!
//! `oci-run <bundle> <id>` creates the container under /run/myshim-dev, starts it, waits for it
//! and deletes it, printing the exit status. The binary doubles as the init (`oci-run init`).

use std::path::PathBuf;
use std::time::Instant;

use myshim_runtime::{Container, CreateOptions, Stdio};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("init") {
        myshim_runtime::init::main();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: oci-run <bundle> <id>");
        std::process::exit(2);
    }
    // The init is reparented to us when its first child exits.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("set subreaper: {e}");
    }
    let t = Instant::now();
    let opts = CreateOptions {
        id: args[2].clone(),
        bundle: PathBuf::from(&args[1]),
        root: PathBuf::from("/run/myshim-dev"),
        stdio: Stdio::default_inherit(),
        systemd_cgroup: false,
    };
    let mut c = match Container::create(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("create: {e:#}");
            std::process::exit(1);
        }
    };
    let created = t.elapsed();
    if let Err(e) = c.start() {
        eprintln!("start: {e:#}");
    }
    let started = t.elapsed();
    if let Ok(cmd) = std::env::var("OCI_RUN_EXEC") {
        let mut process = oci_spec::runtime::Process::default();
        process.set_args(Some(vec!["sh".into(), "-c".into(), cmd]));
        process.set_env(Some(vec!["PATH=/bin".into()]));
        process.set_capabilities(None);
        let t2 = Instant::now();
        match c.exec(myshim_runtime::ExecOptions {
            process,
            stdio: Stdio::default_inherit(),
        }) {
            Ok(p) => {
                let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p.pid), None);
                eprintln!("exec {:?} exit {st:?}", t2.elapsed());
            }
            Err(e) => eprintln!("exec: {e:#}"),
        }
    }
    let pid = nix::unistd::Pid::from_raw(c.pid());
    let status = nix::sys::wait::waitpid(pid, None);
    eprintln!("create {created:?} start {started:?} exit {status:?}");
    if let Err(e) = c.delete(true) {
        eprintln!("delete: {e:#}");
    }
}
