//! Loading and validating a bundle's `config.json`. Everything the runtime cannot honour is
//! refused here, with the field's name, before anything is created: nothing is silently ignored.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::{seccomp, validate, Error, Result};

/// Largest config.json accepted: it travels to the init in one message of the init pipe.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Read `<bundle>/config.json`, make the rootfs path absolute and validate the spec
/// ([`crate::validate`]). Unknown capability names are dropped with a warning, as runc does.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let mut text = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut text))
        .map_err(|e| Error::invalid(format!("read {}: {e}", path.display())))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::invalid(format!(
            "{}: larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    let mut value: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::invalid(format!("parse {}: {e}", path.display())))?;
    if let Some(process) = value.get_mut("process") {
        let dropped = validate::drop_unknown_capabilities(process);
        if !dropped.is_empty() {
            log::warn!(
                "{}: ignoring unknown capabilities: {}",
                path.display(),
                dropped.join(", ")
            );
        }
    }
    let mut spec: Spec = serde_json::from_value(value.clone()).map_err(|e| {
        // serde names no field for a bad enum value: say which seccomp field it is.
        let why = seccomp::explain_parse_error(&value);
        Error::invalid(why.unwrap_or_else(|| format!("parse {}: {e}", path.display())))
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root: missing"))?;
    let rootfs = validate::rootfs(bundle, root.path())?;
    if let Some(root) = spec.root_mut() {
        root.set_path(rootfs);
    }
    validate(&spec)?;
    Ok(spec)
}

/// Refuse what the runtime does not support or what cannot work: every rule of
/// [`crate::validate::RULES`].
pub fn validate(spec: &Spec) -> Result<()> {
    validate::spec(spec)
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
