//! Where the container's cgroup lives: parsing `/proc/self/mountinfo` (the mounted hierarchies)
//! and `/proc/self/cgroup` (our own cgroup in each), and resolving the spec's `cgroupsPath` to
//! one directory per hierarchy the way runc does. All pure but [`read_proc`].

use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;

use crate::{Error, Result};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Prefix of the default cgroup path (`/myshim/<id>`).
pub const DEFAULT_PARENT: &str = "/myshim";

/// v1 controller names that can appear among a cgroup mount's super options.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// One mounted cgroup hierarchy, from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// v1 controllers (named hierarchies as `name=systemd`); empty for cgroup2.
    pub controllers: Vec<String>,
    /// A cgroup2 mount.
    pub unified: bool,
    /// The mount's root inside the hierarchy (mountinfo field 4; not `/` in a container that
    /// sees only a bind-mounted part of the hierarchy).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
}

/// Undo mountinfo's octal escapes (`\040` is a space, ...).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The cgroup mounts of a mountinfo text, in mount order, each hierarchy once (the first mount
/// of a v1 controller set wins; every cgroup2 mount is kept, see [`pick_unified`]).
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out: Vec<CgroupMount> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 4 {
            continue;
        }
        let unified = match fields[sep + 1] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers: Vec<String> = if unified {
            Vec::new()
        } else {
            fields[sep + 3]
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect()
        };
        if !unified
            && (controllers.is_empty()
                || out.iter().any(|m| same_set(&m.controllers, &controllers)))
        {
            continue;
        }
        out.push(CgroupMount {
            controllers,
            unified,
            root: unescape(fields[3]),
            mountpoint: unescape(fields[4]),
        });
    }
    out
}

/// The cgroup2 mount to use among `mounts`: the one at `/sys/fs/cgroup` (v2), else the one at
/// `/sys/fs/cgroup/unified` (hybrid), else the first.
pub fn pick_unified(mounts: &[CgroupMount]) -> Option<&CgroupMount> {
    let unified = || mounts.iter().filter(|m| m.unified);
    unified()
        .find(|m| m.mountpoint == Path::new(CGROUP_ROOT))
        .or_else(|| unified().find(|m| m.mountpoint == Path::new(CGROUP_ROOT).join("unified")))
        .or_else(|| unified().next())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// One line of `/proc/self/cgroup`: the hierarchy's controllers (empty for cgroup2) and our
/// cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroup {
    /// Controllers (`cpu`, `name=systemd`...), empty on the `0::` line.
    pub controllers: Vec<String>,
    /// The cgroup path, e.g. `/user.slice`.
    pub path: String,
}

/// Parse `/proc/self/cgroup` (`id:controllers:path` lines).
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let controllers = it.next()?;
            let path = it.next()?;
            Some(ProcCgroup {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

/// Our own cgroup in the hierarchy of `mount`.
pub fn own_cgroup<'a>(mount: &CgroupMount, proc: &'a [ProcCgroup]) -> Option<&'a str> {
    proc.iter()
        .find(|p| same_set(&p.controllers, &mount.controllers))
        .map(|p| p.path.as_str())
}

/// Lexically clean an absolute cgroup path: `.` dropped, `..` removes the previous component
/// (and stays at `/` at the top), repeated slashes collapse. Always starts with `/`.
pub fn clean_abs(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out
}

/// The spec's `cgroupsPath`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupsPath {
    /// Absolute: the same path below every hierarchy's mount point (already cleaned).
    Absolute(PathBuf),
    /// Relative: below our own cgroup in each hierarchy.
    Relative(PathBuf),
}

/// Check the spec's `cgroupsPath` (`None` or empty: `/myshim/<id>`) for the cgroupfs driver.
/// Systemd-style `slice:prefix:name` paths are refused here (see [`super::systemd`]), as are
/// paths naming a root.
pub fn parse_cgroups_path(path: Option<&Path>, id: &str) -> Result<CgroupsPath> {
    let path = path.filter(|p| !p.as_os_str().is_empty());
    let Some(path) = path else {
        if id.is_empty() || id == "." || id == ".." || id.contains('/') {
            return Err(Error::invalid(format!(
                "container id {id:?} cannot name a cgroup"
            )));
        }
        return Ok(CgroupsPath::Absolute(Path::new(DEFAULT_PARENT).join(id)));
    };
    let text = path.to_string_lossy();
    if !path.is_absolute() && text.split(':').count() == 3 {
        return Err(Error::invalid(format!(
            "cgroupsPath {text:?} looks like a systemd slice:prefix:name path, which only the \
             systemd cgroup driver takes (CgroupManager::new)"
        )));
    }
    if path.is_absolute() {
        let cleaned = clean_abs(path);
        if cleaned == Path::new("/") {
            return Err(Error::invalid(format!(
                "cgroupsPath {text:?} names the root cgroup"
            )));
        }
        Ok(CgroupsPath::Absolute(cleaned))
    } else {
        if path.components().all(|c| c == Component::CurDir) {
            return Err(Error::invalid(format!(
                "cgroupsPath {text:?} names our own cgroup"
            )));
        }
        Ok(CgroupsPath::Relative(path.to_path_buf()))
    }
}

/// The container's cgroup in the hierarchy of `mount`: (path inside the hierarchy as seen from
/// the mount point, e.g. `/myshim/id`; full directory). An absolute path is taken below the
/// mount point; a relative one below `own` (our cgroup there, from `/proc/self/cgroup`, which
/// must lie below the mount's root).
pub fn resolve(
    mount: &CgroupMount,
    path: &CgroupsPath,
    own: Option<&str>,
) -> Result<(PathBuf, PathBuf)> {
    let rel = match path {
        CgroupsPath::Absolute(p) => clean_abs(p),
        CgroupsPath::Relative(r) => {
            let own = own.ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot find our own cgroup for the hierarchy at {} in /proc/self/cgroup",
                    mount.mountpoint.display()
                )
            })?;
            let own = clean_abs(Path::new(own));
            let base = own.strip_prefix(clean_abs(&mount.root)).map_err(|_| {
                anyhow::anyhow!(
                    "our cgroup {} is outside the part {} of the hierarchy mounted at {}",
                    own.display(),
                    mount.root.display(),
                    mount.mountpoint.display()
                )
            })?;
            clean_abs(&Path::new("/").join(base).join(r))
        }
    };
    let inner = rel.strip_prefix("/").unwrap_or(&rel);
    if inner.as_os_str().is_empty() {
        return Err(Error::invalid(format!(
            "cgroupsPath resolves to the root of the hierarchy at {}",
            mount.mountpoint.display()
        )));
    }
    let dir = mount.mountpoint.join(inner);
    Ok((rel, dir))
}

/// Read a /proc file, with the path in the error.
pub fn read_proc(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("read {path}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PROC: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/030f
2:cpuacct:/
1:cpu:/
0::/
";

    fn mount(mp: &str, root: &str, controllers: &[&str], unified: bool) -> CgroupMount {
        CgroupMount {
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
            unified,
            root: root.into(),
            mountpoint: mp.into(),
        }
    }

    #[test]
    fn mountinfo_hybrid() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 10);
        assert_eq!(m[0], mount("/sys/fs/cgroup/cpu", "/", &["cpu"], false));
        assert_eq!(m[1].controllers, vec!["cpuacct"]);
        assert_eq!(
            m[8],
            mount("/sys/fs/cgroup/systemd", "/", &["name=systemd"], false)
        );
        assert_eq!(m[9], mount("/sys/fs/cgroup/unified", "/", &[], true));
        assert_eq!(
            pick_unified(&m).map(|m| m.mountpoint.clone()),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn mountinfo_details() {
        let text = "\
1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
2 0 0:1 / /other/cpu rw - cgroup cgroup rw,cpuacct,cpu
3 0 0:2 /docker/abc /sys/fs/cgroup/memory rw shared:1 master:2 - cgroup cgroup ro,memory
4 0 0:3 / /mnt/with\\040space rw - cgroup2 cgroup2 rw,nsdelegate
5 0 0:4 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
6 0 0:5 / /x rw - cgroup cgroup rw,release_agent=/bin/true,clone_children
garbage line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            m[1],
            mount("/sys/fs/cgroup/memory", "/docker/abc", &["memory"], false)
        );
        assert_eq!(m[2].mountpoint, PathBuf::from("/mnt/with space"));
        assert_eq!(
            pick_unified(&m).map(|m| m.mountpoint.clone()),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(unescape("a\\134b\\011"), PathBuf::from("a\\b\t"));
        assert_eq!(unescape("trailing\\04"), PathBuf::from("trailing\\04"));
    }

    #[test]
    fn proc_cgroup() {
        let p = parse_proc_cgroup(PROC);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0].controllers, vec!["name=systemd"]);
        assert_eq!(
            p[5],
            ProcCgroup {
                controllers: vec![],
                path: "/".into()
            }
        );
        let mem = mount("/sys/fs/cgroup/memory", "/", &["memory"], false);
        assert_eq!(own_cgroup(&mem, &p), Some("/process_api/030f"));
        let uni = mount("/sys/fs/cgroup/unified", "/", &[], true);
        assert_eq!(own_cgroup(&uni, &p), Some("/"));
        let both = mount("/x", "/", &["cpuacct", "cpu"], false);
        let p2 = parse_proc_cgroup("3:cpu,cpuacct:/a:b\n");
        assert_eq!(own_cgroup(&both, &p2), Some("/a:b"));
        assert_eq!(own_cgroup(&mem, &p2), None);
    }

    #[test]
    fn clean() {
        assert_eq!(clean_abs(Path::new("/a/./b//c/")), PathBuf::from("/a/b/c"));
        assert_eq!(clean_abs(Path::new("/a/../../b")), PathBuf::from("/b"));
        assert_eq!(clean_abs(Path::new("a/b/..")), PathBuf::from("/a"));
        assert_eq!(clean_abs(Path::new("/..")), PathBuf::from("/"));
    }

    #[test]
    fn cgroups_path_parsing() {
        use CgroupsPath::*;
        assert_eq!(
            parse_cgroups_path(None, "abc").unwrap(),
            Absolute("/myshim/abc".into())
        );
        assert_eq!(
            parse_cgroups_path(Some(Path::new("")), "abc").unwrap(),
            Absolute("/myshim/abc".into())
        );
        for bad_id in ["", ".", "..", "a/b"] {
            assert!(matches!(
                parse_cgroups_path(None, bad_id),
                Err(Error::InvalidConfig(_))
            ));
        }
        assert_eq!(
            parse_cgroups_path(Some(Path::new("/k8s/../pod/./c")), "x").unwrap(),
            Absolute("/pod/c".into())
        );
        assert_eq!(
            parse_cgroups_path(Some(Path::new("a/b")), "x").unwrap(),
            Relative("a/b".into())
        );
        for bad in ["system.slice:docker:abc", "/", "/a/..", ".", "./."] {
            assert!(
                matches!(
                    parse_cgroups_path(Some(Path::new(bad)), "x"),
                    Err(Error::InvalidConfig(_))
                ),
                "{bad}"
            );
        }
        // An absolute path with colons is a plain cgroupfs path.
        assert!(parse_cgroups_path(Some(Path::new("/a:b:c")), "x").is_ok());
    }

    #[test]
    fn resolution() {
        let proc = parse_proc_cgroup(PROC);
        let mem = mount("/sys/fs/cgroup/memory", "/", &["memory"], false);
        let cpu = mount("/sys/fs/cgroup/cpu", "/", &["cpu"], false);
        let abs = CgroupsPath::Absolute("/myshim/id".into());
        assert_eq!(
            resolve(&mem, &abs, own_cgroup(&mem, &proc)).unwrap(),
            (
                "/myshim/id".into(),
                "/sys/fs/cgroup/memory/myshim/id".into()
            )
        );
        let rel = CgroupsPath::Relative("t/c1".into());
        assert_eq!(
            resolve(&mem, &rel, own_cgroup(&mem, &proc)).unwrap(),
            (
                "/process_api/030f/t/c1".into(),
                "/sys/fs/cgroup/memory/process_api/030f/t/c1".into()
            )
        );
        assert_eq!(
            resolve(&cpu, &rel, own_cgroup(&cpu, &proc)).unwrap().1,
            PathBuf::from("/sys/fs/cgroup/cpu/t/c1")
        );
        // `..` cannot climb above the hierarchy
        let up = CgroupsPath::Relative("../../../../x".into());
        assert_eq!(
            resolve(&mem, &up, Some("/process_api/030f")).unwrap().1,
            PathBuf::from("/sys/fs/cgroup/memory/x")
        );
        let to_root = CgroupsPath::Relative("..".into());
        assert!(resolve(&cpu, &to_root, Some("/a")).is_err());
        // relative without our own cgroup
        assert!(resolve(&cpu, &rel, None).is_err());
        // a bind-mounted part of the hierarchy: our cgroup is seen relative to the mount root
        let inner = mount("/sys/fs/cgroup/memory", "/docker/abc", &["memory"], false);
        assert_eq!(
            resolve(&inner, &rel, Some("/docker/abc/sub")).unwrap().1,
            PathBuf::from("/sys/fs/cgroup/memory/sub/t/c1")
        );
        assert!(resolve(&inner, &rel, Some("/elsewhere")).is_err());
        assert_eq!(
            resolve(&inner, &abs, None).unwrap().1,
            PathBuf::from("/sys/fs/cgroup/memory/myshim/id")
        );
    }
}
