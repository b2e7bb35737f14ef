//! The shim's socket: where it lives (containerd's naming: a SHA-256 of containerd's address,
//! the namespace and the grouping key, in containerd's socket directory), binding it in the
//! `start` action, telling a served socket from a dead one, and removing it.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

/// The address of the shim serving `grouping` (`unix:///run/containerd/s/<sha256>`, or in
/// `socket_dir` when containerd names one).
pub fn address(
    containerd_address: &str,
    namespace: &str,
    grouping: &str,
    socket_dir: Option<&str>,
) -> String {
    let default = containerd_shim::socket_address(containerd_address, namespace, grouping);
    match socket_dir.filter(|d| !d.is_empty()) {
        Some(dir) => {
            let hash = default.rsplit('/').next().unwrap_or_default();
            format!("unix://{}/{hash}", dir.trim_end_matches('/'))
        }
        None => default,
    }
}

/// The filesystem path of a `unix://` address.
pub fn path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Whether a daemon accepts connections on `address` now. A non-blocking connect: a listening
/// socket whose backlog is full (`EAGAIN`) counts as served; nothing here can wait.
pub fn is_served(address: &str) -> bool {
    let Ok(addr) = UnixAddr::new(path(address)) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    ) else {
        return false;
    };
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) | Err(nix::errno::Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// The outcome of [`bind`].
pub enum Bound {
    /// A new listening socket (mode 0600) for a new daemon.
    New(UnixListener),
    /// A live daemon already serves this address.
    Served,
}

/// Bind `address` for a new daemon, unless a live daemon already serves it; a socket file left
/// by a dead daemon is replaced.
pub fn bind(address: &str) -> anyhow::Result<Bound> {
    let path = path(address);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("create the socket directory {}", dir.display()))?;
    }
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            if is_served(address) {
                return Ok(Bound::Served);
            }
            remove(address).with_context(|| format!("remove the dead socket {address}"))?;
            UnixListener::bind(path).with_context(|| format!("bind {address} again"))?
        }
        Err(e) => return Err(e).with_context(|| format!("bind {address}")),
    };
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("chmod 0600 {address}"));
    }
    Ok(Bound::New(listener))
}

/// Remove the socket file of `address` if it is a socket.
pub fn remove(address: &str) -> std::io::Result<()> {
    let path = path(address);
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The listening socket a daemon inherited as `fd` (the `start` action binds it), if `fd` is
/// one.
pub fn inherited(fd: i32) -> Option<OwnedFd> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: `fd` is open (fstat succeeded), a socket, and nothing else in this process owns
    // it: the daemon takes it once, at start-up.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The bundle's link to the socket directory containerd named (so that the `delete` action,
/// which gets no bootstrap parameters, finds the socket).
pub const SOCKET_DIR_LINK: &str = "s";

/// Record `dir` in the bundle `bundle` as [`SOCKET_DIR_LINK`].
pub fn write_socket_dir(bundle: &Path, dir: &str) -> std::io::Result<()> {
    let link = bundle.join(SOCKET_DIR_LINK);
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::os::unix::fs::symlink(dir, link)
}

/// The socket directory recorded in `bundle`, if any.
pub fn read_socket_dir(bundle: &Path) -> Option<PathBuf> {
    std::fs::read_link(bundle.join(SOCKET_DIR_LINK)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_follows_containerds_naming() {
        let a = address("/run/containerd/containerd.sock", "default", "c1", None);
        assert!(a.starts_with("unix:///run/containerd/s/"), "{a}");
        let hash = a.rsplit('/').next().unwrap();
        assert_eq!(hash.len(), 64);
        let b = address(
            "/run/containerd/containerd.sock",
            "default",
            "c1",
            Some("/run/k/s/"),
        );
        assert_eq!(b, format!("unix:///run/k/s/{hash}"));
        assert_eq!(
            address("/run/containerd/containerd.sock", "default", "c1", Some("")),
            a
        );
        assert_ne!(
            address("/run/containerd/containerd.sock", "other", "c1", None),
            a
        );
        assert_eq!(path("unix:///x/y"), Path::new("/x/y"));
    }

    #[test]
    fn bind_detects_served_and_dead_sockets() {
        let dir = std::env::temp_dir().join(format!("myshim-sock-{}", std::process::id()));
        let address = format!("unix://{}/sub/s", dir.display());
        let Bound::New(listener) = bind(&address).unwrap() else {
            panic!("a fresh address is not served");
        };
        let mode = std::fs::metadata(path(&address))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(is_served(&address));
        assert!(matches!(bind(&address).unwrap(), Bound::Served));
        // the daemon died: its socket file stays, nobody listens
        drop(listener);
        assert!(!is_served(&address));
        assert!(matches!(bind(&address).unwrap(), Bound::New(_)));
        remove(&address).unwrap();
        assert!(!path(&address).exists());
        remove(&address).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
