//! The spec's resource limits on the cgroupfs driver. cgroups-rs's `FsManager::set` writes what
//! it handles correctly (cpuset, cpu shares/quota/period/realtime, memory, pids, blkio, network);
//! this module splits the spec into that part and the part it lacks or gets wrong, which is
//! written here: device rules (its v1 writer turns the `*` wildcards into `0`, and v2 needs an
//! eBPF program, [`super::bpf`]), hugetlb (the crate ignores the `rsvd` files and cannot see the
//! cgroup2 hierarchy of a hybrid host), blkio weights (the crate knows only CFQ's
//! `blkio.weight` on v1 and BFQ's `io.bfq.weight` on v2; the kernel has the other one, or
//! `io.weight`, depending on the scheduler), `cpu.cfs_burst_us`/`cpu.max.burst` and
//! `cpu.idle`, and the v2 `unified` map.

use std::path::Path;

use anyhow::Context;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxHugepageLimit, LinuxResources};

use super::{convert, devices, files};
use crate::{Error, Result};

/// What the crate does not write: kept out of its copy of the resources.
#[derive(Debug, Default, PartialEq)]
pub struct Own {
    /// Device rules (`None`: the spec has none, leave the cgroup's rules alone).
    pub devices: Option<Vec<LinuxDeviceCgroup>>,
    /// hugetlb limits.
    pub hugetlb: Vec<LinuxHugepageLimit>,
    /// `cpu.cfs_burst_us` (v1) / `cpu.max.burst` (v2), µs.
    pub cpu_burst: Option<u64>,
    /// `cpu.idle`.
    pub cpu_idle: Option<i64>,
    /// blkio weight (not 0).
    pub weight: Option<u16>,
    /// Per-device blkio weights (major, minor, weight).
    pub weight_devices: Vec<(i64, i64, u16)>,
    /// The `unified` map, sorted by key (v2 only).
    pub unified: Vec<(String, String)>,
}

/// Split `r` into the part cgroups-rs writes and the [`Own`] part. Refuses, before anything is
/// written, what can never apply: `unified` on v1, a bad `unified` key, a bad device rule.
///
/// Adjustments for the crate: CFQ-only leaf weights (gone since Linux 5.0) are dropped with a
/// warning; on v2 the network resources (no v2 controller) are dropped with a warning, and a
/// memory limit without a swap value gets swap "max": the crate would otherwise write
/// `memory.swap.max` 0 and take the container's swap away, which runc does not do.
pub fn split(r: &LinuxResources, v2: bool) -> Result<(LinuxResources, Own)> {
    let mut unified: Vec<(String, String)> = r
        .unified()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    unified.sort();
    if !unified.is_empty() && !v2 {
        return Err(Error::invalid(
            "the spec sets `unified` resources, which need cgroup v2; this host uses cgroup v1",
        ));
    }
    for (key, _) in &unified {
        convert::check_unified_key(key)?;
    }
    if let Some(rules) = r.devices() {
        for rule in rules {
            devices::v1_rule(rule)?;
        }
    }
    let mut rest = r.clone();
    let own = Own {
        devices: rest.devices_mut().take(),
        hugetlb: rest.hugepage_limits_mut().take().unwrap_or_default(),
        cpu_burst: rest.cpu().as_ref().and_then(|c| c.burst()),
        cpu_idle: rest.cpu().as_ref().and_then(|c| c.idle()),
        weight: rest
            .block_io()
            .as_ref()
            .and_then(|b| b.weight())
            .filter(|w| *w != 0),
        weight_devices: rest
            .block_io()
            .as_ref()
            .and_then(|b| b.weight_device().clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|w| Some((w.major(), w.minor(), w.weight().filter(|w| *w != 0)?)))
            .collect(),
        unified,
    };
    rest.set_unified(None);
    if let Some(cpu) = rest.cpu_mut() {
        cpu.set_burst(None);
        cpu.set_idle(None);
    }
    if let Some(b) = rest.block_io_mut() {
        let leaf = b.leaf_weight().is_some()
            || b.weight_device()
                .iter()
                .flatten()
                .any(|w| w.leaf_weight().is_some());
        if leaf {
            log::warn!(
                "cgroups: blkio leafWeight is a CFQ setting (gone since Linux 5.0); ignored"
            );
        }
        b.set_weight(None);
        b.set_leaf_weight(None);
        b.set_weight_device(None);
    }
    if v2 {
        if rest.network().is_some() {
            log::warn!("cgroups: network resources have no cgroup v2 controller; ignored");
            rest.set_network(None);
        }
        if let Some(m) = rest.memory_mut() {
            if m.swap().is_none() && m.limit().is_some_and(|l| l > 0) {
                m.set_swap(Some(-1));
            }
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        log::warn!("cgroups: rdma resources are not supported; ignored");
    }
    Ok((rest, own))
}

/// v1: deny everything, then apply the rules in spec order (each can allow or deny).
pub fn set_devices_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
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

/// hugetlb limits in a v1 `hugetlb` hierarchy (`v2` false) or a cgroup2 one, with the
/// reservation (`rsvd`) files when the kernel has them.
pub fn set_hugetlb(dir: &Path, v2: bool, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let (file, rsvd, value) = if v2 {
            (
                convert::hugetlb_v2_file(l.page_size(), false)?,
                convert::hugetlb_v2_file(l.page_size(), true)?,
                convert::hugetlb_v2_limit(l.limit()),
            )
        } else {
            (
                convert::hugetlb_v1_file(l.page_size(), false)?,
                convert::hugetlb_v1_file(l.page_size(), true)?,
                l.limit().to_string(),
            )
        };
        files::write(dir, &file, &value)?;
        if dir.join(&rsvd).exists() {
            files::write(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}

/// blkio weights in the file the kernel has: v1 `blkio.weight` (CFQ) or `blkio.bfq.weight`;
/// v2 `io.bfq.weight` (BFQ: the v1 scale) or `io.weight` (converted).
pub fn set_weights(dir: &Path, v2: bool, own: &Own) -> Result<()> {
    if own.weight.is_none() && own.weight_devices.is_empty() {
        return Ok(());
    }
    let (file, device_file, convert) = match v2 {
        false if dir.join("blkio.weight").exists() => {
            ("blkio.weight", "blkio.weight_device", false)
        }
        false => ("blkio.bfq.weight", "blkio.bfq.weight_device", false),
        true if dir.join("io.bfq.weight").exists() => ("io.bfq.weight", "io.bfq.weight", false),
        true => ("io.weight", "io.weight", true),
    };
    let value = |w: u16| {
        if convert {
            convert::blkio_weight_to_io_weight(w)
        } else {
            u64::from(w)
        }
    };
    if let Some(w) = own.weight {
        files::write(dir, file, &value(w).to_string())?;
    }
    for (major, minor, w) in &own.weight_devices {
        files::write(dir, device_file, &format!("{major}:{minor} {}", value(*w)))?;
    }
    Ok(())
}

/// CFS burst and idle: `cpu_dir` is the v1 `cpu` hierarchy's directory or the v2 cgroup.
pub fn set_cpu_extras(cpu_dir: &Path, v2: bool, own: &Own) -> Result<()> {
    if let Some(burst) = own.cpu_burst {
        let file = if v2 {
            "cpu.max.burst"
        } else {
            "cpu.cfs_burst_us"
        };
        files::write(cpu_dir, file, &burst.to_string())?;
    }
    if let Some(idle) = own.cpu_idle {
        files::write(cpu_dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

/// The `unified` map, verbatim, last (it may override what the typed fields set).
pub fn set_unified(dir: &Path, unified: &[(String, String)]) -> Result<()> {
    for (key, value) in unified {
        files::write(dir, key, value).with_context(|| format!("unified resource {key}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
        LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    fn spec() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .access("m")
                .build()
                .unwrap()])
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 26)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .burst(1000u64)
                    .idle(1i64)
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(1 << 21)
                .build()
                .unwrap()])
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(100u16)
                    .leaf_weight(50u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn split_keeps_what_the_crate_lacks() {
        let (rest, own) = split(&spec(), false).unwrap();
        assert!(rest.devices().is_none());
        assert!(rest.hugepage_limits().is_none());
        let cpu = rest.cpu().as_ref().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.burst(), cpu.idle()),
            (Some(512), None, None)
        );
        let b = rest.block_io().as_ref().unwrap();
        assert_eq!((b.weight(), b.leaf_weight()), (None, None));
        assert_eq!(own.weight, Some(100));
        // v1: swap stays unset.
        assert_eq!(rest.memory().as_ref().unwrap().swap(), None);
        assert_eq!(own.devices.as_ref().map(Vec::len), Some(1));
        assert_eq!(own.hugetlb.len(), 1);
        assert_eq!((own.cpu_burst, own.cpu_idle), (Some(1000), Some(1)));
    }

    #[test]
    fn split_v2_keeps_swap_and_unified() {
        let mut r = spec();
        r.set_unified(Some(HashMap::from([
            ("memory.high".to_string(), "1000000".to_string()),
            ("cpu.weight".to_string(), "10".to_string()),
        ])));
        let (rest, own) = split(&r, true).unwrap();
        assert_eq!(rest.memory().as_ref().unwrap().swap(), Some(-1));
        assert!(rest.unified().is_none());
        assert_eq!(own.unified[0].0, "cpu.weight");
        assert_eq!(own.unified[1].0, "memory.high");
    }

    #[test]
    fn split_refuses_before_writing() {
        let mut r = spec();
        r.set_unified(Some(HashMap::from([("memory.high".into(), "1".into())])));
        assert!(split(&r, false).is_err(), "unified on v1");
        r.set_unified(Some(HashMap::from([("../x".into(), "1".into())])));
        assert!(split(&r, true).is_err(), "bad unified key");
    }
}
