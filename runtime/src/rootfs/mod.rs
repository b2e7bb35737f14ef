//! The container's filesystem, set up by the init process inside its new mount namespace:
//! root propagation, the rootfs bind mount, the spec's mounts, /dev, pivot_root, then readonly
//! rootfs, masked and readonly paths.
//!
//! The order the init follows is [`prepare`] (before pivot_root, host paths), [`pivot`], then
//! [`finalize`] (after pivot_root, container paths). Everything here assumes a single-threaded
//! caller running as root in a new mount namespace, already in the container's cgroup.

mod cgroup;
mod devices;
mod mountinfo;
mod mounts;
pub mod options;
pub(crate) mod resolve;

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, fchdir, pivot_root};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{Error, Result};

pub use options::{parse_mount_options, parse_propagation, MountOptions};
pub use resolve::resolve_in_root;

/// `linux.rootfsPropagation` as mount(2) flags: `None` when unset or empty, an invalid-config
/// error when it is not one of the eight propagation names.
pub fn rootfs_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| !p.is_empty())
    else {
        return Ok(None);
    };
    parse_propagation(p)
        .map(Some)
        .ok_or_else(|| Error::invalid(format!("rootfsPropagation {p:?} is not supported")))
}

/// Check `linux.devices` as [`prepare`] will take them (type, numbers, absolute paths), before
/// anything is created.
pub fn check_devices(spec_devices: &[oci_spec::runtime::LinuxDevice]) -> Result<()> {
    devices::device_list(spec_devices).map(|_| ())
}

/// Before pivot_root: propagation, rootfs bind, the spec's mounts, default devices and /dev
/// symlinks. `rootfs` is absolute.
///
/// 1. `/` is made `rslave` (or `linux.rootfsPropagation`) recursively, so that nothing mounted
///    from here on reaches the host;
/// 2. the mount holding `rootfs` is made private if it is shared (pivot_root refuses otherwise),
///    and `rootfs` is bind-mounted onto itself so that it is a mount point;
/// 3. the spec's mounts are mounted in order, each destination resolved inside the rootfs
///    without escaping through symlinks and created (a directory, or an empty file for a bind of
///    a file); relative bind sources are taken from the bundle (`rootfs`'s parent);
/// 4. unless a spec mount bind-mounts something onto `/dev`: the default devices (null, zero,
///    full, random, urandom, tty) and `linux.devices` are created, `/dev/ptmx` points to
///    `pts/ptmx` when `/dev/pts` is a devpts, and the fd/stdin/stdout/stderr/core symlinks are
///    made.
///
/// Errors name the mount (`mount proc to /proc (in rootfs): EPERM: Operation not permitted`
/// with `{:#}`); bad configuration (unknown rootfsPropagation, device of type `a`, ...) is
/// [`Error::InvalidConfig`] and is reported before anything is mounted.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    if !rootfs.is_absolute() {
        return Err(Error::invalid(format!(
            "rootfs {} is not an absolute path",
            rootfs.display()
        )));
    }
    let propagation = rootfs_propagation(spec)?;
    let linux = spec.linux().as_ref();
    let spec_mounts = spec.mounts().as_deref().unwrap_or_default();
    let setup_dev = !spec_mounts.iter().any(|m| {
        mounts::is_dev(m.destination())
            && (m.typ().as_deref() == Some("bind")
                || parse_mount_options(m.options().as_deref().unwrap_or_default()).is_bind())
    });
    let devices = if setup_dev {
        devices::device_list(
            linux
                .and_then(|l| l.devices().as_deref())
                .unwrap_or_default(),
        )?
    } else {
        Vec::new()
    };
    let namespaces = linux
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default();
    let new_netns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    let cgroupns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup);

    let root_flags = propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, root_flags, None::<&str>)
        .with_context(|| format!("set the propagation of / to {root_flags:?}"))?;

    let root = fs::canonicalize(rootfs).with_context(|| format!("rootfs {}", rootfs.display()))?;
    parent_mount_private(&root)?;
    mount(
        Some(&root),
        &root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mount the rootfs {} onto itself", root.display()))?;

    let bundle = rootfs.parent().unwrap_or(Path::new("/"));
    let ctx = mounts::Ctx {
        root: &root,
        bundle,
        new_netns,
        cgroupns,
    };
    for m in spec_mounts {
        mounts::mount_one(&ctx, m)
            .with_context(|| format!("{} (in rootfs)", mounts::describe(m)))?;
    }

    if setup_dev {
        devices::create_devices(&root, &devices)?;
        devices::setup_dev_links(&root)?;
    }
    Ok(())
}

/// runc's rootfsParentMountPrivate: pivot_root fails when the new root's parent mount is shared,
/// so make that mount (the one `root` lives on) private if it is.
fn parent_mount_private(root: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    let infos = mountinfo::parse_mountinfo(&text);
    // The last of the longest matches is the mount on top.
    let parent = infos
        .iter()
        .filter(|mi| root.starts_with(&mi.mount_point))
        .max_by_key(|mi| mi.mount_point.components().count());
    if let Some(mi) = parent.filter(|mi| mi.is_shared()) {
        mount(
            None::<&str>,
            &mi.mount_point,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .with_context(|| format!("make {} private", mi.mount_point.display()))?;
    }
    Ok(())
}

fn open_dir(path: &Path) -> anyhow::Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// pivot_root into `rootfs` (after [`prepare`], which made it a mount point) and detach the old
/// root, the way runc does it without a temporary directory: `pivot_root(".", ".")` from inside
/// the new root stacks the old root on top of it, which is then made rslave (so the unmount does
/// not propagate to the host) and lazily unmounted. Ends with the cwd at the new `/`.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    fchdir(new_root.as_raw_fd()).with_context(|| format!("chdir to {}", rootfs.display()))?;
    pivot_root(".", ".").with_context(|| format!("pivot_root to {}", rootfs.display()))?;
    fchdir(old_root.as_raw_fd()).context("chdir to the old root")?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("make the old root rslave")?;
    umount2(".", MntFlags::MNT_DETACH).context("unmount the old root")?;
    chdir("/").context("chdir /")?;
    Ok(())
}

/// After pivot_root: masked paths, readonly paths, readonly rootfs.
///
/// In order: `linux.rootfsPropagation` is applied again to the new `/` (when set); the tmpfs
/// and `/dev` mounts that asked for `ro` (mounted read-write by [`prepare`]) are made read-only;
/// `/` is made read-only when `root.readonly`; `linux.readonlyPaths` are bind-mounted onto
/// themselves read-only; `linux.maskedPaths` are covered (`/dev/null` over files, an empty
/// read-only tmpfs over directories). Missing readonly and masked paths are skipped.
pub fn finalize(spec: &Spec) -> Result<()> {
    if let Some(p) = rootfs_propagation(spec)? {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .with_context(|| format!("set the propagation of / to {p:?}"))?;
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let opts = parse_mount_options(m.options().as_deref().unwrap_or_default());
        if mounts::defers_readonly(m, &opts) {
            remount_readonly(m.destination(), opts.flags)
                .with_context(|| format!("remount {} read-only", m.destination().display()))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let root = Path::new("/");
        let flags = mounts::existing_flags(root)? | MsFlags::MS_RDONLY;
        mounts::remount_path(root, flags).context("remount / read-only")?;
    }
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        readonly_path(Path::new(p)).with_context(|| format!("readonly path {p}"))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask_path(Path::new(p)).with_context(|| format!("masked path {p}"))?;
    }
    Ok(())
}

/// Remount a (non-bind) mount read-only, with its other flags; retried while EBUSY.
fn remount_readonly(dest: &Path, flags: MsFlags) -> anyhow::Result<()> {
    let flags =
        (flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY) - (MsFlags::MS_BIND | MsFlags::MS_REC);
    let mut tries = 0;
    loop {
        match mount(None::<&str>, dest, None::<&str>, flags, None::<&str>) {
            Err(Errno::EBUSY) if tries < 5 => {
                tries += 1;
                thread::sleep(Duration::from_millis(100));
            }
            res => return res.map_err(Into::into),
        }
    }
}

/// Bind `path` onto itself and make that read-only, keeping nosuid/nodev/noexec/atime.
fn readonly_path(path: &Path) -> anyhow::Result<()> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e).context("bind onto itself"),
    }
    let flags = mounts::existing_flags(path)? | MsFlags::MS_RDONLY;
    mounts::remount_path(path, flags)
}

/// Cover `path`: an empty read-only tmpfs over a directory, `/dev/null` over anything else.
fn mask_path(path: &Path) -> anyhow::Result<()> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context("stat"),
    };
    let res = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match res {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).context(if meta.is_dir() {
            "mount a read-only tmpfs"
        } else {
            "bind-mount /dev/null"
        }),
    }
}

/// After [`pivot`] and before [`finalize`]: bind-mount the console pty's slave (a path in the
/// container, normally `/dev/pts/N` of its own devpts) onto `/dev/console`, creating that as an
/// empty file if needed.
pub fn mount_console(slave: &Path) -> Result<()> {
    let console = Path::new("/dev/console");
    match fs::symlink_metadata(console) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            OpenOptions::new()
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(console)
                .context("create /dev/console")?;
        }
        Err(e) => return Err(anyhow::Error::from(e).context("stat /dev/console").into()),
    }
    mount(
        Some(slave),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("mount {} to /dev/console", slave.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
