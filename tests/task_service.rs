//! End-to-end tests of the rest of the task service (issue 3), through containerd and `ctr`:
//! exec (output, exit codes, the container's context, errors, concurrency, stdin), kill of
//! execs and `kill --all`, `task ps` with exec ids, terminals (`-t`, resize), pause/resume,
//! update, metrics, OOM events, close-io, the task states, and the shim's lifetime.
//!
//! Run with `make integration` (a private containerd; see tests/common).
//! `MYSHIM_TEST_RUNTIME=io.containerd.runc.v2 make integration` runs them on runc, to check the
//! tests themselves; the only runtime-dependent expectation is the OOM count (see
//! [`oom_kills_are_reported_as_events`]).
//!
//! What ctr 1.6 cannot do and how the tests get around it:
//! - no `ctr task update`: [`update_changes_the_cgroup_limits`] calls containerd's
//!   `Tasks/Update` over gRPC itself (tests/common/grpc.rs), as containerd's client would;
//! - no way to stop after `Create`: [`task_states_created_running_paused_stopped`] calls
//!   `Tasks/Create` and `Tasks/Start` over gRPC to see CREATED;
//! - no `ctr task resize`: ctr resizes a task's terminal itself, to the size of its own
//!   terminal right after the start and on SIGWINCH; the terminal tests run ctr in a
//!   pseudo-terminal (util-linux `script`) whose size they set with `stty`.
//!
//! The cgroup checks read the container's cgroup files on the host (the container's line of
//! /proc/<pid>/cgroup, the freezer state, the limits an update writes) on cgroup v1 and v2, under
//! the cgroupfs or the systemd driver (`MYSHIM_TEST_CGROUPS=systemd`).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// [`exec_retry_lost`] for a process that prints something on stdout.
fn exec_out(id: &str, exec_id: &str, opts: &[&str], cmd: &[&str]) -> RunOutput {
    exec_retry_lost(id, exec_id, opts, cmd, |o| o.stdout.is_empty())
}

/// `ctr task ps ID`: (pid, INFO column) per process.
fn ps_rows(id: &str) -> Vec<(u32, String)> {
    let out = ctr_ok(&["task", "ps", id]);
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let (pid, info) = l.trim().split_once(char::is_whitespace).unwrap_or((l, ""));
            Some((pid.trim().parse().ok()?, info.trim().to_string()))
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Wait until host process `pid` runs `want` (argv joined by spaces): a process that was just
/// started may still be in the runtime's code before its execve (runc: `runc init`).
fn wait_cmdline(pid: u32, want: &str) {
    let mut last = String::new();
    let ok = poll(EVENT_TIMEOUT, || {
        last = cmdline(pid);
        (last == want).then_some(())
    });
    assert!(ok.is_some(), "pid {pid} runs {last:?}, not {want:?}");
}

/// `ctr task metrics ID` (the table): METRIC → VALUE.
fn metrics(id: &str) -> HashMap<String, String> {
    let out = ctr_ok(&["task", "metrics", id]);
    let mut m = HashMap::new();
    let mut in_table = false;
    for l in out.lines() {
        let mut f = l.split_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else {
            continue;
        };
        if k == "METRIC" {
            in_table = true;
        } else if in_table {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

/// The first of `keys` that `m` has, as a number (v1 names first, then v2's).
fn metric_u64(m: &HashMap<String, String>, keys: &[&str]) -> u64 {
    keys.iter()
        .find_map(|k| m.get(*k))
        .unwrap_or_else(|| panic!("ctr task metrics shows none of {keys:?}: {m:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{keys:?} in {m:?}: {e}"))
}

const CPU_USAGE: &[&str] = &["cpuacct.usage", "cpu.usage_usec"];
const MEMORY_USAGE: &[&str] = &["memory.usage_in_bytes", "memory.usage"];
const PIDS_CURRENT: &[&str] = &["pids.current"];

// ---------------------------------------------------------------------------------------------
// exec

/// `ctr task exec` prints the process's output and exits with its status; containerd
/// publishes exec-added, exec-started and an exit carrying the exec id and status.
#[test]
fn exec_prints_output_and_exit_code() {
    let id = unique_id("exec");
    let _g = Guard(id.clone());
    let task = run_sleeper(&id, &[]);
    let events = EventWatcher::start();

    let out = exec_retry_lost(
        &id,
        "e1",
        &[],
        &["sh", "-c", "echo in-exec; echo to-err >&2; exit 4"],
        |o| o.stdout.is_empty() || o.stderr.is_empty(),
    );
    assert_eq!(out.code, 4, "{out:?}\n{}", containerd_log(&id));
    assert_eq!(out.stdout, "in-exec\n", "{out:?}");
    assert!(out.stderr.contains("to-err"), "{out:?}");

    events.wait_for(&id, "/tasks/exec-added", EVENT_TIMEOUT, |e| {
        e.str("exec_id") == Some("e1")
    });
    let started = events.wait_for(&id, "/tasks/exec-started", EVENT_TIMEOUT, |e| {
        e.str("exec_id") == Some("e1")
    });
    let exit = events.wait_for(&id, "/tasks/exit", EVENT_TIMEOUT, |e| {
        e.str("id") == Some("e1")
    });
    assert_eq!(exit.exit_status(), 4, "{exit:?}");
    let pid = started.body["pid"].as_u64().unwrap_or(0);
    assert!(
        pid > 0 && pid != u64::from(task.pid),
        "exec-started pid: {started:?}"
    );
    assert_eq!(
        exit.body["pid"].as_u64(),
        Some(pid),
        "{exit:?} vs {started:?}"
    );

    // the init is untouched; a second exec works as well
    let out = exec(&id, "e2", &[], &["true"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));
    kill_delete_rm(&id);
}

/// The exec'd process runs in the container: its pid namespace (pid 1 is the init), its
/// cgroup, its environment; `--cwd` and `--user` apply.
#[test]
fn exec_runs_inside_the_container() {
    let id = unique_id("exec-ctx");
    let _g = Guard(id.clone());
    let task = run_sleeper(&id, &["--env", "FOO=bar"]);

    // (not `... && cat`: busybox sh would exec its last command)
    let out = exec_out(
        &id,
        "ns",
        &[],
        &["sh", "-c", "cat /proc/1/cmdline; echo; echo $$; exit 0"],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    let l = lines(&out.stdout);
    assert_eq!(
        l.first(),
        Some(&"sleep\x001000\0"),
        "pid 1 is the init: {out:?}"
    );
    let my_pid: u32 = l.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    assert!(
        my_pid > 1,
        "the exec has a pid of the container's namespace: {out:?}"
    );

    let out = exec_out(&id, "cg", &[], &["cat", "/proc/self/cgroup"]);
    assert_eq!(out.code, 0, "{out:?}");
    let host = std::fs::read_to_string(format!("/proc/{}/cgroup", task.pid)).expect("init cgroup");
    let (inner, init) = (
        container_cgroup_line(&out.stdout),
        container_cgroup_line(&host),
    );
    assert!(
        inner.is_some() && inner == init,
        "exec {inner:?} vs init {init:?}"
    );
    assert!(
        inner
            .as_deref()
            .is_some_and(|l| l.ends_with(&format!(":{}", container_cgroup(&id)))),
        "{inner:?}"
    );

    let out = exec_out(&id, "env", &[], &["sh", "-c", "echo $FOO; echo $PATH"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [
            "bar",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ],
        "{out:?}"
    );

    let out = exec_out(&id, "cwd", &["--cwd", "/tmp"], &["pwd"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "/tmp\n"), "{out:?}");

    let out = exec_out(
        &id,
        "user",
        &["--user", "1000:1000"],
        &["sh", "-c", "id -u; id -g"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(lines(&out.stdout), ["1000", "1000"], "{out:?}");

    kill_delete_rm(&id);
}

/// A missing binary: ctr fails naming it ("no such file", runc's wording: `exec: "/nosuch":
/// stat /nosuch: no such file or directory`), and no process or exec is left over: the exec
/// id can be used again and the container still has its init only.
#[test]
fn exec_missing_binary_fails_clearly() {
    let id = unique_id("exec-nosuch");
    let _g = Guard(id.clone());
    let task = run_sleeper(&id, &[]);

    let out = ctr_within(30, &strs(&exec_args(&id, "miss", &[], &["/nosuch"])));
    assert!(out.code != 0 && out.code != 124, "{out:?}");
    assert!(
        out.stderr.contains("/nosuch"),
        "stderr names the binary: {out:?}"
    );
    assert!(
        out.stderr.to_lowercase().contains("no such file"),
        "stderr says no such file: {out:?}"
    );

    let out = exec_out(&id, "miss", &[], &["sh", "-c", "echo again"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "again\n"), "{out:?}");
    let pids: Vec<u32> = ps_rows(&id).into_iter().map(|(p, _)| p).collect();
    assert_eq!(pids, [task.pid], "only the init is left: {pids:?}");
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));
    kill_delete_rm(&id);
}

/// Exec into a container whose init has exited: ctr fails with a message saying so (runc:
/// "cannot exec in a stopped state"), quickly, and the container can still be deleted.
#[test]
fn exec_into_stopped_container_fails() {
    let id = unique_id("exec-stopped");
    let _g = Guard(id.clone());
    run_detached(&id, &[], &["true"]);
    wait_task_status(&id, "STOPPED", STOP_TIMEOUT);

    let out = ctr_within(30, &strs(&exec_args(&id, "late", &[], &["true"])));
    assert!(
        out.code != 0 && out.code != 124,
        "{out:?}\n{}",
        containerd_log(&id)
    );
    let err = out.stderr.to_lowercase();
    assert!(
        ["stopped", "not running", "exited"]
            .iter()
            .any(|w| err.contains(w)),
        "stderr says the container is not running: {out:?}"
    );

    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}

/// ctr sends CloseIO when its stdin ends: `cat` in an exec sees EOF and exits 0.
#[test]
fn exec_stdin_eof_reaches_the_process() {
    let id = unique_id("exec-stdin");
    let _g = Guard(id.clone());
    run_sleeper(&id, &[]);

    let mut child = spawn_ctr_with_stdin(&strs(&exec_args(&id, "cat", &[], &["cat"])));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"a\nb\n").expect("write stdin");
    // As for `ctr run` (see run_rm_stdin), ctr forwards the EOF only if it reads it after
    // its Exec call returned: close stdin once cat runs (two processes) or ctr is gone.
    let _ = poll(RUN_START_TIMEOUT, || {
        (task_pids(&id).len() >= 2 || child.try_wait().ok().flatten().is_some()).then_some(())
    });
    drop(stdin);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    assert_eq!(out.stdout, "a\nb\n", "{out:?}");
    kill_delete_rm(&id);
}

/// 10 execs at once into one container, each with its own exit code and output.
///
/// Each exec sleeps a little between its output and its exit: ctr 1.6 can lose the output of
/// a process that exits right after writing it when the machine is busy, whatever the shim
/// (see [`exec_retry_lost`]); with the sleep, 0 of 200 lost on runc and on myshim under load.
#[test]
fn ten_concurrent_execs() {
    const N: usize = 10;
    let id = unique_id("exec-conc");
    let _g = Guard(id.clone());
    run_sleeper(&id, &[]);

    let handles: Vec<_> = (0..N)
        .map(|i| {
            let id = id.clone();
            std::thread::spawn(move || {
                exec(
                    &id,
                    &format!("c{i}"),
                    &[],
                    &["sh", "-c", &format!("echo out-{i}; sleep 0.2; exit {i}")],
                )
            })
        })
        .collect();
    let outs: Vec<RunOutput> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let bad: Vec<String> = outs
        .iter()
        .enumerate()
        .filter(|(i, o)| o.code != *i as i32 || o.stdout != format!("out-{i}\n"))
        .map(|(i, o)| format!("exec c{i}: {o:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {N} wrong:\n{}\n{}",
        bad.len(),
        bad.join("\n"),
        containerd_log(&id)
    );
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));
    kill_delete_rm(&id);
}

// ---------------------------------------------------------------------------------------------
// kill of execs, ps

/// `ctr task kill --exec-id X -s SIGKILL` kills that exec only: its exit (137) is published
/// and `ctr task delete --exec-id` returns it; the init keeps running.
#[test]
fn kill_of_an_exec() {
    let id = unique_id("kill-exec");
    let _g = Guard(id.clone());
    let task = run_sleeper(&id, &[]);
    let events = EventWatcher::start();

    exec_detached(&id, "long", &["sleep", "999"]);
    let started = events.wait_for(&id, "/tasks/exec-started", EVENT_TIMEOUT, |e| {
        e.str("exec_id") == Some("long")
    });
    let pid = started.body["pid"].as_u64().unwrap_or(0) as u32;
    assert!(process_alive(pid), "exec pid {pid}: {started:?}");
    wait_cmdline(pid, "sleep 999");

    ctr_ok(&["task", "kill", "--exec-id", "long", "-s", "SIGKILL", &id]);
    let exit = events.wait_for(&id, "/tasks/exit", EVENT_TIMEOUT, |e| {
        e.str("id") == Some("long")
    });
    assert_eq!(exit.exit_status(), 137, "{exit:?}");
    wait_for("the exec's process to be gone", EVENT_TIMEOUT, || {
        (!process_alive(pid)).then_some(())
    });
    assert!(process_alive(task.pid), "the init still runs");
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));

    // ctr exits with the exec's status
    let out: RunOutput = ctr(&["task", "delete", "--exec-id", "long", &id]).into();
    assert_eq!(out.code, 137, "ctr task delete --exec-id long: {out:?}");
    kill_delete_rm(&id);
}

/// `ctr task kill --all` signals every process of the container, the init and the execs:
/// SIGTERM kills the execs (143) and runs the init's trap (which keeps it alive); SIGKILL
/// then ends everything.
#[test]
fn kill_all_reaches_init_and_execs() {
    let id = unique_id("kill-all");
    let _g = Guard(id.clone());
    run_detached(
        &id,
        &[],
        &[
            "sh",
            "-c",
            "trap 'touch /tmp/got-term' TERM; while :; do sleep 1; done",
        ],
    );
    let task = wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    let events = EventWatcher::start();
    exec_detached(&id, "x1", &["sleep", "997"]);
    exec_detached(&id, "x2", &["sleep", "998"]);
    let exec_pids: Vec<u32> = ["x1", "x2"]
        .iter()
        .map(|x| {
            let ev = events.wait_for(&id, "/tasks/exec-started", EVENT_TIMEOUT, |e| {
                e.str("exec_id") == Some(*x)
            });
            ev.body["pid"].as_u64().unwrap_or(0) as u32
        })
        .collect();

    ctr_ok(&["task", "kill", "--all", "-s", "SIGTERM", &id]);
    for x in ["x1", "x2"] {
        let exit = events.wait_for(&id, "/tasks/exit", EVENT_TIMEOUT, |e| {
            e.str("id") == Some(x)
        });
        assert_eq!(exit.exit_status(), 143, "exec {x}: {exit:?}");
    }
    // the init got it too: its trap ran (after its `sleep 1`, killed as well)
    let mut n = 0;
    wait_for("the init's TERM trap to run", EVENT_TIMEOUT, || {
        n += 1;
        let out = exec(
            &id,
            &format!("chk{n}"),
            &[],
            &["test", "-e", "/tmp/got-term"],
        );
        (out.code == 0).then_some(())
    });
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));

    ctr_ok(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    wait_task_status(&id, "STOPPED", STOP_TIMEOUT);
    let exit = events.wait_for(&id, "/tasks/exit", EVENT_TIMEOUT, |e| {
        e.str("id") == Some(&id)
    });
    assert_eq!(exit.exit_status(), 137, "{exit:?}");
    for pid in exec_pids.iter().chain([&task.pid]) {
        wait_for(&format!("pid {pid} to be gone"), EVENT_TIMEOUT, || {
            (!process_alive(*pid)).then_some(())
        });
    }
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}

/// `ctr task ps` lists the init's pid and the exec's, the exec's with its exec id (ctr shows
/// the shim's ProcessDetails in the INFO column).
#[test]
fn ps_lists_init_and_exec_pids() {
    let id = unique_id("ps");
    let _g = Guard(id.clone());
    let task = run_sleeper(&id, &[]);
    exec_detached(&id, "psx", &["sleep", "999"]);

    let rows = wait_for("two processes in ctr task ps", RUN_START_TIMEOUT, || {
        let r = ps_rows(&id);
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(rows.len(), 2, "{rows:?}");
    let init = rows.iter().find(|(p, _)| *p == task.pid);
    assert!(init.is_some(), "ps lists the init {}: {rows:?}", task.pid);
    assert!(!init.unwrap().1.contains("psx"), "{rows:?}");
    let (exec_pid, info) = rows.iter().find(|(p, _)| *p != task.pid).expect("exec row");
    wait_cmdline(*exec_pid, "sleep 999");
    assert!(
        info.contains("psx"),
        "the exec's row shows its exec id: {rows:?}"
    );
    kill_delete_rm(&id);
}

// ---------------------------------------------------------------------------------------------
// terminals

/// sh code: `w SIZE NAME` waits (at most 10 s) until `stty size` shows SIZE, then prints
/// `NAME=<size>`. ctr sets the task's terminal size right after the start (and on SIGWINCH),
/// so the process must wait for it.
const WAIT_SIZE: &str = "w() { i=0; while [ $i -lt 100 ]; do s=$(stty size 2>/dev/null) && \
                         [ \"$s\" = \"$1\" ] && break; sleep 0.1; i=$((i+1)); done; \
                         echo \"$2=$s\"; }";

/// The lines a terminal showed, without the `^@` that may start the first one (the echo of a
/// NUL byte written to the task's terminal at its start; seen with runc's shim too).
fn term_lines(out: &str) -> Vec<&str> {
    out.lines().map(|l| l.trim_start_matches("^@")).collect()
}

/// `ctr run -t`: the container's process has a terminal, /dev/pts/0 of its own devpts, with
/// ctr's terminal size (30 100); ctr exits with its status.
#[test]
fn tty_run() {
    if !have_script() {
        eprintln!("tty_run: skipped, util-linux `script` is not installed");
        return;
    }
    let id = unique_id("tty-run");
    let _g = Guard(id.clone());
    let inner = format!("{WAIT_SIZE}; tty; w '30 100' size; exit 5");
    let shell = format!(
        "stty rows 30 cols 100\n{}\n",
        ctr_shell_command(&strs(&run_args(true, &id, &["-t"], &["sh", "-c", &inner])))
    );
    let out = PtySession::start(&id, &shell).finish();
    assert_eq!(out.code, 5, "{out:?}\n{}", containerd_log(&id));
    let l = term_lines(&out.stdout);
    assert!(l.contains(&"/dev/pts/0"), "tty: {out:?}");
    assert!(
        l.contains(&"size=30 100"),
        "the terminal has ctr's size: {out:?}"
    );
    assert_nothing_left(&id);
}

/// `ctr task exec -t`: the exec gets a terminal with ctr's size (30 100), and a resize of
/// ctr's terminal (to 40 120: SIGWINCH, ctr resizes the exec's) reaches it.
#[test]
fn tty_exec_and_resize() {
    if !have_script() {
        eprintln!("tty_exec_and_resize: skipped, util-linux `script` is not installed");
        return;
    }
    let id = unique_id("tty-exec");
    let _g = Guard(id.clone());
    run_sleeper(&id, &[]);
    let go = env().spec_dir.join(format!("{id}.resize"));
    let go_q = sh_quote(&go.display().to_string());
    let inner = format!("{WAIT_SIZE}; tty; w '30 100' first; w '40 120' second; exit 3");
    let shell = format!(
        "stty rows 30 cols 100\n\
         (i=0; while [ ! -e {go_q} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
          stty rows 40 cols 120 </dev/tty) &\n\
         bg=$!\n\
         {}\n\
         rc=$?; kill $bg 2>/dev/null; exit $rc\n",
        ctr_shell_command(&strs(&exec_args(
            &id,
            "tty1",
            &["-t"],
            &["sh", "-c", &inner]
        )))
    );
    let mut s = PtySession::start(&id, &shell);
    let first = s.wait_line("first=", Duration::from_secs(30));
    std::fs::write(&go, "").expect("write resize flag");
    let out = s.finish();
    let _ = std::fs::remove_file(&go);
    assert_eq!(first, "first=30 100", "{out:?}\n{}", containerd_log(&id));
    assert_eq!(out.code, 3, "{out:?}\n{}", containerd_log(&id));
    let l = term_lines(&out.stdout);
    assert!(
        l.iter().any(|t| t
            .strip_prefix("/dev/pts/")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))),
        "tty: {out:?}"
    );
    assert!(l.contains(&"second=40 120"), "resized: {out:?}");
    kill_delete_rm(&id);
}

// ---------------------------------------------------------------------------------------------
// pause / resume, update, metrics

/// Resumes the task when a test fails while it is paused (a frozen task cannot die).
struct ResumeOnPanic(String);

impl Drop for ResumeOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = ctr_within(20, &["task", "resume", &self.0]);
        }
    }
}

/// The container's freezer state as cgroup v1 names it (v2: `frozen` of cgroup.events).
fn freezer_state(id: &str) -> String {
    let path = container_cgroup_file(id, "freezer", "freezer.state", "cgroup.events");
    let events =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if !cgroup_v2() {
        return events.trim().to_string();
    }
    match events.lines().any(|l| l.trim() == "frozen 1") {
        true => "FROZEN".into(),
        false => "THAWED".into(),
    }
}

/// `ctr task pause`: PAUSED, cgroup FROZEN, exec refused, /tasks/paused; `ctr task resume`:
/// RUNNING, THAWED, exec works again, /tasks/resumed.
#[test]
fn pause_and_resume() {
    let id = unique_id("pause");
    let _g = Guard(id.clone());
    let _r = ResumeOnPanic(id.clone());
    run_sleeper(&id, &[]);
    let events = EventWatcher::start();

    ctr_ok(&["task", "pause", &id]);
    wait_task_status(&id, "PAUSED", EVENT_TIMEOUT);
    wait_for("freezer.state FROZEN", EVENT_TIMEOUT, || {
        (freezer_state(&id) == "FROZEN").then_some(())
    });
    events.wait_for(&id, "/tasks/paused", EVENT_TIMEOUT, |_| true);

    // refused, and quickly (not an exec stuck in the frozen cgroup)
    let out = ctr_within(20, &strs(&exec_args(&id, "frozen", &[], &["true"])));
    assert!(
        out.code != 0 && out.code != 124,
        "exec into a paused task: {out:?}"
    );
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("paused") || err.contains("frozen"),
        "stderr says the task is paused: {out:?}"
    );

    ctr_ok(&["task", "resume", &id]);
    wait_task_status(&id, "RUNNING", EVENT_TIMEOUT);
    assert_eq!(freezer_state(&id), "THAWED");
    events.wait_for(&id, "/tasks/resumed", EVENT_TIMEOUT, |_| true);
    let out = exec_out(&id, "thawed", &[], &["echo", "ok"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"), "{out:?}");
    kill_delete_rm(&id);
}

/// The container's memory limit and cpu settings as the host's cgroup files show them, in cgroup
/// v1 terms: (memory limit, cpu shares, cfs quota, cfs period). On cgroup v2 the limit is
/// `memory.max`, quota and period `cpu.max`, and the shares are `cpu.weight` (1–10000, converted
/// from shares as runc does: 512 shares is weight 20).
fn cgroup_limits(id: &str) -> (String, String, String, String) {
    let read = |ctrl: &str, v1: &str, v2: &str| {
        let path = container_cgroup_file(id, ctrl, v1, v2);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    };
    if !cgroup_v2() {
        return (
            read("memory", "memory.limit_in_bytes", ""),
            read("cpu", "cpu.shares", ""),
            read("cpu", "cpu.cfs_quota_us", ""),
            read("cpu", "cpu.cfs_period_us", ""),
        );
    }
    let max = read("cpu", "", "cpu.max");
    let (quota, period) = max.split_once(' ').unwrap_or((&max, ""));
    (
        read("memory", "", "memory.max"),
        read("cpu", "", "cpu.weight"),
        quota.to_string(),
        period.to_string(),
    )
}

/// Update of a running task's resources (containerd's Tasks/Update, as `ctr task update` of
/// later containerds sends it): the cgroup files show the new memory limit, cpu shares (v2:
/// weight), quota and period; a later update of the memory alone leaves the cpu settings as
/// they are.
#[test]
fn update_changes_the_cgroup_limits() {
    let id = unique_id("update");
    let _g = Guard(id.clone());
    run_sleeper(&id, &["--memory-limit", "33554432"]);
    assert_eq!(cgroup_limits(&id).0, "33554432");
    let shares = if cgroup_v2() { "20" } else { "512" };

    let resources = json!({
        "memory": { "limit": 67108864 },
        "cpu": { "shares": 512, "quota": 50000, "period": 100000 },
    });
    if let Err(e) = grpc::task_update(&id, &resources) {
        panic!("update {resources}: {e}\n{}", containerd_log(&id));
    }
    let want = |mem: &str| (mem.into(), shares.into(), "50000".into(), "100000".into());
    assert_eq!(cgroup_limits(&id), want("67108864"));
    let m = metrics(&id);
    assert_eq!(
        ["memory.limit_in_bytes", "memory.usage_limit"]
            .iter()
            .find_map(|k| m.get(*k))
            .map(String::as_str),
        Some("67108864"),
        "metrics show the new limit: {m:?}"
    );

    let resources = json!({ "memory": { "limit": 134217728 } });
    if let Err(e) = grpc::task_update(&id, &resources) {
        panic!("update {resources}: {e}\n{}", containerd_log(&id));
    }
    assert_eq!(cgroup_limits(&id), want("134217728"));
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));
    kill_delete_rm(&id);
}

/// `ctr task metrics`: memory usage > 0, pids.current counts the processes (init + exec),
/// cpu usage grows with busy work in an exec.
#[test]
fn metrics_report_usage() {
    let id = unique_id("metrics");
    let _g = Guard(id.clone());
    run_sleeper(&id, &[]);

    let m1 = metrics(&id);
    assert!(metric_u64(&m1, MEMORY_USAGE) > 0, "{m1:?}");
    assert!(metric_u64(&m1, PIDS_CURRENT) >= 1, "{m1:?}");
    let cpu1 = metric_u64(&m1, CPU_USAGE);

    let busy = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done";
    let out = exec(&id, "busy", &[], &["sh", "-c", busy]);
    assert_eq!(out.code, 0, "{out:?}");
    exec_detached(&id, "idle", &["sleep", "999"]);
    let m2 = wait_for("pids.current 2", RUN_START_TIMEOUT, || {
        let m = metrics(&id);
        (metric_u64(&m, PIDS_CURRENT) >= 2).then_some(m)
    });
    let cpu2 = metric_u64(&m2, CPU_USAGE);
    // 200000 rounds of sh take well over 10 ms (cpuacct.usage: ns; cpu.usage_usec: µs)
    let min_growth = if m2.contains_key("cpuacct.usage") {
        10_000_000
    } else {
        10_000
    };
    assert!(
        cpu2 >= cpu1 + min_growth,
        "cpu usage grew by {} only: {m1:?} → {m2:?}",
        cpu2.saturating_sub(cpu1)
    );
    assert!(metric_u64(&m2, MEMORY_USAGE) > 0, "{m2:?}");
    kill_delete_rm(&id);
}

// ---------------------------------------------------------------------------------------------
// OOM

/// 20 containers (4 threads × 5, one after the other in each) that go past a 32 MiB limit at
/// once: each is OOM-killed (ctr exits 137), and containerd publishes /tasks/oom for each,
/// before its /tasks/exit.
///
/// runc's shim misses OOMs that happen within the first milliseconds of a container (it
/// starts watching the cgroup after the start), so on runc misses are allowed and only
/// counted; myshim must report 20 of 20 with cgroupfs.
///
/// Under the systemd driver (the guests' second pass) systemd removes a scope's cgroup as soon
/// as its last process is gone, often before the shim has read `memory.events` (runc's shim
/// loses those OOMs, runc#5071): myshim must still report 20 of 20, from the kernel-side
/// counter.
#[test]
fn oom_kills_are_reported_as_events() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5;
    let events = EventWatcher::start();
    let ids: Vec<String> = (0..THREADS * PER_THREAD)
        .map(|i| unique_id(&format!("oom{i}")))
        .collect();
    let _guards: Vec<Guard> = ids.iter().map(|id| Guard(id.clone())).collect();
    let handles: Vec<_> = ids
        .chunks(PER_THREAD)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                chunk
                    .iter()
                    .map(|id| {
                        let out = run_rm_with(
                            id,
                            &["--memory-limit", "33554432"],
                            &["sh", "-c", "x=a; while true; do x=$x$x; done"],
                        );
                        (id.clone(), out)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outs: Vec<(String, RunOutput)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    let bad: Vec<String> = outs
        .iter()
        .filter(|(_, o)| o.code != 137)
        .map(|(id, o)| format!("{id}: {o:?}"))
        .collect();
    assert!(bad.is_empty(), "not OOM-killed (137):\n{}", bad.join("\n"));

    // the event may come a little after the exit
    let seen = |id: &str| events.of(id).iter().any(|e| e.topic == "/tasks/oom");
    let _ = poll(Duration::from_secs(5), || {
        ids.iter().all(|id| seen(id)).then_some(())
    });
    let missed: Vec<&String> = ids.iter().filter(|id| !seen(id)).collect();
    eprintln!(
        "oom_kills_are_reported_as_events: {} of {} OOM events on {}",
        ids.len() - missed.len(),
        ids.len(),
        env().runtime
    );
    if testing_myshim() {
        // CRI takes the reason OOMKilled from a TaskOOM that comes before the TaskExit.
        let late: Vec<&String> = ids
            .iter()
            .filter(|id| {
                let topics: Vec<String> = events.of(id).into_iter().map(|e| e.topic).collect();
                let at = |t: &str| topics.iter().position(|x| x == t);
                matches!((at("/tasks/oom"), at("/tasks/exit")), (Some(o), Some(x)) if o > x)
            })
            .collect();
        assert!(late.is_empty(), "TaskOOM after TaskExit for {late:?}");
        assert!(
            missed.is_empty(),
            "{} of {} OOM kills without a /tasks/oom event: {missed:?}\n{}",
            missed.len(),
            ids.len(),
            containerd_log(missed[0])
        );
    }
    for id in &ids {
        assert_nothing_left(id);
    }
}

// ---------------------------------------------------------------------------------------------
// close-io, states

/// `printf 'a\nb\n' | ctr run --rm -i ... cat`: ctr sends CloseIO when its stdin ends; cat
/// prints both lines, sees EOF and exits 0.
#[test]
fn close_io_ends_the_containers_stdin() {
    let id = unique_id("closeio");
    let _g = Guard(id.clone());
    let out = run_rm_stdin(&id, &[], &["cat"], b"a\nb\n");
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    assert_eq!(out.stdout, "a\nb\n", "{out:?}");
    assert_nothing_left(&id);
}

/// The task's status as `ctr task ls` shows it through its life: CREATED (Tasks/Create over
/// gRPC: ctr always starts what it creates), RUNNING (Tasks/Start), PAUSED, RUNNING again,
/// STOPPED; `ctr task delete` reports the exit status.
#[test]
fn task_states_created_running_paused_stopped() {
    let id = unique_id("states");
    let _g = Guard(id.clone());
    let _r = ResumeOnPanic(id.clone());
    // pid 1 of a pid namespace gets SIGTERM only with a handler: sh traps it.
    let spec = spec_for(&id, &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"]);
    create_container(&id, &spec);

    let pid = grpc::task_create(&id)
        .unwrap_or_else(|e| panic!("create task {id}: {e}\n{}", containerd_log(&id)));
    let t = task_info(&id).expect("task listed after create");
    assert_eq!(t.status, "CREATED", "{t:?}");
    assert!(
        pid > 0 && t.pid == pid,
        "task ls pid {} vs Create's {pid}",
        t.pid
    );

    let started = grpc::task_start(&id)
        .unwrap_or_else(|e| panic!("start task {id}: {e}\n{}", containerd_log(&id)));
    assert_eq!(started, pid);
    wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    // sh has set its trap once it has forked sleep
    wait_for("sh and sleep", RUN_START_TIMEOUT, || {
        (task_pids(&id).len() >= 2).then_some(())
    });

    ctr_ok(&["task", "pause", &id]);
    wait_task_status(&id, "PAUSED", EVENT_TIMEOUT);
    ctr_ok(&["task", "resume", &id]);
    wait_task_status(&id, "RUNNING", EVENT_TIMEOUT);

    ctr_ok(&["task", "kill", &id]); // SIGTERM
    wait_task_status(&id, "STOPPED", STOP_TIMEOUT);
    let out = ctr(&["task", "delete", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ctr task delete: {out:?}");
    assert!(
        stderr.contains("exit code 7"),
        "delete reports the exit code: {stderr}"
    );
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------------------------
// shim lifetime

/// Once the last task is deleted (with an exec still known to it) and the container removed,
/// the container's shim exits.
#[test]
fn shim_exits_after_the_last_delete() {
    let id = unique_id("shim-exit");
    let _g = Guard(id.clone());
    run_sleeper(&id, &[]);
    exec_detached(&id, "bg", &["sleep", "999"]);
    let shims = wait_for("the shim of the container", RUN_START_TIMEOUT, || {
        let s = shim_pids(&id);
        (!s.is_empty()).then_some(s)
    });

    ctr_ok(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    wait_task_status(&id, "STOPPED", STOP_TIMEOUT);
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    wait_for("the shim to exit", CLEANUP_TIMEOUT, || {
        shims.iter().all(|p| !process_alive(*p)).then_some(())
    });
    assert_nothing_left(&id);
}

/// SIGTERM to the shim of a running container. runc's shim (containerd 1.6) exits at once
/// ("Caught exit signal"); containerd sees it disconnect, runs `<shim> delete` for the
/// container (which kills it) and drops the task: `ctr task ls` no longer lists it. Expected of
/// any shim: it exits within seconds (not after containerd's 90 s-class timeouts), the
/// container's processes end with it, containerd stays consistent (the task is gone or
/// STOPPED, never RUNNING with a dead shim) and ctr can clean up what is left, leaving nothing.
#[test]
fn shim_sigterm_exits_and_cleans_up() {
    let id = unique_id("shim-term");
    let _g = Guard(id.clone());
    let t0 = Instant::now();
    signal_shim_and_clean_up(&id, "TERM");
    eprintln!(
        "shim_sigterm: shim gone and cleaned up after {:?}",
        t0.elapsed()
    );
}

/// Run a sleeper, send `signal` to its shim, wait until the shim, the container's init and the
/// task are gone, remove what containerd keeps, and check that nothing is left.
fn signal_shim_and_clean_up(id: &str, signal: &str) {
    let task = run_sleeper(id, &[]);
    let shims = wait_for("the shim of the container", RUN_START_TIMEOUT, || {
        let s = shim_pids(id);
        (!s.is_empty()).then_some(s)
    });
    for p in &shims {
        send_signal(*p, signal);
    }
    wait_for(
        "the shim to exit after the signal",
        Duration::from_secs(10),
        || shims.iter().all(|p| !process_alive(*p)).then_some(()),
    );
    wait_for(
        "the container's init to be gone",
        Duration::from_secs(15),
        || (!process_alive(task.pid)).then_some(()),
    );
    let t = wait_for(
        "containerd to see the task end",
        Duration::from_secs(15),
        || match task_info(id) {
            None => Some(None),
            Some(t) if t.status == "STOPPED" => Some(Some(t)),
            Some(_) => None,
        },
    );
    if t.is_some() {
        ctr_ok(&["task", "delete", id]);
    }
    ctr_ok(&["containers", "rm", id]);
    assert_nothing_left(id);
    if testing_myshim() {
        // The dead shim's socket under /run/containerd/s is gone too.
        let key = format!("{}/{NAMESPACE}/{id}", env().address.display());
        let out = std::process::Command::new("sh")
            .args(["-c", "printf %s \"$1\" | sha256sum", "sh", &key])
            .output()
            .expect("sha256sum");
        let hash = String::from_utf8_lossy(&out.stdout);
        let socket = format!(
            "/run/containerd/s/{}",
            hash.split_whitespace().next().unwrap_or("")
        );
        wait_for(
            "the dead shim's socket to be removed",
            Duration::from_secs(10),
            || (!std::path::Path::new(&socket).exists()).then_some(()),
        );
    }
}

/// A shim killed with SIGKILL (a crash): containerd notices, runs the shim's `delete` action,
/// and nothing is left: no container process, no state, and no socket of the dead shim under
/// /run/containerd/s.
#[test]
fn killed_shim_leaves_nothing_behind() {
    let id = unique_id("shim-kill");
    let _g = Guard(id.clone());
    signal_shim_and_clean_up(&id, "KILL");
}

/// CloseIO through containerd's API closes the container's stdin while the client still holds
/// its end of the fifo open: `cat` reads what was sent, then EOF, and exits 0.
#[test]
fn close_io_over_the_api_ends_stdin() {
    if !testing_myshim() {
        // Seen here: runc's shim does not end the container's stdin on CloseIO while the
        // client still has the fifo open (cat waits until ctr's timeout).
        eprintln!("skipped: runc's shim keeps stdin open on CloseIO while the fifo has a writer");
        return;
    }
    let id = unique_id("closeio-api");
    let _g = Guard(id.clone());
    let mut child = spawn_ctr_with_stdin(&strs(&run_args(true, &id, &[], &["cat"])));
    let mut stdin = child.stdin.take().expect("stdin");
    wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    std::io::Write::write_all(&mut stdin, b"x\n").expect("write stdin");
    // Give the shim's copier a moment to move the line before the close request drains it.
    std::thread::sleep(Duration::from_millis(200));
    grpc::task_close_stdin(&id).unwrap_or_else(|e| panic!("CloseIO: {e}\n{}", containerd_log(&id)));
    let out: RunOutput = child.wait_with_output().expect("wait ctr").into();
    drop(stdin);
    assert_eq!((out.code, out.stdout.as_str()), (0, "x\n"), "{out:?}");
    assert_nothing_left(&id);
}

/// A container in the host's pid namespace (`--with-ns pid:...`): when its init exits, nothing
/// else ends its other processes, so the shim kills them (as runc's shim does) and reports the
/// exec's exit.
#[test]
fn without_a_pid_namespace_the_init_exit_ends_the_execs() {
    let id = unique_id("hostpid");
    let _g = Guard(id.clone());
    run_detached(
        &id,
        &["--with-ns", "pid:/proc/self/ns/pid"],
        &["sleep", "3"],
    );
    let init = wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    exec_detached(&id, "long", &["sleep", "1000"]);
    let exec_pid = wait_for("the exec's pid", RUN_START_TIMEOUT, || {
        task_pids(&id).into_iter().find(|p| *p != init.pid)
    });
    wait_task_status(&id, "STOPPED", Duration::from_secs(15));
    wait_for(
        "the exec to be killed with the init",
        Duration::from_secs(10),
        || (!process_alive(exec_pid)).then_some(()),
    );
    let out: RunOutput = ctr(&["task", "delete", "--exec-id", "long", &id]).into();
    assert_eq!(out.code, 137, "ctr task delete --exec-id long: {out:?}");
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}
