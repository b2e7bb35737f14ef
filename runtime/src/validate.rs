//! Validation of a container's spec before anything is created (no cgroup, process, mount or
//! state directory): one small function per rule, in the manner of runc's validator, run in
//! order by [`spec`]. The first broken rule is returned as [`Error::InvalidConfig`] naming the
//! field. [`process`] holds the rules of a process (the container's, and every exec'd one);
//! [`rootfs`] and [`cgroup_unused`] need the host and are called by create around [`spec`].
//!
//! What is refused is what runc refuses, plus a few things runc lets through that would reach
//! the host: namespaced writes (hostname, domainname, sysctls) into a namespace joined by a path
//! that is the runtime's own (the host's), and device entries outside `/dev`.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Process, Spec};

use crate::cgroups::CgroupManager;
use crate::{namespaces, rootfs, seccomp, Error, Result};

/// Largest uid or gid accepted (as runc: ids are in 0..=2^31-1; `u32::MAX` means "unchanged" to
/// setresuid and would leave the process root).
pub const MAX_ID: u32 = i32::MAX as u32;
/// Longest single argument or environment entry execve accepts (MAX_ARG_STRLEN).
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Longest hostname or domainname (`__NEW_UTS_LEN`).
const MAX_UTS_NAME: usize = 64;
/// statfs magic of the nsfs filesystem (`/proc/<pid>/ns/*`).
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` ioctl: the `CLONE_NEW*` type of a namespace fd.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// A rule over the whole spec.
type Rule = fn(&Spec) -> Result<()>;

/// Every spec rule, in the order they are checked, with a name for tests and logs.
pub const RULES: &[(&str, Rule)] = &[
    ("process", process_rule),
    ("unsupported", unsupported),
    ("mounts", mounts),
    ("namespaces", namespaces_rule),
    ("id mappings", id_mappings),
    ("user mapped", user_mapped),
    ("uts", uts),
    ("sysctl", sysctl),
    ("devices", devices),
    ("paths", masked_readonly_paths),
    ("rootfs propagation", rootfs_propagation),
    ("cgroups", cgroups),
    ("hooks", hooks),
    ("seccomp", seccomp_rule),
];

/// Check every rule of [`RULES`]; the first failure is returned.
pub fn spec(spec: &Spec) -> Result<()> {
    for (_, rule) in RULES {
        rule(spec)?;
    }
    Ok(())
}

/// `<bundle>/<root.path>` must exist, be a directory and not be reached through a symlink (as
/// runc). Returns it, absolute.
pub fn rootfs(bundle: &Path, root_path: &Path) -> Result<PathBuf> {
    let bundle = std::fs::canonicalize(bundle)
        .map_err(|e| Error::invalid(format!("bundle {}: {e}", bundle.display())))?;
    let path = clean(&bundle.join(root_path));
    let meta = std::fs::metadata(&path)
        .map_err(|e| Error::invalid(format!("root.path: {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "root.path: {} is not a directory",
            path.display()
        )));
    }
    let real = std::fs::canonicalize(&path)
        .map_err(|e| Error::invalid(format!("root.path: {}: {e}", path.display())))?;
    if real != path {
        return Err(Error::invalid(format!(
            "root.path: {} is reached through a symlink (to {})",
            path.display(),
            real.display()
        )));
    }
    Ok(path)
}

/// The container's cgroup must not exist yet or be empty (as runc): a spec naming the cgroup of
/// host processes would put the container among them, and delete would kill them.
pub fn cgroup_unused(cgroup: &CgroupManager) -> Result<()> {
    let pids = cgroup.pids()?;
    if !pids.is_empty() {
        return Err(Error::invalid(format!(
            "linux.cgroupsPath: the cgroup {} already has {} process(es)",
            cgroup.path().display(),
            pids.len()
        )));
    }
    Ok(())
}

/// The rules of a process, for the container's and for every exec'd process.
pub fn process(p: &Process) -> Result<()> {
    let args = p.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::invalid("process.args: must not be empty"));
    }
    if !p.cwd().is_absolute() {
        return Err(Error::invalid(format!(
            "process.cwd: {:?} is not an absolute path",
            p.cwd()
        )));
    }
    let env = p.env().as_deref().unwrap_or_default();
    for (i, kv) in env.iter().enumerate() {
        match kv.split_once('=') {
            None => {
                return Err(Error::invalid(format!(
                    "process.env[{i}]: {kv:?} is not of the form KEY=value"
                )))
            }
            Some(("", _)) => {
                return Err(Error::invalid(format!(
                    "process.env[{i}]: {kv:?} has an empty name"
                )))
            }
            Some(_) => {}
        }
    }
    exec_strings("process.args", args)?;
    exec_strings("process.env", env)?;
    let user = p.user();
    id_in_range("process.user.uid", user.uid())?;
    id_in_range("process.user.gid", user.gid())?;
    for (i, g) in user.additional_gids().iter().flatten().enumerate() {
        id_in_range(&format!("process.user.additionalGids[{i}]"), *g)?;
    }
    for r in p.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(Error::invalid(format!(
                "process.rlimits: {:?} soft limit {} is above its hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(Error::invalid(format!(
                "process.oomScoreAdj: {adj} is outside -1000..1000"
            )));
        }
    }
    refuse(p.io_priority().is_some(), "process.ioPriority")?;
    refuse(p.scheduler().is_some(), "process.scheduler")?;
    Ok(())
}

fn id_in_range(field: &str, id: u32) -> Result<()> {
    if id > MAX_ID {
        return Err(Error::invalid(format!(
            "{field}: {id} is out of range (uids and gids must be in 0-{MAX_ID})"
        )));
    }
    Ok(())
}

/// Each string must fit execve (no NUL byte, at most MAX_ARG_STRLEN) and all of them together
/// the kernel's limit for arguments and environment.
fn exec_strings(field: &str, list: &[String]) -> Result<()> {
    let mut total = 0usize;
    for (i, s) in list.iter().enumerate() {
        if s.contains('\0') {
            return Err(Error::invalid(format!("{field}[{i}]: contains a NUL byte")));
        }
        if s.len() >= MAX_ARG_STRLEN {
            return Err(Error::invalid(format!(
                "{field}[{i}]: {} bytes, longer than the {MAX_ARG_STRLEN} execve accepts",
                s.len()
            )));
        }
        total += s.len() + 1 + std::mem::size_of::<usize>();
    }
    // SAFETY: sysconf only reads a system limit.
    let arg_max = usize::try_from(unsafe { libc::sysconf(libc::_SC_ARG_MAX) }).unwrap_or(0);
    if arg_max > 0 && total > arg_max {
        return Err(Error::invalid(format!(
            "{field}: {total} bytes in all, more than the {arg_max} execve accepts"
        )));
    }
    Ok(())
}

fn refuse(present: bool, field: &str) -> Result<()> {
    if present {
        return Err(Error::invalid(format!("{field}: not supported")));
    }
    Ok(())
}

fn process_rule(spec: &Spec) -> Result<()> {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process: missing"))?;
    process(p)?;
    if p.selinux_label().as_ref().is_some_and(|l| !l.is_empty()) && selinux_enabled() {
        return Err(Error::invalid(
            "process.selinuxLabel: SELinux is not supported",
        ));
    }
    if p.apparmor_profile().as_ref().is_some_and(|l| !l.is_empty()) && apparmor_enabled() {
        return Err(Error::invalid(
            "process.apparmorProfile: AppArmor is not supported yet",
        ));
    }
    Ok(())
}

fn linux(spec: &Spec) -> Result<&oci_spec::runtime::Linux> {
    spec.linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux: missing"))
}

fn ns_list(spec: &Spec) -> &[LinuxNamespace] {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default()
}

/// The spec's namespace of type `t`, if listed (created, or joined by path).
fn ns(spec: &Spec, t: LinuxNamespaceType) -> Option<&LinuxNamespace> {
    ns_list(spec).iter().find(|n| n.typ() == t)
}

/// `/proc/self/ns/<name>` for a namespace type.
fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The container has a namespace of type `t` that is not the runtime's own: a new one, or one
/// joined by a path that is not ours (the host's).
fn private_ns(spec: &Spec, t: LinuxNamespaceType) -> bool {
    match ns(spec, t) {
        None => false,
        Some(n) => match n.path().as_deref().filter(|p| !p.as_os_str().is_empty()) {
            None => true,
            Some(path) => !same_file(path, &format!("/proc/self/ns/{}", proc_name(t))),
        },
    }
}

fn same_file(a: &Path, b: &str) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// With a user namespace of its own, the process's ids must be mapped in it.
fn user_mapped(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let (Some(p), true) = (spec.process(), ns(spec, LinuxNamespaceType::User).is_some()) else {
        return Ok(());
    };
    let uids = namespaces::id_maps(linux.uid_mappings());
    let gids = namespaces::id_maps(linux.gid_mappings());
    if uids.is_empty() && gids.is_empty() {
        // joined by path: the kernel refuses an unmapped id at setresuid.
        return Ok(());
    }
    let mapped = |maps: &[crate::sync::IdMap], id: u32| {
        maps.iter().any(|m| {
            id >= m.container_id && u64::from(id) < u64::from(m.container_id) + u64::from(m.size)
        })
    };
    let user = p.user();
    if !mapped(&uids, user.uid()) {
        return Err(Error::invalid(format!(
            "process.user.uid: {} is not mapped in linux.uidMappings",
            user.uid()
        )));
    }
    let gids_used = std::iter::once(("process.user.gid".to_string(), user.gid())).chain(
        user.additional_gids()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, g)| (format!("process.user.additionalGids[{i}]"), *g)),
    );
    for (field, gid) in gids_used {
        if !mapped(&gids, gid) {
            return Err(Error::invalid(format!(
                "{field}: {gid} is not mapped in linux.gidMappings"
            )));
        }
    }
    Ok(())
}

fn unsupported(spec: &Spec) -> Result<()> {
    let linux = linux(spec)?;
    refuse(linux.intel_rdt().is_some(), "linux.intelRdt")?;
    refuse(linux.personality().is_some(), "linux.personality")?;
    refuse(
        linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()),
        "linux.timeOffsets",
    )?;
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) && selinux_enabled() {
        return Err(Error::invalid("linux.mountLabel: SELinux is not supported"));
    }
    if let Some(res) = linux.resources() {
        refuse(res.network().is_some(), "linux.resources.network")?;
        refuse(
            res.rdma().as_ref().is_some_and(|r| !r.is_empty()),
            "linux.resources.rdma",
        )?;
    }
    Ok(())
}

/// Destinations absolute, no NUL byte anywhere, and no filesystem data on a bind mount (the
/// kernel ignores it there, as runc says).
fn mounts(spec: &Spec) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(Error::invalid(format!(
                "mounts[{i}].destination: {dest:?} is not absolute"
            )));
        }
        let has_nul = |p: &Path| p.as_os_str().as_encoded_bytes().contains(&0);
        let opts = m.options().as_deref().unwrap_or_default();
        if has_nul(dest)
            || m.source().as_deref().is_some_and(has_nul)
            || m.typ().as_deref().is_some_and(|t| t.contains('\0'))
            || opts.iter().any(|o| o.contains('\0'))
        {
            return Err(Error::invalid(format!("mounts[{i}]: contains a NUL byte")));
        }
        let parsed = rootfs::parse_mount_options(opts);
        let bind = parsed.is_bind() || m.typ().as_deref() == Some("bind");
        if bind && parsed.data().is_some() {
            return Err(Error::invalid(format!(
                "mounts[{i}] ({}): a bind mount cannot have filesystem options ({})",
                dest.display(),
                parsed.data
            )));
        }
    }
    Ok(())
}

/// Known types, no duplicates, a mount namespace, and every path names a namespace of its type.
fn namespaces_rule(spec: &Spec) -> Result<()> {
    let plan = namespaces::plan(linux(spec)?)?;
    if plan.clone_flags & libc::CLONE_NEWNS == 0
        && !plan.join.iter().any(|j| j.flag == libc::CLONE_NEWNS)
    {
        return Err(Error::invalid(
            "linux.namespaces: a mount namespace is required",
        ));
    }
    for j in &plan.join {
        ns_path(&j.path, j.flag)?;
    }
    Ok(())
}

/// A namespace path must be absolute and be a namespace (nsfs) of type `flag`.
fn ns_path(path: &Path, flag: i32) -> Result<()> {
    use std::os::fd::AsRawFd;
    let bad = |why: String| Error::invalid(format!("linux.namespaces: {}: {why}", path.display()));
    if !path.is_absolute() {
        return Err(bad("not an absolute path".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    // SAFETY: statfs writes into the zeroed struct we own; the fd is open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `st` outlives the call.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(bad(std::io::Error::last_os_error().to_string()));
    }
    #[allow(clippy::unnecessary_cast)]
    if st.f_type as i64 != NSFS_MAGIC {
        return Err(bad("not a namespace file".into()));
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type; the fd is an open nsfs file.
    let typ = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if typ >= 0 && typ != flag {
        return Err(bad(format!(
            "a namespace of another type ({typ:#x}, expected {flag:#x})"
        )));
    }
    Ok(())
}

/// Id mappings only with a user namespace; each range non-empty and within 32 bits.
fn id_mappings(spec: &Spec) -> Result<()> {
    let linux = linux(spec)?;
    let uids = namespaces::id_maps(linux.uid_mappings());
    let gids = namespaces::id_maps(linux.gid_mappings());
    if ns(spec, LinuxNamespaceType::User).is_none() && !(uids.is_empty() && gids.is_empty()) {
        return Err(Error::invalid(
            "linux.uidMappings/gidMappings: given without a user namespace",
        ));
    }
    for (field, maps) in [("linux.uidMappings", &uids), ("linux.gidMappings", &gids)] {
        for (i, m) in maps.iter().enumerate() {
            let end = |id: u32| u64::from(id) + u64::from(m.size);
            if m.size == 0 || end(m.container_id) > 1 << 32 || end(m.host_id) > 1 << 32 {
                return Err(Error::invalid(format!(
                    "{field}[{i}]: {} {} {} is empty or beyond 2^32",
                    m.container_id, m.host_id, m.size
                )));
            }
        }
    }
    Ok(())
}

/// hostname and domainname only in a UTS namespace of the container's own.
fn uts(spec: &Spec) -> Result<()> {
    let own = private_ns(spec, LinuxNamespaceType::Uts);
    for (field, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        let Some(v) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        if !own {
            return Err(Error::invalid(format!(
                "{field}: setting it needs a uts namespace of the container's own"
            )));
        }
        if v.len() > MAX_UTS_NAME || v.contains('\0') {
            return Err(Error::invalid(format!(
                "{field}: {v:?} is longer than {MAX_UTS_NAME} bytes or has a NUL byte"
            )));
        }
    }
    Ok(())
}

/// A sysctl key in the dotted form (`net/ipv4/conf/eth0.1/x` → `net.ipv4.conf.eth0/1.x`), as
/// sysctl(8) accepts both.
pub fn sysctl_dotted(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// The names under /proc/sys of a sysctl key (`kernel.shmmax` → `kernel`, `shmmax`).
fn sysctl_parts(key: &str) -> Vec<String> {
    sysctl_dotted(key)
        .split('.')
        .map(|part| part.replace('/', "."))
        .collect()
}

/// The file under /proc/sys of a (valid) sysctl key.
pub fn sysctl_path(key: &str) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    p.extend(sysctl_parts(key));
    p
}

/// Only sysctls of a namespace the container has of its own (runc's list: IPC ones, `net.*`,
/// `kernel.domainname`, `user.*` with a user namespace); each key a plain path below /proc/sys.
fn sysctl(spec: &Spec) -> Result<()> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let s = sysctl_dotted(key);
        let bad = |why: &str| Err(Error::invalid(format!("linux.sysctl: {key:?} {why}")));
        let parts = sysctl_parts(key);
        if parts
            .iter()
            .any(|p| p.is_empty() || p == "." || p == ".." || p.contains('\0'))
        {
            return bad("is not a valid sysctl name");
        }
        if map[key].contains('\0') {
            return bad("has a NUL byte in its value");
        }
        let (t, what) = if IPC.contains(&s.as_str()) || s.starts_with("fs.mqueue.") {
            (LinuxNamespaceType::Ipc, "an ipc")
        } else if s.starts_with("net.") {
            (LinuxNamespaceType::Network, "a network")
        } else if s == "kernel.domainname" || s == "kernel.hostname" {
            (LinuxNamespaceType::Uts, "a uts")
        } else if s.starts_with("user.") {
            (LinuxNamespaceType::User, "a user")
        } else {
            return bad("is not in a separate kernel namespace");
        };
        if !private_ns(spec, t) {
            return bad(&format!("needs {what} namespace of the container's own"));
        }
        if s == "kernel.hostname" {
            return bad("conflicts with the hostname field: set that instead");
        }
    }
    Ok(())
}

/// Device entries: a known type, absolute paths below `/dev` (in a user namespace a device is
/// bind-mounted from its host path).
fn devices(spec: &Spec) -> Result<()> {
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    rootfs::check_devices(list)?;
    for (i, d) in list.iter().enumerate() {
        let p = d.path();
        let below_dev = p.starts_with("/dev")
            && p != Path::new("/dev")
            && !p.components().any(|c| c == Component::ParentDir);
        if !below_dev {
            return Err(Error::invalid(format!(
                "linux.devices[{i}].path: {} is not below /dev",
                p.display()
            )));
        }
    }
    Ok(())
}

fn masked_readonly_paths(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    for (field, list) in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        for p in list.iter().flatten() {
            if !p.starts_with('/') || p.contains('\0') {
                return Err(Error::invalid(format!(
                    "{field}: {p:?} is not an absolute path"
                )));
            }
        }
    }
    Ok(())
}

fn rootfs_propagation(spec: &Spec) -> Result<()> {
    rootfs::rootfs_propagation(spec).map(|_| ())
}

/// cgroupsPath (a path that is not a root, or systemd's `slice:prefix:name`) and resources the
/// host cannot take.
fn cgroups(spec: &Spec) -> Result<()> {
    let linux = linux(spec)?;
    if let Some(cg) = linux.cgroups_path() {
        let text = cg.to_string_lossy();
        if text.contains(':') && !text.starts_with('/') {
            crate::cgroups::systemd::parse(&text).map_err(|e| in_field("linux.cgroupsPath", e))?;
        } else {
            crate::cgroups::paths::parse_cgroups_path(Some(cg), "-")
                .map_err(|e| in_field("linux.cgroupsPath", e))?;
        }
    }
    let Some(res) = linux.resources() else {
        return Ok(());
    };
    if let Some(mem) = res.memory() {
        let bad = |v: Option<i64>| v.is_some_and(|v| v < -1);
        if bad(mem.limit()) || bad(mem.swap()) || bad(mem.reservation()) {
            return Err(Error::invalid(
                "linux.resources.memory: limits are bytes or -1 (unlimited)",
            ));
        }
        if let (Some(l), Some(s)) = (mem.limit(), mem.swap()) {
            if l > 0 && s > 0 && s < l {
                return Err(Error::invalid(format!(
                    "linux.resources.memory: swap {s} (memory+swap) is below the limit {l}"
                )));
            }
        }
    }
    for (i, h) in res.hugepage_limits().iter().flatten().enumerate() {
        let size = h.page_size();
        if !hugepage_size_known(size) {
            return Err(Error::invalid(format!(
                "linux.resources.hugepageLimits[{i}].pageSize: {size:?} is not a huge page size \
                 of this host"
            )));
        }
    }
    if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        for key in u.keys() {
            crate::cgroups::convert::check_unified_key(key)
                .map_err(|e| in_field("linux.resources.unified", e))?;
        }
    }
    Ok(())
}

/// An error of another module, prefixed with the field it is about (once "invalid config").
fn in_field(field: &str, e: Error) -> Error {
    match e {
        Error::InvalidConfig(m) => Error::invalid(format!("{field}: {m}")),
        other => Error::invalid(format!("{field}: {other}")),
    }
}

/// "2MB" → /sys/kernel/mm/hugepages/hugepages-2048kB exists.
fn hugepage_size_known(size: &str) -> bool {
    let (num, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
    let Ok(n) = num.parse::<u64>() else {
        return false;
    };
    let kb = match unit {
        "KB" | "kB" => n,
        "MB" => n * 1024,
        "GB" => n * 1024 * 1024,
        _ => return false,
    };
    Path::new(&format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB")).is_dir()
}

/// Hook paths absolute, env entries KEY=value, timeouts positive.
fn hooks(spec: &Spec) -> Result<()> {
    let Some(h) = spec.hooks() else {
        return Ok(());
    };
    let stages = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ];
    for (stage, list) in stages {
        for (i, hook) in list.iter().flatten().enumerate() {
            let field = format!("hooks.{stage}[{i}]");
            if !hook.path().is_absolute() {
                return Err(Error::invalid(format!(
                    "{field}.path: {:?} is not absolute",
                    hook.path()
                )));
            }
            if let Some(t) = hook.timeout().filter(|t| *t <= 0) {
                return Err(Error::invalid(format!(
                    "{field}.timeout: {t} must be above 0"
                )));
            }
            for (j, kv) in hook.env().iter().flatten().enumerate() {
                if kv.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                    return Err(Error::invalid(format!(
                        "{field}.env[{j}]: {kv:?} is not of the form KEY=value"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn seccomp_rule(spec: &Spec) -> Result<()> {
    match linux(spec)?.seccomp() {
        Some(profile) => seccomp::validate(profile),
        None => Ok(()),
    }
}

/// Drop the capability names runc does not know from a process's JSON (`capabilities.<set>`
/// arrays), as runc ignores them with a warning; returns the names dropped. Only exact
/// `CAP_*` names of the kernel's list are kept.
pub fn drop_unknown_capabilities(process: &mut serde_json::Value) -> Vec<String> {
    let mut dropped = Vec::new();
    let Some(sets) = process
        .get_mut("capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return dropped;
    };
    for list in sets.values_mut() {
        if let Some(arr) = list.as_array_mut() {
            arr.retain(|v| {
                let known = v.as_str().is_some_and(|s| {
                    s.starts_with("CAP_")
                        && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                        && serde_json::from_value::<oci_spec::runtime::Capability>(v.clone())
                            .is_ok()
                });
                if !known && !dropped.contains(&v.to_string()) {
                    dropped.push(v.to_string());
                }
                known
            });
        }
    }
    dropped
}

/// Lexically clean an absolute path (`.` dropped, `..` pops).
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

#[cfg(test)]
mod tests;
