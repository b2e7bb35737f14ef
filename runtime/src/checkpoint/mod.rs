//! Checkpoint and restore of a container's init process tree with CRIU, driven over its RPC
//! (`criu swrk`, see [`rpc`]), as runc does it: a dump of the running (or paused) container
//! into an image directory, with `descriptors.json` naming what its stdio was
//! ([`descriptors`]); a restore that makes the container anew (state, cgroup) and has criu
//! rebuild the process tree in it, wired to new stdio pipes.
//!
//! - [`version`] — finding criu, its version, the clear "CRIU unavailable" error
//! - [`dump`] — [`Container::checkpoint`](crate::Container::checkpoint)
//! - [`restore`] — [`Container::restore`](crate::Container::restore)
//! - [`mounts`] — external mounts, mount points, the restore's root
//! - [`log`] — criu's error lines quoted in failures

pub mod descriptors;
pub mod dump;
pub mod log;
pub mod mounts;
pub mod restore;
pub(crate) mod rpc;
pub mod version;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rust_criu::rust_criu_protobuf::rpc::{Criu_cg_mode, Criu_network_lock_method, Criu_opts};

use crate::{Error, Result};

pub use version::{check, Criu, Version, MIN_VERSION};

/// What criu may do beyond the plain process tree (containerd's runc `CheckpointOptions`).
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// established TCP connections (`open_tcp`)
    pub open_tcp: bool,
    /// connected unix sockets whose peer is outside (`external_unix_sockets`)
    pub external_unix_sockets: bool,
    /// a terminal (`terminal`: criu's shell job)
    pub terminal: bool,
    /// file locks (`file_locks`)
    pub file_locks: bool,
    /// namespaces restored empty: only `network` can be (`empty_namespaces`)
    pub empty_namespaces: Vec<String>,
    /// criu's cgroup mode: "", "soft", "full", "strict", "ignore" (`cgroups_mode`)
    pub cgroups_mode: String,
}

/// A checkpoint.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// where the images go (created if missing)
    pub image_path: PathBuf,
    /// criu's work directory and logs (default: a directory in the container's state, removed
    /// afterwards)
    pub work_path: Option<PathBuf>,
    /// an earlier (pre-)dump this one only adds to (criu's `parent_img`, memory tracking)
    pub parent_path: Option<PathBuf>,
    /// only a pre-dump (memory pages; the container keeps running)
    pub pre_dump: bool,
    /// the container exits after the dump (else it keeps running)
    pub exit: bool,
    /// what else may be dumped
    pub features: Features,
}

/// A restore (in [`Container::restore`](crate::Container::restore)).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// the image directory of the checkpoint
    pub image_path: PathBuf,
    /// criu's work directory and logs (default: the image directory)
    pub work_path: Option<PathBuf>,
    /// the checkpoint the images build on (a pre-dump), linked as `parent` if the image
    /// directory has none
    pub parent_path: Option<PathBuf>,
    /// what else may be restored
    pub features: Features,
}

fn cg_mode(mode: &str) -> Result<Criu_cg_mode> {
    Ok(match mode {
        "" => Criu_cg_mode::DEFAULT,
        "soft" => Criu_cg_mode::SOFT,
        "full" => Criu_cg_mode::FULL,
        "strict" => Criu_cg_mode::STRICT,
        "ignore" => Criu_cg_mode::IGNORE,
        other => {
            return Err(Error::invalid(format!(
                "cgroups_mode {other:?}: expected soft, full, strict or ignore"
            )))
        }
    })
}

fn empty_ns(names: &[String]) -> Result<u32> {
    let mut mask = 0u32;
    for n in names {
        match n.as_str() {
            "network" | "net" => mask |= libc::CLONE_NEWNET as u32,
            other => {
                return Err(Error::invalid(format!(
                    "empty_namespaces: {other:?} cannot be restored empty (only network)"
                )))
            }
        }
    }
    Ok(mask)
}

/// The options both directions share: features, cgroup mode, logging, notifications.
fn common_opts(opts: &mut Criu_opts, f: &Features, log_file: &str) -> Result<()> {
    opts.set_log_level(4);
    opts.set_log_file(log_file.to_string());
    opts.set_manage_cgroups(true);
    opts.set_manage_cgroups_mode(cg_mode(&f.cgroups_mode)?);
    opts.set_notify_scripts(true);
    opts.set_shell_job(f.terminal);
    opts.set_tcp_established(f.open_tcp);
    opts.set_ext_unix_sk(f.external_unix_sockets);
    opts.set_file_locks(f.file_locks);
    opts.set_orphan_pts_master(true);
    let mask = empty_ns(&f.empty_namespaces)?;
    if mask != 0 {
        opts.set_empty_ns(mask);
    }
    // criu locks the network with iptables-restore by default; a host without iptables (a
    // minimal or nftables-only one) gets the nftables lock.
    if !has_iptables() {
        opts.set_network_lock(Criu_network_lock_method::NFTABLES);
    }
    Ok(())
}

fn has_iptables() -> bool {
    has_tool("iptables-restore")
}

fn has_tool(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .any(|d| d.join(name).exists())
}

/// criu saves and restores a network namespace's addresses and routes with iproute2's `ip`
/// (`ip addr save` / `restore`): without it a container with a network namespace of its own
/// cannot be checkpointed or restored, unless that namespace is restored empty.
fn check_ip_tool(spec: &Spec, f: &Features) -> Result<()> {
    let own_netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    let empty = empty_ns(&f.empty_namespaces)? & libc::CLONE_NEWNET as u32 != 0;
    if own_netns && !empty && std::env::var_os("CR_IP_TOOL").is_none() && !has_tool("ip") {
        return Err(Error::Unavailable(
            "criu needs the ip tool (iproute2) to checkpoint or restore a container's own \
             network namespace, and none is installed: install iproute2, run the container in \
             the host's network namespace, or restore its network namespace empty \
             (empty_namespaces: network)"
                .into(),
        ));
    }
    Ok(())
}

/// criu's name for a namespace type.
fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The key criu knows an external namespace by (`extRootNetNS`, `extRootPidNS`), as runc
/// names them so that images move between the two.
fn ns_key(t: LinuxNamespaceType) -> String {
    let name = ns_name(t);
    let mut chars = name.chars();
    let upper: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default();
    format!("extRoot{upper}NS")
}

/// The spec's namespaces that are joined (have a path), with their type.
fn joined_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.path().clone().map(|p| (n.typ(), p)))
        .collect()
}

/// The rootfs of the bundle's spec, absolute.
fn rootfs_of(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root: missing"))?
        .path();
    Ok(if root.is_absolute() {
        root.clone()
    } else {
        bundle.join(root)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values() {
        assert_eq!(cg_mode("").unwrap(), Criu_cg_mode::DEFAULT);
        assert_eq!(cg_mode("soft").unwrap(), Criu_cg_mode::SOFT);
        assert!(cg_mode("bogus").is_err());
        assert_eq!(
            empty_ns(&["network".to_string()]).unwrap(),
            libc::CLONE_NEWNET as u32
        );
        assert!(empty_ns(&["pid".to_string()]).is_err());
        assert_eq!(ns_key(LinuxNamespaceType::Network), "extRootNetNS");
        assert_eq!(ns_key(LinuxNamespaceType::Pid), "extRootPidNS");
    }
}
