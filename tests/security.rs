//! Hostile specs through a real containerd: each is refused with an error naming the field, or
//! runs with a result that stays inside the container; nothing is left on the host (process,
//! mount, cgroup, state directory) and host sysctls, hostname and domainname are unchanged.
//! Then the CVE-2019-5736 class: no container process may get an fd of the host's runtime
//! binary while helpers run in the container.
//!
//! Run with `scripts/integration.sh -- security` (or `make integration`).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// What a hostile spec must give.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// ctr fails and its stderr has this text (checked on myshim; on runc only the failure).
    Refused(&'static str),
    /// The container runs and exits 0 with this text in its stdout.
    Runs(&'static str),
}

/// What a row may need besides the spec.
struct Ctx {
    id: String,
    /// A private copy of the busybox rootfs (for rows that plant symlinks), if the row asked.
    rootfs: Option<PathBuf>,
}

impl Ctx {
    /// A host path unique to this row (must not exist after it).
    fn host_path(&self, tag: &str) -> PathBuf {
        PathBuf::from(format!("/tmp/myshim-{tag}-{}", self.id))
    }
}

type Patch = fn(&mut Value, &Ctx);

struct Row {
    name: &'static str,
    args: &'static [&'static str],
    /// Give the row its own rootfs copy, set up by `plant` (symlinks...).
    plant: Option<fn(&Path, &Ctx)>,
    patch: Patch,
    expect: Expect,
    /// Host paths (from [`Ctx::host_path`] tags) that must not exist afterwards.
    host_absent: &'static [&'static str],
}

const TRUE: &[&str] = &["true"];

fn row(name: &'static str, patch: Patch, expect: Expect) -> Row {
    Row {
        name,
        args: TRUE,
        plant: None,
        patch,
        expect,
        host_absent: &[],
    }
}

fn remove_ns(j: &mut Value, typ: &str) {
    j["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != typ);
}

fn set_ns_path(j: &mut Value, typ: &str, path: &str) {
    remove_ns(j, typ);
    j["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": typ, "path": path}));
}

fn push_mount(j: &mut Value, m: Value) {
    j["mounts"].as_array_mut().expect("mounts").push(m);
}

/// `major, minor` of the block device holding `/` on the host.
fn root_disk() -> (u64, u64) {
    let dev = fs::metadata("/").expect("stat /").dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

fn rows() -> Vec<Row> {
    use Expect::*;
    vec![
        // --- the issue's table ---
        row(
            "sysctl outside any namespace",
            |j, _| j["linux"]["sysctl"] = json!({"kernel.printk_ratelimit_burst": "17"}),
            Refused("linux.sysctl: \"kernel.printk_ratelimit_burst\" is not in a separate kernel namespace"),
        ),
        row(
            "uid and gid 2^32-1",
            |j, _| j["process"]["user"] = json!({"uid": 4294967295u32, "gid": 4294967295u32}),
            Refused("process.user.uid: 4294967295 is out of range (uids and gids must be in 0-2147483647)"),
        ),
        row(
            "uid 1000, gid 2^32-1",
            |j, _| j["process"]["user"] = json!({"uid": 1000, "gid": 4294967295u32}),
            Refused("process.user.gid: 4294967295 is out of range"),
        ),
        row(
            "domainname without a uts namespace",
            |j, _| {
                remove_ns(j, "uts");
                j["domainname"] = json!("evil.example");
            },
            Refused("domainname: setting it needs a uts namespace of the container's own"),
        ),
        row(
            "env entry without =",
            |j, _| j["process"]["env"] = json!([CONTAINER_PATH, "NOEQUALS"]),
            Refused("process.env[1]: \"NOEQUALS\" is not of the form KEY=value"),
        ),
        // --- ids ---
        row(
            "additional gid 2^32-1",
            |j, _| j["process"]["user"]["additionalGids"] = json!([4294967295u32]),
            Refused("process.user.additionalGids[0]: 4294967295 is out of range"),
        ),
        row(
            "id mappings without a user namespace",
            |j, _| {
                j["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}])
            },
            Refused("given without a user namespace"),
        ),
        row(
            "uid unmapped in its user namespace",
            |j, _| {
                j["linux"]["namespaces"]
                    .as_array_mut()
                    .expect("namespaces")
                    .push(json!({"type": "user"}));
                let map = json!([{"containerID": 0, "hostID": 200000, "size": 1000}]);
                j["linux"]["uidMappings"] = map.clone();
                j["linux"]["gidMappings"] = map;
                j["process"]["user"] = json!({"uid": 4000, "gid": 0});
            },
            Refused("process.user.uid: 4000 is not mapped"),
        ),
        // --- uts ---
        row(
            "hostname without a uts namespace",
            |j, _| {
                remove_ns(j, "uts");
                j["hostname"] = json!("evil");
            },
            Refused("hostname: setting it needs a uts namespace"),
        ),
        row(
            "domainname in the host's uts namespace joined by path",
            |j, _| {
                set_ns_path(j, "uts", &format!("/proc/{}/ns/uts", std::process::id()));
                j["domainname"] = json!("evil.example");
            },
            Refused("domainname: setting it needs a uts namespace"),
        ),
        row(
            "domainname of 65 bytes",
            |j, _| j["domainname"] = json!("d".repeat(65)),
            Refused("domainname: "),
        ),
        Row {
            args: &["cat", "/proc/sys/kernel/domainname"],
            ..row(
                "domainname in its own uts namespace",
                |j, _| j["domainname"] = json!("inside.example"),
                Runs("inside.example"),
            )
        },
        // --- sysctls ---
        row(
            "net sysctl without a network namespace",
            |j, _| {
                remove_ns(j, "network");
                j["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            },
            Refused("\"net.ipv4.ip_forward\" needs a network namespace of the container's own"),
        ),
        row(
            "net sysctl in the host's network namespace joined by path",
            |j, _| {
                set_ns_path(j, "network", &format!("/proc/{}/ns/net", std::process::id()));
                j["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            },
            Refused("needs a network namespace of the container's own"),
        ),
        row(
            "ipc sysctl without an ipc namespace",
            |j, _| {
                remove_ns(j, "ipc");
                j["linux"]["sysctl"] = json!({"kernel.shmmax": "4096"});
            },
            Refused("\"kernel.shmmax\" needs an ipc namespace"),
        ),
        row(
            "sysctl key climbing out of /proc/sys/net",
            |j, _| j["linux"]["sysctl"] = json!({"net/../kernel/printk_ratelimit_burst": "17"}),
            Refused("is not a valid sysctl name"),
        ),
        row(
            "user sysctl without a user namespace",
            |j, _| j["linux"]["sysctl"] = json!({"user.max_user_namespaces": "0"}),
            Refused("needs a user namespace"),
        ),
        row(
            "kernel.hostname sysctl",
            |j, _| j["linux"]["sysctl"] = json!({"kernel.hostname": "evil"}),
            Refused("conflicts with the hostname field"),
        ),
        Row {
            args: &["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni"],
            ..row(
                "namespaced sysctls in its own namespaces",
                |j, _| {
                    j["linux"]["sysctl"] =
                        json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"})
                },
                Runs("1\n1234\n"),
            )
        },
        // --- /proc and /sys from inside ---
        Row {
            args: &[
                "sh",
                "-c",
                "w=0; try() { (echo \"$2\" > \"$1\") 2>/dev/null && { echo WROTE $1; w=1; }; }; \
                 try /proc/sys/kernel/printk_ratelimit_burst \"$(cat /proc/sys/kernel/printk_ratelimit_burst)\"; \
                 try /proc/sysrq-trigger h; try /sys/kernel/mm/ksm/run \"$(cat /sys/kernel/mm/ksm/run)\"; \
                 try /proc/sys/kernel/domainname evil; [ $w = 0 ] && echo NOWRITE",
            ],
            ..row("writes to /proc and /sys", |_, _| {}, Runs("NOWRITE"))
        },
        // --- mounts ---
        row(
            "relative mount destination",
            |j, _| push_mount(j, json!({"destination": "mnt", "type": "tmpfs", "source": "tmpfs"})),
            Refused("mounts[")
        ),
        row(
            "bind mount with filesystem options",
            |j, _| {
                push_mount(
                    j,
                    json!({"destination": "/mnt", "type": "bind", "source": "/tmp",
                           "options": ["rbind", "mode=777"]}),
                )
            },
            Refused("a bind mount cannot have filesystem options (mode=777)"),
        ),
        Row {
            args: &["sh", "-c", "grep -c myshim-dotdot /proc/mounts"],
            plant: Some(|_, _| {}),
            host_absent: &["dotdot"],
            ..row(
                "mount destination climbing out with ..",
                |j, c| {
                    let dest = format!("/../../../../..{}", c.host_path("dotdot").display());
                    push_mount(j, json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}))
                },
                Runs("1"),
            )
        },
        Row {
            args: &["sh", "-c", "grep -c myshim-abslink /proc/mounts"],
            plant: Some(|root, c| {
                std::os::unix::fs::symlink(c.host_path("abslink"), root.join("abslink"))
                    .expect("plant symlink");
            }),
            host_absent: &["abslink"],
            ..row(
                "mount destination through an absolute symlink",
                |j, _| {
                    push_mount(
                        j,
                        json!({"destination": "/abslink/sub", "type": "tmpfs", "source": "tmpfs"}),
                    )
                },
                Runs("1"),
            )
        },
        Row {
            args: &["sh", "-c", "grep -c myshim-rellink /proc/mounts"],
            plant: Some(|root, c| {
                let target = format!("../../../../../../..{}", c.host_path("rellink").display());
                std::os::unix::fs::symlink(target, root.join("etc/rellink"))
                    .expect("plant symlink");
            }),
            host_absent: &["rellink"],
            ..row(
                "mount destination through a relative symlink",
                |j, _| {
                    push_mount(
                        j,
                        json!({"destination": "/etc/rellink", "type": "tmpfs", "source": "tmpfs"}),
                    )
                },
                Runs("1"),
            )
        },
        // --- devices ---
        row(
            "device entry outside /dev",
            |j, _| {
                j["linux"]["devices"] =
                    json!([{"path": "/etc/shadow", "type": "c", "major": 1, "minor": 3}])
            },
            Refused("linux.devices[0].path: /etc/shadow is not below /dev"),
        ),
        row(
            "device entry climbing out of /dev",
            |j, _| {
                j["linux"]["devices"] =
                    json!([{"path": "/dev/../etc/passwd", "type": "c", "major": 1, "minor": 3}])
            },
            Refused("is not below /dev"),
        ),
        Row {
            args: &[
                "sh",
                "-c",
                "head -c 512 /dev/hostdisk >/dev/null 2>&1 && echo READ || echo DENIED",
            ],
            ..row(
                "host disk node without a cgroup rule",
                |j, _| {
                    let (major, minor) = root_disk();
                    j["linux"]["devices"] = json!([{"path": "/dev/hostdisk", "type": "b",
                        "major": major, "minor": minor, "fileMode": 438}]);
                },
                Runs("DENIED"),
            )
        },
        // --- resources ---
        row(
            "huge page size the host does not have",
            |j, _| {
                j["linux"]["resources"]["hugepageLimits"] =
                    json!([{"pageSize": "3MB", "limit": 1}])
            },
            Refused("hugepageLimits[0].pageSize: \"3MB\""),
        ),
        row(
            "rlimit soft above hard",
            |j, _| {
                j["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 1024}])
            },
            Refused("soft limit 4096 is above its hard limit 1024"),
        ),
        row(
            "rlimit nofile beyond the kernel's nr_open",
            |j, _| {
                j["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE",
                    "soft": 1u64 << 40, "hard": 1u64 << 40}])
            },
            Refused("set rlimit RlimitNofile"),
        ),
        Row {
            args: &["sh", "-c", "ulimit -c"],
            ..row(
                "rlimit core unlimited",
                |j, _| {
                    j["process"]["rlimits"] = json!([{"type": "RLIMIT_CORE",
                        "soft": u64::MAX, "hard": u64::MAX}])
                },
                Runs("unlimited"),
            )
        },
        row(
            "oomScoreAdj out of range",
            |j, _| j["process"]["oomScoreAdj"] = json!(5000),
            Refused("process.oomScoreAdj: 5000"),
        ),
        row(
            "cgroupsPath naming the root",
            |j, _| j["linux"]["cgroupsPath"] = json!("/myshim-test/.."),
            Refused("names the root cgroup"),
        ),
        // --- hooks ---
        row(
            "relative hook path",
            |j, _| j["hooks"] = json!({"prestart": [{"path": "../../../bin/sh"}]}),
            Refused("hooks.prestart[0].path: \"../../../bin/sh\" is not absolute"),
        ),
        row(
            "hook that does not exist",
            |j, _| j["hooks"] = json!({"prestart": [{"path": "/nonexistent-myshim-hook"}]}),
            Refused("prestart hook /nonexistent-myshim-hook"),
        ),
        // --- sizes ---
        row(
            "one argument longer than execve takes",
            |j, _| j["process"]["args"] = json!(["echo", "x".repeat(200_000)]),
            Refused("process.args[1]: 200000 bytes"),
        ),
        row(
            "environment larger than execve takes",
            |j, _| {
                let mut env = vec![CONTAINER_PATH.to_string()];
                env.extend((0..24).map(|i| format!("V{i}={}", "y".repeat(100_000))));
                j["process"]["env"] = json!(env);
            },
            Refused("process.env: "),
        ),
        // --- namespaces ---
        row(
            "namespace path that is not a namespace",
            |j, _| set_ns_path(j, "network", "/etc/hostname"),
            Refused("/etc/hostname: not a namespace file"),
        ),
        row(
            "namespace path of another type",
            |j, _| set_ns_path(j, "network", &format!("/proc/{}/ns/ipc", std::process::id())),
            Refused("a namespace of another type"),
        ),
        row(
            "namespace path that does not exist",
            |j, _| set_ns_path(j, "network", "/nonexistent/ns/net"),
            Refused("/nonexistent/ns/net: No such file"),
        ),
        // --- rootfs ---
        Row {
            plant: Some(|root, _| {
                let link = root.with_file_name(format!(
                    "{}-link",
                    root.file_name().expect("name").to_string_lossy()
                ));
                std::os::unix::fs::symlink(root, link).expect("plant rootfs link");
            }),
            ..row(
                "rootfs reached through a symlink",
                |j, c| {
                    let root = c.rootfs.as_ref().expect("rootfs copy");
                    j["root"]["path"] = json!(format!("{}-link", root.display()));
                },
                Refused("root.path: "),
            )
        },
        // --- capabilities ---
        Row {
            args: &["sh", "-c", "grep CapBnd /proc/self/status"],
            ..row(
                "unknown capability names are ignored, as runc does",
                |j, _| {
                    j["process"]["capabilities"] = json!({"bounding": ["CAP_KILL", "CAP_BOGUS"],
                        "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]})
                },
                Runs("CapBnd:\t0000000000000020"),
            )
        },
    ]
}

/// Rows where myshim is stricter than runc 1.1 (Debian 12's), or runc 1.1 does not know the
/// field (domainname): skipped when the tests run on runc.
const STRICTER_THAN_RUNC_1_1: &[&str] = &[
    "domainname without a uts namespace",
    "id mappings without a user namespace",
    "domainname in the host's uts namespace joined by path",
    "domainname of 65 bytes",
    "domainname in its own uts namespace",
    "relative mount destination",
    "bind mount with filesystem options",
    "device entry outside /dev",
    "device entry climbing out of /dev",
];

/// Host values no container may change.
fn host_values() -> Vec<(String, String)> {
    [
        "/proc/sys/kernel/printk_ratelimit_burst",
        "/proc/sys/kernel/domainname",
        "/proc/sys/kernel/hostname",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/shmmax",
        "/proc/sys/kernel/shmmni",
        "/proc/sys/user/max_user_namespaces",
    ]
    .iter()
    .map(|p| (p.to_string(), fs::read_to_string(p).unwrap_or_default()))
    .collect()
}

/// Run one row; `Err` says what went wrong.
fn run_row(r: &Row) -> Result<(), String> {
    let id = unique_id("sec");
    let _g = Guard(id.clone());
    let mut ctx = Ctx {
        id: id.clone(),
        rootfs: None,
    };
    if let Some(plant) = r.plant {
        let copy = env().spec_dir.join(format!("{id}-rootfs"));
        let st = Command::new("cp")
            .arg("-a")
            .arg(&env().rootfs)
            .arg(&copy)
            .status()
            .map_err(|e| format!("cp: {e}"))?;
        if !st.success() {
            return Err("cp -a rootfs failed".into());
        }
        plant(&copy, &ctx);
        ctx.rootfs = Some(copy);
    }
    let mut spec = spec_for(&id, r.args);
    if let Some(root) = &ctx.rootfs {
        spec["root"]["path"] = json!(root.display().to_string());
    }
    (r.patch)(&mut spec, &ctx);
    let out = run_config_rm(&id, &spec);
    let verdict = match r.expect {
        Expect::Refused(text) => {
            if out.code == 0 {
                Err(format!("ran (exit 0), expected refusal {text:?}: {out:?}"))
            } else if testing_myshim() && !out.stderr.contains(text) {
                Err(format!("stderr lacks {text:?}: {out:?}"))
            } else {
                Ok(())
            }
        }
        Expect::Runs(text) => {
            if out.code != 0 || !out.stdout.contains(text) {
                Err(format!("expected exit 0 and {text:?} in stdout: {out:?}"))
            } else {
                Ok(())
            }
        }
    };
    // ctr run --rm removes the container when the task ran; when create failed it stays.
    let _ = ctr(&["containers", "rm", &id]);
    let left = poll(CLEANUP_TIMEOUT, || {
        let l = leftovers(&id);
        l.is_empty().then_some(())
    });
    let mut problems: Vec<String> = verdict.err().into_iter().collect();
    if left.is_none() {
        problems.push(format!("left behind: {:?}", leftovers(&id)));
    }
    for tag in r.host_absent {
        let p = ctx.host_path(tag);
        if p.exists() {
            problems.push(format!("{} was created on the host", p.display()));
            let _ = fs::remove_dir_all(&p);
        }
    }
    if let Some(root) = &ctx.rootfs {
        let _ = fs::remove_dir_all(root);
        let _ = fs::remove_file(format!("{}-link", root.display()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", problems.join("\n"), containerd_log(&id)))
    }
}

/// Every hostile spec of [`rows`], a few at a time.
#[test]
fn hostile_specs_are_refused_or_stay_inside() {
    let before = host_values();
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|r| testing_myshim() || !STRICTER_THAN_RUNC_1_1.contains(&r.name))
        .collect();
    let mut failures = Vec::new();
    for chunk in rows.chunks(6) {
        let results: Vec<(&str, Result<(), String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|r| (r.name, s.spawn(move || run_row(r))))
                .collect();
            handles
                .into_iter()
                .map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err("panicked".into()))))
                .collect()
        });
        for (name, res) in results {
            if let Err(e) = res {
                failures.push(format!("[{name}] {e}"));
            }
        }
    }
    let after = host_values();
    for ((path, b), (_, a)) in before.iter().zip(&after) {
        if a != b {
            failures.push(format!("host {path} changed: {b:?} -> {a:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

/// A spec naming a cgroup that holds a host process is refused, and that process lives on (runc:
/// "container's cgroup is not empty"; joining it would let delete kill the host's process).
#[test]
fn busy_cgroup_is_refused_and_its_process_survives() {
    // runc 1.1 still accepts a non-empty cgroup (1.2 refuses it).
    if !testing_myshim() {
        return;
    }
    let id = unique_id("busycg");
    let _g = Guard(id.clone());
    let name = format!("myshim-victim-{id}");
    let mut victim = Command::new("sleep")
        .arg("120")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let mut dirs = Vec::new();
    // every v1 hierarchy (and the unified one of a hybrid host), or the one cgroup v2 root
    let roots: Vec<PathBuf> = if cgroup_v2() {
        vec![PathBuf::from("/sys/fs/cgroup")]
    } else {
        fs::read_dir("/sys/fs/cgroup")
            .expect("read /sys/fs/cgroup")
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    for p in roots {
        if p.is_symlink() || !p.join("cgroup.procs").exists() {
            continue;
        }
        let d = p.join(&name);
        if fs::create_dir(&d).is_ok() {
            let _ = fs::write(d.join("cgroup.procs"), victim.id().to_string());
            dirs.push(d);
        }
    }
    let mut spec = spec_for(&id, &["true"]);
    spec["linux"]["cgroupsPath"] = json!(format!("/{name}"));
    let out = run_config_rm(&id, &spec);
    let alive = process_alive(victim.id());
    let _ = victim.kill();
    let _ = victim.wait();
    // The cgroup directories are the test's: move nothing, remove them once the victim is gone.
    for d in &dirs {
        let _ = poll(Duration::from_secs(5), || fs::remove_dir(d).ok());
    }
    let _ = ctr(&["containers", "rm", &id]);
    assert_ne!(out.code, 0, "{out:?}");
    if testing_myshim() {
        assert!(out.stderr.contains("already has 1 process(es)"), "{out:?}");
    }
    assert!(alive, "the host process in the named cgroup was killed");
    assert_nothing_left(&id);
}

/// The runtime binary containerd runs for this test: device and inode.
fn host_binary() -> (PathBuf, u64, u64) {
    let bin_dir = fs::read_to_string(env().dir.join("bin_dir")).expect("bin_dir");
    let path = Path::new(bin_dir.trim()).join("containerd-shim-myshim-v2");
    let m = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, m.dev(), m.ino())
}

/// The watcher: for every process but itself, open `/proc/<pid>/exe` for reading (and try
/// read-write), and note the device:inode of what it got; stops when /stop appears.
const WATCHER: &str = r#"
echo '#!/proc/self/exe' > /evil.sh; chmod 755 /evil.sh
: > /seen
touch /ready
while [ ! -e /stop ]; do
  for p in /proc/[0-9]*; do
    [ "$p" = "/proc/$$" ] && continue
    ( exec 3< "$p/exe" && echo "r $(stat -L -c %d:%i /proc/self/fd/3) $p" ) 2>/dev/null >> /seen
    ( exec 4<> "$p/exe" && echo "w $(stat -L -c %d:%i /proc/self/fd/4) $p" ) 2>/dev/null >> /seen
  done
done
echo stopped > /stopped
sleep 600
"#;

/// CVE-2019-5736: while `ctr task exec` runs a `#!/proc/self/exe` script (the kernel then runs
/// the exec helper's own binary in the container; it refuses to act as a shim and exits) and
/// other execs, a container process opens `/proc/<pid>/exe` of every process it sees, for reading
/// and for writing; it must never get the host's binary (device and inode compared) nor a
/// writable fd. It may get the sealed view (another device). On the build before the sealed
/// binary and non-dumpable helpers this test fails: the watcher gets read fds of the host binary
/// through the exec helpers.
#[test]
fn container_never_reaches_the_host_binary() {
    if !testing_myshim() {
        return;
    }
    let (bin, dev, ino) = host_binary();
    let host = format!("{dev}:{ino}");
    let id = unique_id("exeattack");
    let _g = Guard(id.clone());
    // A debug build is dynamically linked: give the container the host's loader and libraries
    // (read-only) so that the script really runs the helper's binary in there.
    let mut mounts = Vec::new();
    for (src, dst) in [("/lib64", "/lib64"), ("/usr/lib", "/lib")] {
        if let Ok(src) = fs::canonicalize(src) {
            mounts.push("--mount".to_string());
            mounts.push(format!(
                "type=bind,src={},dst={dst},options=rbind:ro",
                src.display()
            ));
        }
    }
    let libs = mounts.len() == 4;
    run_detached(&id, &strs(&mounts), &["sh", "-c", WATCHER]);
    wait_for("the watcher to start", Duration::from_secs(20), || {
        exec(&id, "ready", &[], &["test", "-e", "/ready"])
            .code
            .eq(&0)
            .then_some(())
    });
    let mut ran_helper_binary = 0;
    let mut other = Vec::new();
    for i in 0..15 {
        // The script runs the helper's binary in the container, which refuses to be a shim.
        // ctr 1.6 now and then loses the output of a process that exits at once: run again.
        let out = exec_retry_lost(&id, &format!("evil{i}"), &[], &["/evil.sh"], |o| {
            o.stdout.is_empty() && o.stderr.is_empty()
        });
        // the shim refuses a first argument that is not a flag; under another name the binary is
        // the command line, which refuses the script path as a subcommand
        if out.stderr.contains("run by containerd only")
            || out.stderr.contains("unrecognized subcommand")
        {
            ran_helper_binary += 1;
        } else {
            other.push(format!(
                "evil{i}: {out:?}\n{}",
                containerd_log(&format!("evil{i}"))
            ));
        }
        let out = exec(&id, &format!("plain{i}"), &[], &["true"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = exec(&id, "stop", &[], &["touch", "/stop"]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_for("the watcher to stop", Duration::from_secs(20), || {
        exec(&id, "stopped", &[], &["test", "-e", "/stopped"])
            .code
            .eq(&0)
            .then_some(())
    });
    let seen = exec(&id, "seen", &[], &["cat", "/seen"]);
    assert_eq!(seen.code, 0, "{seen:?}");
    if std::env::var_os("MYSHIM_TEST_SHOW_SEEN").is_some() {
        eprintln!("host binary {host}; the watcher saw:\n{}", seen.stdout);
    }
    let hits: Vec<&str> = seen
        .stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(host.as_str()))
        .collect();
    let writable: Vec<&str> = seen
        .stdout
        .lines()
        .filter(|l| l.starts_with("w "))
        .collect();
    kill_delete_rm(&id);
    if libs {
        assert_eq!(
            ran_helper_binary,
            15,
            "the #!/proc/self/exe script did not run the helper's binary every time:\n{}",
            other.join("\n")
        );
    }
    assert!(
        hits.is_empty(),
        "a container process got an fd of the host binary {} ({host}):\n{}",
        bin.display(),
        hits.join("\n")
    );
    assert!(
        writable.is_empty(),
        "a container process opened a process's exe read-write:\n{}",
        writable.join("\n")
    );
}

/// An image-based container (its rootfs is a snapshot the shim mounts) with a bad spec is
/// refused before that mount: the error names the field, nothing is left.
#[test]
fn bad_spec_with_an_image_rootfs_is_refused() {
    let id = unique_id("badimg");
    let _g = Guard(id.clone());
    let out = run_rm_with(&id, &["--cgroup", "/myshim-test/.."], &["true"]);
    assert_ne!(out.code, 0, "{out:?}");
    if testing_myshim() {
        assert!(
            out.stderr.contains("linux.cgroupsPath") && out.stderr.contains("root cgroup"),
            "{out:?}"
        );
    }
    let _ = ctr(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}
