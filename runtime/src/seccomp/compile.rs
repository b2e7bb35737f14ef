//! The [`Plan`] through libseccomp: a filter context with the profile's architectures and
//! rules, exported as BPF, with the ENOSYS stub in front.

use std::io::{Read, Seek};

use anyhow::Context;
use libseccomp::{ScmpAction, ScmpFilterContext, ScmpSyscall};

use super::check::Plan;
use super::{enosys, filter::from_native_bytes, Filter};
use crate::{Error, Result};

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// Compile `plan`. libseccomp's own refusals become [`Error::InvalidConfig`] naming the entry.
pub(super) fn compile(plan: &Plan) -> Result<Filter> {
    let mut ctx = ScmpFilterContext::new(plan.default)
        .context("seccomp: create a libseccomp filter context")?;
    // A syscall through an ABI the filter does not translate cannot slip through a deny list.
    ctx.set_act_badarch(ScmpAction::KillProcess)
        .context("seccomp: set the bad-architecture action")?;
    for (i, arch) in plan.arches.iter().enumerate() {
        let present = ctx.is_arch_present(*arch).unwrap_or(false);
        if !present {
            ctx.add_arch(*arch).map_err(|e| {
                Error::invalid(format!("linux.seccomp.architectures[{i}]: {arch:?}: {e}"))
            })?;
        }
    }
    for rule in &plan.rules {
        for name in &rule.names {
            // libseccomp resolves the name for every architecture of the filter; a name it
            // does not know at all is skipped, as runc does.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                log::debug!("seccomp: unknown syscall {name:?} ignored");
                continue;
            };
            for conds in &rule.conds {
                let added = if conds.is_empty() {
                    ctx.add_rule(rule.action, syscall)
                } else {
                    ctx.add_rule_conditional(rule.action, syscall, conds)
                };
                added.map_err(|e| {
                    Error::invalid(format!("{}: syscall {name:?}: {e}", rule.field))
                })?;
            }
        }
    }
    let body = export(&ctx)?;
    let mut program = enosys::stub(plan).map_err(|e| Error::invalid(format!("seccomp: {e}")))?;
    program.extend(body);
    if program.len() > MAX_INSNS {
        return Err(Error::invalid(format!(
            "linux.seccomp: the filter has {} instructions, more than the kernel's limit of \
             {MAX_INSNS}",
            program.len()
        )));
    }
    Ok(Filter {
        program,
        flags: plan.flags,
        notify: plan.notify,
    })
}

/// libseccomp's BPF program, through a memfd (libseccomp 2.5 exports to an fd only).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    let fd = nix::sys::memfd::memfd_create(
        c"myshim-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .context("seccomp: memfd_create")?;
    ctx.export_bpf(&fd)
        .context("seccomp: export the BPF program")?;
    let mut file = std::fs::File::from(fd);
    file.rewind()
        .context("seccomp: rewind the exported program")?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .context("seccomp: read the exported program")?;
    Ok(from_native_bytes(&bytes)?)
}
