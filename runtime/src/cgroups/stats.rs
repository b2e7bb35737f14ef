//! Resource usage statistics of a cgroup: the plain [`Stats`] structure, the parsers of the
//! cgroupfs stat formats (flat keyed files, v1 blkio lists, v2 `io.stat`), and the readers for
//! v1 and v2. A file that does not exist (controller not mounted or not enabled, older kernel)
//! leaves its fields at zero.

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
}

/// One device/operation counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` (v1 also `Total`).
    pub op: String,
    /// The counter.
    pub value: u64,
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

/// Parse a v1 blkio list (`8:0 Read 4096` lines; the closing `Total N` line is skipped).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [dev, op, value] = f.as_slice() else {
                return None;
            };
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
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

/// Statistics from the v1 hierarchies.
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
        };
    }
    if let Some(dir) = v1::dir_of(hierarchies, "memory") {
        let m = &mut s.memory;
        m.usage = number(dir, "memory.usage_in_bytes")?;
        m.max_usage = number(dir, "memory.max_usage_in_bytes")?;
        m.limit = number(dir, "memory.limit_in_bytes")?;
        m.failcnt = number(dir, "memory.failcnt")?;
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
        m.swap_usage = number(dir, "memory.memsw.usage_in_bytes")?.saturating_sub(m.usage);
        m.swap_limit = number(dir, "memory.memsw.limit_in_bytes")?;
        let oom = parse_flat_keyed(&text(dir, "memory.oom_control")?);
        m.oom_kill = oom.get("oom_kill").copied().unwrap_or(0);
    }
    if let Some(dir) = v1::dir_of(hierarchies, "pids") {
        s.pids = pids(dir)?;
    }
    if let Some(dir) = v1::dir_of(hierarchies, "blkio") {
        // CFQ, then BFQ, then the throttling layer (always there, also counts without limits).
        let pick = |suffix: &str| -> Result<Vec<BlkioEntry>> {
            let mut last = Vec::new();
            for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
                last = parse_blkio_v1(&text(dir, &format!("{prefix}{suffix}"))?);
                if !last.is_empty() {
                    break;
                }
            }
            Ok(last)
        };
        s.blkio.io_service_bytes_recursive = pick("io_service_bytes_recursive")?;
        s.blkio.io_serviced_recursive = pick("io_serviced_recursive")?;
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
    let events = parse_flat_keyed(&text(dir, "memory.events")?);
    m.failcnt = events.get("max").copied().unwrap_or(0);
    m.oom = events.get("oom").copied().unwrap_or(0);
    m.oom_kill = events.get("oom_kill").copied().unwrap_or(0);
    s.pids = pids(dir)?;
    let (bytes, ios) = parse_io_stat(&text(dir, "io.stat")?);
    s.blkio = BlkioStats {
        io_service_bytes_recursive: bytes,
        io_serviced_recursive: ios,
    };
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
                value: 4096
            }
        );
        assert_eq!(e[6].major, 253);
        assert_eq!(e[6].minor, 1);
        assert!(parse_blkio_v1("Total 0\n").is_empty());
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
                value: 314_773_504
            }
        );
        assert_eq!(bytes[2].op, "Discard");
        assert_eq!(
            ios[4],
            BlkioEntry {
                major: 253,
                minor: 0,
                op: "Write".into(),
                value: 2
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
