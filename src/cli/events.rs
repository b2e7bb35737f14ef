//! `events`: the container's events as runc prints them, one JSON object per line: with
//! --stats one `stats` event (`{"type":"stats","id":…,"data":{cpu, memory, pids, blkio,
//! hugetlb}}`); without, a `stats` event every --interval and an `oom` event
//! (`{"type":"oom","id":…}`) whenever the kernel's OOM killer strikes in the container's cgroup,
//! until the container stops or its cgroup goes away (exit status 0).

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use myshim_runtime::cgroups::oom::OomWatcher;
use myshim_runtime::cgroups::Stats;
use myshim_runtime::{Container, Status};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use super::args::Events;
use super::{load, time};

/// `events`
pub fn events(root: &Path, a: &Events) -> anyhow::Result<()> {
    let interval = time::parse_duration(&a.interval)?;
    if interval.is_zero() {
        bail!("duration interval must be greater than 0");
    }
    let container = load(root, &a.id)?;
    if container.status() == Status::Stopped {
        bail!("container {} is not running", a.id);
    }
    if a.stats {
        print_stats(&a.id, &container)?;
        return Ok(());
    }
    // Registered before the first event is printed: a reader that saw one misses no OOM.
    let mut oom = match OomWatcher::new(container.cgroup_manager()) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("container {}: no OOM events: {e:#}", a.id);
            None
        }
    };
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            match load(root, &a.id) {
                Ok(c) if c.status() != Status::Stopped => {
                    if let Err(e) = print_stats(&a.id, &c) {
                        log::error!("{e:#}");
                    }
                }
                // Stopped or deleted: the OOM that may have ended it, then the end.
                _ => {
                    if let Some(w) = &mut oom {
                        if w.drain_now().unwrap_or(false) {
                            print_oom(&a.id);
                        }
                    }
                    return Ok(());
                }
            }
            next = Instant::now() + interval;
        }
        let left = next.saturating_duration_since(Instant::now());
        let Some(w) = &mut oom else {
            std::thread::sleep(left);
            continue;
        };
        if !readable(w, left)? {
            continue;
        }
        match w.drain() {
            Ok(true) => print_oom(&a.id),
            Ok(false) => {}
            // The cgroup is gone: so is the container.
            Err(_) => return Ok(()),
        }
    }
}

/// Wait up to `timeout` for the watcher's fd.
fn readable(w: &OomWatcher, timeout: Duration) -> anyhow::Result<bool> {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("poll the OOM watcher")),
    }
}

/// One event line, its fields in runc's order (`type`, `id`, `data` when there is some).
fn line(kind: &str, id: &str, data: Option<&Value>) -> String {
    let data = data.map(|d| format!(",\"data\":{d}")).unwrap_or_default();
    format!(
        "{{\"type\":{},\"id\":{}{data}}}",
        Value::from(kind),
        Value::from(id)
    )
}

fn print_oom(id: &str) {
    println!("{}", line("oom", id, None));
}

fn print_stats(id: &str, c: &Container) -> anyhow::Result<()> {
    let stats = c.stats()?;
    println!("{}", line("stats", id, Some(&data(&stats))));
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_runcs_field_order() {
        assert_eq!(line("oom", "c1", None), r#"{"type":"oom","id":"c1"}"#);
        let data = json!({"pids": {"current": 1}});
        let l = line("stats", "a\"b", Some(&data));
        assert_eq!(
            l,
            r#"{"type":"stats","id":"a\"b","data":{"pids":{"current":1}}}"#
        );
        let back: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(back["data"], data);
    }
}
