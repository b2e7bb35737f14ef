//! Fork a child straight into a cgroup2 cgroup: `clone3(CLONE_INTO_CGROUP)` (Linux 5.7). The
//! child is born there, so nothing is migrated: moving a process with `cgroup.procs` costs an
//! RCU grace period (10-20 ms on a small host), this costs nothing. Used by the re-executed init
//! to fork the container's process into the container's cgroup2 cgroup (the only hierarchy on
//! v2, the unified one on a hybrid host); when the kernel refuses (older kernel, no permission
//! from inside a user namespace) the caller forks plainly and the shim moves the process.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `CLONE_INTO_CGROUP` of `<linux/sched.h>`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `<linux/sched.h>` up to `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The clone3 arguments of a plain fork (SIGCHLD on exit) into the cgroup `cgroup_fd`.
fn args(cgroup_fd: i32) -> CloneArgs {
    CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: u64::from(cgroup_fd.unsigned_abs()),
        ..CloneArgs::default()
    }
}

/// Fork into the cgroup `dir` (an fd of its directory, `O_PATH` is enough): `Ok(0)` in the child,
/// `Ok(pid)` in the parent; the kernel's error (nothing forked) otherwise.
///
/// # Safety
///
/// As `fork(2)`: the calling process must be single-threaded, or the child must restrict itself
/// to async-signal-safe functions until it execs.
pub unsafe fn fork_into(dir: BorrowedFd<'_>) -> std::io::Result<i32> {
    let mut a = args(dir.as_raw_fd());
    // SAFETY: clone3 reads `size_of::<CloneArgs>()` bytes of `a`, which lives across the call;
    // without CLONE_VM the child gets a copy of the address space, as with fork (the caller's
    // contract covers the rest).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut a as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    i32::try_from(ret).map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_layout() {
        // CLONE_ARGS_SIZE_VER2: the kernel takes the struct by its size.
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
        let a = args(7);
        assert_eq!(a.flags, 0x2_0000_0000);
        assert_eq!(a.exit_signal, 17);
        assert_eq!(a.cgroup, 7);
        assert_eq!((a.pidfd, a.stack, a.set_tid_size), (0, 0, 0));
    }
}
