//! The spec's mounts, one at a time, inside the rootfs: bind mounts (with the read-only/nosuid/...
//! remount that a bind needs), ordinary filesystems (proc, sysfs, tmpfs, devpts, mqueue, ...),
//! then the mount's propagation and recursive attributes. cgroup mounts are in
//! [`super::cgroup`]. The helpers here are shared with the cgroup and device code.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::options::{parse_mount_options, MountOptions, MS_NOSYMFOLLOW};
use super::resolve::{create_file_in_root, mkdir_all_in_root, resolve_in_root, Target};

/// `ST_NOSYMFOLLOW` from statvfs(2) (not in nix's `FsFlags`).
const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;

/// What the per-mount code needs to know besides the mount.
pub(super) struct Ctx<'a> {
    /// The canonical rootfs path on the host.
    pub root: &'a Path,
    /// Where relative bind sources are taken from: the bundle (the rootfs's parent).
    pub bundle: &'a Path,
    /// The container has its own network namespace (sysfs can be mounted).
    pub new_netns: bool,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
}

/// `src to dest` for error messages.
pub(super) fn describe(m: &Mount) -> String {
    let typ = m.typ().as_deref().unwrap_or("");
    let src = match m.source() {
        Some(s) => s.display().to_string(),
        None if typ.is_empty() => "none".to_string(),
        None => typ.to_string(),
    };
    format!("mount {src} to {}", m.destination().display())
}

/// Whether the spec destination is `/dev` (after lexical cleaning).
pub(super) fn is_dev(dest: &Path) -> bool {
    let mut names: Vec<&std::ffi::OsStr> = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::ParentDir => {
                names.pop();
            }
            _ => {}
        }
    }
    names == [std::ffi::OsStr::new("dev")]
}

/// Mounts that are mounted read-write first, because more files or mounts are made inside them,
/// and made read-only by [`super::finalize`] (as runc does): non-bind tmpfs mounts and `/dev`.
pub(super) fn defers_readonly(m: &Mount, opts: &MountOptions) -> bool {
    let typ = m.typ().as_deref().unwrap_or("");
    !opts.is_bind()
        && typ != "bind"
        && (typ == "tmpfs" || is_dev(m.destination()))
        && opts.flags.contains(MsFlags::MS_RDONLY)
}

/// Mount one spec mount inside the rootfs.
pub(super) fn mount_one(ctx: &Ctx<'_>, m: &Mount) -> anyhow::Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = parse_mount_options(m.options().as_deref().unwrap_or_default());
    let dest = resolve_in_root(ctx.root, m.destination())?;
    if opts.is_bind() || typ == "bind" {
        bind_mount(ctx, m, &opts, &dest)
    } else if typ == "cgroup" {
        super::cgroup::mount_cgroup(ctx, &opts, &dest)
    } else {
        fs_mount(ctx, m, typ, &opts, &dest)
    }
}

/// A bind mount from the host (or bundle) into the rootfs.
fn bind_mount(ctx: &Ctx<'_>, m: &Mount, opts: &MountOptions, dest: &Path) -> anyhow::Result<()> {
    let src = m.source().as_ref().context("bind mount without a source")?;
    let src = if src.is_absolute() {
        src.clone()
    } else {
        ctx.bundle.join(src)
    };
    let meta = fs::metadata(&src).with_context(|| format!("stat {}", src.display()))?;
    if meta.is_dir() {
        mkdir_all_in_root(ctx.root, dest)?;
    } else {
        create_file_in_root(ctx.root, dest)?;
    }
    bind(ctx.root, &src, dest, opts.flags)?;
    after_mount(ctx.root, dest, opts)
}

/// Any other filesystem: mount(2) with the type, flags and data.
fn fs_mount(
    ctx: &Ctx<'_>,
    m: &Mount,
    typ: &str,
    opts: &MountOptions,
    dest: &Path,
) -> anyhow::Result<()> {
    let before = fs::metadata(dest).ok();
    mkdir_all_in_root(ctx.root, dest)?;
    let source: PathBuf = match m.source() {
        Some(s) => s.clone(),
        None if typ.is_empty() => PathBuf::from("none"),
        None => PathBuf::from(typ),
    };
    let mut flags = opts.flags;
    if defers_readonly(m, opts) {
        flags.remove(MsFlags::MS_RDONLY);
    }
    let fstype = (!typ.is_empty()).then_some(typ);
    let target = Target::open(ctx.root, dest)?;
    match mount(Some(&source), target.path(), fstype, flags, opts.data()) {
        Ok(()) => {}
        // Without its own network namespace the container may not mount sysfs; use the host's.
        Err(Errno::EPERM) if typ == "sysfs" && !ctx.new_netns => {
            drop(target);
            bind(ctx.root, Path::new("/sys"), dest, flags | MsFlags::MS_REC)
                .context("mount sysfs: EPERM, bind-mounting /sys instead")?;
        }
        // In a user namespace without its own ipc namespace, mqueue cannot be mounted either.
        Err(Errno::EPERM) if typ == "mqueue" && Path::new("/dev/mqueue").is_dir() => {
            drop(target);
            bind(ctx.root, Path::new("/dev/mqueue"), dest, flags)
                .context("mount mqueue: EPERM, bind-mounting /dev/mqueue instead")?;
        }
        Err(e) => return Err(e.into()),
    }
    // A tmpfs over an existing directory keeps that directory's mode unless told otherwise.
    if typ == "tmpfs" && !opts.data.split(',').any(|o| o.starts_with("mode=")) {
        if let Some(meta) = before.filter(|m| m.is_dir()) {
            let mode = meta.permissions().mode() & 0o7777;
            let target = Target::open(ctx.root, dest)?;
            fs::set_permissions(target.path(), fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {mode:o}"))?;
        }
    }
    after_mount(ctx.root, dest, opts)
}

/// Bind-mount `src` (a host path) onto `dest` (from [`resolve_in_root`], already created), then
/// remount with the flags a bind mount ignores (ro, nosuid, nodev, noexec, atime, ...).
pub(super) fn bind(root: &Path, src: &Path, dest: &Path, flags: MsFlags) -> anyhow::Result<()> {
    let target = Target::open(root, dest)?;
    mount(
        Some(src),
        target.path(),
        None::<&str>,
        MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
        None::<&str>,
    )?;
    drop(target);
    let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        remount_bind(root, dest, extra)?;
    }
    Ok(())
}

/// Change the per-mount flags of the mount at `dest` (MS_BIND|MS_REMOUNT). If the kernel
/// refuses (flags locked by a user namespace), retry keeping the mount's current flags.
pub(super) fn remount_bind(root: &Path, dest: &Path, flags: MsFlags) -> anyhow::Result<()> {
    let target = Target::open(root, dest)?;
    let flags = (flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT) - MsFlags::MS_REC;
    remount_path(target.path(), flags)
}

/// MS_REMOUNT|MS_BIND `flags` on `path`, retrying with the locked flags on EPERM.
pub(super) fn remount_path(path: &Path, flags: MsFlags) -> anyhow::Result<()> {
    let flags = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(None::<&str>, path, None::<&str>, flags, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let retry = with_existing(flags, existing_flags(path)?);
            mount(None::<&str>, path, None::<&str>, retry, None::<&str>)
                .with_context(|| format!("remount with {retry:?} (retrying after EPERM)"))
        }
        Err(e) => Err(e).with_context(|| format!("remount with {flags:?}")),
    }
}

/// `flags` plus the `existing` flags that an unprivileged remount may not drop: rdonly, nosuid,
/// nodev, noexec, nosymfollow, and the atime mode unless `flags` sets one.
pub(super) fn with_existing(flags: MsFlags, existing: MsFlags) -> MsFlags {
    let atime = MsFlags::MS_NOATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_STRICTATIME
        | MsFlags::MS_NODIRATIME;
    let mut out = flags | (existing - atime);
    if !flags.intersects(atime) {
        out |= existing & atime;
    }
    out
}

/// The per-mount flags of the mount at `path` as mount(2) flags (from statvfs(2)): rdonly,
/// nosuid, nodev, noexec, nosymfollow and the atime mode (strictatime when neither noatime nor
/// relatime is set).
pub(super) fn existing_flags(path: &Path) -> anyhow::Result<MsFlags> {
    let st = statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st_flag, ms_flag) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    if f.bits() & ST_NOSYMFOLLOW != 0 {
        out |= MS_NOSYMFOLLOW;
    }
    if !out.intersects(MsFlags::MS_NOATIME | MsFlags::MS_RELATIME) {
        out |= MsFlags::MS_STRICTATIME;
    }
    Ok(out)
}

/// After a mount: its propagation changes, then its recursive attributes.
pub(super) fn after_mount(root: &Path, dest: &Path, opts: &MountOptions) -> anyhow::Result<()> {
    for &p in &opts.propagation {
        let target = Target::open(root, dest)?;
        mount(None::<&str>, target.path(), None::<&str>, p, None::<&str>)
            .with_context(|| format!("set propagation {p:?}"))?;
    }
    if opts.has_attrs() {
        let target = Target::open(root, dest)?;
        mount_setattr(target.file(), opts.attr_set, opts.attr_clr).with_context(|| {
            format!(
                "mount_setattr(set={:#x}, clear={:#x}, recursive)",
                opts.attr_set, opts.attr_clr
            )
        })?;
    }
    Ok(())
}

/// `struct mount_attr` from `<linux/mount.h>` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount `fd` is the root of, and everything below it.
fn mount_setattr(fd: &fs::File, set: u64, clr: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: the kernel reads `size_of::<MountAttr>()` bytes from `attr`, a live #[repr(C)]
    // struct mount_attr, and a NUL-terminated empty path; `fd` is open for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MsFlags as F;

    #[test]
    fn dev_destination() {
        assert!(is_dev(Path::new("/dev")));
        assert!(is_dev(Path::new("/dev/")));
        assert!(is_dev(Path::new("//dev/./")));
        assert!(is_dev(Path::new("/x/../dev")));
        assert!(!is_dev(Path::new("/dev/shm")));
        assert!(!is_dev(Path::new("/")));
    }

    #[test]
    fn deferred_readonly() {
        let m = |typ: &str, dest: &str, opts: &[&str]| {
            let mut m = Mount::default();
            m.set_typ(Some(typ.to_string()));
            m.set_destination(PathBuf::from(dest));
            m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
            m
        };
        let check = |m: &Mount| {
            defers_readonly(
                m,
                &parse_mount_options(m.options().as_deref().unwrap_or_default()),
            )
        };
        assert!(check(&m("tmpfs", "/run", &["ro", "nosuid"])));
        assert!(!check(&m("tmpfs", "/run", &["nosuid"])));
        assert!(check(&m("devtmpfs", "/dev", &["ro"])));
        assert!(!check(&m("bind", "/dev", &["rbind", "ro"])));
        assert!(!check(&m("none", "/data", &["bind", "ro"])));
        assert!(!check(&m("sysfs", "/sys", &["ro"])));
    }

    #[test]
    fn existing_flags_merge() {
        // Requested atime mode wins, the rest of the locked flags are kept.
        let got = with_existing(
            F::MS_RDONLY | F::MS_NOATIME,
            F::MS_NOSUID | F::MS_NODEV | F::MS_RELATIME,
        );
        assert_eq!(
            got,
            F::MS_RDONLY | F::MS_NOATIME | F::MS_NOSUID | F::MS_NODEV
        );
        // No atime mode requested: keep the existing one.
        let got = with_existing(F::MS_RDONLY, F::MS_NOEXEC | F::MS_STRICTATIME);
        assert_eq!(got, F::MS_RDONLY | F::MS_NOEXEC | F::MS_STRICTATIME);
    }

    #[test]
    fn describes_mounts() {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from("/proc"));
        m.set_typ(Some("proc".into()));
        assert_eq!(describe(&m), "mount proc to /proc");
        m.set_source(Some(PathBuf::from("/host/x")));
        assert_eq!(describe(&m), "mount /host/x to /proc");
    }
}
