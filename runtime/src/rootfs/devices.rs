//! /dev inside the rootfs when it is not the host's: the default device nodes (null, zero, full,
//! random, urandom, tty) and the spec's `linux.devices` made with mknod(2) (or bind-mounted
//! from the host where mknod is not allowed, as in a user namespace), `/dev/ptmx` pointing into
//! the container's devpts, and the fd/stdio/core symlinks.

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
use nix::sys::statfs::{statfs, DEVPTS_SUPER_MAGIC, PROC_SUPER_MAGIC};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::bind;
use super::resolve::{create_file_in_root, mkdir_all_in_root, resolve_in_root};
use crate::{Error, Result};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Device {
    /// Path inside the container (e.g. `/dev/null`); also where the host's node is for the
    /// bind-mount fallback.
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: SFlag,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets: null, zero, full, random, urandom, tty.
fn default_devices() -> Vec<Device> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(path, major, minor)| Device {
        path: PathBuf::from(path),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// A spec device as a [`Device`]; type `a` and negative numbers are invalid config.
pub(super) fn from_spec(d: &LinuxDevice) -> Result<Device> {
    let path = d.path();
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::invalid(format!(
                "device {}: type \"a\" is not a device type",
                path.display()
            )))
        }
    };
    let number = |n: i64, what: &str| {
        u64::try_from(n).map_err(|_| {
            Error::invalid(format!(
                "device {}: negative {what} number {n}",
                path.display()
            ))
        })
    };
    let (major, minor) = if kind == SFlag::S_IFIFO {
        (0, 0)
    } else {
        (number(d.major(), "major")?, number(d.minor(), "minor")?)
    };
    if !path.has_root() {
        return Err(Error::invalid(format!(
            "device {}: path is not absolute",
            path.display()
        )));
    }
    Ok(Device {
        path: path.clone(),
        kind,
        major,
        minor,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// The defaults followed by the spec's devices; a spec device replaces a default at the same
/// path.
pub(super) fn device_list(spec_devices: &[LinuxDevice]) -> Result<Vec<Device>> {
    let spec: Vec<Device> = spec_devices.iter().map(from_spec).collect::<Result<_>>()?;
    let mut out: Vec<Device> = default_devices()
        .into_iter()
        .filter(|d| !spec.iter().any(|s| s.path == d.path))
        .collect();
    out.extend(spec);
    Ok(out)
}

/// Restores the umask on drop.
struct UmaskGuard(Mode);

impl Drop for UmaskGuard {
    fn drop(&mut self) {
        umask(self.0);
    }
}

/// Create the device nodes inside `root` (canonical rootfs).
pub(super) fn create_devices(root: &Path, devices: &[Device]) -> anyhow::Result<()> {
    let _umask = UmaskGuard(umask(Mode::empty()));
    for dev in devices {
        create_device(root, dev)
            .with_context(|| format!("create device {}", dev.path.display()))?;
    }
    Ok(())
}

fn create_device(root: &Path, dev: &Device) -> anyhow::Result<()> {
    let dest = resolve_in_root(root, &dev.path)?;
    if let Some(parent) = dest.parent() {
        mkdir_all_in_root(root, parent)?;
    }
    let mode = Mode::from_bits_truncate(dev.mode);
    match mknod(&dest, dev.kind, mode, makedev(dev.major, dev.minor)) {
        Ok(()) => lchown(&dest, Some(dev.uid), Some(dev.gid))
            .with_context(|| format!("chown {}:{}", dev.uid, dev.gid)),
        // Something already there (the image, or a mount): leave it.
        Err(Errno::EEXIST) => Ok(()),
        // No mknod (user namespace): bind-mount the host's node onto an empty file.
        Err(Errno::EPERM) => {
            create_file_in_root(root, &dest)?;
            bind(root, &dev.path, &dest, MsFlags::empty())
                .with_context(|| format!("mknod: EPERM; bind-mount {} instead", dev.path.display()))
        }
        Err(e) => Err(e).context("mknod"),
    }
}

/// `/dev/ptmx -> pts/ptmx` when `/dev/pts` is a devpts mount, and the `/dev/fd`, stdio and (when
/// `/proc/kcore` exists) `/dev/core` symlinks.
pub(super) fn setup_dev_links(root: &Path) -> anyhow::Result<()> {
    let dev = resolve_in_root(root, Path::new("/dev"))?;
    mkdir_all_in_root(root, &dev)?;
    let pts = resolve_in_root(root, Path::new("/dev/pts"))?;
    if statfs(&pts).is_ok_and(|s| s.filesystem_type() == DEVPTS_SUPER_MAGIC) {
        let ptmx = dev.join("ptmx");
        match fs::remove_file(&ptmx) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", ptmx.display())),
        }
        symlink("pts/ptmx", &ptmx).with_context(|| format!("symlink {}", ptmx.display()))?;
    }
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    let proc = resolve_in_root(root, Path::new("/proc"))?;
    if statfs(&proc).is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
        && proc.join("kcore").exists()
    {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let link = dev.join(name);
        match symlink(target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("symlink {}", link.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    fn spec_dev(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .build()
            .expect("device")
    }

    #[test]
    fn defaults_and_overrides() {
        let mut fuse = spec_dev("/dev/fuse", LinuxDeviceType::C, 10, 229);
        fuse.set_file_mode(Some(0o600));
        fuse.set_uid(Some(1000));
        let null = spec_dev("/dev/null", LinuxDeviceType::C, 1, 3);
        let list = device_list(&[fuse, null]).expect("list");
        assert_eq!(list.len(), 7);
        assert_eq!(
            list.iter()
                .filter(|d| d.path == Path::new("/dev/null"))
                .count(),
            1
        );
        let fuse = list
            .iter()
            .find(|d| d.path == Path::new("/dev/fuse"))
            .expect("fuse");
        assert_eq!(
            (fuse.major, fuse.minor, fuse.mode, fuse.uid, fuse.gid),
            (10, 229, 0o600, 1000, 0)
        );
        assert_eq!(fuse.kind, SFlag::S_IFCHR);
        let tty = list
            .iter()
            .find(|d| d.path == Path::new("/dev/tty"))
            .expect("tty");
        assert_eq!((tty.major, tty.minor, tty.mode), (5, 0, 0o666));
    }

    #[test]
    fn spec_device_types() {
        let b = from_spec(&spec_dev("/dev/sda", LinuxDeviceType::B, 8, 0)).expect("block");
        assert_eq!(b.kind, SFlag::S_IFBLK);
        let p = from_spec(&spec_dev("/dev/fifo", LinuxDeviceType::P, 0, 0)).expect("fifo");
        assert_eq!(p.kind, SFlag::S_IFIFO);
        let u = from_spec(&spec_dev("/dev/u", LinuxDeviceType::U, 1, 1)).expect("unbuffered");
        assert_eq!(u.kind, SFlag::S_IFCHR);
        assert!(matches!(
            from_spec(&spec_dev("/dev/all", LinuxDeviceType::A, 1, 1)),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            from_spec(&spec_dev("/dev/neg", LinuxDeviceType::C, -1, 1)),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            from_spec(&spec_dev("dev/rel", LinuxDeviceType::C, 1, 1)),
            Err(Error::InvalidConfig(_))
        ));
    }
}
