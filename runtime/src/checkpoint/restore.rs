//! [`Container::restore`]: a container made anew from a checkpoint. The state directory and
//! the cgroup are made as by create; criu runs inside the cgroup (so is every process it
//! restores) with the cgroup as its `cg_root`, restores the tree as a sibling of itself (the
//! caller, a subreaper, becomes the init's parent), in a private bind of the rootfs, with the
//! spec's bind mounts mapped to their sources, the joined namespaces given back, and the
//! container's new stdio in place of the dumped pipes. The restored container is running.
//!
//! On any failure everything is undone in reverse: criu and whatever it restored are killed,
//! the cgroup and the state directory removed, the rootfs bind unmounted.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rust_criu::rust_criu_protobuf::rpc::{
    Cgroup_root, Criu_opts, Criu_req, Criu_req_type, Ext_mount_map, Inherit_fd, Join_namespace,
};

use super::rpc::{Child, Notify, Session};
use super::{descriptors, log, mounts, RestoreOptions};
use crate::cgroups::CgroupManager;
use crate::container::Undo;
use crate::hooks::{self, HookState};
use crate::state::{self, State};
use crate::{Container, CreateOptions, Error, Result};

/// criu's log file name in the work directory.
const LOG_FILE: &str = "restore.log";

impl Container {
    /// Restore a container from the checkpoint `ropts.image_path` with the bundle's `spec`
    /// (loaded and validated by [`crate::spec::load`]) and `opts` as for a create (the stdio
    /// given there replaces the dumped pipes). The container runs when this returns; its
    /// console, if the checkpoint had a terminal, is in [`Container::take_console`].
    pub fn restore(opts: CreateOptions, spec: Spec, ropts: &RestoreOptions) -> Result<Container> {
        let criu = super::check()?;
        let images = &ropts.image_path;
        if !images.is_dir() {
            return Err(Error::invalid(format!(
                "checkpoint {}: not a directory",
                images.display()
            )));
        }
        let fds = descriptors::read(images)?;
        super::check_ip_tool(&spec, &ropts.features)?;
        let (dir, cgroup, mut undo) = crate::container::prepare(&opts, &spec)?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::invalid("linux: missing"))?;
        let parent_link = link_parent(images, ropts.parent_path.as_deref())?;
        let result = restore_in(&criu, &opts, &spec, ropts, &fds, &cgroup, &mut undo);
        if result.is_err() {
            if let Some(link) = parent_link {
                let _ = std::fs::remove_file(link);
            }
        }
        let (pid, console) = result?;
        let (pid_start, _) =
            state::proc_start(pid).context("the restored container init died at once")?;
        let own_pid_namespace = linux
            .namespaces()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none());
        let st = State {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            pid,
            pid_start,
            started: true,
            cgroup,
            hooks: spec.hooks().clone(),
            own_pid_namespace,
            seccomp: linux.seccomp().clone(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            created_ns: crate::state::now_ns(),
        };
        undo.pid = pid;
        st.save(&dir)?;
        undo.disarm();
        Ok(Container {
            root: opts.root.clone(),
            state: st,
            console,
        })
    }
}

/// Link `parent` in the image directory to the checkpoint it builds on, unless it has one;
/// returns the link made.
fn link_parent(images: &Path, parent: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(parent) = parent else {
        return Ok(None);
    };
    let link = images.join("parent");
    if link.symlink_metadata().is_ok() {
        return Ok(None);
    }
    std::os::unix::fs::symlink(parent, &link)
        .with_context(|| format!("link {} to {}", link.display(), parent.display()))?;
    Ok(Some(link))
}

/// The cgroups `pid` is in, as criu's `cg_root` entries (v1 controllers by name, cgroup2
/// without one).
fn cgroup_roots(pid: i32) -> Result<Vec<Cgroup_root>> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    Ok(parse_cgroup_roots(&text))
}

fn parse_cgroup_roots(text: &str) -> Vec<Cgroup_root> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mut r = Cgroup_root::new();
            if !ctrl.is_empty() {
                r.set_ctrl(ctrl.to_string());
            }
            r.set_path(path.to_string());
            Some(r)
        })
        .collect()
}

fn borrow(f: &Option<OwnedFd>) -> Option<BorrowedFd<'_>> {
    f.as_ref().map(AsFd::as_fd)
}

/// The restore proper, after the state directory exists: returns the init's pid and the pty
/// master criu handed over, if any.
fn restore_in(
    criu: &super::Criu,
    opts: &CreateOptions,
    spec: &Spec,
    ropts: &RestoreOptions,
    fds: &[String],
    cgroup: &CgroupManager,
    undo: &mut Undo,
) -> Result<(i32, Option<OwnedFd>)> {
    let rootfs = super::rootfs_of(spec, &opts.bundle)?;
    mounts::make_mountpoints(spec, &rootfs);
    let root = mounts::RootBind::new(&rootfs, opts.root.join(format!(".{}.criu-root", opts.id)))?;

    let images = File::open(&ropts.image_path)
        .with_context(|| format!("open {}", ropts.image_path.display()))?;
    let work_path = ropts
        .work_path
        .clone()
        .unwrap_or_else(|| ropts.image_path.clone());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&work_path)
        .with_context(|| format!("create {}", work_path.display()))?;
    let work = File::open(&work_path).with_context(|| format!("open {}", work_path.display()))?;

    let mut o = Criu_opts::new();
    super::common_opts(&mut o, &ropts.features, LOG_FILE)?;
    // criu opens these through /proc/<our pid>/fd (the socket's peer): our fd numbers.
    o.set_images_dir_fd(images.as_raw_fd());
    o.set_work_dir_fd(work.as_raw_fd());
    o.set_root(root.path().to_string_lossy().into_owned());
    o.set_rst_sibling(true);
    o.set_evasive_devices(true);
    for (key, val) in mounts::for_restore(spec, &opts.bundle) {
        let mut m = Ext_mount_map::new();
        m.set_key(key);
        m.set_val(val);
        o.ext_mnt.push(m);
    }
    // The dumped stdio pipes become criu's fds 0-2: the container's new streams.
    for (key, fd) in descriptors::inherited(fds) {
        let mut i = Inherit_fd::new();
        i.set_key(key);
        i.set_fd(fd);
        o.inherit_fd.push(i);
    }
    // Joined namespaces: network and pid ones were dumped as external and are handed back as
    // fds; criu joins the others itself.
    let mut ns_files: Vec<File> = Vec::new();
    for (t, path) in super::joined_namespaces(spec) {
        match t {
            LinuxNamespaceType::Network | LinuxNamespaceType::Pid => {
                let f = File::open(&path)
                    .with_context(|| format!("open namespace {}", path.display()))?;
                let mut i = Inherit_fd::new();
                i.set_key(super::ns_key(t));
                i.set_fd(Child::fd_number(ns_files.len()));
                o.inherit_fd.push(i);
                ns_files.push(f);
            }
            LinuxNamespaceType::Cgroup => {
                return Err(Error::invalid(
                    "restore: criu cannot join an existing cgroup namespace",
                ))
            }
            _ => {
                let mut j = Join_namespace::new();
                j.set_ns(super::ns_name(t).to_string());
                j.set_ns_file(path.to_string_lossy().into_owned());
                o.join_ns.push(j);
            }
        }
    }

    let extra: Vec<BorrowedFd<'_>> = ns_files.iter().map(AsFd::as_fd).collect();
    let child = Child {
        stdio: [
            borrow(&opts.stdio.stdin),
            borrow(&opts.stdio.stdout),
            borrow(&opts.stdio.stderr),
        ],
        fds: extra,
    };
    let log_path = work_path.join(LOG_FILE);
    let explain = |e: anyhow::Error| -> Error {
        log::explain(e, &log_path)
            .context(format!(
                "restore container {} from {} with criu {}",
                opts.id,
                ropts.image_path.display(),
                criu.version
            ))
            .into()
    };

    let mut session = Session::start(&criu.path, &child).map_err(explain)?;
    // criu and everything it restores live in the container's cgroup.
    undo.cgroup = Some(cgroup.clone());
    cgroup.apply(session.pid())?;
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        cgroup.set(&crate::container::with_default_devices(res))?;
    }
    o.cg_root = cgroup_roots(session.pid())?;

    let mut req = Criu_req::new();
    req.set_type(Criu_req_type::RESTORE);
    req.opts = Some(o).into();
    let mut console: Option<OwnedFd> = None;
    let mut restored_pid = 0;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut on_notify = |n: Notify<'_>| -> anyhow::Result<()> {
        match n.script {
            "setup-namespaces" => {
                let st = HookState {
                    oci_version: "1.0.2",
                    id: &opts.id,
                    status: "creating",
                    pid: Some(n.pid),
                    bundle: &opts.bundle,
                    annotations: &annotations,
                };
                hooks::run_create_runtime(spec.hooks().as_ref(), &st)?;
            }
            "post-restore" => restored_pid = n.pid,
            "orphan-pts-master" => console = n.fd,
            _ => {}
        }
        Ok(())
    };
    let resp = session.call(&req, &mut on_notify).map_err(explain)?;
    let pid = match resp.restore.pid() {
        0 => restored_pid,
        p => p,
    };
    undo.pid = pid;
    session.finish().map_err(explain)?;
    if pid <= 0 {
        return Err(explain(anyhow::anyhow!(
            "criu did not say the restored pid"
        )));
    }
    drop(root);
    Ok((pid, console))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_roots_of_v1_and_v2() {
        let r = parse_cgroup_roots("12:cpu,cpuacct:/ns/c1\n1:name=systemd:/ns/c1\n0::/ns/c1\n");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].ctrl(), "cpu,cpuacct");
        assert_eq!(r[0].path(), "/ns/c1");
        assert_eq!(r[1].ctrl(), "name=systemd");
        assert!(!r[2].has_ctrl());
        assert_eq!(r[2].path(), "/ns/c1");
    }

    #[test]
    fn parent_is_linked_once() {
        let d = std::env::temp_dir().join(format!("myshim-parent-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(link_parent(&d, None).unwrap(), None);
        let made = link_parent(&d, Some(Path::new("../pre"))).unwrap();
        assert_eq!(made, Some(d.join("parent")));
        assert_eq!(link_parent(&d, Some(Path::new("../x"))).unwrap(), None);
        assert_eq!(
            std::fs::read_link(d.join("parent")).unwrap(),
            Path::new("../pre")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
