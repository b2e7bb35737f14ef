//! Process credentials and limits: rlimits and oom_score_adj (set by the parent on the init's
//! pid), and, in the init just before exec, groups, uid/gid, capabilities and no_new_privs.

use std::collections::HashSet;
use std::str::FromStr;

use anyhow::{bail, Context};
use caps::{CapSet, Capability as Cap, CapsHashSet};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

/// The `RLIMIT_*` resource of an OCI rlimit type.
pub fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Apply the spec's rlimits to process `pid` (parent side, before the init goes on).
pub fn set_rlimits(pid: i32, rlimits: &[PosixRlimit]) -> anyhow::Result<()> {
    for r in rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: prlimit reads `lim` (a valid, initialised struct) and writes nothing because the
        // old-limit pointer is null.
        let rc =
            unsafe { libc::prlimit(pid, rlimit_resource(r.typ()), &lim, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("set rlimit {:?} to {}/{}", r.typ(), r.soft(), r.hard()));
        }
    }
    Ok(())
}

/// Write `/proc/<pid>/oom_score_adj`.
pub fn set_oom_score_adj(pid: i32, value: i32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), value.to_string())
        .with_context(|| format!("set oom_score_adj to {value}"))
}

/// Convert an OCI capability set to the caps crate's; names the kernel or the crate does not
/// know are reported.
fn to_caps(set: &Option<Capabilities>) -> anyhow::Result<CapsHashSet> {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = c.to_string();
        let name = if name.starts_with("CAP_") {
            name
        } else {
            format!("CAP_{name}")
        };
        match Cap::from_str(&name) {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => bail!("unknown capability {name}"),
        }
    }
    Ok(out)
}

/// Drop every capability outside the spec's bounding set (needs CAP_SETPCAP: do it as root).
pub fn drop_bounding(c: &LinuxCapabilities) -> anyhow::Result<()> {
    let keep = to_caps(c.bounding())?;
    let kernel_last = caps::runtime::thread_all_supported();
    for cap in kernel_last {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("drop {cap} from the bounding set"))?;
        }
    }
    Ok(())
}

/// Become the spec's user: additional groups, gid, uid, keeping capabilities across the switch,
/// then set the effective, permitted, inheritable and ambient sets and no_new_privs.
pub fn finalize_credentials(process: &Process) -> anyhow::Result<()> {
    let user = process.user();
    if let Some(c) = process.capabilities() {
        drop_bounding(c)?;
    }
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).context("set additional groups")?;
    nix::sys::prctl::set_keepcaps(true).context("keep capabilities")?;
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).with_context(|| format!("set gid to {gid}"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).with_context(|| format!("set uid to {uid}"))?;
    nix::sys::prctl::set_keepcaps(false).context("reset keep capabilities")?;
    if let Some(umask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    }
    let c = process.capabilities().clone().unwrap_or_default();
    let c = if process.capabilities().is_none() {
        empty_caps()
    } else {
        c
    };
    caps::set(None, CapSet::Effective, &to_caps(c.effective())?)
        .context("set effective capabilities")?;
    caps::set(None, CapSet::Permitted, &to_caps(c.permitted())?)
        .context("set permitted capabilities")?;
    caps::set(None, CapSet::Inheritable, &to_caps(c.inheritable())?)
        .context("set inheritable capabilities")?;
    caps::clear(None, CapSet::Ambient).context("clear ambient capabilities")?;
    // Like runc: an ambient capability that is not also permitted and inheritable cannot be
    // raised; that is not fatal.
    for cap in to_caps(c.ambient())? {
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            log::warn!("raise ambient {cap}: {e}");
        }
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().context("set no_new_privs")?;
    }
    Ok(())
}

fn empty_caps() -> LinuxCapabilities {
    let none = Some(HashSet::new());
    let mut c = LinuxCapabilities::default();
    c.set_bounding(none.clone())
        .set_effective(none.clone())
        .set_permitted(none.clone())
        .set_inheritable(none.clone())
        .set_ambient(none);
    c
}

/// Find the executable for `arg0` the way execvp would, with the container's PATH. Returns the
/// path to exec or the error the user should see.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<std::path::PathBuf, String> {
    use nix::unistd::{access, AccessFlags};
    let check = |p: &std::path::Path| -> Result<(), nix::Error> {
        let meta = std::fs::metadata(p)
            .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
        if meta.is_dir() {
            return Err(nix::Error::EACCES);
        }
        access(p, AccessFlags::X_OK)
    };
    if arg0.contains('/') {
        let p = std::path::PathBuf::from(arg0);
        return match check(&p) {
            Ok(()) => Ok(p),
            Err(e) => Err(format!("exec {arg0:?}: {}", e.desc())),
        };
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut denied = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = std::path::Path::new(dir).join(arg0);
        match check(&p) {
            Ok(()) => return Ok(p),
            Err(nix::Error::EACCES) => denied = Some(p),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err(format!("exec {arg0:?}: {}: permission denied", p.display())),
        None => Err(format!(
            "exec {arg0:?}: executable file not found in $PATH: No such file or directory"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_capability_names_map_to_kernel_ones() {
        let set: Capabilities =
            serde_json::from_value(serde_json::json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]))
                .unwrap();
        let c = to_caps(&Some(set)).unwrap();
        assert!(c.contains(&Cap::CAP_CHOWN) && c.contains(&Cap::CAP_NET_BIND_SERVICE));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn executable_lookup_reports_like_execvp() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(
            find_executable("sh", &env).unwrap(),
            std::path::Path::new("/bin/sh")
        );
        let err = find_executable("nosuch-binary", &env).unwrap_err();
        assert!(
            err.contains("\"nosuch-binary\"") && err.contains("No such file or directory"),
            "{err}"
        );
        let err = find_executable("/nosuch", &env).unwrap_err();
        assert_eq!(err, "exec \"/nosuch\": No such file or directory");
    }
}
