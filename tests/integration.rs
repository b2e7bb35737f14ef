//! End-to-end tests: containerd runs the shim (`ctr run --runtime io.containerd.myshim.v2`).
//!
//! Run with `make integration` (starts and stops a private containerd; see tests/common).
//! `MYSHIM_TEST_RUNTIME=io.containerd.runc.v2 make integration` runs the same tests on runc, to
//! check the tests themselves.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

// ---------------------------------------------------------------------------------------------
// ctr run --rm: output and exit codes

#[test]
fn run_prints_output_and_exits_0() {
    let id = unique_id("echo");
    let _g = Guard(id.clone());
    let out = run_rm(&id, &["sh", "-c", "echo hello; exit 0"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    assert_eq!(out.stdout, "hello\n", "{out:?}");
    assert_nothing_left(&id);
}

#[test]
fn run_exit_code_3() {
    let id = unique_id("exit3");
    let _g = Guard(id.clone());
    let out = run_rm(&id, &["sh", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(out.code, 3, "{out:?}\n{}", containerd_log(&id));
    assert!(
        out.stderr.contains("to-stderr"),
        "container stderr reaches ctr's: {out:?}"
    );
    assert_nothing_left(&id);
}

/// `ctr task kill -s SIGKILL` from another ctr: the `ctr run` in the foreground exits 137.
#[test]
fn run_killed_by_sigkill_exits_137() {
    let id = unique_id("sigkill");
    let _g = Guard(id.clone());
    let mut child = spawn_run_rm(&id, &[], &["sleep", "100"]);
    let task = wait_running(&id, &mut child);
    assert!(task.pid > 0, "{task:?}");
    ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    let out = finish(child);
    assert_eq!(out.code, 137, "{out:?}\n{}", containerd_log(&id));
    assert_nothing_left(&id);
}

/// SIGTERM to a container's pid 1 that traps it: the signal is delivered (the kernel drops
/// signals to a pid-namespace init only when it has no handler) and the init's exit code 143
/// is what `ctr run` exits with.
#[test]
fn run_sigterm_trapped_by_init_exits_143() {
    let id = unique_id("sigterm-trap");
    let _g = Guard(id.clone());
    let mut child = spawn_run_rm(
        &id,
        &[],
        &["sh", "-c", "trap 'exit 143' TERM; sleep 100 & wait"],
    );
    wait_running(&id, &mut child);
    // Two processes (sh and sleep): sh has run `trap` already.
    wait_for("sh and sleep in the container", RUN_START_TIMEOUT, || {
        (task_pids(&id).len() >= 2).then_some(())
    });
    ctr_ok(&["task", "kill", "-s", "SIGTERM", &id]);
    let out = finish(child);
    assert_eq!(out.code, 143, "{out:?}\n{}", containerd_log(&id));
    assert_nothing_left(&id);
}

/// A process killed by SIGTERM (not a pid-namespace init: the spec has no pid namespace, so
/// the default action applies) exits with status 128 + 15 = 143.
#[test]
fn run_killed_by_sigterm_exits_143() {
    let id = unique_id("sigterm");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["sleep", "100"]);
    let ns = spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.retain(|n| n["type"] != "pid");
    let mut child = spawn_config_rm(&id, &spec);
    wait_running(&id, &mut child);
    ctr_ok(&["task", "kill", "-s", "SIGTERM", &id]);
    let out = finish(child);
    assert_eq!(out.code, 143, "{out:?}\n{}", containerd_log(&id));
    assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------------------------
// detached lifecycle

/// `ctr run -d`, then the task seen from outside (`task ls`, `task ps`), stopped by
/// `ctr task kill` (SIGTERM), deleted; its exit status is kept until the delete.
#[test]
fn detached_lifecycle() {
    let id = unique_id("detached");
    let _g = Guard(id.clone());
    // pid 1 of a pid namespace gets SIGTERM only with a handler: sh traps it.
    run_detached(
        &id,
        &[],
        &["sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
    );
    let task = wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    assert!(task.pid > 0, "task ls shows a pid: {task:?}");
    assert!(
        std::path::Path::new(&format!("/proc/{}", task.pid)).exists(),
        "the task's pid {} is a host process",
        task.pid
    );
    let pids = wait_for("sh and sleep in the container", RUN_START_TIMEOUT, || {
        let p = task_pids(&id);
        (p.len() >= 2).then_some(p)
    });
    assert!(
        pids.contains(&task.pid),
        "ctr task ps {id} lists {}: {pids:?}",
        task.pid
    );

    ctr_ok(&["task", "kill", &id]); // SIGTERM: the image's stop signal
    wait_task_status(&id, "STOPPED", Duration::from_secs(20));
    let out = ctr(&["task", "delete", &id]);
    assert!(out.status.success(), "ctr task delete: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exit code 7"),
        "ctr task delete reports the exit code: {stderr}"
    );
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------------------------
// stdin

#[test]
fn stdin_is_piped_into_the_container() {
    let id = unique_id("stdin-head");
    let _g = Guard(id.clone());
    let out = run_rm_stdin(&id, &[], &["head", "-n1"], b"data\nmore\n");
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    assert_eq!(out.stdout, "data\n", "{out:?}");
    assert_nothing_left(&id);
}

/// The end of ctr's stdin reaches the container: `cat` sees EOF and exits.
#[test]
fn stdin_eof_reaches_the_container() {
    let id = unique_id("stdin-cat");
    let _g = Guard(id.clone());
    let input: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    let out = run_rm_stdin(&id, &[], &["cat"], input.as_bytes());
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, containerd_log(&id));
    assert!(
        out.stdout == input,
        "cat echoed {} of {} bytes",
        out.stdout.len(),
        input.len()
    );
    assert_nothing_left(&id);
}

/// Input that ends before the task even exists still reaches the container with its EOF:
/// myshim reads the stdin fifo until its writer closes it, so no CloseIO is needed. (With runc,
/// ctr 1.6 loses that early EOF and `cat` waits forever: the check runs on myshim only.)
#[test]
fn early_stdin_eof_reaches_the_container() {
    if !testing_myshim() {
        eprintln!("skipped: ctr 1.6 loses an early EOF with runc's shim");
        return;
    }
    let id = unique_id("stdin-early");
    let _g = Guard(id.clone());
    let mut child = spawn_ctr_with_stdin(&strs(&run_args(true, &id, &[], &["cat"])));
    {
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, b"1\n2\n3\n").expect("write stdin");
    }
    let out: RunOutput = child.wait_with_output().expect("wait ctr").into();
    assert_eq!((out.code, out.stdout.as_str()), (0, "1\n2\n3\n"), "{out:?}");
    assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------------------------
// inside the container

/// `ctr run --seccomp` (containerd's default profile): the filter is installed in the
/// container's process and the container works.
#[test]
fn default_seccomp_profile_is_applied() {
    let id = unique_id("seccomp");
    let _g = Guard(id.clone());
    let out = run_rm_with(
        &id,
        &["--seccomp"],
        &["sh", "-c", "grep Seccomp: /proc/self/status; echo ok"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Seccomp:\t2") && out.stdout.ends_with("ok\n"),
        "{out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn inside_pid_is_1() {
    let id = unique_id("pid1");
    let _g = Guard(id.clone());
    let out = run_rm(&id, &["sh", "-c", "echo $$"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "1\n"), "{out:?}");
    assert_nothing_left(&id);
}

/// ctr 1.6 has no --hostname: the spec's `hostname` is set through --config.
#[test]
fn inside_hostname_from_spec() {
    let id = unique_id("hostname");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["hostname"]);
    spec["hostname"] = json!("myshim-host");
    let out = run_config_rm(&id, &spec);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "myshim-host\n"),
        "{out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn inside_env() {
    let id = unique_id("env");
    let _g = Guard(id.clone());
    let out = run_rm_with(
        &id,
        &["--env", "FOO=bar"],
        &["sh", "-c", "echo $FOO; echo $PATH"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        [
            "bar",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ],
        "{out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn inside_cwd() {
    let id = unique_id("cwd");
    let _g = Guard(id.clone());
    let out = run_rm_with(&id, &["--cwd", "/tmp"], &["pwd"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "/tmp\n"), "{out:?}");
    assert_nothing_left(&id);
}

/// ctr 1.6 has no --user: process.user 1000:1000 is set through --config.
#[test]
fn inside_user_1000() {
    let id = unique_id("user");
    let _g = Guard(id.clone());
    let mut spec = spec_for(
        &id,
        &["sh", "-c", "id -u; id -g; id -un; touch /tmp/x 2>&1; true"],
    );
    spec["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    let out = run_config_rm(&id, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    let l = lines(&out.stdout);
    assert_eq!(&l[..3], ["1000", "1000", "user"], "{out:?}");
    assert!(
        l.len() == 4 && l[3].contains("Read-only file system"),
        "root is read-only: {out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn inside_proc_is_mounted() {
    let id = unique_id("proc");
    let _g = Guard(id.clone());
    // (not `... && cat`: busybox sh execs its last command, which would then be pid 1)
    let script = "ls /proc/1/status; cat /proc/1/cmdline; exit 0";
    let out = run_rm(&id, &["sh", "-c", script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        format!("/proc/1/status\nsh\0-c\0{script}\0"),
        "{out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn inside_dev_has_default_devices() {
    let id = unique_id("dev");
    let _g = Guard(id.clone());
    let script =
        "for d in null zero full random urandom tty; do test -c /dev/$d || echo no $d; done; \
                  for d in pts shm; do test -d /dev/$d || echo no $d; done; \
                  echo x >/dev/null || echo write null; \
                  test $(head -c 16 /dev/zero | wc -c) = 16 || echo read zero; \
                  test $(head -c 16 /dev/urandom | wc -c) = 16 || echo read urandom; \
                  echo ok";
    let out = run_rm(&id, &["sh", "-c", script]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"), "{out:?}");
    assert_nothing_left(&id);
}

/// Only 0, 1, 2 are open in the container's process: `ls /proc/self/fd` as pid 1 shows those
/// and the fd ls opened to read the directory (3), exactly as with runc; pid 1 `sh` seen by a
/// child has 0, 1, 2.
#[test]
fn inside_only_stdio_fds_are_open() {
    let id = unique_id("fds");
    let _g = Guard(id.clone());
    let out = run_rm(&id, &["ls", "/proc/self/fd"]);
    assert_eq!(
        (out.code, lines(&out.stdout)),
        (0, vec!["0", "1", "2", "3"]),
        "{out:?}"
    );
    assert_nothing_left(&id);

    let id = unique_id("fds-sh");
    let _g = Guard(id.clone());
    // sh stays pid 1 (its last command is `exit`, not ls) and ls lists sh's fds
    let out = run_rm(&id, &["sh", "-c", "ls /proc/1/fd; exit 0"]);
    assert_eq!(
        (out.code, lines(&out.stdout)),
        (0, vec!["0", "1", "2"]),
        "{out:?}"
    );
    assert_nothing_left(&id);
}

/// The container runs in the spec's cgroupsPath, /<namespace>/<id> (containerd's default; its
/// scope under the systemd driver),
/// in every v1 hierarchy (the spec has no cgroup namespace, so the full path shows).
#[test]
fn inside_cgroup_is_namespace_slash_id() {
    let id = unique_id("cgroup");
    let _g = Guard(id.clone());
    let out = run_rm(&id, &["cat", "/proc/self/cgroup"]);
    assert_eq!(out.code, 0, "{out:?}");
    let want = container_cgroup(&id);
    let line = container_cgroup_line(&out.stdout)
        .unwrap_or_else(|| panic!("no memory (v1) or 0:: (v2) line in /proc/self/cgroup: {out:?}"));
    assert!(
        line.ends_with(&format!(":{want}")),
        "the container's cgroup is {want}: {line}"
    );
    for l in out.stdout.lines() {
        let ctrl = l.split(':').nth(1).unwrap_or("");
        if !ctrl.is_empty() && ctrl != "name=systemd" {
            assert!(
                l.contains(&id),
                "controller {ctrl} is in the container's cgroup: {l}"
            );
        }
    }
    assert_nothing_left(&id);
}

/// `--memory-limit` lands in the container's memory cgroup on the host.
#[test]
fn memory_limit_is_applied() {
    let id = unique_id("memlimit");
    let _g = Guard(id.clone());
    run_detached(&id, &["--memory-limit", "67108864"], &["sleep", "1000"]);
    wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    let path = container_cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max");
    let limit =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(limit.trim(), "67108864", "{}", path.display());
    let task = task_info(&id).expect("task listed");
    let procs = std::fs::read_to_string(container_cgroup_file(
        &id,
        "memory",
        "cgroup.procs",
        "cgroup.procs",
    ))
    .unwrap_or_default();
    assert!(
        procs.lines().any(|p| p.trim() == task.pid.to_string()),
        "the task's pid {} is in the cgroup: {procs:?}",
        task.pid
    );
    ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_task_status(&id, "STOPPED", Duration::from_secs(20));
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------------------------
// bad input: a clear error from ctr, nothing left

#[test]
fn error_missing_binary() {
    let id = unique_id("nosuch");
    let _g = Guard(id.clone());
    let out = run_rm(&id, &["/nosuch"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("nosuch"),
        "stderr names the binary: {out:?}"
    );
    assert!(
        out.stderr.to_lowercase().contains("no such file"),
        "stderr says no such file: {out:?}"
    );
    assert_nothing_left(&id);
}

/// A cwd that cannot be a directory. (A missing cwd is not an error: runc creates it.)
#[test]
fn error_bad_cwd() {
    let id = unique_id("badcwd");
    let _g = Guard(id.clone());
    let out = run_rm_with(&id, &["--cwd", "/etc/passwd"], &["pwd"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("/etc/passwd"),
        "stderr names the cwd: {out:?}"
    );
    assert!(
        out.stderr.to_lowercase().contains("not a directory"),
        "stderr says not a directory: {out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn error_invalid_namespace_in_config() {
    let id = unique_id("badns");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["true"]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "bogus"}));
    let out = run_config_rm(&id, &spec);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("bogus"),
        "stderr names the bad namespace: {out:?}"
    );
    assert_nothing_left(&id);
}

#[test]
fn error_missing_mount_source_in_config() {
    let id = unique_id("badmount");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["true"]);
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/mnt/nosuchsource", "type": "bind", "source": "/nonexistent-myshim-source",
        "options": ["rbind", "ro"]
    }));
    let out = run_config_rm(&id, &spec);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("/nonexistent-myshim-source"),
        "stderr names the missing mount source: {out:?}"
    );
    assert_nothing_left(&id);
}

// ---------------------------------------------------------------------------------------------
// concurrency

#[test]
fn twenty_concurrent_containers() {
    const N: usize = 20;
    let ids: Vec<String> = (0..N).map(|i| unique_id(&format!("conc{i}"))).collect();
    let _guards: Vec<Guard> = ids.iter().map(|id| Guard(id.clone())).collect();
    let handles: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let id = id.clone();
            // ctr 1.6 cancels its output copy when the task exits and can drop the last write
            // (seen with runc too, about 1 in 40 under load): give it a moment to read.
            std::thread::spawn(move || {
                run_rm(
                    &id,
                    &["sh", "-c", &format!("echo out-{i}; sleep 0.2; exit {i}")],
                )
            })
        })
        .collect();
    let outs: Vec<RunOutput> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let mut bad = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        if out.code != i as i32 || out.stdout != format!("out-{i}\n") {
            bad.push(format!("container {i} ({}): {out:?}", ids[i]));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {N} wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
    for id in &ids {
        assert_nothing_left(id);
    }
}

/// A spec without `RLIMIT_NOFILE` leaves the container the open-file limit the shim was started
/// with (containerd's, here this test's), although the shim raises its own to serve a pod's
/// many containers (as Go's runtime does for runc's shim).
#[test]
fn open_file_limit_is_not_the_shims_raised_one() {
    let id = unique_id("nofile");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["sh", "-c", "ulimit -Sn"]);
    if let Some(p) = spec["process"].as_object_mut() {
        p.remove("rlimits");
    }
    let out = run_config_rm(&id, &spec);
    assert_eq!(out.code, 0, "{out:?}");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert_eq!(out.stdout.trim(), lim.rlim_cur.to_string(), "{out:?}");
    assert_nothing_left(&id);
}
