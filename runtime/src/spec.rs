//! Loading and validating a bundle's `config.json`. Everything the runtime cannot honour is
//! refused here, with the field's name, before anything is created: nothing is silently ignored.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{namespaces, seccomp, Error, Result};

/// Read `<bundle>/config.json`, make the rootfs path absolute and validate the spec.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path)
        .map_err(|e| Error::invalid(format!("read {}: {e}", path.display())))?;
    let mut spec: Spec = serde_json::from_slice(&text).map_err(|e| {
        // serde names no field for a bad enum value: say which seccomp field it is.
        let why = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| seccomp::explain_parse_error(&v));
        Error::invalid(why.unwrap_or_else(|| format!("parse {}: {e}", path.display())))
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root: missing"))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(Error::invalid(format!(
            "root.path: {} is not a directory",
            rootfs.display()
        )));
    }
    spec.canonicalize_rootfs(bundle)
        .map_err(|e| Error::invalid(format!("root.path: {e}")))?;
    validate(&spec)?;
    Ok(spec)
}

/// Refuse what the runtime does not support or what cannot work.
pub fn validate(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process: missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid("process.args: must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(format!(
            "process.cwd: {:?} is not an absolute path",
            process.cwd()
        )));
    }
    refuse(process.io_priority().is_some(), "process.ioPriority")?;
    refuse(process.scheduler().is_some(), "process.scheduler")?;
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        && selinux_enabled()
    {
        return Err(Error::invalid(
            "process.selinuxLabel: SELinux is not supported",
        ));
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
        && apparmor_enabled()
    {
        return Err(Error::invalid(
            "process.apparmorProfile: AppArmor is not supported yet",
        ));
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(Error::invalid(format!(
                "mounts: destination {:?} is not absolute",
                m.destination()
            )));
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux: missing"))?;
    if let Some(profile) = linux.seccomp() {
        seccomp::validate(profile)?;
    }
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
    if let Some(cg) = linux.cgroups_path() {
        let text = cg.to_string_lossy();
        if text.contains(':') && !text.starts_with('/') {
            // A systemd `slice:prefix:name` path: checked whole before anything is made.
            crate::cgroups::systemd::parse(&text)
                .map_err(|e| Error::invalid(format!("linux.cgroupsPath: {e}")))?;
        }
    }
    let plan = namespaces::plan(linux)?;
    if plan.clone_flags & libc::CLONE_NEWNS == 0
        && !plan.join.iter().any(|j| j.flag == libc::CLONE_NEWNS)
    {
        return Err(Error::invalid(
            "linux.namespaces: a mount namespace is required",
        ));
    }
    let ns = linux.namespaces().as_deref().unwrap_or_default();
    let has = |t: LinuxNamespaceType| ns.iter().any(|n| n.typ() == t);
    if !has(LinuxNamespaceType::Uts) && spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) {
        return Err(Error::invalid(
            "hostname: setting it needs a new uts namespace",
        ));
    }
    Ok(())
}

fn refuse(present: bool, field: &str) -> Result<()> {
    if present {
        return Err(Error::invalid(format!("{field}: not supported")));
    }
    Ok(())
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_from(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("spec parses")
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    #[test]
    fn minimal_spec_is_valid() {
        validate(&spec_from(minimal())).unwrap();
    }

    #[test]
    fn seccomp_is_validated() {
        let mut j = minimal();
        j["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]});
        validate(&spec_from(j.clone())).unwrap();
        j["linux"]["seccomp"]["syscalls"][0]["action"] = serde_json::json!("SCMP_ACT_NOTIFY");
        let err = validate(&spec_from(j)).unwrap_err().to_string();
        assert!(err.contains("linux.seccomp.syscalls[0].action"), "{err}");
    }

    #[test]
    fn seccomp_unknown_action_names_the_field_at_load() {
        let dir = std::env::temp_dir().join(format!("myshim-spec-scmp-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let mut j = minimal();
        j["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_FOO"}]});
        std::fs::write(dir.join("config.json"), j.to_string()).unwrap();
        let err = load(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            err.contains(r#"linux.seccomp.syscalls[0].action: unknown action "SCMP_ACT_FOO""#),
            "{err}"
        );
    }

    #[test]
    fn missing_mount_namespace_is_refused() {
        let mut j = minimal();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        let err = validate(&spec_from(j)).unwrap_err().to_string();
        assert!(err.contains("mount namespace"), "{err}");
    }

    #[test]
    fn empty_args_and_relative_cwd_are_refused() {
        let mut j = minimal();
        j["process"]["args"] = serde_json::json!([]);
        assert!(validate(&spec_from(j)).is_err());
        let mut j = minimal();
        j["process"]["cwd"] = serde_json::json!("tmp");
        let err = validate(&spec_from(j)).unwrap_err().to_string();
        assert!(err.contains("process.cwd"), "{err}");
    }

    #[test]
    fn systemd_cgroups_path_is_checked() {
        let mut j = minimal();
        j["linux"]["cgroupsPath"] = serde_json::json!("system.slice:myshim:abc");
        validate(&spec_from(j.clone())).unwrap();
        j["linux"]["cgroupsPath"] = serde_json::json!("nosuffix:myshim:abc");
        let err = validate(&spec_from(j)).unwrap_err().to_string();
        assert!(err.contains("linux.cgroupsPath"), "{err}");
    }

    #[test]
    fn broken_json_names_the_file() {
        let dir = std::env::temp_dir().join(format!("myshim-spec-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("config.json"), b"{ not json").unwrap();
        let err = load(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("config.json"), "{err}");
    }
}
