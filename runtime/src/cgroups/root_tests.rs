//! Hand-run sanity checks on a real cgroup v1 host (need root; `#[ignore]`d):
//! `cargo test -p myshim-runtime --lib cgroups::root_tests -- --ignored --test-threads=1`.
//! Limits are written by cgroups-rs, which takes one path for every hierarchy: the tests that set
//! limits use absolute paths (`/myshim-selftest-*`); the others relative ones (created below the
//! test's own cgroups). They remove all of it again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;

fn v1_root() -> bool {
    if !nix::unistd::geteuid().is_root() || detect_layout().ok() != Some(Layout::V1) {
        eprintln!("skipped: needs root on a cgroup v1 host");
        return false;
    }
    true
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn dir_with(mgr: &CgroupManager, controller: &str) -> PathBuf {
    v1::dir_of(&mgr.hierarchies, controller)
        .unwrap_or_else(|| panic!("no {controller} hierarchy"))
        .to_path_buf()
}

fn resources(limit: i64, swap: Option<i64>) -> LinuxResources {
    let mut memory = LinuxMemoryBuilder::default().limit(limit);
    if let Some(swap) = swap {
        memory = memory.swap(swap);
    }
    LinuxResourcesBuilder::default()
        .memory(memory.build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap()
}

/// Remove the test's parent cgroups (the manager removes only the leaf).
fn remove_parents(mgr: &CgroupManager) {
    for dir in mgr.dirs() {
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[test]
#[ignore = "needs root and a cgroup v1 host; run by hand"]
fn v1_sleep_child_lifecycle() {
    if !v1_root() {
        return;
    }
    let rel = format!("myshim-selftest-{}/c1", std::process::id());
    let mgr = CgroupManager::new(Some(Path::new(&format!("/{rel}"))), "unused").unwrap();
    assert_eq!(mgr.layout(), Layout::V1);
    // Serialisable: the state file may hold it.
    let json = serde_json::to_string(&mgr).unwrap();
    assert_eq!(serde_json::from_str::<CgroupManager>(&json).unwrap(), mgr);

    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mgr.apply(pid).unwrap();
        assert_eq!(mgr.pids().unwrap(), vec![pid]);
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        for line in own.lines() {
            assert!(line.ends_with(&format!("/{rel}")), "not joined: {line}");
        }

        mgr.set(&resources(64 << 20, None)).unwrap();
        let memory = dir_with(&mgr, "memory");
        assert_eq!(
            read(&memory, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&dir_with(&mgr, "pids"), "pids.max"), "10");
        let cpu = dir_with(&mgr, "cpu");
        assert_eq!(read(&cpu, "cpu.shares"), "512");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&dir_with(&mgr, "cpuset"), "cpuset.cpus"), "0");
        assert_eq!(
            read(&dir_with(&mgr, "devices"), "devices.list"),
            "c 1:3 rwm"
        );

        // memsw ordering: raise both above the current limit, then lower both.
        if memory.join("memory.memsw.limit_in_bytes").exists() {
            mgr.set(&resources(128 << 20, Some(256 << 20))).unwrap();
            assert_eq!(
                read(&memory, "memory.limit_in_bytes"),
                (128u64 << 20).to_string()
            );
            assert_eq!(
                read(&memory, "memory.memsw.limit_in_bytes"),
                (256u64 << 20).to_string()
            );
            mgr.set(&resources(32 << 20, Some(48 << 20))).unwrap();
            assert_eq!(
                read(&memory, "memory.limit_in_bytes"),
                (32u64 << 20).to_string()
            );
            assert_eq!(
                read(&memory, "memory.memsw.limit_in_bytes"),
                (48u64 << 20).to_string()
            );
        }

        mgr.freeze().unwrap();
        assert_eq!(read(&dir_with(&mgr, "freezer"), "freezer.state"), "FROZEN");
        mgr.thaw().unwrap();
        assert_eq!(read(&dir_with(&mgr, "freezer"), "freezer.state"), "THAWED");

        let stats = mgr.stats().unwrap();
        assert_eq!(stats.pids.current, 1);
        assert_eq!(stats.pids.limit, 10);
        assert!(stats.memory.limit > 0 && stats.memory.limit <= 64 << 20);
        assert!(!stats.memory.stat.is_empty());
        eprintln!("{stats:#?}");

        mgr.kill_all(Signal::SIGKILL).unwrap();
    }));
    if outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let destroyed = mgr.destroy();
    let leftovers: Vec<_> = mgr
        .dirs()
        .filter(|d| d.exists())
        .map(Path::to_path_buf)
        .collect();
    remove_parents(&mgr);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    destroyed.unwrap();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(mgr.dirs().all(|d| d.parent().is_some_and(|p| !p.exists())));
    // Destroying again is fine, and a gone cgroup has no pids.
    mgr.destroy().unwrap();
    assert!(mgr.pids().unwrap().is_empty());
    mgr.kill_all(Signal::SIGKILL).unwrap();
}

#[test]
#[ignore = "needs root and a cgroup v1 host; run by hand"]
fn v1_apply_failure_leaves_nothing() {
    if !v1_root() {
        return;
    }
    let rel = format!("myshim-selftest-fail-{}/c1", std::process::id());
    let mgr = CgroupManager::new(Some(Path::new(&format!("/{rel}"))), "unused").unwrap();
    // A pid that does not exist: joining fails (ESRCH) after every directory was made.
    let missing = (1_000_000..i32::MAX)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let err = mgr.apply(missing).unwrap_err();
    let msg = format!("{:#}", anyhow::Error::from(err));
    assert!(msg.contains("cgroup.procs"), "{msg}");
    for dir in mgr.dirs() {
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(
            dir.parent().is_some_and(|p| !p.exists()),
            "parent of {} left",
            dir.display()
        );
    }
}

#[test]
#[ignore = "needs root and a cgroup v1 host; run by hand"]
fn v1_oom_watcher_fires_and_stats_count_the_kill() {
    use std::os::fd::AsFd;

    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    if !v1_root() {
        return;
    }
    let rel = format!("myshim-selftest-oom-{}/c1", std::process::id());
    let mgr = CgroupManager::new(Some(Path::new(&format!("/{rel}"))), "unused").unwrap();
    // The child waits a little before it allocates without bound: time to join the cgroup.
    let mut child = Command::new("sh")
        .args(["-c", "sleep 0.3; exec tail /dev/zero"])
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mgr.apply(pid).unwrap();
        let limit = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(16 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        mgr.set(&limit).unwrap();
        let mut watcher = oom::OomWatcher::new(&mgr).unwrap();
        let mut fds = [PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
        assert_eq!(poll(&mut fds, PollTimeout::from(10_000u16)).unwrap(), 1);
        assert!(watcher.drain().unwrap());
        let stats = mgr.stats().unwrap();
        assert!(stats.memory.oom_kill >= 1, "{:?}", stats.memory);
        assert!(stats.memory.failcnt > 0);
        assert_eq!(stats.memory.limit, 16 << 20);
        watcher
    }));
    let status = child.wait().unwrap();
    let destroyed = mgr.destroy();
    remove_parents(&mgr);
    let mut watcher = match outcome {
        Ok(w) => w,
        Err(e) => std::panic::resume_unwind(e),
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    destroyed.unwrap();
    // The cgroup is gone: the eventfd fires once more and drain says so.
    assert!(watcher.drain().is_err());
}

#[test]
#[ignore = "needs root and a cgroup v1 host; run by hand"]
fn v1_spawn_inside_puts_the_child_there_and_the_thread_back() {
    if !v1_root() {
        return;
    }
    let id = format!("myshim-selftest-spawn-{}", std::process::id());
    let mgr = CgroupManager::new(Some(Path::new(&id)), &id).unwrap();
    let before = fs::read_to_string("/proc/thread-self/cgroup").unwrap();
    let mut child = mgr
        .spawn_inside(
            || {
                Ok(Command::new("sleep")
                    .arg("100")
                    .spawn()
                    .map_err(anyhow::Error::from)?)
            },
            |c| c.id() as i32,
        )
        .unwrap();
    let after = fs::read_to_string("/proc/thread-self/cgroup").unwrap();
    assert_eq!(before, after, "the thread went back where it was");
    let pid = child.id() as i32;
    assert_eq!(mgr.pids().unwrap(), vec![pid]);
    let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(theirs.contains(&id), "{theirs}");
    child.kill().unwrap();
    child.wait().unwrap();
    mgr.destroy().unwrap();
    remove_parents(&mgr);
}

/// The device program on a real cgroup2 cgroup (the unified hierarchy of a hybrid host, or v2):
/// a shell in the cgroup cannot open /dev/null once a rule denies it, can again after an update
/// replaces the program, and only one program stays attached.
#[test]
#[ignore = "needs root and a cgroup2 hierarchy; run by hand"]
fn cgroup2_device_program_denies_then_allows() {
    use oci_spec::runtime::LinuxDeviceCgroup;
    let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists());
    let Some(root) = root.filter(|_| nix::unistd::geteuid().is_root()) else {
        eprintln!("skipped: needs root and a cgroup2 hierarchy");
        return;
    };
    let dir = root.join(format!("myshim-selftest-bpf-{}", std::process::id()));
    fs::create_dir(&dir).unwrap();
    let rule = |allow: bool, typ, major: Option<i64>, minor: Option<i64>| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some("rwm".into()));
        r
    };
    let cat_null = || {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && cat /dev/null",
                dir.display()
            ))
            .status()
            .unwrap()
            .success()
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let deny_null = [
            rule(true, LinuxDeviceType::A, None, None),
            rule(false, LinuxDeviceType::C, Some(1), Some(3)),
        ];
        bpf::attach(&dir, &bpf::program(&deny_null).unwrap()).unwrap();
        assert!(!cat_null(), "/dev/null denied");
        bpf::attach(&dir, &bpf::program(&deny_null[..1]).unwrap()).unwrap();
        assert!(cat_null(), "/dev/null allowed after the update");
        assert_eq!(
            bpf::attached_to(&dir).unwrap().len(),
            1,
            "the old program is detached"
        );
    }));
    fs::remove_dir(&dir).unwrap();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

#[test]
#[ignore = "needs root and a cgroup v1 host; run by hand"]
fn v1_enter_joins_a_frozen_cgroup_last_in_the_freezer() {
    if !v1_root() {
        return;
    }
    let id = format!("myshim-selftest-enter-{}", std::process::id());
    let mgr = CgroupManager::new(Some(Path::new(&id)), &id).unwrap();
    let mut first = Command::new("sleep").arg("100").spawn().unwrap();
    let mut late = Command::new("sleep").arg("100").spawn().unwrap();
    let pid = late.id() as i32;
    let outcome = std::panic::catch_unwind(|| {
        mgr.apply(first.id() as i32).unwrap();
        mgr.freeze().unwrap();
        mgr.enter(pid).unwrap();
        let mut pids = mgr.pids().unwrap();
        pids.sort_unstable();
        let mut want = vec![first.id() as i32, pid];
        want.sort_unstable();
        assert_eq!(pids, want);
        let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        for dir in mgr.dirs() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
            assert!(
                procs.lines().any(|l| l == pid.to_string()),
                "{pid} not in {}: {theirs}",
                dir.display()
            );
        }
        assert!(mgr.is_frozen().unwrap());
    });
    let _ = mgr.thaw();
    for c in [&mut first, &mut late] {
        let _ = c.kill();
        let _ = c.wait();
    }
    mgr.destroy().unwrap();
    remove_parents(&mgr);
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}
