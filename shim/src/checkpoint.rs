//! containerd's checkpoint and restore mapped onto the runtime's CRIU support
//! ([`myshim_runtime::checkpoint`]): the task API's `Checkpoint` with runc's
//! `CheckpointOptions` (`containerd.runc.v1.CheckpointOptions`), and what a `Create` carrying
//! `checkpoint` (and `parent_checkpoint`) restores from.
//!
//! containerd gives Checkpoint a fresh image directory (or the options' `image_path`), then
//! stores what the shim wrote there (criu's images and `descriptors.json`) with the container's
//! spec as a checkpoint image; a restore unpacks that image into a directory and names it in
//! `CreateTaskRequest.checkpoint`.

use std::path::PathBuf;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::CheckpointOptions as RuncCheckpointOptions;
use containerd_shim::protos::shim::shim::CheckpointTaskRequest;
use containerd_shim::protos::ttrpc;
use myshim_runtime::checkpoint::{CheckpointOptions, Features, RestoreOptions};

use crate::errors;
use crate::options::TaskOptions;
use crate::process::Phase;
use crate::task::Task;

/// The options message containerd sends with Checkpoint for runc-type runtimes.
pub const CHECKPOINT_OPTIONS: &str = "containerd.runc.v1.CheckpointOptions";

/// The runc checkpoint options in `any` (absent or empty: the defaults).
pub fn decode_options(any: Option<&Any>) -> ttrpc::Result<RuncCheckpointOptions> {
    let Some(any) = any else {
        return Ok(RuncCheckpointOptions::default());
    };
    match any.type_url.rsplit('/').next().unwrap_or_default() {
        "" if any.value.is_empty() => Ok(RuncCheckpointOptions::default()),
        CHECKPOINT_OPTIONS => RuncCheckpointOptions::parse_from_bytes(&any.value)
            .map_err(|e| errors::invalid(format!("decode {CHECKPOINT_OPTIONS}: {e}"))),
        other => Err(errors::invalid(format!(
            "unsupported checkpoint options type {other:?} (expected {CHECKPOINT_OPTIONS})"
        ))),
    }
}

/// What the runtime is asked for a Checkpoint request.
pub fn checkpoint_options(req: &CheckpointTaskRequest) -> ttrpc::Result<CheckpointOptions> {
    let o = decode_options(req.options.as_ref())?;
    let image_path = match (o.image_path.as_str(), req.path.as_str()) {
        ("", "") => return Err(errors::invalid("checkpoint: no image path given")),
        ("", path) => PathBuf::from(path),
        (path, _) => PathBuf::from(path),
    };
    Ok(CheckpointOptions {
        image_path,
        work_path: (!o.work_path.is_empty()).then(|| PathBuf::from(&o.work_path)),
        parent_path: None,
        pre_dump: false,
        exit: o.exit,
        features: Features {
            open_tcp: o.open_tcp,
            external_unix_sockets: o.external_unix_sockets,
            terminal: o.terminal,
            file_locks: o.file_locks,
            empty_namespaces: o.empty_namespaces.clone(),
            cgroups_mode: o.cgroups_mode.clone(),
        },
    })
}

/// What the runtime is asked to restore for a Create with `checkpoint` (as runc's shim, no
/// feature beyond the terminal is asked for).
pub fn restore_options(
    checkpoint: &str,
    parent: &str,
    terminal: bool,
    opts: &TaskOptions,
) -> RestoreOptions {
    RestoreOptions {
        image_path: PathBuf::from(checkpoint),
        work_path: (!opts.criu_work_path.is_empty()).then(|| PathBuf::from(&opts.criu_work_path)),
        parent_path: (!parent.is_empty()).then(|| PathBuf::from(parent)),
        features: Features {
            terminal,
            ..Default::default()
        },
    }
}

/// Checkpoint `task`'s container (running, or paused as containerd leaves it while it
/// checkpoints).
pub fn checkpoint(task: &Task, opts: &CheckpointOptions) -> ttrpc::Result<()> {
    let what = format!("container {}", task.id);
    match task.init.phase() {
        Phase::Running | Phase::Paused => {}
        _ => {
            return Err(errors::failed_precondition(format!(
                "{what} is not running: cannot checkpoint"
            )))
        }
    }
    task.with_container(|c| c.checkpoint(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, opts: Option<RuncCheckpointOptions>) -> CheckpointTaskRequest {
        CheckpointTaskRequest {
            id: "c1".into(),
            path: path.into(),
            options: opts
                .map(|o| Any {
                    type_url: format!("type.googleapis.com/{CHECKPOINT_OPTIONS}"),
                    value: o.write_to_bytes().unwrap(),
                    ..Default::default()
                })
                .into(),
            ..Default::default()
        }
    }

    #[test]
    fn runc_options_are_mapped() {
        let o = RuncCheckpointOptions {
            exit: true,
            open_tcp: true,
            file_locks: true,
            empty_namespaces: vec!["network".into()],
            cgroups_mode: "soft".into(),
            work_path: "/w".into(),
            ..Default::default()
        };
        let got = checkpoint_options(&req("/img", Some(o))).unwrap();
        assert_eq!(got.image_path, PathBuf::from("/img"));
        assert_eq!(got.work_path, Some(PathBuf::from("/w")));
        assert!(got.exit && got.features.open_tcp && got.features.file_locks);
        assert!(!got.features.terminal);
        assert_eq!(got.features.empty_namespaces, vec!["network".to_string()]);
        assert_eq!(got.features.cgroups_mode, "soft");
        // image_path of the options wins over the request's path
        let o = RuncCheckpointOptions {
            image_path: "/mine".into(),
            ..Default::default()
        };
        assert_eq!(
            checkpoint_options(&req("/img", Some(o)))
                .unwrap()
                .image_path,
            PathBuf::from("/mine")
        );
        let plain = checkpoint_options(&req("/img", None)).unwrap();
        assert!(!plain.exit && plain.work_path.is_none());
        assert!(checkpoint_options(&req("", None)).is_err());
    }

    #[test]
    fn unknown_option_types_are_refused() {
        let mut r = req("/img", None);
        r.options = Some(Any {
            type_url: "example.Other".into(),
            ..Default::default()
        })
        .into();
        assert!(checkpoint_options(&r).is_err());
    }

    #[test]
    fn restore_takes_parent_and_work_path() {
        let opts = TaskOptions {
            criu_work_path: "/work".into(),
            ..Default::default()
        };
        let r = restore_options("/ck", "/parent", true, &opts);
        assert_eq!(r.image_path, PathBuf::from("/ck"));
        assert_eq!(r.parent_path, Some(PathBuf::from("/parent")));
        assert_eq!(r.work_path, Some(PathBuf::from("/work")));
        assert!(r.features.terminal);
        let r = restore_options("/ck", "", false, &TaskOptions::default());
        assert!(r.parent_path.is_none() && r.work_path.is_none());
    }
}
