//! The container's mounts as criu must be told of them, as runc tells it: bind mounts (and
//! device nodes bound from the host) are external to the container, named by their
//! destination at dump and mapped back to their host source at restore; masked files are
//! external mounts of `/dev/null`. Also the restore's root: criu wants the rootfs as a mount
//! point of its own whose parent is not overmounted, so it gets a private bind of the rootfs
//! ([`RootBind`]), and the mount points must exist in a rootfs that may be a fresh snapshot.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};

/// A spec mount that is a bind mount.
fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

fn devices(spec: &Spec) -> Vec<PathBuf> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(|d| crate::validate::clean(d.path()))
        .collect()
}

fn masked(spec: &Spec) -> Vec<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default()
}

/// `ext_mnt` pairs (mount point, name in the image) for a dump of the init `pid`.
pub fn for_dump(spec: &Spec, pid: i32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if is_bind(m) {
            let d = crate::validate::clean(m.destination())
                .to_string_lossy()
                .into_owned();
            out.push((d.clone(), d));
        }
    }
    for p in masked(spec) {
        // Directories are masked with a tmpfs, which criu dumps itself.
        let seen = std::fs::metadata(format!(
            "/proc/{pid}/root{}",
            crate::validate::clean(Path::new(&p)).display()
        ));
        if seen.is_ok_and(|m| !m.is_dir()) {
            out.push((p, "/dev/null".to_string()));
        }
    }
    for d in devices(spec) {
        let d = d.to_string_lossy().into_owned();
        out.push((d.clone(), d));
    }
    out
}

/// `ext_mnt` pairs (name in the image, host source) for a restore.
pub fn for_restore(spec: &Spec, bundle: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if is_bind(m) {
            let Some(source) = m.source() else { continue };
            let source = if source.is_absolute() {
                source.clone()
            } else {
                bundle.join(source)
            };
            out.push((
                crate::validate::clean(m.destination())
                    .to_string_lossy()
                    .into_owned(),
                source.to_string_lossy().into_owned(),
            ));
        }
    }
    if !masked(spec).is_empty() {
        out.push(("/dev/null".to_string(), "/dev/null".to_string()));
    }
    for d in devices(spec) {
        let d = d.to_string_lossy().into_owned();
        out.push((d.clone(), d));
    }
    out
}

/// Make the spec's mount points in `rootfs` (a fresh snapshot may lack those the original
/// create made), except below a tmpfs mount, whose content criu restores. Best effort: a mount
/// point that cannot be made is logged, and criu then names what it misses.
pub fn make_mountpoints(spec: &Spec, rootfs: &Path) {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let tmpfs: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| crate::validate::clean(m.destination()))
        .collect();
    for m in mounts {
        let dest = crate::validate::clean(m.destination());
        if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
            continue;
        }
        let rel = dest.strip_prefix("/").unwrap_or(&dest);
        let full = rootfs.join(rel);
        let file_source = is_bind(m)
            && m.source()
                .as_ref()
                .is_some_and(|s| std::fs::metadata(s).is_ok_and(|md| !md.is_dir()));
        let made = if file_source {
            make_file(rootfs, &full)
        } else {
            crate::rootfs::resolve::mkdir_all_in_root(rootfs, &full)
        };
        if let Err(e) = made {
            log::warn!("restore: mount point {}: {e:#}", dest.display());
        }
    }
}

fn make_file(rootfs: &Path, full: &Path) -> anyhow::Result<()> {
    if let Some(parent) = full.parent() {
        crate::rootfs::resolve::mkdir_all_in_root(rootfs, parent)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(full)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("create {}", full.display())),
    }
}

/// A recursive bind of the container's rootfs at a directory of its own, for criu's `root`;
/// unmounted and removed on drop.
pub struct RootBind {
    path: PathBuf,
    mounted: bool,
}

impl RootBind {
    /// Bind `rootfs` at `path` (created; it must not exist).
    pub fn new(rootfs: &Path, path: PathBuf) -> anyhow::Result<RootBind> {
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let mut bind = RootBind {
            path,
            mounted: false,
        };
        mount(
            Some(rootfs),
            &bind.path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind {} at {}", rootfs.display(), bind.path.display()))?;
        bind.mounted = true;
        // Left with the propagation it got: criu (mount-v2) copies the root's sharing group to
        // the restored root mount, which fails on a private mount.
        Ok(bind)
    }

    /// Where the rootfs is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RootBind {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = umount2(&self.path, MntFlags::MNT_DETACH) {
                log::warn!("unmount {}: {e}", self.path.display());
                // Never remove a directory that may still show the rootfs.
                return;
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.path) {
            log::warn!("remove {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn binds_masks_and_devices_are_external() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"]},
                {"destination": "/data/../srv", "source": "vol", "options": ["bind"]}
            ],
            "linux": {
                "maskedPaths": ["/proc/version", "/proc/nonexistent"],
                "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
            }
        }));
        let r = for_restore(&s, Path::new("/b"));
        assert_eq!(
            r,
            vec![
                ("/etc/hosts".to_string(), "/etc/hosts".to_string()),
                ("/srv".to_string(), "/b/vol".to_string()),
                ("/dev/null".to_string(), "/dev/null".to_string()),
                ("/dev/fuse".to_string(), "/dev/fuse".to_string()),
            ]
        );
        // Our own process: /proc/version is a file, the other is skipped.
        let d = for_dump(&s, std::process::id() as i32);
        assert!(d.contains(&("/etc/hosts".to_string(), "/etc/hosts".to_string())));
        assert!(d.contains(&("/proc/version".to_string(), "/dev/null".to_string())));
        assert!(!d.iter().any(|(k, _)| k == "/proc/nonexistent"));
        assert!(d.contains(&("/srv".to_string(), "/srv".to_string())));
    }
}
