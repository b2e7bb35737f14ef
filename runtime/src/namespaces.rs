//! Namespaces: which to create and which to join (from the spec), and the system calls that do
//! it in the init's first child.

use std::os::fd::AsFd;

use anyhow::Context;
use nix::sched::CloneFlags;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::sync::{IdMap, NsPath};
use crate::{Error, Result};

/// What the first child must do: join these, then create those.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Namespaces to join by path, the user namespace first.
    pub join: Vec<NsPath>,
    /// Namespaces to create (including `CLONE_NEWCGROUP`, which the init creates last).
    pub clone_flags: i32,
}

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> Result<i32> {
    Ok(match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => {
            return Err(Error::invalid(
                "linux.namespaces: time namespaces are not supported",
            ))
        }
    })
}

/// Build the plan from `linux.namespaces`; duplicates and user namespaces without id maps are
/// refused.
pub fn plan(linux: &Linux) -> Result<Plan> {
    let mut plan = Plan::default();
    let mut seen = 0;
    for ns in linux.namespaces().iter().flatten() {
        let f = flag(ns.typ())?;
        if seen & f != 0 {
            return Err(Error::invalid(format!(
                "linux.namespaces: {} appears twice",
                ns.typ()
            )));
        }
        seen |= f;
        match ns.path() {
            Some(p) if !p.as_os_str().is_empty() => plan.join.push(NsPath {
                flag: f,
                path: p.clone(),
            }),
            _ => plan.clone_flags |= f,
        }
    }
    // Joining a user namespace first gives the rights to join the others.
    plan.join
        .sort_by_key(|j| if j.flag == libc::CLONE_NEWUSER { 0 } else { 1 });
    if plan.clone_flags & libc::CLONE_NEWUSER != 0
        && (id_maps(linux.uid_mappings()).is_empty() || id_maps(linux.gid_mappings()).is_empty())
    {
        return Err(Error::invalid(
            "linux.uidMappings/gidMappings: a new user namespace needs both",
        ));
    }
    Ok(plan)
}

/// The spec's id mappings in our wire form.
pub fn id_maps(maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>) -> Vec<IdMap> {
    maps.iter()
        .flatten()
        .map(|m| IdMap {
            container_id: m.container_id(),
            host_id: m.host_id(),
            size: m.size(),
        })
        .collect()
}

/// The text of `/proc/<pid>/uid_map` for `maps`.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// Join one namespace by path.
pub fn join(ns: &NsPath) -> anyhow::Result<()> {
    let file = std::fs::File::open(&ns.path)
        .with_context(|| format!("open namespace {}", ns.path.display()))?;
    nix::sched::setns(file.as_fd(), CloneFlags::from_bits_truncate(ns.flag))
        .with_context(|| format!("join namespace {}", ns.path.display()))
}

/// Create new namespaces for the calling (single-threaded) process.
pub fn unshare(flags: i32) -> anyhow::Result<()> {
    if flags == 0 {
        return Ok(());
    }
    nix::sched::unshare(CloneFlags::from_bits_truncate(flags))
        .with_context(|| format!("unshare namespaces {flags:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: serde_json::Value) -> Linux {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn plan_splits_new_and_joined_user_first() {
        let l = linux(serde_json::json!({"namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/proc/9/ns/net"},
            {"type": "mount"}, {"type": "user", "path": "/proc/9/ns/user"}
        ]}));
        let p = plan(&l).unwrap();
        assert_eq!(p.clone_flags, libc::CLONE_NEWPID | libc::CLONE_NEWNS);
        assert_eq!(p.join[0].flag, libc::CLONE_NEWUSER);
        assert_eq!(p.join[1].flag, libc::CLONE_NEWNET);
    }

    #[test]
    fn duplicates_and_unmapped_user_ns_are_refused() {
        let l = linux(serde_json::json!({"namespaces": [{"type": "pid"}, {"type": "pid"}]}));
        assert!(plan(&l).unwrap_err().to_string().contains("twice"));
        let l = linux(serde_json::json!({"namespaces": [{"type": "user"}]}));
        assert!(plan(&l).is_err());
    }

    #[test]
    fn map_text_has_one_line_per_range() {
        let m = [
            IdMap {
                container_id: 0,
                host_id: 100000,
                size: 65536,
            },
            IdMap {
                container_id: 65536,
                host_id: 1000,
                size: 1,
            },
        ];
        assert_eq!(map_text(&m), "0 100000 65536\n65536 1000 1\n");
    }
}
