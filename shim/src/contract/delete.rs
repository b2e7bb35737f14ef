//! The `delete` action: containerd runs it after a daemon died (or to clean up after a failed
//! start), in the bundle or with `-bundle`. It kills and deletes what the runtime left of the
//! container, unmounts the rootfs, removes the socket of a dead daemon, and prints a
//! `DeleteResponse`. It is idempotent: a second run finds nothing and still answers.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::{Message, MessageField};
use myshim_runtime::Container;

use super::flags::Flags;
use super::socket;
use super::start::grouping;
use crate::events::timestamp;
use crate::{rootfs, task};

/// Run the `delete` action; returns the encoded `DeleteResponse`.
pub fn run(flags: &Flags) -> anyhow::Result<Vec<u8>> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().context("the bundle (working directory)")?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let root = crate::runtime_root(&flags.namespace);
    let mut pid = 0;
    if task::has_state(&root, &flags.id) {
        match Container::load(&root, &flags.id) {
            Ok(c) => {
                pid = u32::try_from(c.pid()).unwrap_or(0);
                c.delete(true)
                    .with_context(|| format!("delete container {}", flags.id))?;
            }
            Err(myshim_runtime::Error::NotFound(_)) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("load container {}", flags.id))
            }
        }
    }
    rootfs::unmount(&bundle.join("rootfs"))?;
    remove_dead_socket(flags, &bundle);
    let response = DeleteResponse {
        pid,
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(timestamp(SystemTime::now())),
        ..Default::default()
    };
    response
        .write_to_bytes()
        .context("encode the DeleteResponse")
}

/// A daemon that died (killed, crashed) leaves its socket behind. Remove it unless a daemon
/// still answers there (a pod's shim serving other containers).
fn remove_dead_socket(flags: &Flags, bundle: &Path) {
    let group = grouping(&flags.id, &bundle.join("config.json"));
    let dir = socket::read_socket_dir(bundle);
    let address = socket::address(
        &flags.address,
        &flags.namespace,
        &group,
        dir.as_deref().and_then(Path::to_str),
    );
    if socket::path(&address).exists() && !socket::is_served(&address) {
        if let Err(e) = socket::remove(&address) {
            log::warn!("remove the dead shim's socket {address}: {e}");
        }
    }
}
