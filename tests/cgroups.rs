//! End-to-end tests of the cgroup layer through containerd: where a container's processes are
//! in the cgroup2 hierarchy (the unified one of a hybrid host, or the only one on v2), and the
//! systemd cgroup driver's error when systemd is not reachable.
//!
//! Run with `make integration` (a private containerd; see tests/common).

mod common;

use std::time::Duration;

use common::*;

/// The `0::` line of `/proc/<pid>/cgroup` on the host.
fn cgroup2_line(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("0::"))
        .unwrap_or_default()
        .to_string()
}

/// The init and an exec'd process are both in the container's cgroup2 cgroup
/// (`0::/<namespace>/<id>`), on a hybrid host as on v2, as with runc.
#[test]
fn cgroup2_line_is_the_container_path() {
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
    {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let id = unique_id("cg2");
    let _g = Guard(id.clone());
    run_detached(&id, &[], &["sleep", "1000"]);
    let task = wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    let mut exec = spawn_ctr(&["task", "exec", "--exec-id", "sleeper", &id, "sleep", "1000"]);
    let pids = wait_for("the exec'd process", RUN_START_TIMEOUT, || {
        let pids = task_pids(&id);
        (pids.len() == 2).then_some(pids)
    });
    let want = format!("0::/{NAMESPACE}/{id}");
    assert!(
        pids.contains(&task.pid),
        "{pids:?} has the init {}",
        task.pid
    );
    for pid in pids {
        assert_eq!(cgroup2_line(pid), want, "pid {pid}");
    }
    ctr_ok(&["task", "kill", "-a", "-s", "SIGKILL", &id]);
    wait_task_status(&id, "STOPPED", Duration::from_secs(20));
    let _ = exec.wait();
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}
