//! Seccomp: the OCI `linux.seccomp` profile compiled by libseccomp (the library runc, crun and
//! youki use, linked statically) for every architecture the profile lists, and installed by the
//! init as a plain BPF program.
//!
//! Who does what:
//!
//! - The parent (the runtime inside the long-lived shim) checks the profile ([`validate`], at
//!   spec load, cheap) and compiles it ([`compile`]) while the init sets up the rootfs. Compiling
//!   containerd's default profile takes libseccomp ~10-30 ms, so compiled programs are cached by
//!   profile, in memory and in a directory the shim names ([`set_cache_dir`]): the next
//!   container or exec with the same profile costs a file read. The program travels to the init
//!   over the init pipe (with `Run`, or in `Exec`): the init needs no libseccomp and does no
//!   compiling.
//! - The init installs it with `seccomp(SECCOMP_SET_MODE_FILTER)` ([`Filter::install`]) where
//!   runc does (see [`crate::init`]): before the credentials are dropped when `noNewPrivileges` is
//!   false (only CAP_SYS_ADMIN may install a filter then), otherwise just before execve. With
//!   `SCMP_ACT_NOTIFY` the kernel returns a listener fd; the init hands it to the parent over the
//!   init pipe, which sends it with the container's state to `listenerPath` ([`notify`]).
//!
//! The semantics follow runc:
//!
//! - Actions: `SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO` (`errnoRet`, EPERM when absent),
//!   `SCMP_ACT_KILL`/`SCMP_ACT_KILL_THREAD`, `SCMP_ACT_KILL_PROCESS`, `SCMP_ACT_TRAP`,
//!   `SCMP_ACT_LOG`, `SCMP_ACT_TRACE` (`errnoRet` is the tracer's data, EPERM when absent; with
//!   no tracer the kernel fails the syscall with ENOSYS) and `SCMP_ACT_NOTIFY` (needs
//!   `listenerPath`; not as the default action).
//! - Operators: all of `SCMP_CMP_*`, on the full 64-bit argument; `SCMP_CMP_MASKED_EQ` tests
//!   `(arg & value) == valueTwo`. The `args` of one entry are ANDed; when two of them name the
//!   same argument each becomes a rule of its own (ORed), as in runc. Rules whose action is the
//!   default are dropped (libseccomp refuses them).
//! - Architectures: the native one plus every one `architectures` lists, each filtered by the
//!   profile's rules with that architecture's syscall numbers (libseccomp resolves names per
//!   architecture). A syscall made through an ABI the filter does not contain kills the process.
//! - Names libseccomp does not know are skipped, as runc skips them.
//! - Like runc's patched filters, when the default action fails syscalls (anything but allow,
//!   log or trace), syscalls numbered above the highest one the profile names for their
//!   architecture get ENOSYS, so that programs fall back from syscalls newer than the profile
//!   (a short program put in front of libseccomp's: [`enosys`]).
//! - Flags: `SECCOMP_FILTER_FLAG_LOG`, `SECCOMP_FILTER_FLAG_SPEC_ALLOW` and (with a notify
//!   rule; ignored without one) `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` are passed to the kernel,
//!   refused if it does not know them; `SECCOMP_FILTER_FLAG_TSYNC` is ignored (the init is
//!   single-threaded). Without `flags`, SPEC_ALLOW is set when the kernel supports it, as in
//!   runc.

mod bpf;
mod cache;
mod check;
mod compile;
mod disk;
mod enosys;
mod explain;
mod filter;
pub mod notify;

use oci_spec::runtime::LinuxSeccomp;

pub use cache::set_dir as set_cache_dir;
pub use explain::explain_parse_error;
pub use filter::Filter;

use crate::Result;

/// Check a profile without compiling it (cheap: for spec load); errors name the offending field.
pub fn validate(profile: &LinuxSeccomp) -> Result<()> {
    check::plan(profile).map(drop)
}

/// Compile `profile` for the architectures it lists (from the cache when this process already
/// compiled the same profile). Fails with [`crate::Error::InvalidConfig`] naming the field for
/// whatever cannot be honoured.
pub fn compile(profile: &LinuxSeccomp) -> Result<std::sync::Arc<Filter>> {
    cache::get_or_compile(profile, |p| compile::compile(&check::plan(p)?))
}

// The tests use x86_64 numbers and the i386 and x32 ABIs.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
