//! The ENOSYS stub put in front of libseccomp's program, as runc patches its filters: when the
//! default action fails syscalls, a syscall numbered above the highest one the profile names for
//! its architecture gets ENOSYS instead, so that programs fall back from syscalls newer than the
//! profile (glibc tries clone3 and falls back to clone on ENOSYS, not on EPERM).
//!
//! For each architecture of the filter: if the audit arch matches, load the syscall number and
//! compare it with that architecture's highest; x86_64 and x32 share an audit arch and are told
//! apart by the x32 bit in the number. Anything else falls through to libseccomp's program,
//! which starts by loading the arch again.

use libseccomp::{ScmpAction, ScmpArch, ScmpSyscall};

use super::bpf::{Asm, Cond, Target};
use super::check::Plan;

/// x32 syscalls come with the x86_64 audit arch and this bit set in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The audit arch of x86_64 (and x32) syscalls.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
const OFF_ARCH: u32 = std::mem::offset_of!(libc::seccomp_data, arch) as u32;

/// The audit arch the kernel reports for syscalls of `arch`, and whether they carry the x32 bit.
fn audit_arch(arch: ScmpArch) -> Option<(u32, bool)> {
    Some(match arch {
        ScmpArch::Native => return audit_arch(ScmpArch::native()),
        ScmpArch::X86 => (0x4000_0003, false),
        ScmpArch::X8664 => (AUDIT_ARCH_X86_64, false),
        ScmpArch::X32 => (AUDIT_ARCH_X86_64, true),
        ScmpArch::Arm => (0x4000_0028, false),
        ScmpArch::Aarch64 => (0xc000_00b7, false),
        ScmpArch::Riscv64 => (0xc000_00f3, false),
        ScmpArch::Ppc64 => (0x8000_0015, false),
        ScmpArch::Ppc64Le => (0xc000_0015, false),
        ScmpArch::S390X => (0x8000_0016, false),
        _ => return None,
    })
}

/// Whether the default action lets syscalls run (then unknown syscalls need no ENOSYS).
fn default_lets_through(default: ScmpAction) -> bool {
    matches!(
        default,
        ScmpAction::Allow | ScmpAction::Log | ScmpAction::Trace(_)
    ) || default == ScmpAction::Errno(libc::ENOSYS)
}

/// The highest number any of `names` has on `arch`.
fn highest(names: &[String], arch: ScmpArch) -> Option<u32> {
    names
        .iter()
        .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
        .filter_map(|s| u32::try_from(s.as_raw_syscall()).ok())
        .max()
}

/// One audit arch of the filter: the highest syscall without and with the x32 bit.
struct Group {
    audit: u32,
    plain: Option<u32>,
    x32: Option<u32>,
}

/// The stub for `plan` (empty when the default action lets syscalls through).
pub(super) fn stub(plan: &Plan) -> Result<Vec<libc::sock_filter>, String> {
    if default_lets_through(plan.default) {
        return Ok(Vec::new());
    }
    let mut arches = vec![ScmpArch::native()];
    for a in &plan.arches {
        let a = if *a == ScmpArch::Native {
            ScmpArch::native()
        } else {
            *a
        };
        if !arches.contains(&a) {
            arches.push(a);
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for arch in arches {
        let Some((audit, is_x32)) = audit_arch(arch) else {
            continue;
        };
        let Some(hi) = highest(&plan.names, arch) else {
            continue;
        };
        let at = match groups.iter().position(|g| g.audit == audit) {
            Some(at) => at,
            None => {
                groups.push(Group {
                    audit,
                    plain: None,
                    x32: None,
                });
                groups.len() - 1
            }
        };
        if is_x32 {
            groups[at].x32 = Some(hi | X32_SYSCALL_BIT);
        } else {
            groups[at].plain = Some(hi);
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut a = Asm::default();
    let (enosys, end) = (a.label(), a.label());
    a.load(OFF_ARCH);
    for g in &groups {
        let next = a.label();
        a.jump(Cond::Eq, g.audit, Target::Next, Target::To(next));
        a.load(OFF_NR);
        let x32_part = a.label();
        if g.audit == AUDIT_ARCH_X86_64 {
            // x86_64: numbers with the x32 bit are x32 syscalls.
            a.jump(
                Cond::Set,
                X32_SYSCALL_BIT,
                Target::To(x32_part),
                Target::Next,
            );
        }
        match g.plain {
            Some(hi) => a.jump(Cond::Gt, hi, Target::To(enosys), Target::To(end)),
            None => a.ja(end),
        }
        if g.audit == AUDIT_ARCH_X86_64 {
            a.bind(x32_part);
            match g.x32 {
                Some(hi) => a.jump(Cond::Gt, hi, Target::To(enosys), Target::To(end)),
                None => a.ja(end),
            }
        }
        a.bind(next);
    }
    a.ja(end);
    a.bind(enosys);
    a.ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    a.bind(end);
    a.assemble()
}
