//! Pure conversions from OCI resource values to the strings cgroupfs files take: v1 ↔ v2 scales
//! (cpu shares → cpu.weight, blkio weight → io.weight, memory+swap → swap), the order of v1
//! memory writes, `cpu.max`, `pids.max`, hugetlb file names. No file system access here.

use crate::{Error, Result};

/// Default CFS period (µs) written with `cpu.max` when the spec gives a quota but no period.
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// cgroup v1 `cpu.shares` → cgroup v2 `cpu.weight` (runc's formula, shares clamped to the v1
/// range 2..=262144 so that the result stays within 1..=10000). `0` (unset) gives `0` (unset).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// cgroup v1 `blkio.weight` (10..=1000) → cgroup v2 `io.weight` (1..=10000), runc's formula.
/// `0` (unset) gives `0` (unset); out-of-range weights are clamped first.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// A v2 limit value: `0` is "unset" (`None`), a negative value is "no limit" (`max`).
pub fn v2_limit(value: i64) -> Option<String> {
    match value {
        0 => None,
        v if v < 0 => Some("max".to_string()),
        v => Some(v.to_string()),
    }
}

/// The spec's `swap` is memory+swap (the v1 `memsw` semantics); v2's `memory.swap.max` is swap
/// alone. runc's conversion: `0` unset, `-1` unlimited; memory unlimited and swap unset → swap
/// unlimited; otherwise `swap - memory`, which needs a memory limit and `swap >= memory`.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err(Error::invalid(
            "unable to set a swap limit without a memory limit",
        ));
    }
    if memory < 0 {
        return Err(Error::invalid(format!("invalid memory limit {memory}")));
    }
    if swap < memory {
        return Err(Error::invalid(format!(
            "memory+swap limit {swap} must be >= memory limit {memory}"
        )));
    }
    Ok(swap - memory)
}

/// The writes (file, value) that set memory on cgroup v2, in order. `limit`, `reservation` and
/// `swap` use the spec's conventions (0: unset, -1: unlimited, swap = memory+swap).
pub fn v2_memory_writes(
    limit: i64,
    reservation: i64,
    swap: i64,
) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let swap_v2 = swap_to_v2(swap, limit)?;
    match v2_limit(swap_v2) {
        Some(v) => out.push(("memory.swap.max", v)),
        // swap == memory: no swap at all.
        None if swap > 0 => out.push(("memory.swap.max", "0".to_string())),
        None => {}
    }
    if let Some(v) = v2_limit(limit) {
        out.push(("memory.max", v));
    }
    if let Some(v) = v2_limit(reservation) {
        out.push(("memory.low", v));
    }
    Ok(out)
}

/// The v1 memory/memsw writes (file, value), in an order the kernel accepts: it refuses a memory
/// limit above the current memsw limit and a memsw limit below the memory limit, so when the new
/// memsw is unlimited or above the current memory limit memsw goes first (runc's logic).
///
/// `limit`/`swap` follow the spec (0 unset, -1 unlimited, swap = memory+swap); `current_limit`
/// is the value of `memory.limit_in_bytes` now (only looked at when both are set); `has_memsw`
/// tells whether `memory.memsw.limit_in_bytes` exists (swap accounting enabled).
pub fn v1_memory_writes(
    limit: i64,
    swap: i64,
    current_limit: u64,
    has_memsw: bool,
) -> Result<Vec<(&'static str, String)>> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let mut swap = swap;
    // Memory set to unlimited with swap unset: make swap unlimited too, if the kernel has it.
    if limit == -1 && swap == 0 && has_memsw {
        swap = -1;
    }
    if swap != 0 && !has_memsw {
        return Err(Error::invalid(format!(
            "memory+swap limit {swap} requested but {MEMSW} does not exist (swap accounting disabled)"
        )));
    }
    let mut out = Vec::new();
    let swap_first =
        limit != 0 && swap != 0 && (swap == -1 || i128::from(current_limit) < i128::from(swap));
    if swap_first {
        out.push((MEMSW, swap.to_string()));
        out.push((LIMIT, limit.to_string()));
        return Ok(out);
    }
    if limit != 0 {
        out.push((LIMIT, limit.to_string()));
    }
    if swap != 0 {
        out.push((MEMSW, swap.to_string()));
    }
    Ok(out)
}

/// The `cpu.max` value: `"<quota> <period>"`, quota `max` when unset or not positive, period
/// [`DEFAULT_CPU_PERIOD`] when unset. `None` when neither is given (nothing to write).
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    Some(format!("{quota} {}", period.unwrap_or(DEFAULT_CPU_PERIOD)))
}

/// The `pids.max` value (v1 and v2): a positive limit as is, anything else `max`.
pub fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

/// Check a hugepage size from the spec (`2MB`, `1GB`, `64KB`): digits then `KB`, `MB` or `GB`,
/// as the kernel names its hugetlb files. Anything else (it becomes part of a file name) is
/// refused.
pub fn check_hugepage_size(page_size: &str) -> Result<&str> {
    let digits = page_size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &page_size[digits.len()..];
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "KB" | "MB" | "GB");
    if ok {
        Ok(page_size)
    } else {
        Err(Error::invalid(format!(
            "invalid hugepage size {page_size:?} (expected e.g. 2MB, 1GB)"
        )))
    }
}

/// v1 hugetlb limit file for a page size, e.g. `hugetlb.2MB.limit_in_bytes`
/// (`rsvd`: the reservation variant, `hugetlb.2MB.rsvd.limit_in_bytes`).
pub fn hugetlb_v1_file(page_size: &str, rsvd: bool) -> Result<String> {
    let size = check_hugepage_size(page_size)?;
    Ok(if rsvd {
        format!("hugetlb.{size}.rsvd.limit_in_bytes")
    } else {
        format!("hugetlb.{size}.limit_in_bytes")
    })
}

/// v2 hugetlb limit file for a page size, e.g. `hugetlb.2MB.max` (`rsvd`: `hugetlb.2MB.rsvd.max`).
pub fn hugetlb_v2_file(page_size: &str, rsvd: bool) -> Result<String> {
    let size = check_hugepage_size(page_size)?;
    Ok(if rsvd {
        format!("hugetlb.{size}.rsvd.max")
    } else {
        format!("hugetlb.{size}.max")
    })
}

/// v2 hugetlb limit value: negative is `max`, anything else (0 included: no pages) as is.
pub fn hugetlb_v2_limit(limit: i64) -> String {
    if limit < 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

/// A per-device line `"<major>:<minor> <value>"` (v1 weight_device, throttle files; v2 io.weight).
pub fn device_value_line(major: i64, minor: i64, value: impl std::fmt::Display) -> String {
    format!("{major}:{minor} {value}")
}

/// A v2 `io.max` line `"<major>:<minor> <key>=<rate>"` (`key`: rbps, wbps, riops, wiops).
pub fn io_max_line(major: i64, minor: i64, key: &str, rate: u64) -> String {
    format!("{major}:{minor} {key}={rate}")
}

/// Check a key of the spec's `unified` map: it is written as a file of the container's cgroup,
/// so it must be a plain `<controller>.<parameter>` name (no `/`, no `..`).
pub fn check_unified_key(key: &str) -> Result<&str> {
    let ok = key
        .split_once('.')
        .is_some_and(|(c, p)| !c.is_empty() && !p.is_empty())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && !key.contains("..");
    if ok {
        Ok(key)
    } else {
        Err(Error::invalid(format!(
            "unified resource {key:?} must be a file name of the form CONTROLLER.PARAMETER"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1), 1); // clamped, no underflow
        assert_eq!(shares_to_weight(1024), 39); // 1 + 1022*9999/262142
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
        assert_eq!(shares_to_weight(512), 1 + (510 * 9999) / 262_142);
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
        assert_eq!(blkio_weight_to_io_weight(5), 1); // clamped
        assert_eq!(blkio_weight_to_io_weight(u16::MAX), 10_000);
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_to_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_to_v2(0, 100).unwrap(), 0);
        assert_eq!(swap_to_v2(-1, 100).unwrap(), -1);
        assert_eq!(swap_to_v2(300, 100).unwrap(), 200);
        assert_eq!(swap_to_v2(100, 100).unwrap(), 0);
        assert!(matches!(swap_to_v2(100, 0), Err(Error::InvalidConfig(_))));
        assert!(matches!(swap_to_v2(100, -1), Err(Error::InvalidConfig(_))));
        assert!(matches!(swap_to_v2(50, 100), Err(Error::InvalidConfig(_))));
        assert!(matches!(swap_to_v2(50, -7), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn v2_memory() {
        let w = |l, r, s| v2_memory_writes(l, r, s).unwrap();
        assert!(w(0, 0, 0).is_empty());
        assert_eq!(w(1000, 0, 0), vec![("memory.max", "1000".to_string())]);
        assert_eq!(
            w(1000, 500, 3000),
            vec![
                ("memory.swap.max", "2000".to_string()),
                ("memory.max", "1000".to_string()),
                ("memory.low", "500".to_string()),
            ]
        );
        // swap == memory: swap disabled.
        assert_eq!(
            w(1000, 0, 1000),
            vec![
                ("memory.swap.max", "0".to_string()),
                ("memory.max", "1000".to_string())
            ]
        );
        // unlimited memory, swap unset: both unlimited.
        assert_eq!(
            w(-1, 0, 0),
            vec![
                ("memory.swap.max", "max".to_string()),
                ("memory.max", "max".to_string())
            ]
        );
        assert_eq!(
            w(1000, 0, -1),
            vec![
                ("memory.swap.max", "max".to_string()),
                ("memory.max", "1000".to_string())
            ]
        );
        assert!(v2_memory_writes(1000, 0, 10).is_err());
    }

    #[test]
    fn v1_memory_order() {
        const L: &str = "memory.limit_in_bytes";
        const S: &str = "memory.memsw.limit_in_bytes";
        let w = |l, s, cur, has| v1_memory_writes(l, s, cur, has).unwrap();
        assert!(w(0, 0, 0, true).is_empty());
        assert_eq!(w(100, 0, 0, false), vec![(L, "100".to_string())]);
        // raising: new memsw above the current limit → memsw first.
        assert_eq!(
            w(200, 400, 100, true),
            vec![(S, "400".to_string()), (L, "200".to_string())]
        );
        // lowering: new memsw below the current limit → memory first.
        assert_eq!(
            w(50, 80, 100, true),
            vec![(L, "50".to_string()), (S, "80".to_string())]
        );
        // unlimited swap goes first.
        assert_eq!(
            w(50, -1, 100, true),
            vec![(S, "-1".to_string()), (L, "50".to_string())]
        );
        // memory unlimited, swap unset → swap unlimited when the kernel has memsw.
        assert_eq!(
            w(-1, 0, 100, true),
            vec![(S, "-1".to_string()), (L, "-1".to_string())]
        );
        assert_eq!(w(-1, 0, 100, false), vec![(L, "-1".to_string())]);
        // unlimited current limit (page-rounded i64::MAX) is bigger than any swap.
        assert_eq!(
            w(100, 200, 9_223_372_036_854_771_712, true),
            vec![(L, "100".to_string()), (S, "200".to_string())]
        );
        assert_eq!(w(0, 300, 0, true), vec![(S, "300".to_string())]);
        assert!(matches!(
            v1_memory_writes(100, 200, 0, false),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn cpu_max_strings() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(0), Some(0)), None);
        assert_eq!(cpu_max(Some(50_000), None).as_deref(), Some("50000 100000"));
        assert_eq!(
            cpu_max(Some(50_000), Some(200_000)).as_deref(),
            Some("50000 200000")
        );
        assert_eq!(cpu_max(Some(-1), None).as_deref(), Some("max 100000"));
        assert_eq!(cpu_max(None, Some(250_000)).as_deref(), Some("max 250000"));
    }

    #[test]
    fn limits() {
        assert_eq!(pids_max(10), "10");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        assert_eq!(v2_limit(0), None);
        assert_eq!(v2_limit(-1).as_deref(), Some("max"));
        assert_eq!(v2_limit(4096).as_deref(), Some("4096"));
        assert_eq!(hugetlb_v2_limit(-1), "max");
        assert_eq!(hugetlb_v2_limit(0), "0");
    }

    #[test]
    fn hugetlb_files() {
        assert_eq!(
            hugetlb_v1_file("2MB", false).unwrap(),
            "hugetlb.2MB.limit_in_bytes"
        );
        assert_eq!(
            hugetlb_v1_file("1GB", true).unwrap(),
            "hugetlb.1GB.rsvd.limit_in_bytes"
        );
        assert_eq!(hugetlb_v2_file("64KB", false).unwrap(), "hugetlb.64KB.max");
        assert_eq!(
            hugetlb_v2_file("2MB", true).unwrap(),
            "hugetlb.2MB.rsvd.max"
        );
        for bad in ["", "MB", "2", "2mb", "2TB", "../2MB", "2MB/../x", "2 MB"] {
            assert!(hugetlb_v2_file(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_lines() {
        assert_eq!(device_value_line(8, 0, 500), "8:0 500");
        assert_eq!(io_max_line(8, 16, "rbps", 1048576), "8:16 rbps=1048576");
    }

    #[test]
    fn unified_keys() {
        for ok in [
            "memory.high",
            "cpu.max.burst",
            "io.bfq.weight",
            "hugetlb.2MB.max",
        ] {
            assert_eq!(check_unified_key(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "memory",
            ".max",
            "memory.",
            "../memory.max",
            "a/b.c",
            "x..y",
            "a.b/c",
        ] {
            assert!(check_unified_key(bad).is_err(), "{bad}");
        }
    }
}
