//! Exit handling. containerd-shim's signal thread reaps every child (`waitpid(-1)`) and
//! broadcasts the exits; one thread here receives them and routes each: first to the runtime
//! (its hooks and helpers wait through [`myshim_runtime::reaper`]), else to the task table.

use std::sync::Arc;

use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Subscription, Topic};
use myshim_runtime::reaper;

use crate::events::Events;
use crate::table::Table;

/// Stack of the exit thread; it only routes small messages.
const STACK: usize = 128 * 1024;

fn subscribe() -> std::io::Result<Subscription> {
    // Declare the external reaper before any child can exist.
    reaper::use_external_reaper();
    monitor_subscribe(Topic::All)
        .map_err(|e| std::io::Error::other(format!("subscribe to exits: {e}")))
}

fn spawn(
    sub: Subscription,
    mut route: impl FnMut(i32, i32) + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("exits".into())
        .stack_size(STACK)
        .spawn(move || {
            for ExitEvent { subject, exit_code } in sub.rx.iter() {
                if let Subject::Pid(pid) = subject {
                    if !reaper::notify_exit(pid, exit_code) {
                        route(pid, exit_code);
                    }
                }
            }
        })?;
    Ok(())
}

/// The shim daemon's exit thread: runtime waiters first, then the tasks in `table`.
pub fn start(table: Arc<Table>, events: Events) -> std::io::Result<()> {
    let sub = subscribe()?;
    spawn(sub, move |pid, code| {
        table.process_exited(pid, code, &events)
    })
}

/// The `delete` action's forwarder: only the runtime waits for children there.
pub fn forward_to_runtime() -> std::io::Result<()> {
    let sub = subscribe()?;
    spawn(sub, |pid, code| {
        log::debug!("unattributed exit: pid {pid} code {code}")
    })
}
