//! The container's root filesystem from containerd's snapshot mounts: mounted onto
//! `<bundle>/rootfs` before the container is created, unmounted when it is deleted (or its
//! creation fails).

use std::path::{Path, PathBuf};

use anyhow::Context;
use containerd_shim::protos::types::mount::Mount;

/// Mount `mounts` (in order) onto `<bundle>/rootfs`; with no mounts the bundle's own rootfs is
/// used as is and `None` is returned. On failure nothing stays mounted.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> anyhow::Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .with_context(|| format!("create rootfs directory {}", target.display()))?;
    for m in mounts {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target) {
            let err = anyhow::anyhow!("{e}").context(format!(
                "mount {} {:?} on {}",
                m.type_,
                m.source,
                target.display()
            ));
            if let Err(u) = unmount(&target) {
                log::warn!("cleanup after failed rootfs mount: {u:#}");
            }
            return Err(err);
        }
    }
    Ok(Some(target))
}

/// Unmount everything at or below `target` (lazily); not being mounted is fine.
pub fn unmount(target: &Path) -> anyhow::Result<()> {
    let path = target
        .to_str()
        .with_context(|| format!("rootfs path {} is not UTF-8", target.display()))?;
    containerd_shim::mount::umount_recursive(Some(path), libc::MNT_DETACH)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("unmount {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mounts_means_bundle_rootfs() {
        assert_eq!(mount(Path::new("/nonexistent-bundle"), &[]).unwrap(), None);
    }

    #[test]
    fn unmounting_what_is_not_mounted_is_fine() {
        unmount(Path::new("/nonexistent-bundle/rootfs")).unwrap();
    }
}
