//! Seccomp through containerd: containerd's default profile (`ctr run --seccomp`) filters a
//! 32-bit (i386) program by the profile's i386 rules instead of killing it, custom profiles
//! (`--config`) give their errno, kill, and hand syscalls to a seccomp agent on `listenerPath`.
//!
//! The i386 program is `tests/data/seccomp_i386.c`, built once per run with `gcc -m32 -static`
//! (Debian's gcc-multilib, installed by `make deps`) into the private containerd's directory and
//! bind-mounted read-only into the containers at `/i386`.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Where the i386 program is mounted in the containers.
const I386_DIR: &str = "/i386";
const I386_BIN: &str = "/i386/seccomp_i386";

/// 128 + SIGSYS: what ctr reports for a process killed by seccomp.
const KILLED_BY_SECCOMP: i32 = 128 + 31;

/// The directory holding the built i386 program (built on first use).
fn i386_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = env().dir.join("seccomp-i386");
        std::fs::create_dir_all(&dir).expect("create the i386 build dir");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seccomp_i386.c");
        let out = std::process::Command::new("gcc")
            .args(["-m32", "-static", "-O2", "-o"])
            .arg(dir.join("seccomp_i386"))
            .arg(src)
            .output()
            .expect("run gcc (make deps installs it)");
        assert!(
            out.status.success(),
            "gcc -m32 -static {src} failed (is gcc-multilib installed? `make deps` installs \
             it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// `--mount` for `ctr run`: the i386 program's directory, read-only, at [`I386_DIR`].
fn i386_mount_opt() -> String {
    format!(
        "type=bind,src={},dst={I386_DIR},options=rbind:ro",
        i386_dir().display()
    )
}

/// A `--config` spec running `args` under `profile`, with the i386 program mounted.
fn spec_with_profile(id: &str, args: &[&str], profile: Value) -> Value {
    let mut spec = spec_for(id, args);
    spec["linux"]["seccomp"] = profile;
    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("the default spec has mounts");
    mounts.push(json!({
        "destination": I386_DIR,
        "type": "bind",
        "source": i386_dir().display().to_string(),
        "options": ["rbind", "ro"],
    }));
    spec
}

/// `name value` lines of the i386 program as pairs.
fn results(stdout: &str) -> Vec<(String, i64)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn i386_program_is_filtered_by_the_default_profile_not_killed() {
    let id = unique_id("seccomp-i386");
    let _g = Guard(id.clone());
    let mount = i386_mount_opt();
    let out = run_rm_with(&id, &["--seccomp", "--mount", &mount], &[I386_BIN]);
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    let r = results(&out.stdout);
    let get = |name: &str| {
        r.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
    };
    // Allowed by the profile's i386 rules: they work.
    assert!(get("getpid") > 0, "{out:?}");
    assert_eq!(get("uname"), 0, "{out:?}");
    // Not in the profile (the default action, EPERM), whatever the kernel would say.
    assert_eq!(get("unshare"), -i64::from(libc::EPERM), "{out:?}");
    assert_eq!(get("keyctl"), -i64::from(libc::EPERM), "{out:?}");
    assert_nothing_left(&id);

    // The same program without a profile: the kernel answers keyctl itself.
    let id = unique_id("seccomp-i386-none");
    let _g = Guard(id.clone());
    let out = run_rm_with(&id, &["--mount", &mount], &[I386_BIN, "keyctl"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    let r = results(&out.stdout);
    assert!(
        r.len() == 1 && r[0].0 == "keyctl" && r[0].1 != -i64::from(libc::EPERM),
        "{out:?}"
    );
    assert_nothing_left(&id);
}

/// One custom profile, one command, what the user sees.
struct Row {
    tag: &'static str,
    profile: Value,
    args: &'static [&'static str],
    code: i32,
    /// Expected in stdout + stderr.
    output: &'static [&'static str],
}

#[test]
fn custom_profiles_errno_kill_and_architectures() {
    let rows = [
        Row {
            tag: "errnoret",
            profile: json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                 "errnoRet": libc::EXDEV}]}),
            args: &["mkdir", "/tmp/d"],
            code: 1,
            output: &["Invalid cross-device link"],
        },
        Row {
            tag: "default-errnoret",
            profile: json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}),
            args: &["mkdir", "/tmp/d"],
            code: 1,
            output: &["Operation not permitted"],
        },
        Row {
            tag: "kill-process",
            profile: json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
            args: &["uname"],
            code: KILLED_BY_SECCOMP,
            output: &[],
        },
        Row {
            tag: "args-masked-eq",
            // chmod fails with EXDEV only when the mode has all of 0o700 set; otherwise the
            // kernel answers (the root is read-only).
            profile: json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
                 "args": [{"index": 1, "value": 0o700, "valueTwo": 0o700,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
                 "args": [{"index": 2, "value": 0o700, "valueTwo": 0o700,
                           "op": "SCMP_CMP_MASKED_EQ"}]}]}),
            args: &["sh", "-c", "chmod 0500 /; chmod 0700 /"],
            code: 1,
            output: &["Read-only file system", "Invalid cross-device link"],
        },
        Row {
            tag: "i386-errnoret",
            profile: json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}),
            args: &[I386_BIN, "uname"],
            code: 0,
            output: &["uname -42"],
        },
        Row {
            tag: "i386-unlisted",
            // i386 is not listed: its syscalls kill instead of slipping past the rules.
            profile: json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO"}]}),
            args: &[I386_BIN, "getpid"],
            code: KILLED_BY_SECCOMP,
            output: &[],
        },
    ];
    for row in rows {
        let id = unique_id(&format!("seccomp-{}", row.tag));
        let _g = Guard(id.clone());
        let spec = spec_with_profile(&id, row.args, row.profile);
        let out = run_config_rm(&id, &spec);
        let both = format!("{}{}", out.stdout, out.stderr);
        assert!(
            out.code == row.code && row.output.iter().all(|o| both.contains(o)),
            "{}: {out:?}\n{}",
            row.tag,
            containerd_log(&id)
        );
        assert_nothing_left(&id);
    }
}

/// A seccomp agent on a unix socket: takes the container process state and the notify fd, then
/// answers every notification with EXDEV until told to stop.
struct Agent {
    stop: AtomicBool,
}

impl Agent {
    /// Serve one connection on `listener`; returns the state document received.
    fn serve(&self, listener: UnixListener) -> Option<Value> {
        listener.set_nonblocking(true).ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_) if !self.stop.load(Ordering::SeqCst) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return None,
            }
        };
        conn.set_nonblocking(false).ok()?;
        let mut buf = vec![0u8; 64 << 10];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let mut fd = None;
        for c in msg.cmsgs().ok()? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these fds in our table, for us alone.
                fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
            }
        }
        let n = msg.bytes;
        let mut text = buf[..n].to_vec();
        (&conn).read_to_end(&mut text).ok()?;
        let state: Value = serde_json::from_slice(&text).ok()?;
        let fd = fd?;
        while !self.stop.load(Ordering::SeqCst) {
            let mut pfd = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(_) => break,
            }
            let revents = pfd[0].revents().unwrap_or(nix::poll::PollFlags::empty());
            if !revents.contains(nix::poll::PollFlags::POLLIN) {
                break; // every process of the filter is gone
            }
            let Ok(req) = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()) else {
                break;
            };
            let _ = libseccomp::ScmpNotifResp::new_error(
                req.id,
                -libc::EXDEV,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(fd.as_raw_fd());
        }
        Some(state)
    }
}

/// With noNewPrivileges the filter goes on after the credentials are dropped, without it
/// before: both hand the fd over.
#[test]
fn notify_hands_the_fd_and_state_to_the_listener() {
    for no_new_privs in [true, false] {
        notify_case(no_new_privs);
    }
}

fn notify_case(no_new_privs: bool) {
    let id = unique_id(&format!("seccomp-notify-nnp-{no_new_privs}"));
    let _g = Guard(id.clone());
    let sock = env().dir.join(format!("{id}.agent.sock"));
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).expect("bind the agent socket");
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock.display().to_string(),
        "listenerMetadata": "agent-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]});
    let mut spec = spec_with_profile(&id, &["sh", "-c", "mkdir /tmp/d; echo done"], profile);
    spec["process"]["noNewPrivileges"] = json!(no_new_privs);
    let agent = Agent {
        stop: AtomicBool::new(false),
    };
    let (out, state) = std::thread::scope(|s| {
        let served = s.spawn(|| agent.serve(listener));
        let out = run_config_rm(&id, &spec);
        agent.stop.store(true, Ordering::SeqCst);
        (out, served.join().expect("agent thread"))
    });
    let _ = std::fs::remove_file(&sock);
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    assert!(
        out.stderr.contains("Invalid cross-device link") && out.stdout == "done\n",
        "the agent answered mkdir: {out:?}"
    );
    let state = state.expect("the agent got the state and the fd");
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], json!("agent-metadata"), "{state}");
    assert!(state["pid"].as_i64().is_some_and(|p| p > 0), "{state}");
    assert_eq!(state["state"]["id"], json!(id), "{state}");
    assert_eq!(state["state"]["status"], json!("creating"), "{state}");
    assert_nothing_left(&id);
}

#[test]
fn exec_processes_get_the_filter_too() {
    let id = unique_id("seccomp-exec");
    let _g = Guard(id.clone());
    let mount = i386_mount_opt();
    run_detached(&id, &["--seccomp", "--mount", &mount], &["sleep", "1000"]);
    wait_task_status(&id, "RUNNING", RUN_START_TIMEOUT);
    // Exit codes, not output, tell (ctr 1.6 may lose an exec's output on a busy machine).
    let script = format!(
        "{I386_BIN} unshare | grep -qx 'unshare -1' && {I386_BIN} keyctl | grep -qx 'keyctl -1' \
         && {I386_BIN} getpid | grep -q '^getpid [1-9]'"
    );
    let out = exec(&id, "e1", &[], &["sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}\n{}", containerd_log(&id));
    kill_delete_rm(&id);
}
