//! From an OCI profile to a [`Plan`]: the profile's actions, conditions, architectures and flags
//! in libseccomp's terms, with everything the runtime cannot honour refused by field name. No
//! compiling happens here, so spec validation can afford it.

use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};

use super::filter::flag_supported;
use crate::{Error, Result};

/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19): a notified syscall waits killably
/// once the agent has received it. Only meaningful, and only accepted, with a listener.
pub(super) const FLAG_WAIT_KILLABLE_RECV: libc::c_ulong = 1 << 5;

/// Syscalls the init itself makes between installing a notify filter and handing its fd to the
/// parent: a notify rule on them would block the init forever (runc refuses `write` likewise).
const NOTIFY_FORBIDDEN: &[&str] = &["read", "write", "sendmsg"];

/// One syscall entry of the profile, translated.
#[derive(Debug)]
pub(super) struct Rule {
    /// Where it is in the profile (`linux.seccomp.syscalls[3]`), for errors.
    pub field: String,
    pub names: Vec<String>,
    pub action: ScmpAction,
    /// One libseccomp rule per element (ORed); each is a list of ANDed conditions, empty for
    /// an unconditional rule.
    pub conds: Vec<Vec<ScmpArgCompare>>,
}

/// A profile ready for libseccomp.
#[derive(Debug)]
pub(super) struct Plan {
    pub default: ScmpAction,
    /// The listed architectures (the native one is always in the filter).
    pub arches: Vec<ScmpArch>,
    pub rules: Vec<Rule>,
    /// Every syscall name the profile mentions (for the ENOSYS stub).
    pub names: Vec<String>,
    /// `SECCOMP_FILTER_FLAG_*` bits to install with.
    pub flags: libc::c_ulong,
    /// Whether any rule notifies a listener.
    pub notify: bool,
}

/// Translate and check `profile`.
pub(super) fn plan(profile: &LinuxSeccomp) -> Result<Plan> {
    let default = action(
        profile.default_action(),
        profile.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default == ScmpAction::Notify {
        return Err(Error::invalid(
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
        ));
    }
    let listener = profile.listener_path().is_some();
    if !listener
        && profile
            .listener_metadata()
            .as_ref()
            .is_some_and(|m| !m.is_empty())
    {
        return Err(Error::invalid(
            "linux.seccomp.listenerMetadata: set without linux.seccomp.listenerPath",
        ));
    }
    if let Some(path) = profile.listener_path() {
        if !path.is_absolute() {
            return Err(Error::invalid(format!(
                "linux.seccomp.listenerPath: {} is not an absolute path",
                path.display()
            )));
        }
    }
    let mut arches = Vec::new();
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        arches.push(scmp_arch(*arch).ok_or_else(|| {
            Error::invalid(format!(
                "linux.seccomp.architectures[{i}]: {arch} is not supported by libseccomp"
            ))
        })?);
    }

    let mut rules = Vec::new();
    let mut names = Vec::new();
    let mut notify = false;
    for (i, entry) in profile.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        if entry.names().is_empty() {
            return Err(Error::invalid(format!("{field}.names: must not be empty")));
        }
        for (k, name) in entry.names().iter().enumerate() {
            if name.is_empty() {
                return Err(Error::invalid(format!("{field}.names[{k}]: empty name")));
            }
        }
        names.extend(entry.names().iter().cloned());
        let act = action(
            entry.action(),
            entry.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        if act == ScmpAction::Notify {
            if !listener {
                return Err(Error::invalid(format!(
                    "{field}.action: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath"
                )));
            }
            if let Some(name) = entry
                .names()
                .iter()
                .find(|n| NOTIFY_FORBIDDEN.contains(&n.as_str()))
            {
                return Err(Error::invalid(format!(
                    "{field}.names: SCMP_ACT_NOTIFY cannot be used for {name:?} (the runtime \
                     needs it to hand the listener fd over)"
                )));
            }
            notify = true;
        }
        let mut conds = Vec::new();
        for (j, arg) in entry.args().iter().flatten().enumerate() {
            let index = u32::try_from(arg.index())
                .ok()
                .filter(|i| *i < 6)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{field}.args[{j}].index: {} is not a syscall argument (0 to 5)",
                        arg.index()
                    ))
                })?;
            conds.push(condition(
                index,
                arg.op(),
                arg.value(),
                arg.value_two().unwrap_or(0),
            ));
        }
        // runc: conditions on distinct arguments are ANDed in one rule; if an argument is
        // named twice, each condition is a rule of its own.
        let repeated = entry.args().iter().flatten().enumerate().any(|(j, a)| {
            entry
                .args()
                .iter()
                .flatten()
                .skip(j + 1)
                .any(|b| b.index() == a.index())
        });
        let conds = if repeated {
            conds.into_iter().map(|c| vec![c]).collect()
        } else {
            vec![conds]
        };
        // libseccomp refuses a rule whose action is the default; it would change nothing.
        if act == default {
            continue;
        }
        rules.push(Rule {
            field,
            names: entry.names().clone(),
            action: act,
            conds,
        });
    }
    let flags = filter_flags(profile.flags().as_deref(), notify)?;
    Ok(Plan {
        default,
        arches,
        rules,
        names,
        flags,
        notify,
    })
}

/// libseccomp's architecture for an OCI one.
fn scmp_arch(arch: Arch) -> Option<ScmpArch> {
    if arch == Arch::ScmpArchNative {
        return Some(ScmpArch::Native);
    }
    ScmpArch::from_str(&arch.to_string()).ok()
}

/// libseccomp's comparison for an OCI argument condition.
fn condition(index: u32, op: Op, value: u64, value_two: u64) -> ScmpArgCompare {
    let (op, datum) = match op {
        Op::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        Op::ScmpCmpLt => (ScmpCompareOp::Less, value),
        Op::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        Op::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        Op::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        Op::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        Op::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), value_two),
    };
    ScmpArgCompare::new(index, op, datum)
}

/// libseccomp's action for an OCI one; `errno_field` names where `errno` came from.
fn action(action: Action, errno: Option<u32>, errno_field: &str) -> Result<ScmpAction> {
    let data = |errno: Option<u32>| -> Result<u16> {
        let e = errno.unwrap_or(libc::EPERM as u32);
        u16::try_from(e).map_err(|_| {
            Error::invalid(format!(
                "{errno_field}: {e} does not fit the 16 bits seccomp returns"
            ))
        })
    };
    let takes_errno = matches!(action, Action::ScmpActErrno | Action::ScmpActTrace);
    if errno.is_some() && !takes_errno {
        return Err(Error::invalid(format!(
            "{errno_field}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {action}"
        )));
    }
    Ok(match action {
        Action::ScmpActAllow => ScmpAction::Allow,
        Action::ScmpActErrno => ScmpAction::Errno(i32::from(data(errno)?)),
        Action::ScmpActTrace => ScmpAction::Trace(data(errno)?),
        Action::ScmpActKill | Action::ScmpActKillThread => ScmpAction::KillThread,
        Action::ScmpActKillProcess => ScmpAction::KillProcess,
        Action::ScmpActTrap => ScmpAction::Trap,
        Action::ScmpActLog => ScmpAction::Log,
        Action::ScmpActNotify => ScmpAction::Notify,
    })
}

/// The `SECCOMP_FILTER_FLAG_*` bits for the OCI flags.
fn filter_flags(flags: Option<&[Flag]>, notify: bool) -> Result<libc::c_ulong> {
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
            Flag::SeccompFilterFlagWaitKillableRecv if !notify => {
                log::debug!(
                    "seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: no rule notifies"
                );
                continue;
            }
            Flag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
        // The kernel takes WAIT_KILLABLE_RECV only with NEW_LISTENER: ask for both.
        let probe = if bit == FLAG_WAIT_KILLABLE_RECV {
            bit | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            bit
        };
        if !flag_supported(probe) {
            return Err(Error::invalid(format!(
                "linux.seccomp.flags[{i}]: {flag} is not supported by this kernel"
            )));
        }
        bits |= bit;
    }
    Ok(bits)
}
