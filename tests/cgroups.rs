//! End-to-end tests of the cgroup layer through containerd: where a container's processes are
//! in the cgroup2 hierarchy (the unified one of a hybrid host, or the only one on v2), device
//! rules enforced (v1 controller or v2 eBPF program), and the systemd cgroup driver (its unit
//! with systemd as pid 1; its error when systemd is not reachable).
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
    let want = format!("0::{}", container_cgroup(&id));
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

/// Whether systemd runs as pid 1 and its D-Bus system bus is there (the driver talks to
/// systemd through it, as runc's).
fn systemd_reachable() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
        && std::path::Path::new("/run/dbus/system_bus_socket").exists()
}

/// No directory of the unit's cgroup is left in any hierarchy.
fn assert_no_unit_cgroup(unit: &str) {
    let pattern = format!("system.slice/{unit}");
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut roots: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
        roots.push(dir.into());
        for root in roots {
            let p = root.join(&pattern);
            assert!(!p.exists(), "{} is left", p.display());
        }
    }
}

/// cgroupsPath `system.slice:myshim:<id>` selects the systemd driver: with systemd as pid 1 (and
/// its D-Bus system bus) the container runs in the transient unit `myshim-<id>.scope` and
/// delete removes it; without (this development host; a guest without dbus) create fails with
/// an error that says systemd cannot be reached, and nothing is left behind.
#[test]
fn systemd_cgroups_path() {
    let id = unique_id("sdcg");
    let _g = Guard(id.clone());
    let unit = format!("myshim-{id}.scope");
    let mut spec = spec_for(&id, &["sleep", "1000"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("system.slice:myshim:{id}"));
    if !systemd_reachable() {
        let out = run_config_rm(&id, &spec);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(
            out.stderr.contains("systemd cgroup driver") && out.stderr.contains(&unit),
            "stderr says the systemd unit could not be started: {out:?}"
        );
        assert_no_unit_cgroup(&unit);
        assert_nothing_left(&id);
        return;
    }
    let mut run = spawn_config_rm(&id, &spec);
    // The first D-Bus call may start dbus-daemon (socket activation): slow in a TCG guest.
    let task = wait_for("the task RUNNING", Duration::from_secs(240), || {
        task_info(&id).filter(|t| t.status == "RUNNING")
    });
    let line = cgroup2_line(task.pid);
    assert!(
        line.ends_with(&format!("/system.slice/{unit}")),
        "the init is in the unit's cgroup: {line}"
    );
    ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    let _ = run.wait();
    let status = std::process::Command::new("systemctl")
        .args(["is-active", "--quiet", &unit])
        .status()
        .expect("systemctl");
    assert!(!status.success(), "{unit} is gone after delete");
    assert_no_unit_cgroup(&unit);
    assert_nothing_left(&id);
}

/// Device rules are enforced (v1 devices controller here, the eBPF program on cgroup v2): the
/// container may mknod a block device (containerd's default `b *:* m`) but not open it, while
/// /dev/zero, on the default list, opens.
#[test]
fn device_rules_deny_a_node_made_with_mknod() {
    let id = unique_id("devrules");
    let _g = Guard(id.clone());
    let out = run_rm(
        &id,
        &[
            "sh",
            "-c",
            "mknod /dev/myshim-loop b 7 0 && echo made; head -c 1 /dev/myshim-loop; \
             echo open=$?; head -c 3 /dev/zero | wc -c",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "made\nopen=1\n3\n", "{out:?}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "the open is refused by the cgroup: {out:?}"
    );
    assert_nothing_left(&id);
}

/// Update replaces the device rules of a running container: a block device node `b 7:0` the
/// container made is refused by the cgroup (EPERM) until an update allows it; after it, the
/// open gets past the cgroup (it succeeds, or fails with the driver's own error where no loop
/// driver is loaded), and /dev/zero, on the default list, still opens.
#[test]
fn update_changes_the_device_rules() {
    if !testing_myshim() {
        eprintln!("skipped: runc's update leaves the device rules as they are");
        return;
    }
    let id = unique_id("devupdate");
    let _g = Guard(id.clone());
    run_sleeper(&id, &[]);
    let open = |n: &str| {
        exec(
            &id,
            n,
            &[],
            &[
                "sh",
                "-c",
                "[ -e /dev/myshim-loop ] || mknod /dev/myshim-loop b 7 0; \
                 head -c 0 /dev/myshim-loop; head -c 3 /dev/zero | wc -c",
            ],
        )
    };
    let before = open("before");
    assert!(
        before.stderr.contains("Operation not permitted"),
        "refused before the update: {before:?}"
    );
    let resources = serde_json::json!({
        "devices": [
            { "allow": false, "access": "rwm" },
            { "allow": true, "type": "b", "major": 7, "minor": 0, "access": "rwm" },
        ],
    });
    if let Err(e) = grpc::task_update(&id, &resources) {
        panic!("update {resources}: {e}\n{}", containerd_log(&id));
    }
    let after = open("after");
    assert!(
        !after.stderr.contains("Operation not permitted"),
        "allowed after the update: {after:?}"
    );
    assert_eq!(after.stdout, "3\n", "/dev/zero still opens: {after:?}");
    kill_delete_rm(&id);
}

/// `systemctl show UNIT -p PROP --value`.
fn unit_property(unit: &str, prop: &str) -> String {
    command_stdout("systemctl", &["show", unit, "-p", prop, "--value"])
}

/// Run `prog args` and return its stdout, trimmed (empty if it cannot run).
fn command_stdout(prog: &str, args: &[&str]) -> String {
    std::process::Command::new(prog)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// A pod's slice as a Kubernetes node names it (`<root>-<qos>-pod<uid>.slice`, each dash a
/// level of nesting), under a root of the tests' own (`myshimpods`, not `kubepods`).
fn pod_slice(id: &str) -> (String, String) {
    let uid = id.replace('-', "_");
    let slice = format!("myshimpods-besteffort-pod{uid}.slice");
    let dir = format!("/myshimpods.slice/myshimpods-besteffort.slice/{slice}");
    (slice, dir)
}

/// The systemd driver as a Kubernetes node drives it: cgroupsPath
/// `<pod slice>:cri-containerd:<id>` makes the scope `cri-containerd-<id>.scope` in the pod's
/// nested slice, with the spec's memory and cpu limits both as the unit's properties and in its
/// cgroup files; delete stops the unit and removes its cgroup. Needs systemd as pid 1 (the
/// cgroup v2 guests); skipped elsewhere (`systemd_cgroups_path` covers the error there).
#[test]
fn systemd_scope_in_a_pod_slice_carries_the_limits() {
    if !systemd_reachable() || !cgroup_v2() {
        eprintln!("skipped: needs systemd as pid 1 and cgroup v2 (the guest suites)");
        return;
    }
    let id = unique_id("sdpod");
    let _g = Guard(id.clone());
    let (slice, slice_dir) = pod_slice(&id);
    let unit = format!("cri-containerd-{id}.scope");
    let path = format!("{slice}:cri-containerd:{id}");
    run_detached(
        &id,
        &[
            "--cgroup",
            &path,
            "--memory-limit",
            "67108864",
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            "--cpu-shares",
            "512",
        ],
        &["sleep", "1000"],
    );
    let task = wait_task_status(&id, "RUNNING", Duration::from_secs(240));
    assert_eq!(
        cgroup2_line(task.pid),
        format!("0::{slice_dir}/{unit}"),
        "the init is in the scope"
    );
    assert_eq!(unit_property(&unit, "ActiveState"), "active");
    assert_eq!(unit_property(&unit, "Slice"), slice);
    assert_eq!(unit_property(&unit, "MemoryMax"), "67108864");
    assert_eq!(unit_property(&unit, "CPUQuotaPerSecUSec"), "500ms");
    assert_eq!(unit_property(&unit, "CPUWeight"), "20");
    let cg = format!("/sys/fs/cgroup{slice_dir}/{unit}");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{cg}/{f}"))
            .unwrap_or_else(|e| panic!("{cg}/{f}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.max"), "67108864");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("cpu.weight"), "20");

    kill_delete_rm(&id);
    assert_ne!(
        unit_property(&unit, "ActiveState"),
        "active",
        "{unit} stopped"
    );
    assert!(!std::path::Path::new(&cg).exists(), "{cg} is left");
    assert_nothing_left(&id);
    // the pod's slice is the kubelet's to remove: here the test's
    let _ = command_stdout("systemctl", &["stop", &slice]);
}

/// runc's option `SystemdCgroup` (`containerd.runc.v1.Options`, as the CRI plugin sends it for a
/// runc-type runtime) reaches the runtime: with a cgroupfs path (`/<namespace>/<id>`) create is
/// refused with runc's reason and nothing is left behind; with a `slice:prefix:name` path and
/// systemd as pid 1 the task runs in its scope.
#[test]
fn systemd_cgroup_option_selects_the_driver() {
    let id = unique_id("sdopt");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["sleep", "1000"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{NAMESPACE}/{id}"));
    let spec_path = create_container(&id, &spec);
    let refused = grpc::task_create_systemd_cgroup(&id);
    assert!(
        refused.is_err(),
        "create with SystemdCgroup and {spec_path}"
    );
    assert!(
        containerd_log(&id).contains("slice:prefix:name"),
        "containerd's log has the reason:\n{}",
        containerd_log(&id)
    );
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);

    if !systemd_reachable() {
        eprintln!("positive half skipped: needs systemd as pid 1");
        return;
    }
    let id = unique_id("sdopt");
    let _g = Guard(id.clone());
    let mut spec = spec_for(&id, &["sleep", "1000"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("system.slice:myshim:{id}"));
    create_container(&id, &spec);
    let pid = grpc::task_create_systemd_cgroup(&id)
        .unwrap_or_else(|e| panic!("create {id}: {e}\n{}", containerd_log(&id)));
    let unit = format!("myshim-{id}.scope");
    assert!(
        cgroup2_line(pid).ends_with(&format!("/system.slice/{unit}")),
        "{}",
        cgroup2_line(pid)
    );
    kill_delete_rm(&id);
    assert_no_unit_cgroup(&unit);
    assert_nothing_left(&id);
}
