//! Pure conversions from OCI resource values to the cgroupfs file names and values that
//! [`super::limits`] writes itself (hugetlb, blkio weights, the `unified` map). No file system
//! access here.

use crate::{Error, Result};

/// cgroup v1 `blkio.weight` (10..=1000) → cgroup v2 `io.weight` (1..=10000), runc's formula.
/// `0` (unset) gives `0` (unset); out-of-range weights are clamped first.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
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
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(0), 0);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 1 + 490 * 9999 / 990);
        assert_eq!(blkio_weight_to_io_weight(5), 1); // clamped
        assert_eq!(blkio_weight_to_io_weight(u16::MAX), 10_000);
    }

    #[test]
    fn hugetlb_limit_values() {
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
