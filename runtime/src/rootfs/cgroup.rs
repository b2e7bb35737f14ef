//! The spec's `cgroup` mount. On a cgroup v2 host: a cgroup2 mount (falling back to a bind of the
//! host's hierarchy when the kernel refuses). On a v1 (or hybrid) host, as runc does: a tmpfs at
//! the destination and, for each v1 hierarchy mounted at `/sys/fs/cgroup/<name>`, the
//! container's own cgroup directory of that hierarchy bind-mounted at `<dest>/<name>` (or, with a
//! cgroup namespace, the hierarchy mounted afresh), plus symlinks for co-mounted controllers
//! (`cpu -> cpu,cpuacct`). The init must already be in its cgroup.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

use super::mountinfo::parse_mountinfo;
use super::mounts::{after_mount, bind, remount_bind, Ctx};
use super::options::MountOptions;
use super::resolve::{mkdir_all_in_root, resolve_in_root, Target};
use crate::cgroups::paths::{parse_proc_cgroup, ProcCgroup};

/// Where the host's cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Mount the cgroup filesystem(s) at `dest` (from `resolve_in_root`).
pub(super) fn mount_cgroup(ctx: &Ctx<'_>, opts: &MountOptions, dest: &Path) -> anyhow::Result<()> {
    mkdir_all_in_root(ctx.root, dest)?;
    let host = statfs(CGROUP_ROOT).with_context(|| format!("statfs {CGROUP_ROOT}"))?;
    if host.filesystem_type() == CGROUP2_SUPER_MAGIC {
        mount_v2(ctx, opts, dest)?;
    } else {
        mount_v1(ctx, opts, dest)?;
    }
    after_mount(ctx.root, dest, opts)
}

fn read_cgroups() -> anyhow::Result<Vec<ProcCgroup>> {
    let text = fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?;
    Ok(parse_proc_cgroup(&text))
}

/// Flags for mounting a hierarchy: the spec's, minus the bind bits.
fn hierarchy_flags(opts: &MountOptions) -> MsFlags {
    opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
}

fn mount_v2(ctx: &Ctx<'_>, opts: &MountOptions, dest: &Path) -> anyhow::Result<()> {
    let target = Target::open(ctx.root, dest)?;
    let flags = hierarchy_flags(opts);
    match mount(
        Some("cgroup2"),
        target.path(),
        Some("cgroup2"),
        flags,
        opts.data(),
    ) {
        Ok(()) => Ok(()),
        // Not allowed to mount cgroup2 here (user namespace without a cgroup namespace):
        // bind-mount the host's hierarchy, or the container's part of it with a cgroup namespace.
        Err(e @ (Errno::EPERM | Errno::EBUSY)) => {
            drop(target);
            let mut src = PathBuf::from(CGROUP_ROOT);
            if ctx.cgroupns {
                if let Some(line) = read_cgroups()?.iter().find(|l| l.controllers.is_empty()) {
                    src = join_relative(&src, Path::new(&line.path));
                }
            }
            bind(ctx.root, &src, dest, flags | MsFlags::MS_REC).with_context(|| {
                format!(
                    "mount cgroup2: {e}; bind-mounting {} instead",
                    src.display()
                )
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `base` joined with `path` taken as relative (`/a/b` gives `base/a/b`).
fn join_relative(base: &Path, path: &Path) -> PathBuf {
    base.join(path.strip_prefix("/").unwrap_or(path))
}

fn mount_v1(ctx: &Ctx<'_>, opts: &MountOptions, dest: &Path) -> anyhow::Result<()> {
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    {
        let target = Target::open(ctx.root, dest)?;
        mount(
            Some("tmpfs"),
            target.path(),
            Some("tmpfs"),
            base,
            Some("mode=755"),
        )
        .context("mount tmpfs")?;
    }
    let text = fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let cgroups = read_cgroups()?;
    let flags = hierarchy_flags(opts);
    let rel_dest = dest.strip_prefix(ctx.root).unwrap_or(Path::new(""));
    for mi in parse_mountinfo(&text) {
        if mi.fstype != "cgroup" || mi.mount_point.parent() != Some(Path::new(CGROUP_ROOT)) {
            continue;
        }
        let Some(name) = mi.mount_point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let line = cgroups
            .iter()
            .find(|l| l.controllers.iter().any(|c| mi.super_options.contains(c)));
        let sub = resolve_in_root(ctx.root, &rel_dest.join(name))?;
        mkdir_all_in_root(ctx.root, &sub)?;
        if ctx.cgroupns {
            // In its own cgroup namespace the hierarchy's root is the container's cgroup.
            let data = line.map_or_else(|| name.to_string(), |l| l.controllers.join(","));
            let target = Target::open(ctx.root, &sub)?;
            mount(
                Some("cgroup"),
                target.path(),
                Some("cgroup"),
                flags,
                Some(data.as_str()),
            )
            .with_context(|| format!("mount cgroup ({data}) to {name}"))?;
        } else {
            let Some(line) = line else {
                log::warn!("no /proc/self/cgroup entry for the cgroup hierarchy at {name}");
                continue;
            };
            let rel = Path::new(&line.path)
                .strip_prefix(&mi.root)
                .unwrap_or(Path::new(""));
            let src = mi.mount_point.join(rel);
            bind(
                ctx.root,
                &src,
                &sub,
                flags | MsFlags::MS_BIND | MsFlags::MS_REC,
            )
            .with_context(|| format!("bind {} to {name}", src.display()))?;
        }
        if name.contains(',') {
            for part in name.split(',') {
                let link = resolve_in_root(ctx.root, &rel_dest.join(part))?;
                match symlink(name, &link) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("symlink {} -> {name}", link.display()))
                    }
                }
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(ctx.root, dest, base | MsFlags::MS_RDONLY).context("remount read-only")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins() {
        assert_eq!(
            join_relative(Path::new("/sys/fs/cgroup"), Path::new("/a/b")),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
        assert_eq!(
            join_relative(Path::new("/sys/fs/cgroup"), Path::new("/")),
            PathBuf::from("/sys/fs/cgroup")
        );
    }

    #[test]
    fn flags_without_bind_bits() {
        let o = super::super::options::parse_mount_options(&["rbind", "ro", "nosuid", "remount"]);
        assert_eq!(hierarchy_flags(&o), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
    }
}
