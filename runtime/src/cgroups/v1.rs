//! cgroup v1: one hierarchy per controller set. The cpuset fix-up a new cgroup needs before it
//! can take a process, the resource limits controller by controller (write orders mirror
//! runc's), and the freezer.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxResources,
};

use super::{convert, devices, files, v2, Hierarchy};
use crate::{Error, Result};

/// The directory of the v1 hierarchy holding `controller`, if mounted.
pub(super) fn dir_of<'a>(hierarchies: &'a [Hierarchy], controller: &str) -> Option<&'a Path> {
    hierarchies
        .iter()
        .find(|h| !h.unified && h.controllers.iter().any(|c| c == controller))
        .map(|h| h.dir.as_path())
}

/// Like [`dir_of`], for a limit the spec asks for: a missing controller is an error.
fn need<'a>(hierarchies: &'a [Hierarchy], controller: &str) -> Result<&'a Path> {
    dir_of(hierarchies, controller).ok_or_else(|| {
        anyhow::anyhow!(
            "the spec sets {controller} limits but no cgroup v1 {controller} hierarchy is mounted"
        )
        .into()
    })
}

/// A new cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses processes
/// (ENOSPC) until they are set: give every level from the hierarchy root down to `dir` that
/// still has them empty the values of its nearest parent.
pub(super) fn fill_cpuset(mountpoint: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(mountpoint).with_context(|| {
        format!(
            "cgroup {} is not below {}",
            dir.display(),
            mountpoint.display()
        )
    })?;
    let mut inherited = [
        (
            "cpuset.cpus",
            files::read(mountpoint, "cpuset.cpus")?.trim().to_string(),
        ),
        (
            "cpuset.mems",
            files::read(mountpoint, "cpuset.mems")?.trim().to_string(),
        ),
    ];
    let mut level = mountpoint.to_path_buf();
    for c in rel.components() {
        level.push(c);
        for (file, value) in inherited.iter_mut() {
            let own = files::read(&level, file)?;
            let own = own.trim();
            if own.is_empty() {
                files::write(&level, file, value)?;
            } else {
                *value = own.to_string();
            }
        }
    }
    Ok(())
}

/// Write the spec's limits to the v1 hierarchies (and, for hugetlb on a hybrid host whose
/// hugetlb controller lives in the cgroup2 hierarchy, to that one).
pub(super) fn set(hierarchies: &[Hierarchy], r: &LinuxResources) -> Result<()> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::invalid(
            "the spec sets `unified` resources, which need cgroup v2; this host uses cgroup v1",
        ));
    }
    if let Some(cpu) = r.cpu() {
        set_cpuset(hierarchies, cpu)?;
    }
    if let Some(rules) = r.devices() {
        set_devices(need(hierarchies, "devices")?, rules)?;
    }
    if let Some(memory) = r.memory() {
        set_memory(hierarchies, memory)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(hierarchies, cpu)?;
    }
    if let Some(pids) = r.pids() {
        let dir = need(hierarchies, "pids")?;
        files::write(dir, "pids.max", &convert::pids_max(pids.limit()))?;
    }
    if let Some(blkio) = r.block_io() {
        set_blkio(hierarchies, blkio)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        set_hugetlb(hierarchies, limits)?;
    }
    if r.network().is_some() {
        log::warn!("cgroups: network (net_cls/net_prio) resources are not supported; ignored");
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        log::warn!("cgroups: rdma resources are not supported; ignored");
    }
    Ok(())
}

fn set_cpuset(hierarchies: &[Hierarchy], cpu: &LinuxCpu) -> Result<()> {
    let cpus = cpu.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = cpu.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let dir = need(hierarchies, "cpuset")?;
    if let Some(cpus) = cpus {
        files::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = mems {
        files::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// Deny everything, then apply the rules in spec order (each can allow or deny).
fn set_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let lines = rules
        .iter()
        .map(devices::v1_rule)
        .collect::<Result<Vec<_>>>()?;
    files::write(dir, devices::V1_DENY, "a")?;
    for (file, line) in lines.into_iter().flatten() {
        files::write(dir, file, &line)?;
    }
    Ok(())
}

fn set_memory(hierarchies: &[Hierarchy], m: &LinuxMemory) -> Result<()> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        log::warn!("cgroups: kernel memory limits (kernel, kernelTCP) are deprecated; ignored");
    }
    if m.use_hierarchy().is_some() {
        log::debug!("cgroups: memory useHierarchy is deprecated (always on); ignored");
    }
    let limit = m.limit().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    let reservation = m.reservation().unwrap_or(0);
    let oom_off = m.disable_oom_killer() == Some(true);
    if limit == 0 && swap == 0 && reservation == 0 && m.swappiness().is_none() && !oom_off {
        return Ok(());
    }
    let dir = need(hierarchies, "memory")?;

    let has_memsw = (swap != 0 || limit == -1) && dir.join(MEMSW).exists();
    let current = if limit != 0 && swap != 0 {
        files::read_u64(dir, LIMIT)?
    } else {
        0
    };
    for (file, value) in convert::v1_memory_writes(limit, swap, current, has_memsw)? {
        if let Err(e) = files::write(dir, file, &value) {
            if file == LIMIT && files::errno(&e) == Some(libc::EBUSY) {
                // The kernel cannot reclaim enough to go below the new limit.
                let usage = files::read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
                let peak = files::read_u64(dir, "memory.max_usage_in_bytes").unwrap_or(0);
                return Err(e
                    .context(format!(
                        "memory limit {value} is below the current usage {usage} (peak {peak})"
                    ))
                    .into());
            }
            return Err(e.into());
        }
    }
    if reservation != 0 {
        files::write(dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            return Err(Error::invalid(format!(
                "memory swappiness {swappiness} is out of range 0..=100"
            )));
        }
        files::write(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if oom_off {
        files::write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn set_cpu(hierarchies: &[Hierarchy], cpu: &LinuxCpu) -> Result<()> {
    let shares = cpu.shares().filter(|v| *v != 0);
    let quota = cpu.quota().filter(|v| *v != 0);
    let period = cpu.period().filter(|v| *v != 0);
    let rt_period = cpu.realtime_period().filter(|v| *v != 0);
    let rt_runtime = cpu.realtime_runtime().filter(|v| *v != 0);
    let (idle, burst) = (cpu.idle(), cpu.burst());
    if shares.is_none()
        && quota.is_none()
        && period.is_none()
        && rt_period.is_none()
        && rt_runtime.is_none()
        && idle.is_none()
        && burst.is_none()
    {
        return Ok(());
    }
    let dir = need(hierarchies, "cpu")?;
    if let Some(shares) = shares {
        files::write(dir, "cpu.shares", &shares.to_string())?;
        // The kernel clamps silently: read back to report an out-of-range value.
        let actual = files::read_u64(dir, "cpu.shares")?;
        if actual != shares {
            return Err(Error::invalid(format!(
                "cpu shares {shares} out of the kernel's range (it would use {actual})"
            )));
        }
    }
    // A period shorter than the current one can be refused (EINVAL) while the old quota makes
    // old_quota/new_period exceed the parent's; then set the quota first and retry (runc).
    let mut period_later = None;
    if let Some(period) = period {
        if let Err(e) = files::write(dir, "cpu.cfs_period_us", &period.to_string()) {
            if files::errno(&e) == Some(libc::EINVAL) && quota.is_some() {
                period_later = Some(period);
            } else {
                return Err(e.into());
            }
        }
    }
    if let Some(quota) = quota {
        files::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(period) = period_later {
            files::write(dir, "cpu.cfs_period_us", &period.to_string())?;
        }
    }
    if let Some(burst) = burst {
        files::write(dir, "cpu.cfs_burst_us", &burst.to_string())?;
    }
    if let Some(idle) = idle {
        files::write(dir, "cpu.idle", &idle.to_string())?;
    }
    if let Some(p) = rt_period {
        files::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = rt_runtime {
        files::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    Ok(())
}

/// Write a CFQ-only knob (leaf weights): gone with CFQ (Linux 5.0), so a missing file is
/// logged and skipped.
fn write_cfq_only(dir: &Path, file: &str, value: &str) -> Result<()> {
    if !dir.join(file).exists() {
        log::warn!("cgroups: {file} does not exist (CFQ-only setting); ignored");
        return Ok(());
    }
    Ok(files::write(dir, file, value)?)
}

fn no_list<T>(list: &Option<Vec<T>>) -> bool {
    list.as_ref().is_none_or(Vec::is_empty)
}

fn set_blkio(hierarchies: &[Hierarchy], b: &LinuxBlockIo) -> Result<()> {
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    let weight = b.weight().filter(|w| *w != 0);
    let leaf_weight = b.leaf_weight().filter(|w| *w != 0);
    if weight.is_none()
        && leaf_weight.is_none()
        && no_list(b.weight_device())
        && throttles.iter().all(|(_, l)| no_list(*l))
    {
        return Ok(());
    }
    let dir = need(hierarchies, "blkio")?;
    // CFQ's blkio.weight, else BFQ's blkio.bfq.weight (runc's detection).
    let (weight_file, weight_device_file) = if dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    if let Some(w) = weight {
        files::write(dir, weight_file, &w.to_string())?;
    }
    if let Some(w) = leaf_weight {
        write_cfq_only(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            let line = convert::device_value_line(wd.major(), wd.minor(), w);
            files::write(dir, weight_device_file, &line)?;
        }
        if let Some(w) = wd.leaf_weight().filter(|w| *w != 0) {
            let line = convert::device_value_line(wd.major(), wd.minor(), w);
            write_cfq_only(dir, "blkio.leaf_weight_device", &line)?;
        }
    }
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            let line = convert::device_value_line(t.major(), t.minor(), t.rate());
            files::write(dir, file, &line)?;
        }
    }
    Ok(())
}

fn set_hugetlb(hierarchies: &[Hierarchy], limits: &[LinuxHugepageLimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    if let Some(dir) = dir_of(hierarchies, "hugetlb") {
        for l in limits {
            let value = l.limit().to_string();
            files::write(
                dir,
                &convert::hugetlb_v1_file(l.page_size(), false)?,
                &value,
            )?;
            let rsvd = convert::hugetlb_v1_file(l.page_size(), true)?;
            if dir.join(&rsvd).exists() {
                files::write(dir, &rsvd, &value)?;
            }
        }
        return Ok(());
    }
    // Hybrid host: hugetlb may be a cgroup2 controller in the unified hierarchy.
    if let Some(h) = hierarchies.iter().find(|h| h.unified) {
        v2::enable_controllers(&h.mountpoint, &h.dir, Some(&["hugetlb"]))?;
        return v2::set_hugetlb(&h.dir, limits);
    }
    Err(anyhow::anyhow!("the spec sets hugetlb limits but no hugetlb controller is mounted").into())
}

/// Upper bound on one freeze attempt loop.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Freeze the cgroup: write FROZEN until `freezer.state` reads FROZEN. A v1 freeze can stay in
/// FREEZING while processes fork or join, so retry (runc's empirical loop: now and then thaw
/// and sleep a little), bounded in time; on failure thaw again and error out.
pub(super) fn freeze(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    for i in 0..1000u32 {
        if i % 50 == 49 {
            let _ = files::write(dir, "freezer.state", "THAWED");
            sleep(Duration::from_millis(10));
        }
        files::write(dir, "freezer.state", "FROZEN")?;
        if i % 25 == 24 {
            sleep(Duration::from_micros(100));
        }
        let state = files::read(dir, "freezer.state")?;
        match state.trim() {
            "FROZEN" => {
                if i > 1 {
                    log::debug!("cgroups: {} frozen after {i} retries", dir.display());
                }
                return Ok(());
            }
            "FREEZING" => {}
            other => {
                return Err(anyhow::anyhow!(
                    "unexpected freezer state {other:?} in {} while freezing",
                    dir.display()
                )
                .into())
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let _ = files::write(dir, "freezer.state", "THAWED");
    Err(anyhow::anyhow!("unable to freeze {}: it stays FREEZING", dir.display()).into())
}

/// Thaw the cgroup (immediate on v1).
pub(super) fn thaw(dir: &Path) -> Result<()> {
    Ok(files::write(dir, "freezer.state", "THAWED")?)
}
