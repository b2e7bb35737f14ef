//! `events`: the container's resource usage as runc's JSON events (`{"type":"stats","id":…,
//! "data":{cpu, memory, pids, blkio, hugetlb}}`), once with --stats, else every --interval until
//! the container stops.

use std::path::Path;

use myshim_runtime::cgroups::Stats;
use myshim_runtime::Status;
use serde_json::{json, Value};

use super::args::Events;
use super::{load, time};

/// `events`
pub fn events(root: &Path, a: &Events) -> anyhow::Result<()> {
    let interval = time::parse_duration(&a.interval)?;
    loop {
        let container = load(root, &a.id)?;
        if container.status() == Status::Stopped {
            anyhow::bail!("container {} is not running", a.id);
        }
        let stats = container.stats()?;
        let event = json!({"type": "stats", "id": a.id, "data": data(&stats)});
        println!("{event}");
        if a.stats {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// runc's `stats` event data from the runtime's statistics.
fn data(s: &Stats) -> Value {
    let entry = |e: &myshim_runtime::cgroups::stats::MemoryEntry| json!({"usage": e.usage, "max": e.max_usage, "limit": e.limit, "failcnt": e.failcnt});
    let blkio = |list: &[myshim_runtime::cgroups::stats::BlkioEntry]| {
        list.iter()
            .map(|e| json!({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}))
            .collect::<Vec<_>>()
    };
    let hugetlb: serde_json::Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|h| {
            (
                h.pagesize.clone(),
                json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.failcnt}),
            )
        })
        .collect();
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage_total_ns,
                "percpu": s.cpu.per_cpu_ns,
                "kernel": s.cpu.usage_kernel_ns,
                "user": s.cpu.usage_user_ns,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time_ns,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": {
                "usage": s.memory.usage,
                "max": s.memory.max_usage,
                "limit": s.memory.limit,
                "failcnt": s.memory.failcnt,
            },
            "swap": entry(&s.memory.memsw),
            "kernel": entry(&s.memory.kernel),
            "kernelTCP": entry(&s.memory.kernel_tcp),
            "raw": s.memory.stat,
        },
        "pids": {"current": s.pids.current, "limit": s.pids.limit},
        "blkio": {
            "ioServiceBytesRecursive": blkio(&s.blkio.io_service_bytes_recursive),
            "ioServicedRecursive": blkio(&s.blkio.io_serviced_recursive),
        },
        "hugetlb": hugetlb,
    })
}
