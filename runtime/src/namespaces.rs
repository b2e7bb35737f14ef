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
    sort_joins(&mut plan.join);
    if plan.clone_flags & libc::CLONE_NEWUSER != 0
        && (id_maps(linux.uid_mappings()).is_empty() || id_maps(linux.gid_mappings()).is_empty())
    {
        return Err(Error::invalid(
            "linux.uidMappings/gidMappings: a new user namespace needs both",
        ));
    }
    Ok(plan)
}

/// Order namespaces to join: the user namespace first (it gives the rights to join the others),
/// the mount namespace last (after it, host paths such as `/proc/<pid>/ns/*` no longer resolve).
pub fn sort_joins(join: &mut [NsPath]) {
    join.sort_by_key(|j| match j.flag {
        libc::CLONE_NEWUSER => 0,
        libc::CLONE_NEWNS => 2,
        _ => 1,
    });
}

/// The namespaces of process `pid` that differ from ours, to join for an exec, in join order.
pub fn of_process(pid: i32) -> anyhow::Result<Vec<NsPath>> {
    use std::os::unix::fs::MetadataExt;
    const KINDS: [(&str, i32); 7] = [
        ("user", libc::CLONE_NEWUSER),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut out = Vec::new();
    for (name, flag) in KINDS {
        let theirs = std::path::PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let their_ino = match std::fs::metadata(&theirs) {
            Ok(m) => m.ino(),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && name != "mnt" && name != "pid" =>
            {
                continue
            }
            Err(e) => return Err(e).with_context(|| format!("read {}", theirs.display())),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map(|m| m.ino())
            .ok();
        if ours != Some(their_ino) {
            out.push(NsPath { flag, path: theirs });
        }
    }
    sort_joins(&mut out);
    Ok(out)
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

/// The host id that id 0 inside the namespace maps to, if any.
pub fn host_id_of_root(maps: &[IdMap]) -> Option<u32> {
    maps.iter()
        .find(|m| m.container_id == 0 && m.size > 0)
        .map(|m| m.host_id)
}

/// The text of `/proc/<pid>/uid_map` for `maps`.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// Join namespaces by path, in the given order. Every path is opened before the first is
/// joined, so that joining one cannot hide the next.
pub fn join(list: &[NsPath]) -> anyhow::Result<()> {
    let files = list
        .iter()
        .map(|ns| {
            std::fs::File::open(&ns.path)
                .with_context(|| format!("open namespace {}", ns.path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (ns, file) in list.iter().zip(&files) {
        nix::sched::setns(file.as_fd(), CloneFlags::from_bits_truncate(ns.flag))
            .with_context(|| format!("join namespace {}", ns.path.display()))?;
    }
    Ok(())
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
    fn mount_namespace_is_joined_last() {
        let mut j = vec![
            NsPath {
                flag: libc::CLONE_NEWNS,
                path: "/m".into(),
            },
            NsPath {
                flag: libc::CLONE_NEWNET,
                path: "/n".into(),
            },
            NsPath {
                flag: libc::CLONE_NEWUSER,
                path: "/u".into(),
            },
        ];
        sort_joins(&mut j);
        let flags: Vec<i32> = j.iter().map(|n| n.flag).collect();
        assert_eq!(
            flags,
            [libc::CLONE_NEWUSER, libc::CLONE_NEWNET, libc::CLONE_NEWNS]
        );
    }

    #[test]
    fn own_namespaces_are_not_rejoined() {
        let ours = of_process(std::process::id() as i32).unwrap();
        assert!(ours.is_empty(), "{ours:?}");
    }

    #[test]
    fn duplicates_and_unmapped_user_ns_are_refused() {
        let l = linux(serde_json::json!({"namespaces": [{"type": "pid"}, {"type": "pid"}]}));
        assert!(plan(&l).unwrap_err().to_string().contains("twice"));
        let l = linux(serde_json::json!({"namespaces": [{"type": "user"}]}));
        assert!(plan(&l).is_err());
    }

    #[test]
    fn root_maps_to_its_host_id() {
        let m = [IdMap {
            container_id: 0,
            host_id: 100000,
            size: 65536,
        }];
        assert_eq!(host_id_of_root(&m), Some(100000));
        assert_eq!(host_id_of_root(&[]), None);
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
