//! The open-file limit (`RLIMIT_NOFILE`) of a process that embeds the runtime, and of the
//! processes it spawns.
//!
//! One shim serves a whole pod and holds several fds per container (stdio pipes and fifos, the
//! OOM watch, the pidfd), so the usual soft limit of 1024 runs out near a hundred containers.
//! As Go programs do at start (runc's shim among them), the shim raises its soft limit to the
//! hard one, and the helpers it spawns get the original soft limit back before exec: a
//! container whose spec sets no `RLIMIT_NOFILE` sees the limit the shim was started with.

use std::sync::atomic::{AtomicU64, Ordering};

/// The soft limit found by [`raise`]; `u64::MAX` while nothing was raised.
static ORIGINAL_SOFT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raise this process's soft `RLIMIT_NOFILE` to its hard limit, remembering the original for
/// [`restore_in_child`]. Returns the new soft limit.
pub fn raise() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(lim.rlim_cur);
    }
    let original = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the local struct; it only changes this process's limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    ORIGINAL_SOFT.store(original, Ordering::SeqCst);
    Ok(lim.rlim_cur)
}

/// In a forked child before exec: put back the soft limit [`raise`] found (nothing when it
/// raised nothing). Async-signal-safe: an atomic load and two system calls.
pub fn restore_in_child() -> std::io::Result<()> {
    let original = ORIGINAL_SOFT.load(Ordering::SeqCst);
    if original == u64::MAX {
        return Ok(());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit use the local struct; async-signal-safe system calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = original.min(lim.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_without_raise_changes_nothing() {
        // Nothing raised in this process's tests: a no-op that succeeds.
        if ORIGINAL_SOFT.load(Ordering::SeqCst) == u64::MAX {
            assert!(restore_in_child().is_ok());
        }
    }
}
