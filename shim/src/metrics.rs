//! Stats: a container's cgroup statistics ([`myshim_runtime::cgroups::Stats`]) as the metrics
//! message containerd expects in the Stats response: `io.containerd.cgroups.v1.Metrics` on a
//! cgroup v1 (or hybrid) host, `io.containerd.cgroups.v2.Metrics` on a cgroup v2 host, packed in
//! an `Any` whose type URL is the message's full name (containerd's typeurl looks it up there;
//! `ctr task metrics` prints it).

use std::collections::BTreeMap;

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use myshim_runtime::cgroups::stats::{BlkioEntry, MemoryEntry, Stats};
use myshim_runtime::cgroups::Layout;

/// Type URL of the cgroup v1 metrics.
pub const V1_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
/// Type URL of the cgroup v2 metrics.
pub const V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// `stats` as the metrics message for `layout`, packed in an `Any`.
pub fn to_any(stats: &Stats, layout: Layout) -> anyhow::Result<Any> {
    let (type_url, value) = match layout {
        Layout::V1 => (V1_TYPE_URL, v1_metrics(stats).write_to_bytes()?),
        Layout::V2 => (V2_TYPE_URL, v2_metrics(stats).write_to_bytes()?),
    };
    Ok(Any {
        type_url: type_url.to_string(),
        value,
        ..Default::default()
    })
}

fn stat(map: &BTreeMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

fn v1_memory_entry(e: &MemoryEntry) -> v1::MemoryEntry {
    v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max_usage,
        failcnt: e.failcnt,
        ..Default::default()
    }
}

fn v1_blkio(entries: &[BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    entries
        .iter()
        .map(|e| v1::BlkIOEntry {
            op: e.op.clone(),
            device: e.device.clone(),
            major: e.major,
            minor: e.minor,
            value: e.value,
            ..Default::default()
        })
        .collect()
}

/// The cgroup v1 metrics message (field names as in containerd's cgroups v1 `Stat`).
pub fn v1_metrics(s: &Stats) -> v1::Metrics {
    let cpu = &s.cpu;
    let m = &s.memory;
    let st = |k: &str| stat(&m.stat, k);
    let memory = v1::MemoryStat {
        cache: st("cache"),
        rss: st("rss"),
        rss_huge: st("rss_huge"),
        mapped_file: st("mapped_file"),
        dirty: st("dirty"),
        writeback: st("writeback"),
        pg_pg_in: st("pgpgin"),
        pg_pg_out: st("pgpgout"),
        pg_fault: st("pgfault"),
        pg_maj_fault: st("pgmajfault"),
        inactive_anon: st("inactive_anon"),
        active_anon: st("active_anon"),
        inactive_file: st("inactive_file"),
        active_file: st("active_file"),
        unevictable: st("unevictable"),
        hierarchical_memory_limit: st("hierarchical_memory_limit"),
        hierarchical_swap_limit: st("hierarchical_memsw_limit"),
        total_cache: st("total_cache"),
        total_rss: st("total_rss"),
        total_rss_huge: st("total_rss_huge"),
        total_mapped_file: st("total_mapped_file"),
        total_dirty: st("total_dirty"),
        total_writeback: st("total_writeback"),
        total_pg_pg_in: st("total_pgpgin"),
        total_pg_pg_out: st("total_pgpgout"),
        total_pg_fault: st("total_pgfault"),
        total_pg_maj_fault: st("total_pgmajfault"),
        total_inactive_anon: st("total_inactive_anon"),
        total_active_anon: st("total_active_anon"),
        total_inactive_file: st("total_inactive_file"),
        total_active_file: st("total_active_file"),
        total_unevictable: st("total_unevictable"),
        usage: MessageField::some(v1::MemoryEntry {
            limit: m.limit,
            usage: m.usage,
            max: m.max_usage,
            failcnt: m.failcnt,
            ..Default::default()
        }),
        swap: MessageField::some(v1_memory_entry(&m.memsw)),
        kernel: MessageField::some(v1_memory_entry(&m.kernel)),
        kernel_tcp: MessageField::some(v1_memory_entry(&m.kernel_tcp)),
        ..Default::default()
    };
    let b = &s.blkio;
    v1::Metrics {
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v1::HugetlbStat {
                usage: h.usage,
                max: h.max_usage,
                failcnt: h.failcnt,
                pagesize: h.pagesize.clone(),
                ..Default::default()
            })
            .collect(),
        pids: MessageField::some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: cpu.usage_total_ns,
                kernel: cpu.usage_kernel_ns,
                user: cpu.usage_user_ns,
                per_cpu: cpu.per_cpu_ns.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: cpu.throttling.periods,
                throttled_periods: cpu.throttling.throttled_periods,
                throttled_time: cpu.throttling.throttled_time_ns,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(memory),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: v1_blkio(&b.io_service_bytes_recursive),
            io_serviced_recursive: v1_blkio(&b.io_serviced_recursive),
            io_queued_recursive: v1_blkio(&b.io_queued_recursive),
            io_service_time_recursive: v1_blkio(&b.io_service_time_recursive),
            io_wait_time_recursive: v1_blkio(&b.io_wait_time_recursive),
            io_merged_recursive: v1_blkio(&b.io_merged_recursive),
            io_time_recursive: v1_blkio(&b.io_time_recursive),
            sectors_recursive: v1_blkio(&b.sectors_recursive),
            ..Default::default()
        }),
        memory_oom_control: MessageField::some(v1::MemoryOomControl {
            oom_kill_disable: m.oom_kill_disable,
            under_oom: m.under_oom,
            oom_kill: m.oom_kill,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Per-device `io.stat` entries from the v1-style byte and operation lists of a v2 reading.
fn v2_io(bytes: &[BlkioEntry], ios: &[BlkioEntry]) -> Vec<v2::IOEntry> {
    let mut devices: BTreeMap<(u64, u64), v2::IOEntry> = BTreeMap::new();
    let mut add = |e: &BlkioEntry, is_bytes: bool| {
        let entry = devices
            .entry((e.major, e.minor))
            .or_insert_with(|| v2::IOEntry {
                major: e.major,
                minor: e.minor,
                ..Default::default()
            });
        match (e.op.as_str(), is_bytes) {
            ("Read", true) => entry.rbytes = e.value,
            ("Write", true) => entry.wbytes = e.value,
            ("Read", false) => entry.rios = e.value,
            ("Write", false) => entry.wios = e.value,
            _ => {}
        }
    };
    for e in bytes {
        add(e, true);
    }
    for e in ios {
        add(e, false);
    }
    devices.into_values().collect()
}

/// The cgroup v2 metrics message (field names as in containerd's cgroups v2 `Stat`).
pub fn v2_metrics(s: &Stats) -> v2::Metrics {
    let cpu = &s.cpu;
    let m = &s.memory;
    let st = |k: &str| stat(&m.stat, k);
    let refault = match m.stat.get("workingset_refault") {
        Some(v) => *v,
        None => st("workingset_refault_anon").saturating_add(st("workingset_refault_file")),
    };
    let activate = match m.stat.get("workingset_activate") {
        Some(v) => *v,
        None => st("workingset_activate_anon").saturating_add(st("workingset_activate_file")),
    };
    let ev = |k: &str| stat(&m.events, k);
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: cpu.usage_total_ns / 1000,
            user_usec: cpu.usage_user_ns / 1000,
            system_usec: cpu.usage_kernel_ns / 1000,
            nr_periods: cpu.throttling.periods,
            nr_throttled: cpu.throttling.throttled_periods,
            throttled_usec: cpu.throttling.throttled_time_ns / 1000,
            nr_bursts: cpu.throttling.bursts,
            burst_usec: cpu.throttling.burst_time_ns / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: st("anon"),
            file: st("file"),
            kernel_stack: st("kernel_stack"),
            slab: st("slab"),
            sock: st("sock"),
            shmem: st("shmem"),
            file_mapped: st("file_mapped"),
            file_dirty: st("file_dirty"),
            file_writeback: st("file_writeback"),
            anon_thp: st("anon_thp"),
            inactive_anon: st("inactive_anon"),
            active_anon: st("active_anon"),
            inactive_file: st("inactive_file"),
            active_file: st("active_file"),
            unevictable: st("unevictable"),
            slab_reclaimable: st("slab_reclaimable"),
            slab_unreclaimable: st("slab_unreclaimable"),
            pgfault: st("pgfault"),
            pgmajfault: st("pgmajfault"),
            workingset_refault: refault,
            workingset_activate: activate,
            workingset_nodereclaim: st("workingset_nodereclaim"),
            pgrefill: st("pgrefill"),
            pgscan: st("pgscan"),
            pgsteal: st("pgsteal"),
            pgactivate: st("pgactivate"),
            pgdeactivate: st("pgdeactivate"),
            pglazyfree: st("pglazyfree"),
            pglazyfreed: st("pglazyfreed"),
            thp_fault_alloc: st("thp_fault_alloc"),
            thp_collapse_alloc: st("thp_collapse_alloc"),
            usage: m.usage,
            usage_limit: m.limit,
            swap_usage: m.swap_usage,
            swap_limit: m.swap_limit,
            max_usage: m.max_usage,
            swap_max_usage: m.swap_max_usage,
            ..Default::default()
        }),
        io: MessageField::some(v2::IOStat {
            usage: v2_io(
                &s.blkio.io_service_bytes_recursive,
                &s.blkio.io_serviced_recursive,
            ),
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v2::HugeTlbStat {
                current: h.usage,
                max: h.limit,
                pagesize: h.pagesize.clone(),
                failcnt: h.failcnt,
                ..Default::default()
            })
            .collect(),
        memory_events: MessageField::some(v2::MemoryEvents {
            low: ev("low"),
            high: ev("high"),
            max: ev("max"),
            oom: ev("oom"),
            oom_kill: ev("oom_kill"),
            oom_group_kill: ev("oom_group_kill"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use myshim_runtime::cgroups::stats::{
        BlkioStats, CpuStats, HugetlbStats, MemoryStats, PidsStats, Throttling,
    };

    use containerd_shim::protos::protobuf::MessageFull;

    use super::*;

    fn entry(major: u64, minor: u64, op: &str, value: u64) -> BlkioEntry {
        BlkioEntry {
            major,
            minor,
            op: op.into(),
            value,
            device: if major == 8 {
                "/dev/sda".into()
            } else {
                String::new()
            },
        }
    }

    fn sample() -> Stats {
        let stat: BTreeMap<String, u64> = [
            ("cache", 4096),
            ("rss", 8192),
            ("pgfault", 77),
            ("total_cache", 40960),
            ("total_rss", 81920),
            ("total_pgmajfault", 3),
            ("hierarchical_memory_limit", 33_554_432),
            ("hierarchical_memsw_limit", 67_108_864),
            ("anon", 8192),
            ("file", 4096),
            ("workingset_refault_anon", 2),
            ("workingset_refault_file", 5),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Stats {
            cpu: CpuStats {
                usage_total_ns: 3_000_000,
                usage_user_ns: 2_000_000,
                usage_kernel_ns: 1_000_000,
                per_cpu_ns: vec![1_000_000, 2_000_000],
                throttling: Throttling {
                    periods: 10,
                    throttled_periods: 4,
                    throttled_time_ns: 5_000,
                    bursts: 1,
                    burst_time_ns: 2_000,
                },
            },
            memory: MemoryStats {
                usage: 1 << 20,
                max_usage: 2 << 20,
                limit: 32 << 20,
                cache: 40960,
                rss: 81920,
                swap_usage: 0,
                swap_limit: 64 << 20,
                failcnt: 6,
                oom: 2,
                oom_kill: 1,
                stat,
                memsw: MemoryEntry {
                    usage: 1 << 20,
                    max_usage: 3 << 20,
                    limit: 64 << 20,
                    failcnt: 0,
                },
                kernel: MemoryEntry {
                    usage: 4096,
                    ..Default::default()
                },
                kernel_tcp: MemoryEntry::default(),
                swap_max_usage: 12,
                oom_kill_disable: 0,
                under_oom: 1,
                events: [("max", 6), ("oom", 2), ("oom_kill", 1), ("high", 9)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
            pids: PidsStats {
                current: 3,
                limit: 100,
            },
            blkio: BlkioStats {
                io_service_bytes_recursive: vec![
                    entry(8, 0, "Read", 4096),
                    entry(8, 0, "Write", 8192),
                    entry(8, 0, "Total", 12288),
                    entry(253, 1, "Read", 10),
                ],
                io_serviced_recursive: vec![entry(8, 0, "Read", 1), entry(8, 0, "Write", 2)],
                io_time_recursive: vec![entry(8, 0, "", 99)],
                ..Default::default()
            },
            hugetlb: vec![HugetlbStats {
                pagesize: "2MB".into(),
                usage: 2 << 20,
                max_usage: 4 << 20,
                limit: 8 << 20,
                failcnt: 1,
            }],
        }
    }

    #[test]
    fn v1_fields() {
        let m = v1_metrics(&sample());
        let cpu = m.cpu.as_ref().unwrap();
        let usage = cpu.usage.as_ref().unwrap();
        assert_eq!(
            (usage.total, usage.user, usage.kernel),
            (3_000_000, 2_000_000, 1_000_000)
        );
        assert_eq!(usage.per_cpu, [1_000_000, 2_000_000]);
        let t = cpu.throttling.as_ref().unwrap();
        assert_eq!(
            (t.periods, t.throttled_periods, t.throttled_time),
            (10, 4, 5_000)
        );

        let mem = m.memory.as_ref().unwrap();
        let u = mem.usage.as_ref().unwrap();
        assert_eq!(
            (u.usage, u.max, u.limit, u.failcnt),
            (1 << 20, 2 << 20, 32 << 20, 6)
        );
        let sw = mem.swap.as_ref().unwrap();
        assert_eq!((sw.usage, sw.max, sw.limit), (1 << 20, 3 << 20, 64 << 20));
        assert_eq!(mem.kernel.as_ref().unwrap().usage, 4096);
        assert!(mem.kernel_tcp.is_some());
        assert_eq!((mem.cache, mem.rss, mem.pg_fault), (4096, 8192, 77));
        assert_eq!((mem.total_cache, mem.total_rss), (40960, 81920));
        assert_eq!(mem.total_pg_maj_fault, 3);
        assert_eq!(mem.hierarchical_memory_limit, 33_554_432);
        assert_eq!(mem.hierarchical_swap_limit, 67_108_864);
        let oom = m.memory_oom_control.as_ref().unwrap();
        assert_eq!(
            (oom.oom_kill, oom.under_oom, oom.oom_kill_disable),
            (1, 1, 0)
        );

        let pids = m.pids.as_ref().unwrap();
        assert_eq!((pids.current, pids.limit), (3, 100));

        let blkio = m.blkio.as_ref().unwrap();
        assert_eq!(blkio.io_service_bytes_recursive.len(), 4);
        let first = &blkio.io_service_bytes_recursive[0];
        assert_eq!(
            (
                first.major,
                first.minor,
                first.op.as_str(),
                first.value,
                first.device.as_str()
            ),
            (8, 0, "Read", 4096, "/dev/sda")
        );
        assert_eq!(blkio.io_serviced_recursive.len(), 2);
        assert_eq!(blkio.io_time_recursive[0].value, 99);
        assert!(blkio.sectors_recursive.is_empty());

        assert_eq!(m.hugetlb.len(), 1);
        let h = &m.hugetlb[0];
        assert_eq!(
            (h.pagesize.as_str(), h.usage, h.max, h.failcnt),
            ("2MB", 2 << 20, 4 << 20, 1)
        );
    }

    #[test]
    fn empty_stats_still_have_the_messages_ctr_dereferences() {
        // ctr's table printer dereferences memory.usage and cpu.usage without a nil check.
        let m = v1_metrics(&Stats::default());
        assert!(m.memory.as_ref().unwrap().usage.is_some());
        assert!(m.cpu.as_ref().unwrap().usage.is_some());
        assert!(m.pids.is_some());
        let m = v2_metrics(&Stats::default());
        assert!(m.memory.is_some() && m.cpu.is_some() && m.pids.is_some());
    }

    #[test]
    fn v2_fields() {
        let m = v2_metrics(&sample());
        let cpu = m.cpu.as_ref().unwrap();
        assert_eq!(
            (cpu.usage_usec, cpu.user_usec, cpu.system_usec),
            (3000, 2000, 1000)
        );
        assert_eq!(
            (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec),
            (10, 4, 5)
        );
        assert_eq!((cpu.nr_bursts, cpu.burst_usec), (1, 2));
        let mem = m.memory.as_ref().unwrap();
        assert_eq!(
            (mem.usage, mem.usage_limit, mem.max_usage),
            (1 << 20, 32 << 20, 2 << 20)
        );
        assert_eq!((mem.swap_limit, mem.swap_max_usage), (64 << 20, 12));
        assert_eq!((mem.anon, mem.file, mem.pgfault), (8192, 4096, 77));
        assert_eq!(mem.workingset_refault, 7);
        let ev = m.memory_events.as_ref().unwrap();
        assert_eq!((ev.max, ev.oom, ev.oom_kill, ev.high), (6, 2, 1, 9));
        assert_eq!(m.pids.as_ref().unwrap().limit, 100);
        let io = &m.io.as_ref().unwrap().usage;
        assert_eq!(io.len(), 2);
        assert_eq!(
            (
                io[0].major,
                io[0].rbytes,
                io[0].wbytes,
                io[0].rios,
                io[0].wios
            ),
            (8, 4096, 8192, 1, 2)
        );
        assert_eq!((io[1].major, io[1].minor, io[1].rbytes), (253, 1, 10));
        assert_eq!(m.hugetlb.len(), 1);
        assert_eq!((m.hugetlb[0].current, m.hugetlb[0].max), (2 << 20, 8 << 20));
    }

    #[test]
    fn any_type_urls_and_round_trip() {
        let s = sample();
        let any = to_any(&s, Layout::V1).unwrap();
        assert_eq!(any.type_url, V1_TYPE_URL);
        assert_eq!(
            V1_TYPE_URL,
            <v1::Metrics as MessageFull>::descriptor().full_name()
        );
        let back = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(back, v1_metrics(&s));

        let any = to_any(&s, Layout::V2).unwrap();
        assert_eq!(any.type_url, V2_TYPE_URL);
        assert_eq!(
            V2_TYPE_URL,
            <v2::Metrics as MessageFull>::descriptor().full_name()
        );
        let back = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(back.cpu.as_ref().unwrap().usage_usec, 3000);
    }
}
