//! The OCI runtime features document of this runtime (the JSON `runc features` prints, see the
//! runtime-spec's `features.md`): what a caller may ask of it. The shim's `-info` answer carries
//! it, and so will the command line's `features`. Its annotations say whether checkpoint and
//! restore can work (criu found and recent enough, see [`crate::checkpoint::version`]).

use serde_json::{json, Value};

use crate::rootfs::options::KNOWN_OPTIONS;

/// The oldest and newest runtime-spec versions this runtime accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// See [`OCI_VERSION_MIN`].
pub const OCI_VERSION_MAX: &str = "1.2.0";

/// Hooks run, in the spec's names.
const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Namespaces a container can have (time namespaces are refused).
const NAMESPACES: &[&str] = &["cgroup", "ipc", "mount", "network", "pid", "user", "uts"];

/// seccomp actions, operators, architectures and flags the filter compiler takes.
const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
const SECCOMP_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Architectures a profile may list (libseccomp translates each; `seccomp/enosys.rs` knows
/// their audit numbers).
const SECCOMP_ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// Every capability name the kernel headers this build knows define (`CAP_CHOWN`, ...).
fn capabilities() -> Vec<String> {
    let mut all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    all.sort();
    all
}

/// The features document.
pub fn features() -> Value {
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": KNOWN_OPTIONS,
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": capabilities(),
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": true,
                "systemdUser": false,
                "rdma": false,
            },
            "seccomp": {
                "enabled": true,
                "actions": SECCOMP_ACTIONS,
                "operators": SECCOMP_OPERATORS,
                "archs": SECCOMP_ARCHS,
                "knownFlags": SECCOMP_FLAGS,
                "supportedFlags": SECCOMP_FLAGS,
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } },
        },
        "annotations": criu_annotations(),
    })
}

/// Whether checkpoint/restore can work here (criu found, recent enough) and with which criu:
/// runc's `org.opencontainers.runc.checkpoint.enabled`, and `myshim.criu` (the version, or
/// why criu cannot be used).
fn criu_annotations() -> Value {
    let (enabled, criu) = match crate::checkpoint::check() {
        Ok(c) => ("true", format!("{} {}", c.path.display(), c.version)),
        Err(e) => ("false", e.to_string()),
    };
    json!({
        "org.opencontainers.runc.checkpoint.enabled": enabled,
        "myshim.criu": criu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_parse_as_the_oci_type() {
        let doc = features();
        let parsed: oci_spec::runtime::Features =
            serde_json::from_value(doc.clone()).expect("an OCI features document");
        assert_eq!(parsed.oci_version_min(), OCI_VERSION_MIN);
        let linux = &doc["linux"];
        assert!(linux["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("user")));
        let caps = linux["capabilities"].as_array().unwrap();
        assert!(caps.contains(&json!("CAP_SYS_ADMIN")), "{caps:?}");
        assert!(doc["mountOptions"]
            .as_array()
            .unwrap()
            .contains(&json!("rbind")));
        assert_eq!(linux["seccomp"]["enabled"], json!(true));
        let criu = doc["annotations"]["myshim.criu"].as_str().unwrap();
        let enabled = doc["annotations"]["org.opencontainers.runc.checkpoint.enabled"].clone();
        if crate::checkpoint::version::find().is_none() {
            assert_eq!(enabled, json!("false"));
            assert!(criu.contains("CRIU unavailable"), "{criu}");
        }
    }
}
