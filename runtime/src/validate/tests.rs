//! One row per rule: a change to a valid spec and the error it must give (or none).

use serde_json::{json, Value};

use super::*;

fn base() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin"]},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "uts"},
                                 {"type": "ipc"}, {"type": "network"}]}
    })
}

fn with_ns(j: &mut Value, list: Value) {
    j["linux"]["namespaces"] = list;
}

type Patch = fn(&mut Value);

/// (what, change, expected error text or None when the spec stays valid)
const ROWS: &[(&str, Patch, Option<&str>)] = &[
    ("base spec is valid", |_| {}, None),
    (
        "process missing",
        |j| {
            j.as_object_mut().unwrap().remove("process");
        },
        Some("process: missing"),
    ),
    (
        "empty args",
        |j| j["process"]["args"] = json!([]),
        Some("process.args: must not be empty"),
    ),
    (
        "relative cwd",
        |j| j["process"]["cwd"] = json!("tmp"),
        Some("process.cwd"),
    ),
    (
        "env without =",
        |j| j["process"]["env"] = json!(["PATH=/bin", "FOO"]),
        Some("process.env[1]: \"FOO\" is not of the form KEY=value"),
    ),
    (
        "env with empty name",
        |j| j["process"]["env"] = json!(["=x"]),
        Some("process.env[0]: \"=x\" has an empty name"),
    ),
    (
        "env with NUL",
        |j| j["process"]["env"] = json!(["A=b\u{0}c"]),
        Some("process.env[0]: contains a NUL byte"),
    ),
    (
        "arg too long",
        |j| j["process"]["args"] = json!(["x".repeat(200_000)]),
        Some("process.args[0]: 200000 bytes"),
    ),
    (
        "uid -1",
        |j| j["process"]["user"]["uid"] = json!(4294967295u32),
        Some(
            "process.user.uid: 4294967295 is out of range (uids and gids must be in 0-2147483647)",
        ),
    ),
    (
        "gid -1",
        |j| {
            j["process"]["user"] = json!({"uid": 1000, "gid": 4294967295u32});
        },
        Some("process.user.gid: 4294967295 is out of range"),
    ),
    (
        "additional gid -1",
        |j| j["process"]["user"]["additionalGids"] = json!([10, 4294967295u32]),
        Some("process.user.additionalGids[1]: 4294967295 is out of range"),
    ),
    (
        "uid 2^31-1 is fine",
        |j| j["process"]["user"]["uid"] = json!(2147483647u32),
        None,
    ),
    (
        "rlimit soft above hard",
        |j| j["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]),
        Some("process.rlimits: RlimitNofile soft limit 10 is above its hard limit 5"),
    ),
    (
        "oomScoreAdj out of range",
        |j| j["process"]["oomScoreAdj"] = json!(5000),
        Some("process.oomScoreAdj: 5000"),
    ),
    (
        "ioPriority",
        |j| j["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE"}),
        Some("process.ioPriority: not supported"),
    ),
    (
        "uid not mapped in user ns",
        |j| {
            j["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            j["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1000}]);
            j["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1000}]);
            j["process"]["user"]["uid"] = json!(5000);
        },
        Some("process.user.uid: 5000 is not mapped in linux.uidMappings"),
    ),
    (
        "mapped ids are fine",
        |j| {
            j["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            j["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1000}]);
            j["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 1000}]);
            j["process"]["user"] = json!({"uid": 999, "gid": 0, "additionalGids": [5]});
        },
        None,
    ),
    (
        "intelRdt",
        |j| j["linux"]["intelRdt"] = json!({"closID": "x"}),
        Some("linux.intelRdt: not supported"),
    ),
    (
        "relative mount destination",
        |j| j["mounts"] = json!([{"destination": "mnt", "type": "tmpfs", "source": "tmpfs"}]),
        Some("mounts[0].destination: \"mnt\" is not absolute"),
    ),
    (
        "bind mount with data",
        |j| j["mounts"] = json!([{"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "mode=755"]}]),
        Some("mounts[0] (/mnt): a bind mount cannot have filesystem options (mode=755)"),
    ),
    (
        "NUL in mount destination",
        |j| j["mounts"] = json!([{"destination": "/a\u{0}b", "type": "tmpfs"}]),
        Some("mounts[0]: contains a NUL byte"),
    ),
    (
        "no mount namespace",
        |j| with_ns(j, json!([{"type": "pid"}])),
        Some("a mount namespace is required"),
    ),
    (
        "duplicate namespace",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "pid"}, {"type": "pid"}]),
            )
        },
        Some("appears twice"),
    ),
    (
        "namespace path not absolute",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "network", "path": "proc/1/ns/net"}]),
            )
        },
        Some("proc/1/ns/net: not an absolute path"),
    ),
    (
        "namespace path missing",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "network", "path": "/nonexistent/ns"}]),
            )
        },
        Some("/nonexistent/ns: No such file"),
    ),
    (
        "namespace path not nsfs",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "network", "path": "/etc/hostname"}]),
            )
        },
        Some("/etc/hostname: not a namespace file"),
    ),
    (
        "namespace path of another type",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/ipc"}]),
            )
        },
        Some("a namespace of another type"),
    ),
    (
        "id mappings without user ns",
        |j| j["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
        Some("given without a user namespace"),
    ),
    (
        "empty id mapping",
        |j| {
            j["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            j["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 0}]);
            j["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 10}]);
        },
        Some("linux.uidMappings[0]"),
    ),
    (
        "hostname without uts",
        |j| {
            with_ns(j, json!([{"type": "mount"}]));
            j["hostname"] = json!("h");
        },
        Some("hostname: setting it needs a uts namespace"),
    ),
    (
        "domainname without uts",
        |j| {
            with_ns(j, json!([{"type": "mount"}]));
            j["domainname"] = json!("d");
        },
        Some("domainname: setting it needs a uts namespace"),
    ),
    (
        "domainname in the host's uts ns",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "uts", "path": "/proc/self/ns/uts"}]),
            );
            j["domainname"] = json!("d");
        },
        Some("domainname: setting it needs a uts namespace"),
    ),
    (
        "hostname too long",
        |j| j["hostname"] = json!("h".repeat(65)),
        Some("hostname: "),
    ),
    (
        "sysctl not namespaced",
        |j| j["linux"]["sysctl"] = json!({"kernel.printk_ratelimit_burst": "17"}),
        Some(
            "linux.sysctl: \"kernel.printk_ratelimit_burst\" is not in a separate kernel namespace",
        ),
    ),
    (
        "sysctl net without netns",
        |j| {
            with_ns(j, json!([{"type": "mount"}]));
            j["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        },
        Some("needs a network namespace"),
    ),
    (
        "sysctl net in the host's netns",
        |j| {
            with_ns(
                j,
                json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/net"}]),
            );
            j["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        },
        Some("needs a network namespace"),
    ),
    (
        "sysctl ipc without ipc ns",
        |j| {
            with_ns(j, json!([{"type": "mount"}]));
            j["linux"]["sysctl"] = json!({"kernel.shmmax": "1"});
        },
        Some("needs an ipc namespace"),
    ),
    (
        "sysctl mqueue without ipc ns",
        |j| {
            with_ns(j, json!([{"type": "mount"}]));
            j["linux"]["sysctl"] = json!({"fs.mqueue.msg_max": "1"});
        },
        Some("needs an ipc namespace"),
    ),
    (
        "sysctl kernel.hostname",
        |j| j["linux"]["sysctl"] = json!({"kernel.hostname": "x"}),
        Some("conflicts with the hostname field"),
    ),
    (
        "sysctl user without user ns",
        |j| j["linux"]["sysctl"] = json!({"user.max_user_namespaces": "0"}),
        Some("needs a user namespace"),
    ),
    (
        "sysctl traversal",
        |j| j["linux"]["sysctl"] = json!({"net/../../kernel/x": "1"}),
        Some("is not a valid sysctl name"),
    ),
    (
        "namespaced sysctls are fine",
        |j| j["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10", "kernel.domainname": "d", "net/ipv4/conf/eth0.1/rp_filter": "0"}),
        None,
    ),
    (
        "device of type a",
        |j| j["linux"]["devices"] = json!([{"path": "/dev/x", "type": "a"}]),
        Some("type \"a\""),
    ),
    (
        "device outside /dev",
        |j| {
            j["linux"]["devices"] =
                json!([{"path": "/etc/shadow", "type": "c", "major": 1, "minor": 3}])
        },
        Some("linux.devices[0].path: /etc/shadow is not below /dev"),
    ),
    (
        "device path with ..",
        |j| {
            j["linux"]["devices"] =
                json!([{"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}])
        },
        Some("is not below /dev"),
    ),
    (
        "relative masked path",
        |j| j["linux"]["maskedPaths"] = json!(["proc/kcore"]),
        Some("linux.maskedPaths: \"proc/kcore\" is not an absolute path"),
    ),
    (
        "bad rootfsPropagation",
        |j| j["linux"]["rootfsPropagation"] = json!("sideways"),
        Some("rootfsPropagation \"sideways\""),
    ),
    (
        "systemd cgroupsPath that is not slice:prefix:name",
        |j| j["linux"]["cgroupsPath"] = json!("system.slice:myshim"),
        Some("linux.cgroupsPath"),
    ),
    (
        "root cgroupsPath",
        |j| j["linux"]["cgroupsPath"] = json!("/a/.."),
        Some("names the root cgroup"),
    ),
    (
        "memory limit below -1",
        |j| j["linux"]["resources"] = json!({"memory": {"limit": -5}}),
        Some("linux.resources.memory"),
    ),
    (
        "swap below memory",
        |j| j["linux"]["resources"] = json!({"memory": {"limit": 2000000, "swap": 1000000}}),
        Some("swap 1000000"),
    ),
    (
        "bogus hugepage size",
        |j| j["linux"]["resources"] = json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
        Some("hugepageLimits[0].pageSize: \"3MB\""),
    ),
    (
        "bad unified key",
        |j| j["linux"]["resources"] = json!({"unified": {"../x": "1"}}),
        Some("linux.resources.unified"),
    ),
    (
        "relative hook path",
        |j| j["hooks"] = json!({"prestart": [{"path": "../../bin/sh"}]}),
        Some("hooks.prestart[0].path: \"../../bin/sh\" is not absolute"),
    ),
    (
        "hook timeout 0",
        |j| j["hooks"] = json!({"poststop": [{"path": "/bin/true", "timeout": 0}]}),
        Some("hooks.poststop[0].timeout: 0"),
    ),
    (
        "hook env without =",
        |j| j["hooks"] = json!({"createRuntime": [{"path": "/bin/true", "env": ["X"]}]}),
        Some("hooks.createRuntime[0].env[0]"),
    ),
    (
        "seccomp checked",
        |j| j["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}),
        Some("linux.seccomp.syscalls[0].action"),
    ),
];

#[test]
fn each_rule_refuses_what_it_must() {
    let mut failures = Vec::new();
    for (what, patch, expected) in ROWS {
        let mut j = base();
        patch(&mut j);
        let got = match serde_json::from_value::<Spec>(j) {
            Ok(s) => spec(&s).err().map(|e| e.to_string()),
            Err(e) => Some(format!("parse: {e}")),
        };
        let ok = match (expected, &got) {
            (None, None) => true,
            (Some(want), Some(err)) => err.contains(want),
            _ => false,
        };
        if !ok {
            failures.push(format!("{what}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_capabilities_are_dropped_like_runc() {
    let mut p = json!({"capabilities": {
        "bounding": ["CAP_CHOWN", "CAP_UNKNOWN", "chown", "UNKNOWN_CAP"],
        "effective": ["CAP_KILL"]
    }});
    let dropped = drop_unknown_capabilities(&mut p);
    assert_eq!(p["capabilities"]["bounding"], json!(["CAP_CHOWN"]));
    assert_eq!(p["capabilities"]["effective"], json!(["CAP_KILL"]));
    assert_eq!(dropped, ["\"CAP_UNKNOWN\"", "\"chown\"", "\"UNKNOWN_CAP\""]);
}

#[test]
fn sysctl_keys_map_to_proc_sys() {
    assert_eq!(
        sysctl_dotted("net/ipv4/conf/eth0.1/rp_filter"),
        "net.ipv4.conf.eth0/1.rp_filter"
    );
    assert_eq!(
        sysctl_path("net/ipv4/conf/eth0.1/rp_filter"),
        Path::new("/proc/sys/net/ipv4/conf/eth0.1/rp_filter")
    );
    assert_eq!(
        sysctl_path("kernel.shmmax"),
        Path::new("/proc/sys/kernel/shmmax")
    );
}

#[test]
fn rootfs_must_be_a_real_directory() {
    let dir = std::env::temp_dir().join(format!("myshim-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("file"), b"").unwrap();
    std::os::unix::fs::symlink("rootfs", dir.join("link")).unwrap();
    let ok = rootfs(&dir, Path::new("rootfs"));
    let missing = rootfs(&dir, Path::new("nosuch")).unwrap_err().to_string();
    let file = rootfs(&dir, Path::new("file")).unwrap_err().to_string();
    let link = rootfs(&dir, Path::new("link")).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        ok.unwrap(),
        std::fs::canonicalize(std::env::temp_dir())
            .unwrap()
            .join(dir.file_name().unwrap())
            .join("rootfs")
    );
    assert!(
        missing.contains("root.path") && missing.contains("No such file"),
        "{missing}"
    );
    assert!(file.contains("is not a directory"), "{file}");
    assert!(link.contains("symlink"), "{link}");
}
