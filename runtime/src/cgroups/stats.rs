//! Resource usage statistics of a cgroup: the plain [`Stats`] structure, the parsers of the
//! cgroupfs stat formats (flat keyed files, v1 blkio lists, v2 `io.stat`), and the readers for
//! v1 and v2. A file that does not exist (controller not mounted or not enabled, older kernel)
//! leaves its fields at zero.
//!
//! The structure carries what containerd's cgroup metrics (`io.containerd.cgroups.v1.Metrics`,
//! `io.containerd.cgroups.v2.Metrics`) report, so a shim can fill those from it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{files, v1, Hierarchy};
use crate::Result;

/// Statistics of one cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory usage and limits.
    pub memory: MemoryStats,
    /// Number of tasks.
    pub pids: PidsStats,
    /// Block I/O.
    pub blkio: BlkioStats,
    /// Huge pages, one entry per page size (v1 `hugetlb` hierarchy, or the cgroup2 one: on v2
    /// and on a hybrid host whose hugetlb controller lives there).
    pub hugetlb: Vec<HugetlbStats>,
}

/// CPU usage, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Total CPU time.
    pub usage_total_ns: u64,
    /// CPU time in user mode.
    pub usage_user_ns: u64,
    /// CPU time in kernel mode.
    pub usage_kernel_ns: u64,
    /// Total CPU time per CPU (v1 only; empty on v2).
    pub per_cpu_ns: Vec<u64>,
    /// CFS bandwidth throttling.
    pub throttling: Throttling,
}

/// CFS bandwidth throttling counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Total time throttled, in nanoseconds.
    pub throttled_time_ns: u64,
    /// Periods in which a burst (`cfs_burst_us` / `cpu.max.burst`) was used.
    pub bursts: u64,
    /// Total burst time used, in nanoseconds.
    pub burst_time_ns: u64,
}

/// Memory usage, in bytes. A limit of `u64::MAX` means "no limit" on v2; v1 reports its own huge
/// number (page-rounded `i64::MAX`) as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Current usage (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage: u64,
    /// Peak usage (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`; 0 when unknown).
    pub max_usage: u64,
    /// Memory limit.
    pub limit: u64,
    /// Page cache (v1 `total_cache`, v2 `file` of memory.stat).
    pub cache: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon` of memory.stat).
    pub rss: u64,
    /// Swap in use (v1: memsw usage minus memory usage; v2 `memory.swap.current`).
    pub swap_usage: u64,
    /// Swap limit as the kernel has it: v1 memory+swap (`memory.memsw.limit_in_bytes`), v2 swap
    /// alone (`memory.swap.max`).
    pub swap_limit: u64,
    /// Times the limit was hit (v1 `memory.failcnt`, v2 `max` of memory.events).
    pub failcnt: u64,
    /// OOM situations (v2 `oom` of memory.events; v1: 0).
    pub oom: u64,
    /// Processes killed by the OOM killer (`oom_kill` of memory.oom_control / memory.events).
    pub oom_kill: u64,
    /// The whole `memory.stat`.
    pub stat: BTreeMap<String, u64>,
    /// v1 memory+swap counters (`memory.memsw.*`; all 0 without swap accounting).
    pub memsw: MemoryEntry,
    /// v1 kernel memory counters (`memory.kmem.*`).
    pub kernel: MemoryEntry,
    /// v1 kernel TCP buffer counters (`memory.kmem.tcp.*`).
    pub kernel_tcp: MemoryEntry,
    /// v2 peak swap usage (`memory.swap.peak`; 0 when unknown).
    pub swap_max_usage: u64,
    /// v1 `oom_kill_disable` of memory.oom_control.
    pub oom_kill_disable: u64,
    /// v1 `under_oom` of memory.oom_control.
    pub under_oom: u64,
    /// v2 `memory.events` (low, high, max, oom, oom_kill, oom_group_kill).
    pub events: BTreeMap<String, u64>,
}

/// One v1 set of memory counters (`memory.*`, `memory.memsw.*`, `memory.kmem.*`,
/// `memory.kmem.tcp.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// `usage_in_bytes`
    pub usage: u64,
    /// `max_usage_in_bytes`
    pub max_usage: u64,
    /// `limit_in_bytes`
    pub limit: u64,
    /// `failcnt`
    pub failcnt: u64,
}

/// Huge page usage of one page size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugetlbStats {
    /// The page size as cgroupfs names it (`2MB`, `1GB`).
    pub pagesize: String,
    /// Current usage in bytes (v1 `usage_in_bytes`, v2 `current`).
    pub usage: u64,
    /// Peak usage in bytes (v1 `max_usage_in_bytes`; v2: 0).
    pub max_usage: u64,
    /// The limit (v1 `limit_in_bytes`, v2 `max`: `u64::MAX` for none).
    pub limit: u64,
    /// Allocations refused by the limit (v1 `failcnt`, v2 `max` of `events`).
    pub failcnt: u64,
}

/// Task counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Tasks in the cgroup now.
    pub current: u64,
    /// `pids.max`; 0 when there is no limit.
    pub limit: u64,
}

/// Block I/O per device and operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioStats {
    /// Bytes transferred.
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations done.
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// v1 CFQ (or BFQ debug) only: operations queued.
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// v1 CFQ (or BFQ debug) only: time spent servicing, in nanoseconds.
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// v1 CFQ (or BFQ debug) only: time spent waiting, in nanoseconds.
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// v1 CFQ (or BFQ debug) only: merged operations.
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// v1 CFQ (or BFQ debug) only: disk time per device (op empty).
    pub io_time_recursive: Vec<BlkioEntry>,
    /// v1 CFQ (or BFQ debug) only: sectors transferred per device (op empty).
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One device/operation counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` (v1 also `Total`); empty for per-device
    /// counters (`io_time`, `sectors`).
    pub op: String,
    /// The counter.
    pub value: u64,
    /// The device node (`/dev/sda`) when sysfs names it, else empty.
    pub device: String,
}

/// Parse a flat keyed file (`key value` lines: memory.stat, cpu.stat, memory.events,
/// cgroup.events, cpuacct.stat, memory.oom_control). Lines that do not parse are skipped.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let key = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

/// Parse a single-value file where `max` means no limit (`u64::MAX`). Empty or bad text is 0.
pub fn parse_u64_or_max(text: &str) -> u64 {
    match text.trim() {
        "max" => u64::MAX,
        t => t.parse().unwrap_or(0),
    }
}

/// Parse a space-separated list of numbers (cpuacct.usage_percpu).
pub fn parse_list(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Parse a v1 blkio list (`8:0 Read 4096` lines, or `8:0 4096` for per-device counters such as
/// `io_time` and `sectors`; the closing `Total N` line is skipped).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, value] => (*dev, *op, *value),
                [dev, value] => (*dev, "", *value),
                _ => return None,
            };
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
                device: String::new(),
            })
        })
        .collect()
}

/// Parse v2 `io.stat` (`8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` lines) into
/// (bytes, operations) with v1-style operation names.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in fields {
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else {
                continue;
            };
            let (list, op) = match key {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
                device: String::new(),
            });
        }
    }
    (bytes, ios)
}

/// Text of `dir/file`, empty when it does not exist.
fn text(dir: &Path, file: &str) -> Result<String> {
    Ok(files::read_opt(dir, file)?.unwrap_or_default())
}

/// One number from `dir/file` (`max`: `u64::MAX`), 0 when it does not exist.
fn number(dir: &Path, file: &str) -> Result<u64> {
    Ok(parse_u64_or_max(&text(dir, file)?))
}

/// The v1 counters `<prefix>usage_in_bytes`, `max_usage_in_bytes`, `limit_in_bytes`, `failcnt`.
fn memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        usage: number(dir, &format!("{prefix}usage_in_bytes"))?,
        max_usage: number(dir, &format!("{prefix}max_usage_in_bytes"))?,
        limit: number(dir, &format!("{prefix}limit_in_bytes"))?,
        failcnt: number(dir, &format!("{prefix}failcnt"))?,
    })
}

/// The page sizes that have a `hugetlb.<size>.<suffix>` file among `names` (reserved-page
/// files `hugetlb.<size>.rsvd.*` are not sizes), sorted.
pub fn hugetlb_sizes<'a>(names: impl IntoIterator<Item = &'a str>, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = names
        .into_iter()
        .filter_map(|n| {
            n.strip_prefix("hugetlb.")?
                .strip_suffix(suffix)?
                .strip_suffix('.')
        })
        .filter(|size| !size.is_empty() && !size.contains('.'))
        .map(str::to_string)
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

/// The file names in `dir` (empty when it does not exist).
fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Huge page usage from a v1 hugetlb cgroup.
fn hugetlb_v1(dir: &Path) -> Result<Vec<HugetlbStats>> {
    let names = file_names(dir);
    hugetlb_sizes(names.iter().map(String::as_str), "limit_in_bytes")
        .into_iter()
        .map(|size| {
            let e = memory_entry(dir, &format!("hugetlb.{size}."))?;
            Ok(HugetlbStats {
                pagesize: size,
                usage: e.usage,
                max_usage: e.max_usage,
                limit: e.limit,
                failcnt: e.failcnt,
            })
        })
        .collect()
}

/// Huge page usage from a cgroup2 cgroup (empty when hugetlb is not enabled there).
fn hugetlb_v2(dir: &Path) -> Result<Vec<HugetlbStats>> {
    let names = file_names(dir);
    hugetlb_sizes(names.iter().map(String::as_str), "max")
        .into_iter()
        .map(|size| {
            let events = parse_flat_keyed(&text(dir, &format!("hugetlb.{size}.events"))?);
            Ok(HugetlbStats {
                usage: number(dir, &format!("hugetlb.{size}.current"))?,
                max_usage: 0,
                limit: number(dir, &format!("hugetlb.{size}.max"))?,
                failcnt: events.get("max").copied().unwrap_or(0),
                pagesize: size,
            })
        })
        .collect()
}

/// The `DEVNAME` of a sysfs `uevent` file.
pub fn parse_uevent_devname(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// Name the device of every entry (`/dev/<DEVNAME>` from `/sys/dev/block/M:m/uevent`), looking
/// each device up once; a device sysfs does not know keeps an empty name.
fn name_devices(lists: &mut [&mut Vec<BlkioEntry>]) {
    let mut names: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for list in lists.iter_mut() {
        for e in list.iter_mut() {
            e.device = names
                .entry((e.major, e.minor))
                .or_insert_with(|| {
                    let uevent = format!("/sys/dev/block/{}:{}/uevent", e.major, e.minor);
                    std::fs::read_to_string(uevent)
                        .ok()
                        .and_then(|t| parse_uevent_devname(&t).map(|n| format!("/dev/{n}")))
                        .unwrap_or_default()
                })
                .clone();
        }
    }
}

impl BlkioStats {
    fn name_devices(&mut self) {
        name_devices(&mut [
            &mut self.io_service_bytes_recursive,
            &mut self.io_serviced_recursive,
            &mut self.io_queued_recursive,
            &mut self.io_service_time_recursive,
            &mut self.io_wait_time_recursive,
            &mut self.io_merged_recursive,
            &mut self.io_time_recursive,
            &mut self.sectors_recursive,
        ]);
    }
}

/// Statistics from the v1 hierarchies (and the cgroup2 one of a hybrid host, for hugetlb).
pub(super) fn read_v1(hierarchies: &[Hierarchy]) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(dir) = v1::dir_of(hierarchies, "cpuacct") {
        let cpu = &mut s.cpu;
        cpu.usage_total_ns = number(dir, "cpuacct.usage")?;
        cpu.per_cpu_ns = parse_list(&text(dir, "cpuacct.usage_percpu")?);
        if dir.join("cpuacct.usage_user").exists() {
            cpu.usage_user_ns = number(dir, "cpuacct.usage_user")?;
            cpu.usage_kernel_ns = number(dir, "cpuacct.usage_sys")?;
        } else {
            // cpuacct.stat counts USER_HZ ticks.
            let stat = parse_flat_keyed(&text(dir, "cpuacct.stat")?);
            let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(100);
            let ns = |k: &str| {
                stat.get(k)
                    .copied()
                    .unwrap_or(0)
                    .saturating_mul(1_000_000_000 / hz)
            };
            cpu.usage_user_ns = ns("user");
            cpu.usage_kernel_ns = ns("system");
        }
    }
    if let Some(dir) = v1::dir_of(hierarchies, "cpu") {
        let stat = parse_flat_keyed(&text(dir, "cpu.stat")?);
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        s.cpu.throttling = Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time_ns: get("throttled_time"),
            bursts: get("nr_bursts"),
            burst_time_ns: get("burst_time"),
        };
    }
    if let Some(dir) = v1::dir_of(hierarchies, "memory") {
        let m = &mut s.memory;
        let usage = memory_entry(dir, "memory.")?;
        m.usage = usage.usage;
        m.max_usage = usage.max_usage;
        m.limit = usage.limit;
        m.failcnt = usage.failcnt;
        m.stat = parse_flat_keyed(&text(dir, "memory.stat")?);
        let stat = |a: &str, b: &str| {
            m.stat
                .get(a)
                .or_else(|| m.stat.get(b))
                .copied()
                .unwrap_or(0)
        };
        m.cache = stat("total_cache", "cache");
        m.rss = stat("total_rss", "rss");
        m.memsw = memory_entry(dir, "memory.memsw.")?;
        m.kernel = memory_entry(dir, "memory.kmem.")?;
        m.kernel_tcp = memory_entry(dir, "memory.kmem.tcp.")?;
        m.swap_usage = m.memsw.usage.saturating_sub(m.usage);
        m.swap_limit = m.memsw.limit;
        let oom = parse_flat_keyed(&text(dir, "memory.oom_control")?);
        let get = |k: &str| oom.get(k).copied().unwrap_or(0);
        m.oom_kill = get("oom_kill");
        m.oom_kill_disable = get("oom_kill_disable");
        m.under_oom = get("under_oom");
    }
    if let Some(dir) = v1::dir_of(hierarchies, "pids") {
        s.pids = pids(dir)?;
    }
    if let Some(dir) = v1::dir_of(hierarchies, "blkio") {
        // CFQ, then BFQ, then (bytes and operations only) the throttling layer, which is always
        // there and also counts without limits.
        let pick = |suffix: &str, throttle: bool| -> Result<Vec<BlkioEntry>> {
            let prefixes: &[&str] = if throttle {
                &["blkio.", "blkio.bfq.", "blkio.throttle."]
            } else {
                &["blkio.", "blkio.bfq."]
            };
            let mut last = Vec::new();
            for prefix in prefixes {
                last = parse_blkio_v1(&text(dir, &format!("{prefix}{suffix}"))?);
                if !last.is_empty() {
                    break;
                }
            }
            Ok(last)
        };
        s.blkio = BlkioStats {
            io_service_bytes_recursive: pick("io_service_bytes_recursive", true)?,
            io_serviced_recursive: pick("io_serviced_recursive", true)?,
            io_queued_recursive: pick("io_queued_recursive", false)?,
            io_service_time_recursive: pick("io_service_time_recursive", false)?,
            io_wait_time_recursive: pick("io_wait_time_recursive", false)?,
            io_merged_recursive: pick("io_merged_recursive", false)?,
            io_time_recursive: pick("time_recursive", false)?,
            sectors_recursive: pick("sectors_recursive", false)?,
        };
        s.blkio.name_devices();
    }
    if let Some(dir) = v1::dir_of(hierarchies, "hugetlb") {
        s.hugetlb = hugetlb_v1(dir)?;
    } else if let Some(h) = hierarchies.iter().find(|h| h.unified) {
        s.hugetlb = hugetlb_v2(&h.dir)?;
    }
    Ok(s)
}

fn pids(dir: &Path) -> Result<PidsStats> {
    let limit = number(dir, "pids.max")?;
    Ok(PidsStats {
        current: number(dir, "pids.current")?,
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}

/// Statistics from a v2 cgroup.
pub(super) fn read_v2(dir: &Path) -> Result<Stats> {
    let mut s = Stats::default();
    let cpu = parse_flat_keyed(&text(dir, "cpu.stat")?);
    let get = |k: &str| cpu.get(k).copied().unwrap_or(0);
    s.cpu = CpuStats {
        usage_total_ns: get("usage_usec").saturating_mul(1000),
        usage_user_ns: get("user_usec").saturating_mul(1000),
        usage_kernel_ns: get("system_usec").saturating_mul(1000),
        per_cpu_ns: Vec::new(),
        throttling: Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time_ns: get("throttled_usec").saturating_mul(1000),
            bursts: get("nr_bursts"),
            burst_time_ns: get("burst_usec").saturating_mul(1000),
        },
    };
    let m = &mut s.memory;
    m.usage = number(dir, "memory.current")?;
    m.max_usage = number(dir, "memory.peak")?;
    m.limit = number(dir, "memory.max")?;
    m.stat = parse_flat_keyed(&text(dir, "memory.stat")?);
    m.cache = m.stat.get("file").copied().unwrap_or(0);
    m.rss = m.stat.get("anon").copied().unwrap_or(0);
    m.swap_usage = number(dir, "memory.swap.current")?;
    m.swap_limit = number(dir, "memory.swap.max")?;
    m.swap_max_usage = number(dir, "memory.swap.peak")?;
    m.events = parse_flat_keyed(&text(dir, "memory.events")?);
    m.failcnt = m.events.get("max").copied().unwrap_or(0);
    m.oom = m.events.get("oom").copied().unwrap_or(0);
    m.oom_kill = m.events.get("oom_kill").copied().unwrap_or(0);
    s.pids = pids(dir)?;
    let (bytes, ios) = parse_io_stat(&text(dir, "io.stat")?);
    s.blkio = BlkioStats {
        io_service_bytes_recursive: bytes,
        io_serviced_recursive: ios,
        ..Default::default()
    };
    s.blkio.name_devices();
    s.hugetlb = hugetlb_v2(dir)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed() {
        let m = parse_flat_keyed(
            "cache 4096\nrss 8192\ntotal_rss 12288\nbad\nhierarchical_memory_limit 9223372036854771712\nx notanumber\n",
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m["rss"], 8192);
        assert_eq!(m["hierarchical_memory_limit"], 9_223_372_036_854_771_712);
        let ev = parse_flat_keyed("populated 1\nfrozen 0\n");
        assert_eq!(ev.get("frozen"), Some(&0));
        let oom = parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        assert_eq!(oom["oom_kill"], 3);
    }

    #[test]
    fn single_values() {
        assert_eq!(parse_u64_or_max("max\n"), u64::MAX);
        assert_eq!(parse_u64_or_max("67108864\n"), 67_108_864);
        assert_eq!(parse_u64_or_max(""), 0);
        assert_eq!(parse_list("100 200 300 \n"), vec![100, 200, 300]);
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn blkio_v1() {
        let text = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\n253:1 Read 10\nTotal 12298\n";
        let e = parse_blkio_v1(text);
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096,
                device: String::new(),
            }
        );
        assert_eq!(e[6].major, 253);
        assert_eq!(e[6].minor, 1);
        assert!(parse_blkio_v1("Total 0\n").is_empty());
        // per-device counters (time_recursive, sectors_recursive) have no operation
        let e = parse_blkio_v1("8:0 1234\n8:16 5\nTotal 1239\n");
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].major, e[0].op.as_str(), e[0].value), (8, "", 1234));
        assert_eq!((e[1].minor, e[1].value), (16, 5));
    }

    #[test]
    fn hugetlb_page_sizes() {
        let v1 = [
            "hugetlb.2MB.limit_in_bytes",
            "hugetlb.2MB.usage_in_bytes",
            "hugetlb.2MB.rsvd.limit_in_bytes",
            "hugetlb.1GB.limit_in_bytes",
            "cgroup.procs",
        ];
        assert_eq!(hugetlb_sizes(v1, "limit_in_bytes"), ["1GB", "2MB"]);
        let v2 = [
            "hugetlb.2MB.max",
            "hugetlb.2MB.current",
            "hugetlb.2MB.rsvd.max",
            "hugetlb.2MB.events",
            "memory.max",
        ];
        assert_eq!(hugetlb_sizes(v2, "max"), ["2MB"]);
        assert!(hugetlb_sizes(["hugetlb..max", "hugetlb.max"], "max").is_empty());
    }

    #[test]
    fn uevent_devname() {
        let t = "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n";
        assert_eq!(parse_uevent_devname(t), Some("sda"));
        assert_eq!(parse_uevent_devname("MAJOR=253\nDEVNAME=\n"), None);
        assert_eq!(parse_uevent_devname(""), None);
    }

    #[test]
    fn memory_entries_read_missing_files_as_zero() {
        let dir = std::env::temp_dir().join(format!("myshim-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.memsw.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(
            dir.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(dir.join("hugetlb.2MB.current"), "2097152\n").unwrap();
        std::fs::write(dir.join("hugetlb.2MB.max"), "max\n").unwrap();
        std::fs::write(dir.join("hugetlb.2MB.events"), "max 3\n").unwrap();
        let e = memory_entry(&dir, "memory.memsw.").unwrap();
        let h = hugetlb_v2(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            e,
            MemoryEntry {
                usage: 4096,
                max_usage: 0,
                limit: 9_223_372_036_854_771_712,
                failcnt: 0
            }
        );
        assert_eq!(
            h,
            [HugetlbStats {
                pagesize: "2MB".into(),
                usage: 2 << 20,
                max_usage: 0,
                limit: u64::MAX,
                failcnt: 3
            }]
        );
    }

    #[test]
    fn io_stat_v2() {
        let text = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                    253:0 rbytes=10 wbytes=20 rios=1 wios=2 newkey=5\n";
        let (bytes, ios) = parse_io_stat(text);
        assert_eq!(bytes.len(), 5);
        assert_eq!(ios.len(), 5);
        assert_eq!(
            bytes[1],
            BlkioEntry {
                major: 8,
                minor: 16,
                op: "Write".into(),
                value: 314_773_504,
                device: String::new(),
            }
        );
        assert_eq!(bytes[2].op, "Discard");
        assert_eq!(
            ios[4],
            BlkioEntry {
                major: 253,
                minor: 0,
                op: "Write".into(),
                value: 2,
                device: String::new(),
            }
        );
        assert_eq!(parse_io_stat(""), (vec![], vec![]));
    }

    #[test]
    fn cpu_stat_v2_keys() {
        let m = parse_flat_keyed(
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n",
        );
        assert_eq!(m["usage_usec"], 2000);
        assert_eq!(m["throttled_usec"], 300);
    }
}
