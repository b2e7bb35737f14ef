//! Seccomp: the OCI `linux.seccomp` profile compiled to a classic BPF program, in Rust alone
//! (no libseccomp), and installed by the init just before it execs the container's process.
//!
//! The semantics follow runc, which hands the profile to libseccomp:
//!
//! - Actions: `SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO` (`errnoRet`, EPERM when absent),
//!   `SCMP_ACT_KILL`/`SCMP_ACT_KILL_THREAD`, `SCMP_ACT_KILL_PROCESS`, `SCMP_ACT_TRAP`,
//!   `SCMP_ACT_LOG` and `SCMP_ACT_TRACE` (`errnoRet` is the tracer's data, EPERM when absent; with
//!   no tracer the kernel fails the syscall with ENOSYS). `SCMP_ACT_NOTIFY` and `listenerPath`
//!   are refused: there is no seccomp agent support. `errnoRet` on another action is refused.
//! - Operators: `SCMP_CMP_NE`, `LT`, `LE`, `EQ`, `GE`, `GT` compare the full 64-bit argument
//!   with `value`; `SCMP_CMP_MASKED_EQ` tests `(arg & value) == valueTwo`.
//! - The `args` of one entry form one rule whose conditions are ANDed; as in runc, when two of
//!   them name the same argument index each condition becomes a rule of its own (ORed). For a
//!   syscall, the rules with conditions are tried in the profile's order, then the first rule
//!   without any, then the default action. Rules whose action is the default are dropped.
//! - Syscall names this architecture's table (from the `libc` crate) does not know are skipped,
//!   as runc skips the names libseccomp does not know.
//! - Like runc's patched filters, when the default action fails syscalls (anything but allow,
//!   log or trace), syscalls numbered above the highest one the profile names get ENOSYS, so
//!   that programs fall back from syscalls newer than the profile.
//! - Architectures: the filter translates the native ABI only (x86_64 or aarch64). A syscall
//!   made through another ABI the kernel accepts (i386 or x32 on x86_64, arm32 on aarch64)
//!   kills the process, whether or not `architectures` lists it: it cannot slip through a deny
//!   list. Names in `architectures` are checked, nothing more.
//! - Flags: `SECCOMP_FILTER_FLAG_LOG` and `SECCOMP_FILTER_FLAG_SPEC_ALLOW` are passed to the
//!   kernel (refused if it does not know them); `SECCOMP_FILTER_FLAG_TSYNC` is ignored (the init
//!   is single-threaded). Without `flags`, SPEC_ALLOW is set when the kernel supports it, as in
//!   runc.
//!
//! When to install is the init's business (see [`crate::init`]): as in runc, before the
//! credentials are dropped when `noNewPrivileges` is false (only CAP_SYS_ADMIN may install a
//! filter then), otherwise just before execve. The no_new_privs bit itself is never set here.

mod bpf;
mod syscalls;

use std::collections::BTreeMap;

use anyhow::anyhow;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};
use serde_json::Value;

use self::bpf::{Asm, Cond, Label, Target};
use crate::{Error, Result};

/// What a syscall made through an ABI the filter does not translate gets.
const RET_FOREIGN_ABI: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The native architecture: its audit value and the ABI quirks the filter must check.
mod native {
    const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
    const AUDIT_ARCH_LE: u32 = 0x4000_0000;

    #[cfg(target_arch = "x86_64")]
    pub(super) const AUDIT_ARCH: Option<u32> =
        Some(libc::EM_X86_64 as u32 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE);
    #[cfg(target_arch = "aarch64")]
    pub(super) const AUDIT_ARCH: Option<u32> =
        Some(libc::EM_AARCH64 as u32 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub(super) const AUDIT_ARCH: Option<u32> = None;

    /// x32 syscalls come with the x86_64 audit arch and this bit set in their number.
    #[cfg(target_arch = "x86_64")]
    pub(super) const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) const X32_SYSCALL_BIT: Option<u32> = None;
}

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
const OFF_ARCH: u32 = std::mem::offset_of!(libc::seccomp_data, arch) as u32;
const OFF_ARGS: u32 = std::mem::offset_of!(libc::seccomp_data, args) as u32;

/// A compiled filter, ready to install.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl Filter {
    /// Number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits it is installed with.
    pub fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Install the filter on the calling thread (with `seccomp(SECCOMP_SET_MODE_FILTER)`). The
    /// thread must have no_new_privs set or CAP_SYS_ADMIN; it is inherited across fork and
    /// execve and cannot be removed.
    pub fn install(&self) -> anyhow::Result<()> {
        let prog = libc::sock_fprog {
            len: u16::try_from(self.program.len())
                .map_err(|_| anyhow!("install the seccomp filter: program too long"))?,
            // The kernel only reads the program.
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to `self.program`, which outlives the call; the kernel copies
        // the program and writes nothing to user memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EACCES) {
                " (without noNewPrivileges only a process with CAP_SYS_ADMIN may install one)"
            } else {
                ""
            };
            return Err(anyhow!("install the seccomp filter: {err}{hint}"));
        }
        Ok(())
    }
}

/// Check a profile the way [`compile`] does; errors name the offending field.
pub fn validate(profile: &LinuxSeccomp) -> Result<()> {
    compile(profile).map(drop)
}

/// Compile `profile` for the native architecture. Fails with [`Error::InvalidConfig`] naming the
/// field for whatever cannot be honoured.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
    let Some(audit_arch) = native::AUDIT_ARCH else {
        return Err(Error::invalid(format!(
            "linux.seccomp: not supported on {}",
            std::env::consts::ARCH
        )));
    };
    if profile.listener_path().is_some() {
        return Err(Error::invalid(
            "linux.seccomp.listenerPath: seccomp notify (a seccomp agent) is not supported",
        ));
    }
    if profile
        .listener_metadata()
        .as_ref()
        .is_some_and(|m| !m.is_empty())
    {
        return Err(Error::invalid(
            "linux.seccomp.listenerMetadata: seccomp notify (a seccomp agent) is not supported",
        ));
    }
    let default = action_ret(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    let flags = filter_flags(profile.flags().as_deref())?;
    for arch in profile.architectures().iter().flatten() {
        if !is_native(*arch) {
            log::debug!(
                "seccomp: {arch} is not translated; its syscalls kill the process if the kernel \
                 runs them"
            );
        }
    }

    let mut table: BTreeMap<u32, Syscall> = BTreeMap::new();
    let mut highest: Option<u32> = None;
    for (i, entry) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        if entry.names().is_empty() {
            return Err(Error::invalid(format!("{field}.names: must not be empty")));
        }
        let ret = action_ret(
            entry.action(),
            entry.errno_ret(),
            &format!("{field}.action"),
            &format!("{field}.errnoRet"),
        )?;
        let mut conds = Vec::new();
        for (j, arg) in entry.args().iter().flatten().enumerate() {
            if arg.index() >= 6 {
                return Err(Error::invalid(format!(
                    "{field}.args[{j}].index: {} is not a syscall argument (0 to 5)",
                    arg.index()
                )));
            }
            conds.push(Condition {
                index: arg.index(),
                op: arg.op(),
                value: arg.value(),
                value_two: arg.value_two().unwrap_or(0),
            });
        }
        // runc: conditions on distinct arguments are ANDed in one rule; if an argument is
        // named twice, each condition is a rule of its own.
        let repeated = (0..6).any(|idx| conds.iter().filter(|c| c.index == idx).count() > 1);
        let rules: Vec<Vec<Condition>> = if repeated {
            conds.into_iter().map(|c| vec![c]).collect()
        } else {
            vec![conds]
        };
        for (k, name) in entry.names().iter().enumerate() {
            if name.is_empty() {
                return Err(Error::invalid(format!("{field}.names[{k}]: empty name")));
            }
            let Some(nr) = syscalls::number(name) else {
                log::debug!("seccomp: unknown syscall {name:?} ignored");
                continue;
            };
            highest = highest.max(Some(nr));
            if ret == default {
                continue;
            }
            let sc = table.entry(nr).or_default();
            for conds in &rules {
                if conds.is_empty() {
                    sc.otherwise.get_or_insert(ret);
                } else {
                    sc.rules.push(Rule {
                        conds: conds.clone(),
                        ret,
                    });
                }
            }
        }
    }
    let enosys_above = highest.filter(|_| fails_syscalls(default));
    let program = generate(audit_arch, &table, default, enosys_above)
        .map_err(|e| Error::invalid(format!("linux.seccomp: {e}")))?;
    Ok(Filter { program, flags })
}

/// When a config does not parse, find what in its `linux.seccomp` is wrong and say so by field
/// (`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`). `None` when the seccomp
/// object is not the problem.
pub fn explain_parse_error(config: &Value) -> Option<String> {
    let s = config.get("linux")?.get("seccomp")?;
    if s.is_null() {
        return None;
    }
    fn check<T: serde::de::DeserializeOwned>(
        v: Option<&Value>,
        field: &str,
        what: &str,
    ) -> Option<String> {
        let v = v?;
        if serde_json::from_value::<T>(v.clone()).is_ok() {
            return None;
        }
        Some(match v.as_str() {
            Some(s) => format!("{field}: unknown {what} {s:?}"),
            None => format!("{field}: {what} must be a string, not {v}"),
        })
    }
    let list = |key: &str| {
        s.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
    };
    let mut problems = Vec::new();
    problems.extend(check::<Action>(
        s.get("defaultAction"),
        "linux.seccomp.defaultAction",
        "action",
    ));
    for (i, a) in list("architectures") {
        problems.extend(check::<Arch>(
            Some(a),
            &format!("linux.seccomp.architectures[{i}]"),
            "architecture",
        ));
    }
    for (i, f) in list("flags") {
        problems.extend(check::<Flag>(
            Some(f),
            &format!("linux.seccomp.flags[{i}]"),
            "flag",
        ));
    }
    for (i, sc) in list("syscalls") {
        let field = format!("linux.seccomp.syscalls[{i}]");
        problems.extend(check::<Action>(
            sc.get("action"),
            &format!("{field}.action"),
            "action",
        ));
        for (j, arg) in sc
            .get("args")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            problems.extend(check::<Op>(
                arg.get("op"),
                &format!("{field}.args[{j}].op"),
                "operator",
            ));
        }
    }
    if let Some(first) = problems.into_iter().next() {
        return Some(first);
    }
    serde_json::from_value::<LinuxSeccomp>(s.clone())
        .err()
        .map(|e| format!("linux.seccomp: {e}"))
}

/// One argument condition.
#[derive(Debug, Clone, Copy)]
struct Condition {
    index: usize,
    op: Op,
    value: u64,
    value_two: u64,
}

/// Conditions (ANDed) and the filter's return value when they all hold.
#[derive(Debug)]
struct Rule {
    conds: Vec<Condition>,
    ret: u32,
}

/// Everything the profile says about one syscall number.
#[derive(Debug, Default)]
struct Syscall {
    /// Tried in order.
    rules: Vec<Rule>,
    /// The first unconditional rule's return value.
    otherwise: Option<u32>,
}

fn is_native(arch: Arch) -> bool {
    match arch {
        Arch::ScmpArchNative => true,
        Arch::ScmpArchX86_64 => cfg!(target_arch = "x86_64"),
        Arch::ScmpArchAarch64 => cfg!(target_arch = "aarch64"),
        _ => false,
    }
}

/// The filter's return value for an action; `errno_field` names where `errno` came from.
fn action_ret(action: Action, errno: Option<u32>, field: &str, errno_field: &str) -> Result<u32> {
    let data = |errno: Option<u32>| -> Result<u32> {
        let e = errno.unwrap_or(libc::EPERM as u32);
        if e > libc::SECCOMP_RET_DATA {
            return Err(Error::invalid(format!(
                "{errno_field}: {e} does not fit the 16 bits seccomp returns"
            )));
        }
        Ok(e)
    };
    let takes_errno = matches!(action, Action::ScmpActErrno | Action::ScmpActTrace);
    if errno.is_some() && !takes_errno {
        return Err(Error::invalid(format!(
            "{errno_field}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {action}"
        )));
    }
    Ok(match action {
        Action::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        Action::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(errno)?,
        Action::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(errno)?,
        Action::ScmpActKill | Action::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        Action::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Action::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        Action::ScmpActLog => libc::SECCOMP_RET_LOG,
        Action::ScmpActNotify => {
            return Err(Error::invalid(format!(
                "{field}: SCMP_ACT_NOTIFY is not supported (no seccomp agent support)"
            )))
        }
    })
}

/// Whether a default return value fails syscalls (rather than letting them run), which is when
/// syscalls newer than the profile get ENOSYS instead.
fn fails_syscalls(default: u32) -> bool {
    let action = default & libc::SECCOMP_RET_ACTION_FULL;
    let allows = matches!(
        action,
        libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG | libc::SECCOMP_RET_TRACE
    );
    !allows && default != libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
}

/// The `SECCOMP_FILTER_FLAG_*` bits for the OCI flags.
fn filter_flags(flags: Option<&[Flag]>) -> Result<libc::c_ulong> {
    let Some(flags) = flags else {
        // runc's default: do not force the speculative store bypass mitigation on the
        // container just because it has a filter.
        return Ok(if flag_supported(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) {
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        } else {
            0
        });
    };
    let mut bits = 0;
    for (i, flag) in flags.iter().enumerate() {
        let bit = match flag {
            Flag::SeccompFilterFlagTsync => {
                log::debug!(
                    "seccomp: SECCOMP_FILTER_FLAG_TSYNC ignored: the init is single-threaded"
                );
                continue;
            }
            Flag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        };
        if !flag_supported(bit) {
            return Err(Error::invalid(format!(
                "linux.seccomp.flags[{i}]: {flag} is not supported by this kernel"
            )));
        }
        bits |= bit;
    }
    Ok(bits)
}

/// Whether the kernel knows a `SECCOMP_FILTER_FLAG_*` bit. It checks the flags before it reads
/// the program, so a null program tells: EINVAL for an unknown flag, EFAULT otherwise.
fn flag_supported(flag: libc::c_ulong) -> bool {
    // SAFETY: with a null program the kernel either refuses the flags or fails to read the
    // program; nothing is installed and no memory of ours is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flag,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    !(rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL))
}

/// Where a syscall number leads in the dispatch tree.
enum Dest {
    /// Straight to a return value.
    Ret(u32),
    /// To the syscall's rules.
    Rules(Label),
}

/// Syscall numbers per leaf of the dispatch tree.
const LEAF: usize = 4;

/// Lay out the program: architecture check, foreign ABIs, the ENOSYS range, a binary search over
/// the syscall numbers, then each syscall's rules.
fn generate(
    audit_arch: u32,
    table: &BTreeMap<u32, Syscall>,
    default: u32,
    enosys_above: Option<u32>,
) -> std::result::Result<Vec<libc::sock_filter>, String> {
    let mut a = Asm::default();
    a.load(OFF_ARCH);
    let arch_ok = a.label();
    a.jump(Cond::Eq, audit_arch, Target::To(arch_ok), Target::Next);
    a.ret(RET_FOREIGN_ABI);
    a.bind(arch_ok);
    a.load(OFF_NR);
    if let Some(bit) = native::X32_SYSCALL_BIT {
        let ok = a.label();
        a.jump(Cond::Set, bit, Target::Next, Target::To(ok));
        a.ret(RET_FOREIGN_ABI);
        a.bind(ok);
    }
    if let Some(highest) = enosys_above {
        let known = a.label();
        a.jump(Cond::Gt, highest, Target::Next, Target::To(known));
        a.ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        a.bind(known);
    }
    let mut blocks = Vec::new();
    let entries: Vec<(u32, Dest)> = table
        .iter()
        .map(|(nr, sc)| {
            let otherwise = sc.otherwise.unwrap_or(default);
            if sc.rules.is_empty() {
                (*nr, Dest::Ret(otherwise))
            } else {
                let l = a.label();
                blocks.push((l, sc, otherwise));
                (*nr, Dest::Rules(l))
            }
        })
        .collect();
    dispatch(&mut a, &entries, default);
    for (label, sc, otherwise) in blocks {
        a.bind(label);
        for rule in &sc.rules {
            let fail = a.label();
            for c in &rule.conds {
                condition(&mut a, c, fail);
            }
            a.ret(rule.ret);
            a.bind(fail);
        }
        a.ret(otherwise);
    }
    a.assemble()
}

/// A binary search on the syscall number (in the accumulator) over sorted `entries`.
fn dispatch(a: &mut Asm, entries: &[(u32, Dest)], default: u32) {
    if entries.len() <= LEAF {
        for (nr, dest) in entries {
            let other = a.label();
            a.jump(Cond::Eq, *nr, Target::Next, Target::To(other));
            match dest {
                Dest::Ret(k) => a.ret(*k),
                Dest::Rules(l) => a.ja(*l),
            }
            a.bind(other);
        }
        a.ret(default);
        return;
    }
    let mid = entries.len() / 2;
    let (low, high) = (a.label(), a.label());
    a.jump(Cond::Ge, entries[mid].0, Target::Next, Target::To(low));
    a.ja(high);
    a.bind(low);
    dispatch(a, &entries[..mid], default);
    a.bind(high);
    dispatch(a, &entries[mid..], default);
}

/// Offsets of the high and low 32-bit halves of syscall argument `index`.
fn arg_words(index: usize) -> (u32, u32) {
    // index < 6 was checked.
    let base = OFF_ARGS + 8 * index as u32;
    if cfg!(target_endian = "little") {
        (base + 4, base)
    } else {
        (base, base + 4)
    }
}

fn halves(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Fall through when `c` holds, go to `fail` otherwise. 64-bit comparisons look at the high
/// halves first and at the low halves only when the high ones are equal.
fn condition(a: &mut Asm, c: &Condition, fail: Label) {
    use Target::{Next, To};
    let (hi, lo) = arg_words(c.index);
    let (vh, vl) = halves(c.value);
    let ok = a.label();
    match c.op {
        Op::ScmpCmpEq => {
            a.load(hi);
            a.jump(Cond::Eq, vh, Next, To(fail));
            a.load(lo);
            a.jump(Cond::Eq, vl, Next, To(fail));
        }
        Op::ScmpCmpNe => {
            a.load(hi);
            a.jump(Cond::Eq, vh, Next, To(ok));
            a.load(lo);
            a.jump(Cond::Eq, vl, To(fail), Next);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            a.load(hi);
            a.jump(Cond::Gt, vh, To(ok), Next);
            a.jump(Cond::Eq, vh, Next, To(fail));
            a.load(lo);
            let cond = if c.op == Op::ScmpCmpGt {
                Cond::Gt
            } else {
                Cond::Ge
            };
            a.jump(cond, vl, Next, To(fail));
        }
        // LT is not GE, LE is not GT.
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            a.load(hi);
            a.jump(Cond::Gt, vh, To(fail), Next);
            a.jump(Cond::Eq, vh, Next, To(ok));
            a.load(lo);
            let cond = if c.op == Op::ScmpCmpLt {
                Cond::Ge
            } else {
                Cond::Gt
            };
            a.jump(cond, vl, To(fail), Next);
        }
        Op::ScmpCmpMaskedEq => {
            let (dh, dl) = halves(c.value_two);
            a.load(hi);
            a.and(vh);
            a.jump(Cond::Eq, dh, Next, To(fail));
            a.load(lo);
            a.and(vl);
            a.jump(Cond::Eq, dl, Next, To(fail));
        }
    }
    a.bind(ok);
}

#[cfg(test)]
mod tests;
