//! Finding criu and asking its version (the RPC `VERSION` request, CRIU 3.0 and later): every
//! checkpoint and restore starts here, so a host without criu, or with one that is too old,
//! gets one clear error before anything is made.

use std::path::{Path, PathBuf};

use rust_criu::rust_criu_protobuf::rpc::{Criu_req, Criu_req_type};

use super::rpc::{Child, Session};
use crate::{Error, Result};

/// The oldest criu this runtime drives: 3.16 (cgroup v2 freezer, external pid namespaces, the
/// nftables network lock, LSM profiles on restore).
pub const MIN_VERSION: Version = Version {
    major: 3,
    minor: 16,
    sublevel: 0,
};

/// Where criu is looked for after `PATH` (containerd's environment may lack the sbin
/// directories).
const FALLBACK_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// A criu version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// major
    pub major: u32,
    /// minor
    pub minor: u32,
    /// sublevel
    pub sublevel: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.sublevel != 0 {
            write!(f, ".{}", self.sublevel)?;
        }
        Ok(())
    }
}

/// A usable criu: its path and version.
#[derive(Debug, Clone)]
pub struct Criu {
    /// the binary
    pub path: PathBuf,
    /// its version
    pub version: Version,
}

/// The criu binary: `criu` in `PATH`, else in the usual sbin directories.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("criu"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// criu, checked: found and at least [`MIN_VERSION`]. The error ([`Error::Unavailable`]) says
/// what is missing.
pub fn check() -> Result<Criu> {
    let Some(path) = find() else {
        return Err(Error::Unavailable(format!(
            "CRIU unavailable: no criu binary in PATH or {} (checkpoint and restore need criu \
             {MIN_VERSION} or later)",
            FALLBACK_DIRS.join(", ")
        )));
    };
    let version = ask_version(&path).map_err(|e| {
        Error::Unavailable(format!(
            "CRIU unavailable: {} does not answer its version over RPC: {e:#}",
            path.display()
        ))
    })?;
    if version < MIN_VERSION {
        return Err(Error::Unavailable(format!(
            "CRIU unavailable: {} is version {version}; checkpoint and restore need criu \
             {MIN_VERSION} or later",
            path.display()
        )));
    }
    Ok(Criu { path, version })
}

/// Ask `criu` its version.
pub fn ask_version(criu: &Path) -> anyhow::Result<Version> {
    let mut session = Session::start(criu, &Child::default())?;
    let mut req = Criu_req::new();
    req.set_type(Criu_req_type::VERSION);
    let resp = session.call(&req, &mut |_| Ok(()))?;
    session.finish()?;
    let v = &resp.version;
    let mut version = Version {
        major: u32::try_from(v.major_number()).unwrap_or(0),
        minor: u32::try_from(v.minor_number()).unwrap_or(0),
        sublevel: u32::try_from(v.sublevel()).unwrap_or(0),
    };
    if v.has_gitid() {
        // A build from git between releases: it has what the next minor release has.
        version.minor += 1;
        version.sublevel = 0;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_and_print() {
        let v = |major, minor, sublevel| Version {
            major,
            minor,
            sublevel,
        };
        assert!(v(3, 15, 9) < MIN_VERSION);
        assert!(v(3, 16, 0) >= MIN_VERSION);
        assert!(v(4, 2, 1) > MIN_VERSION);
        assert_eq!(v(4, 2, 1).to_string(), "4.2.1");
        assert_eq!(v(3, 17, 0).to_string(), "3.17");
    }

    #[test]
    fn a_missing_criu_is_unavailable() {
        if find().is_some() {
            return;
        }
        let e = check().unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("CRIU unavailable"), "{e}");
    }
}
