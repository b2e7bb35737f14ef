//! The binary the runtime re-executes for a container's init and exec helpers, such that no
//! container process can reach the host's file through `/proc/<pid>/exe` (the CVE-2019-5736
//! class: a process in the container opens the helper's exe and writes the host binary).
//!
//! The helpers run a sealed view of our own binary, made once per process and reused:
//!
//! 1. preferred (no copy, as runc 1.2): an overlayfs mounted with the new mount API from the
//!    binary's directory and an empty directory as its two lower layers, without an upper layer,
//!    so read-only in a way no remount can undo, and never attached to any mount tree. The
//!    binary is opened `O_PATH` in it; its device differs from the host file's and writing
//!    through it fails;
//! 2. otherwise (no overlayfs or no new mount API, a deleted or replaced binary): a copy of
//!    `/proc/self/exe` in a memfd sealed against writing, growing and shrinking (as runc 1.1).
//!
//! The helpers also make themselves non-dumpable at once ([`crate::init::main`]), so that no
//! container process may ptrace them or open their `/proc` files while they work as root.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MFD_CLOEXEC: libc::c_uint = 0x1;
const MFD_ALLOW_SEALING: libc::c_uint = 0x2;
const MFD_EXEC: libc::c_uint = 0x10;
/// The sealed fd is moved at or above this number, clear of the fds the helpers get (0-3).
const FD_FLOOR: RawFd = 64;

/// How the sealed binary was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file of a detached read-only overlayfs over the binary's directory.
    Overlay,
    /// A sealed memfd copy.
    Memfd,
}

struct Sealed {
    fd: OwnedFd,
    kind: Kind,
}

static SEALED: OnceLock<Result<Sealed, String>> = OnceLock::new();

/// The path to execute for a helper: `/proc/self/fd/<n>` of the sealed binary, made on first
/// use (`scratch`: a directory of ours where an empty directory may be made and removed again).
pub fn exe_path(scratch: &Path) -> crate::Result<PathBuf> {
    let sealed = SEALED.get_or_init(|| make(scratch).map_err(|e| format!("{e:#}")));
    match sealed {
        Ok(s) => Ok(PathBuf::from(format!("/proc/self/fd/{}", s.fd.as_raw_fd()))),
        Err(e) => Err(anyhow::anyhow!("seal the runtime binary: {e}").into()),
    }
}

/// How this process's sealed binary was made, if it was.
pub fn kind() -> Option<Kind> {
    SEALED.get().and_then(|s| s.as_ref().ok()).map(|s| s.kind)
}

fn make(scratch: &Path) -> anyhow::Result<Sealed> {
    let t0 = std::time::Instant::now();
    let sealed = match overlay(scratch) {
        Ok(fd) => Sealed {
            fd,
            kind: Kind::Overlay,
        },
        Err(e) => {
            log::info!("sealed binary: no overlayfs ({e:#}); using a sealed memfd copy");
            Sealed {
                fd: memfd()?,
                kind: Kind::Memfd,
            }
        }
    };
    let fd = high_fd(sealed.fd)?;
    log::debug!("sealed binary ({:?}) in {:?}", sealed.kind, t0.elapsed());
    Ok(Sealed {
        fd,
        kind: sealed.kind,
    })
}

/// Move `fd` at or above [`FD_FLOOR`] (close-on-exec).
fn high_fd(fd: OwnedFd) -> anyhow::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on our open fd returns a new fd that we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FD_FLOOR) };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("dup the sealed binary's fd");
    }
    // SAFETY: `n` is a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn check(rc: libc::c_long, what: &str) -> anyhow::Result<RawFd> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    RawFd::try_from(rc).with_context(|| format!("{what}: bad fd {rc}"))
}

fn owned(rc: libc::c_long, what: &str) -> anyhow::Result<OwnedFd> {
    let fd = check(rc, what)?;
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `\` and `:` escaped for an overlayfs lowerdir list.
fn escape_lower(p: &Path) -> anyhow::Result<CString> {
    let mut out = Vec::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b'\\' || b == b':' {
            out.push(b'\\');
        }
        out.push(b);
    }
    CString::new(out).context("path has a NUL byte")
}

fn fsconfig_string(ctx: &OwnedFd, key: &str, value: &CString) -> anyhow::Result<()> {
    let k = CString::new(key).context("key")?;
    // SAFETY: fsconfig reads the two NUL-terminated strings, which outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    check(rc, &format!("fsconfig {key}={value:?}")).map(|_| ())
}

/// Removes the empty lower directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The binary through a detached, read-only overlayfs (see the module's doc).
fn overlay(scratch: &Path) -> anyhow::Result<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe").context("readlink /proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        bail!("{} has no directory", exe.display());
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(scratch)
        .with_context(|| format!("create {}", scratch.display()))?;
    let empty = TempDir(scratch.join(format!(".sealed-exe-{}", std::process::id())));
    let _ = std::fs::remove_dir(&empty.0);
    std::fs::DirBuilder::new()
        .mode(0o500)
        .create(&empty.0)
        .with_context(|| format!("create {}", empty.0.display()))?;

    let fs = CString::new("overlay").context("name")?;
    // SAFETY: fsopen reads the NUL-terminated name; it returns a new fd or -1.
    let ctx = owned(
        unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen overlay",
    )?;
    // The binary's directory on top: a file of the same name in the empty layer cannot mask it.
    let mut lower = escape_lower(dir)?.into_bytes();
    lower.push(b':');
    lower.extend(escape_lower(&empty.0)?.into_bytes());
    fsconfig_string(&ctx, "lowerdir", &CString::new(lower).context("lowerdir")?)?;
    // Only to keep xino's notes out of the kernel log; not needed.
    let _ = fsconfig_string(&ctx, "xino", &CString::new("off").context("xino")?);
    // SAFETY: fsconfig with a command takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    check(rc, "create the overlayfs")?;
    // SAFETY: fsmount takes the context fd and flags; it returns a new mount fd or -1.
    let mnt = owned(
        unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                ctx.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )
        },
        "fsmount the overlayfs",
    )?;
    drop(empty);
    let cname = CString::new(name.as_bytes()).context("binary name")?;
    // SAFETY: openat reads the NUL-terminated name relative to our mount fd.
    let file = owned(
        libc::c_long::from(unsafe {
            libc::openat(
                mnt.as_raw_fd(),
                cname.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        }),
        "open the binary in the overlayfs",
    )?;
    // It must be the binary that runs (not one put in its place since): overlayfs keeps the
    // inode number with xino off; size and mtime must match too.
    let ours = std::fs::metadata("/proc/self/exe").context("stat /proc/self/exe")?;
    let theirs = std::fs::metadata(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .context("stat the binary in the overlayfs")?;
    if (ours.ino(), ours.size(), ours.mtime(), ours.mtime_nsec())
        != (
            theirs.ino(),
            theirs.size(),
            theirs.mtime(),
            theirs.mtime_nsec(),
        )
    {
        bail!("{} is not the running binary any more", exe.display());
    }
    if ours.dev() == theirs.dev() {
        bail!("the overlayfs shows the host's device");
    }
    Ok(file)
}

/// A sealed memfd copy of `/proc/self/exe`.
fn memfd() -> anyhow::Result<OwnedFd> {
    let name = CString::new("myshim-sealed").context("name")?;
    let create = |flags| {
        // SAFETY: memfd_create reads the NUL-terminated name; it returns a new fd or -1.
        unsafe { libc::memfd_create(name.as_ptr(), flags) }
    };
    let mut fd = create(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if fd < 0 {
        // MFD_EXEC is Linux 6.3.
        fd = create(MFD_CLOEXEC | MFD_ALLOW_SEALING);
    }
    let fd = owned(libc::c_long::from(fd), "memfd_create")?;
    let mut src = std::fs::File::open("/proc/self/exe").context("open /proc/self/exe")?;
    let mut dst = std::fs::File::from(fd);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf).context("read /proc/self/exe")?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).context("write the memfd copy")?;
    }
    let fd = OwnedFd::from(dst);
    // SAFETY: fchmod on our own fd.
    if unsafe { libc::fchmod(fd.as_raw_fd(), 0o511) } != 0 {
        return Err(std::io::Error::last_os_error()).context("chmod the memfd copy");
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on our own memfd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error()).context("seal the memfd copy");
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn lowerdir_escapes_colons_and_backslashes() {
        let e = escape_lower(Path::new(r"/a:b\c")).unwrap();
        assert_eq!(e.to_bytes(), br"/a\:b\\c");
    }

    /// The sealed binary has the running binary's content, another device, and refuses writes.
    fn check_sealed(fd: &OwnedFd) {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let ours = std::fs::metadata("/proc/self/exe").unwrap();
        let sealed = std::fs::metadata(&path).unwrap();
        assert_ne!((ours.dev(), ours.ino()), (sealed.dev(), sealed.ino()));
        assert_eq!(ours.len(), sealed.len());
        let head = |p: &str| {
            let mut b = vec![0u8; 4096];
            let n = std::fs::File::open(p).unwrap().read(&mut b).unwrap();
            b.truncate(n);
            b
        };
        assert_eq!(head("/proc/self/exe"), head(&path));
        // An overlayfs file cannot be opened for writing; a sealed memfd can, but not written.
        let wrote = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"x"));
        assert!(wrote.is_err(), "wrote into the sealed binary");
    }

    #[test]
    fn memfd_copy_is_sealed() {
        let fd = memfd().unwrap();
        check_sealed(&fd);
    }

    #[test]
    fn overlay_view_is_read_only_and_not_the_host_file() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let scratch = std::env::temp_dir().join(format!("myshim-sealed-{}", std::process::id()));
        let fd = overlay(&scratch).unwrap();
        let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
        std::fs::remove_dir(&scratch).unwrap();
        assert!(left.is_empty(), "{left:?}");
        check_sealed(&fd);
    }
}
