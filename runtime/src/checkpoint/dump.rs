//! [`Container::checkpoint`]: criu dumps the running (or paused) container's process tree into
//! an image directory, frozen through the container's cgroup, with runc's options: its bind
//! mounts, masked files and devices as external mounts, a joined network or pid namespace as an
//! external namespace, `descriptors.json` beside the images. With `exit` criu kills the tree
//! after the dump; otherwise it keeps running.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rust_criu::rust_criu_protobuf::rpc::{Criu_opts, Criu_req, Criu_req_type, Ext_mount_map};

use super::rpc::{Child, Session};
use super::{descriptors, log, mounts, CheckpointOptions};
use crate::{Container, Error, Result, Status};

/// criu's log file name in the work directory.
const LOG_FILE: &str = "dump.log";

/// A directory made here, removed again unless kept.
struct MadeDir {
    path: Option<PathBuf>,
}

impl MadeDir {
    /// Create `path` (and its parents) if it does not exist; remember it if it was made here.
    fn ensure(path: &Path) -> Result<MadeDir> {
        if path.is_dir() {
            return Ok(MadeDir { path: None });
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("create {}", path.display()))?;
        Ok(MadeDir {
            path: Some(path.to_path_buf()),
        })
    }

    fn keep(&mut self) {
        self.path = None;
    }
}

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                ::log::warn!("remove {}: {e}", p.display());
            }
        }
    }
}

fn open_dir(path: &Path) -> Result<File> {
    Ok(File::open(path).with_context(|| format!("open {}", path.display()))?)
}

impl Container {
    /// Checkpoint the container with criu into `opts.image_path`. Needs a running or paused
    /// container and criu [`MIN_VERSION`](super::MIN_VERSION) or later; on failure the error
    /// quotes criu's log and nothing made here is left (the container keeps running unless
    /// criu failed after it had already killed it).
    pub fn checkpoint(&self, opts: &CheckpointOptions) -> Result<()> {
        let status = self.status();
        if !matches!(status, Status::Running | Status::Paused) {
            return Err(self.bad_state(status, "checkpoint"));
        }
        let criu = super::check()?;
        if opts.image_path.as_os_str().is_empty() {
            return Err(Error::invalid("checkpoint: no image path"));
        }
        let bundle = &self.state.bundle;
        let spec = Spec::load(bundle.join("config.json"))
            .with_context(|| format!("load {}/config.json", bundle.display()))?;
        let rootfs = super::rootfs_of(&spec, bundle)?;
        super::check_ip_tool(&spec, &opts.features)?;

        let mut images = MadeDir::ensure(&opts.image_path)?;
        let work_path = opts
            .work_path
            .clone()
            .unwrap_or_else(|| self.dir().join("criu-work"));
        let mut work = MadeDir::ensure(&work_path)?;
        let keep_work = opts.work_path.is_some();
        if !keep_work {
            // Ours alone, even if an earlier run left it.
            work.path = Some(work_path.clone());
        }
        let images_fd = open_dir(&opts.image_path)?;
        let work_fd = open_dir(&work_path)?;

        let mut req = Criu_req::new();
        req.set_type(if opts.pre_dump {
            Criu_req_type::PRE_DUMP
        } else {
            Criu_req_type::DUMP
        });
        let mut o = Criu_opts::new();
        super::common_opts(&mut o, &opts.features, LOG_FILE)?;
        // criu opens these through /proc/<our pid>/fd (the socket's peer): our fd numbers.
        o.set_images_dir_fd(images_fd.as_raw_fd());
        o.set_work_dir_fd(work_fd.as_raw_fd());
        o.set_pid(self.state.pid);
        o.set_root(rootfs.to_string_lossy().into_owned());
        o.set_leave_running(!opts.exit || opts.pre_dump);
        if let Some(dir) = self.state.cgroup.freezer_path() {
            o.set_freeze_cgroup(dir.to_string_lossy().into_owned());
        }
        if let Some(parent) = &opts.parent_path {
            o.set_parent_img(parent.to_string_lossy().into_owned());
            o.set_track_mem(true);
        }
        for (t, path) in super::joined_namespaces(&spec) {
            if matches!(t, LinuxNamespaceType::Network | LinuxNamespaceType::Pid) {
                let meta = std::fs::metadata(&path)
                    .with_context(|| format!("namespace {}", path.display()))?;
                use std::os::unix::fs::MetadataExt;
                o.external.push(format!(
                    "{}[{}]:{}",
                    super::ns_name(t),
                    meta.ino(),
                    super::ns_key(t)
                ));
            }
        }
        if !opts.pre_dump {
            for (key, val) in mounts::for_dump(&spec, self.state.pid) {
                let mut m = Ext_mount_map::new();
                m.set_key(key);
                m.set_val(val);
                o.ext_mnt.push(m);
            }
            let fds = descriptors::of_process(self.state.pid);
            descriptors::write(&opts.image_path, &fds)?;
        }
        req.opts = Some(o).into();

        let child = Child {
            stdio: [None, None, None],
            fds: Vec::new(),
        };
        let log_path = work_path.join(LOG_FILE);
        let result = (|| -> anyhow::Result<()> {
            let mut session = Session::start(&criu.path, &child)?;
            session.call(&req, &mut |_| Ok(()))?;
            match session.finish() {
                // After a pre-dump criu waits for a dump that never comes: its exit says nothing.
                Err(_) if opts.pre_dump => Ok(()),
                other => other,
            }
        })();
        match result {
            Ok(()) => {
                images.keep();
                if keep_work {
                    work.keep();
                }
                Ok(())
            }
            Err(e) => {
                let e = log::explain(e, &log_path);
                if !keep_work {
                    // The log's lines are in the error; keep a copy beside the bundle as
                    // containerd's runc shim does.
                    let _ = std::fs::copy(&log_path, bundle.join("criu-dump.log"));
                } else {
                    work.keep();
                }
                if images.path.is_none() {
                    let _ = std::fs::remove_file(opts.image_path.join(descriptors::FILE));
                }
                Err(e
                    .context(format!(
                        "checkpoint container {} with criu {}",
                        self.state.id, criu.version
                    ))
                    .into())
            }
        }
    }
}
