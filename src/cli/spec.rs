//! `spec`: write a default config.json into a bundle (never over an existing one): the oci-spec
//! crate's default container (sh on a terminal, rootfs `rootfs` read-only, the usual namespaces,
//! mounts, masked and read-only paths), or with --rootless a user namespace mapping the caller.

use anyhow::{bail, Context};
use oci_spec::runtime::Spec;

use super::args::SpecArgs;

/// `spec`
pub fn spec(a: &SpecArgs) -> anyhow::Result<()> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists: remove it first", path.display());
    }
    let mut spec = if a.rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.set_hostname(Some("myshim".to_string()));
    let text = serde_json::to_string_pretty(&spec).context("encode the spec")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write {}", path.display()))
}
