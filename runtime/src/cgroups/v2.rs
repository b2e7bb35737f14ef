//! cgroup v2 (the unified hierarchy): enabling controllers down the ancestors'
//! `cgroup.subtree_control`, the resource limits in v2 files and units, `cgroup.freeze` and
//! `cgroup.kill`.
//!
//! Devices: v2 has no devices files; access control needs an eBPF program attached to the cgroup,
//! which is not implemented yet. Rules beyond the usual deny-all plus default device list are
//! logged as a warning and NOT enforced (nor is the default deny-all).

use std::collections::BTreeSet;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::{convert, devices, files, stats};
use crate::{Error, Result};

/// Enable controllers in `cgroup.subtree_control` of every ancestor of `dir` from the hierarchy
/// root (`mountpoint`) down, so that `dir` gets their files. Each level enables what it has
/// itself (its `cgroup.controllers`; the root's set on the way down), restricted to `only`.
/// Levels that refuse (a non-root cgroup with processes of its own, EBUSY) are logged and
/// skipped: the missing files then show up as errors when limits are written.
pub(super) fn enable_controllers(
    mountpoint: &Path,
    dir: &Path,
    only: Option<&[&str]>,
) -> Result<()> {
    let rel = dir.strip_prefix(mountpoint).with_context(|| {
        format!(
            "cgroup {} is not below {}",
            dir.display(),
            mountpoint.display()
        )
    })?;
    let mut level = mountpoint.to_path_buf();
    for c in rel.components() {
        let available = files::read(&level, "cgroup.controllers")?;
        let enabled = files::read(&level, "cgroup.subtree_control")?;
        let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
        let missing: Vec<&str> = available
            .split_whitespace()
            .filter(|c| only.is_none_or(|o| o.contains(c)) && !enabled.contains(c))
            .collect();
        if !missing.is_empty() {
            let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
            if let Err(e) = files::write(&level, "cgroup.subtree_control", &all.join(" ")) {
                log::debug!("cgroups: {e:#}; enabling one by one");
                for c in &missing {
                    if let Err(e) = files::write(&level, "cgroup.subtree_control", &format!("+{c}"))
                    {
                        log::debug!("cgroups: {e:#}");
                    }
                }
            }
        }
        level.push(c);
    }
    Ok(())
}

/// Write the spec's limits to the cgroup `dir`.
pub(super) fn set(dir: &Path, r: &LinuxResources) -> Result<()> {
    // Check what can be checked before writing anything.
    let mut unified: Vec<(&String, &String)> = r.unified().iter().flatten().collect();
    unified.sort();
    for (key, _) in &unified {
        convert::check_unified_key(key)?;
    }
    if let Some(rules) = r.devices() {
        for rule in rules {
            devices::v1_rule(rule)?;
        }
        if !devices::only_default_rules(rules) {
            log::warn!(
                "cgroups: device rules on cgroup v2 need an eBPF program, not implemented: \
                 device access is not restricted by the cgroup"
            );
        }
    }

    if let Some(cpu) = r.cpu() {
        set_cpuset(dir, cpu)?;
    }
    if let Some(memory) = r.memory() {
        set_memory(dir, memory)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(dir, cpu)?;
    }
    if let Some(pids) = r.pids() {
        files::write(dir, "pids.max", &convert::pids_max(pids.limit()))?;
    }
    if let Some(blkio) = r.block_io() {
        set_io(dir, blkio)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        set_hugetlb(dir, limits)?;
    }
    if r.network().is_some() {
        log::warn!("cgroups: network resources have no cgroup v2 controller; ignored");
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        log::warn!("cgroups: rdma resources are not supported; ignored");
    }
    // Last, so that they can override what the typed fields set.
    for (key, value) in unified {
        files::write(dir, key, value).with_context(|| format!("unified resource {key}"))?;
    }
    Ok(())
}

fn set_cpuset(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        files::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        files::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        log::warn!("cgroups: kernel memory limits (kernel, kernelTCP) are deprecated; ignored");
    }
    if m.swappiness().is_some() {
        log::warn!("cgroups: memory swappiness has no cgroup v2 equivalent; ignored");
    }
    if m.disable_oom_killer() == Some(true) {
        log::warn!("cgroups: disableOOMKiller has no cgroup v2 equivalent; ignored");
    }
    let writes = convert::v2_memory_writes(
        m.limit().unwrap_or(0),
        m.reservation().unwrap_or(0),
        m.swap().unwrap_or(0),
    )?;
    for (file, value) in writes {
        if let Err(e) = files::write(dir, file, &value) {
            // No swap accounting: "no limit" and "no swap" are what we have anyway.
            if file == "memory.swap.max"
                && files::is_not_found(&e)
                && (value == "max" || value == "0")
            {
                log::debug!("cgroups: {e:#}; ignored");
                continue;
            }
            return Err(e.into());
        }
    }
    Ok(())
}

fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    let weight = convert::shares_to_weight(cpu.shares().unwrap_or(0));
    if weight != 0 {
        files::write(dir, "cpu.weight", &weight.to_string())?;
    }
    if let Some(max) = convert::cpu_max(cpu.quota(), cpu.period()) {
        files::write(dir, "cpu.max", &max)?;
    }
    if let Some(burst) = cpu.burst() {
        files::write(dir, "cpu.max.burst", &burst.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        files::write(dir, "cpu.idle", &idle.to_string())?;
    }
    if cpu.realtime_period().is_some_and(|v| v != 0)
        || cpu.realtime_runtime().is_some_and(|v| v != 0)
    {
        log::warn!("cgroups: realtime cpu limits have no cgroup v2 equivalent; ignored");
    }
    Ok(())
}

fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // With the BFQ scheduler io.bfq.weight takes blkio weights as they are (runc).
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            files::write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            let v = convert::blkio_weight_to_io_weight(w);
            files::write(dir, "io.weight", &v.to_string())?;
        }
    }
    if b.leaf_weight().is_some() {
        log::warn!("cgroups: blkio leafWeight has no cgroup v2 equivalent; ignored");
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            if bfq {
                let line = convert::device_value_line(wd.major(), wd.minor(), w);
                files::write(dir, "io.bfq.weight", &line)?;
            } else {
                let v = convert::blkio_weight_to_io_weight(w);
                let line = convert::device_value_line(wd.major(), wd.minor(), v);
                files::write(dir, "io.weight", &line)?;
            }
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            let line = convert::io_max_line(t.major(), t.minor(), key, t.rate());
            files::write(dir, "io.max", &line)?;
        }
    }
    Ok(())
}

/// hugetlb limits (also used for the cgroup2 hierarchy of a hybrid host).
pub(super) fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let value = convert::hugetlb_v2_limit(l.limit());
        files::write(
            dir,
            &convert::hugetlb_v2_file(l.page_size(), false)?,
            &value,
        )?;
        let rsvd = convert::hugetlb_v2_file(l.page_size(), true)?;
        if dir.join(&rsvd).exists() {
            files::write(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}

/// How long to wait for `cgroup.events` to report the new freezer state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Freeze (`true`) or thaw the cgroup and wait until `cgroup.events` says `frozen 1` (or `0`).
/// A freeze that does not complete in time is undone and reported.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "1" } else { "0" };
    files::write(dir, "cgroup.freeze", want)?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut pause = Duration::from_micros(500);
    loop {
        let events = files::read(dir, "cgroup.events")?;
        if stats::parse_flat_keyed(&events).get("frozen").copied() == Some(u64::from(frozen)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            break;
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    if frozen {
        let _ = files::write(dir, "cgroup.freeze", "0");
    }
    Err(anyhow::anyhow!(
        "{} did not become {} within {FREEZE_TIMEOUT:?}",
        dir.display(),
        if frozen { "frozen" } else { "thawed" }
    )
    .into())
}

/// Kill every process of the cgroup at once with `cgroup.kill` (Linux 5.14+). `Ok(false)` when
/// the kernel does not have it.
pub(super) fn kill(dir: &Path) -> Result<bool> {
    match files::write(dir, "cgroup.kill", "1") {
        Ok(()) => Ok(true),
        Err(e) if files::is_not_found(&e) && dir.exists() => Ok(false),
        Err(e) if files::is_not_found(&e) => Ok(true), // no cgroup, nothing to kill
        Err(e) => Err(Error::Other(e)),
    }
}

/// Tests on a fake cgroup directory in /tmp (plain files: each write replaces the start of the
/// file, so only single-write files are checked). No root needed.
#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    use super::*;

    struct FakeDir(PathBuf);

    impl FakeDir {
        fn new(name: &str, files: &[(&str, &str)]) -> FakeDir {
            let dir = std::env::temp_dir().join(format!("myshim-v2-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            for (f, content) in files {
                let path = dir.join(f);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            }
            FakeDir(dir)
        }
        fn read(&self, f: &str) -> String {
            fs::read_to_string(self.0.join(f)).unwrap()
        }
    }

    impl Drop for FakeDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn set_writes_v2_files() {
        let files = [
            "memory.max",
            "memory.low",
            "memory.swap.max",
            "cpu.weight",
            "cpu.max",
            "pids.max",
            "io.weight",
            "io.max",
            "hugetlb.2MB.max",
            "memory.high",
        ];
        let fake = FakeDir::new("set", &files.map(|f| (f, "")));
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 30)
                    .reservation(1i64 << 29)
                    .swap(3i64 << 30)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .rate(100u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(-1)
                .build()
                .unwrap()])
            .unified(std::collections::HashMap::from([(
                "memory.high".to_string(),
                "123456".to_string(),
            )]))
            .build()
            .unwrap();
        set(&fake.0, &r).unwrap();
        assert_eq!(fake.read("memory.max"), (1u64 << 30).to_string());
        assert_eq!(fake.read("memory.low"), (1u64 << 29).to_string());
        assert_eq!(fake.read("memory.swap.max"), (2u64 << 30).to_string());
        assert_eq!(fake.read("cpu.weight"), "39");
        assert_eq!(fake.read("cpu.max"), "50000 100000");
        assert_eq!(fake.read("pids.max"), "max");
        assert_eq!(fake.read("io.weight"), (1 + 490 * 9999 / 990).to_string());
        assert_eq!(fake.read("io.max"), "8:0 wiops=100");
        assert_eq!(fake.read("hugetlb.2MB.max"), "max");
        assert_eq!(fake.read("memory.high"), "123456");
    }

    #[test]
    fn set_refuses_bad_input_before_writing() {
        let fake = FakeDir::new("bad", &[("pids.max", "")]);
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .unified(std::collections::HashMap::from([(
                "../escape.max".to_string(),
                "1".to_string(),
            )]))
            .build()
            .unwrap();
        assert!(matches!(set(&fake.0, &r), Err(Error::InvalidConfig(_))));
        assert_eq!(fake.read("pids.max"), "");
        // A missing controller file names the file.
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(4096i64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = format!("{:#}", anyhow::Error::from(set(&fake.0, &r).unwrap_err()));
        assert!(
            err.contains("write 4096 to ") && err.contains("memory.max"),
            "{err}"
        );
    }

    #[test]
    fn swap_max_missing_is_fine_when_unlimited() {
        let fake = FakeDir::new("noswap", &[("memory.max", "")]);
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        set(&fake.0, &r).unwrap();
        assert_eq!(fake.read("memory.max"), "max");
    }

    #[test]
    fn controllers_enabled_down_the_ancestors() {
        let fake = FakeDir::new(
            "enable",
            &[
                ("cgroup.controllers", "cpu memory pids\n"),
                ("cgroup.subtree_control", ""),
                ("a/cgroup.controllers", "cpu memory pids\n"),
                ("a/cgroup.subtree_control", "cpu\n"),
                ("a/b/cgroup.controllers", "cpu memory pids\n"),
                ("a/b/cgroup.subtree_control", "cpu memory pids\n"),
                ("a/b/c/cgroup.subtree_control", "untouched"),
            ],
        );
        enable_controllers(&fake.0, &fake.0.join("a/b/c"), None).unwrap();
        assert_eq!(fake.read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(fake.read("a/cgroup.subtree_control"), "+memory +pids");
        assert_eq!(fake.read("a/b/cgroup.subtree_control"), "cpu memory pids\n");
        assert_eq!(fake.read("a/b/c/cgroup.subtree_control"), "untouched");

        let fake = FakeDir::new(
            "enable-only",
            &[
                ("cgroup.controllers", "cpu hugetlb\n"),
                ("cgroup.subtree_control", ""),
            ],
        );
        enable_controllers(&fake.0, &fake.0.join("x"), Some(&["hugetlb"])).unwrap();
        assert_eq!(fake.read("cgroup.subtree_control"), "+hugetlb");
    }

    #[test]
    fn freeze_waits_for_events() {
        let fake = FakeDir::new(
            "freeze",
            &[
                ("cgroup.freeze", ""),
                ("cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        set_frozen(&fake.0, true).unwrap();
        assert_eq!(fake.read("cgroup.freeze"), "1");
    }
}
