//! The container's filesystem, set up by the init process inside its new mount namespace:
//! root propagation, the rootfs bind mount, the spec's mounts, /dev, pivot_root, then readonly
//! rootfs, masked and readonly paths.

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::Result;

/// Before pivot_root: propagation, rootfs bind, the spec's mounts, default devices and /dev
/// symlinks. `rootfs` is absolute.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    let _ = (spec, rootfs);
    Err(anyhow::anyhow!("rootfs: not implemented").into())
}

/// pivot_root into `rootfs` and detach the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let _ = rootfs;
    Err(anyhow::anyhow!("rootfs: not implemented").into())
}

/// After pivot_root: masked paths, readonly paths, readonly rootfs.
pub fn finalize(spec: &Spec) -> Result<()> {
    let _ = spec;
    Err(anyhow::anyhow!("rootfs: not implemented").into())
}
