//! The runc-compatible command line: the binary invoked as `myshim` (a symlink, as `make install`
//! makes it), driven alone on bundles made from the test image (the OCI lifecycle, run attached,
//! exec, ps, pause/resume, update, events, list, features, spec, the console socket,
//! --preserve-fds, errors), sharing its root with the shim, and driven by containerd's own runc
//! shim (`--runc-binary`) in a containerd whose PATH has no runc.
//!
//! The CLI's containers live under the shim's root for the test namespace
//! (`/run/myshim/myshim-test`), so the usual leak check covers them.

mod common;

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Where the CLI tests keep their files: the `myshim` link, bundles, sockets.
struct CliEnv {
    dir: PathBuf,
    bin: PathBuf,
    root: PathBuf,
}

fn cli_env() -> &'static CliEnv {
    static E: OnceLock<CliEnv> = OnceLock::new();
    E.get_or_init(|| {
        let e = env();
        let dir = e.dir.join("cli");
        let bin_dir = dir.join("bin");
        fs::create_dir_all(&bin_dir).expect("mkdir cli/bin");
        let bin = bin_dir.join("myshim");
        let _ = fs::remove_file(&bin);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_containerd-shim-myshim-v2"), &bin)
            .expect("link myshim");
        let root = e
            .state_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/myshim"))
            .join(NAMESPACE);
        CliEnv { dir, bin, root }
    })
}

/// `myshim --root <root> ARGS` with stdin from /dev/null.
fn myshim_cmd(args: &[&str]) -> Command {
    let c = cli_env();
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"])
        .arg(&c.bin)
        .arg("--root")
        .arg(&c.root)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

fn myshim(args: &[&str]) -> RunOutput {
    myshim_cmd(args).output().expect("spawn myshim").into()
}

fn myshim_ok(args: &[&str]) -> String {
    let out = myshim(args);
    assert_eq!(out.code, 0, "myshim {}: {out:?}", args.join(" "));
    out.stdout
}

/// A bundle for container `id` running `args`: the test image's rootfs (read-only), cgroup
/// `/<namespace>/<id>`; `edit` changes the spec further.
fn bundle(id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = cli_env().dir.join("bundles").join(id);
    fs::create_dir_all(&dir).expect("mkdir bundle");
    let mut spec = spec_for(id, args);
    edit(&mut spec);
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .expect("write config.json");
    dir
}

fn state(id: &str) -> Value {
    serde_json::from_str(&myshim_ok(&["state", id])).expect("state prints JSON")
}

/// Poll `state` until the container exists with `status`.
fn wait_status(id: &str, status: &str) -> Value {
    wait_for(&format!("{id} {status}"), RUN_START_TIMEOUT, || {
        let out = myshim(&["state", id]);
        let s: Value = serde_json::from_str(&out.stdout).ok()?;
        (s["status"] == status).then_some(s)
    })
}

/// Deletes the container when the test panics.
struct CliGuard(String);

impl Drop for CliGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = myshim_cmd(&["delete", "--force", &self.0]).output();
        }
    }
}

/// The cgroup v1 memory (or v2) directory of container `id`.
fn memory_limit(id: &str) -> Option<String> {
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(NAMESPACE)
        .join(id)
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup")
        .join(NAMESPACE)
        .join(id)
        .join("memory.max");
    fs::read_to_string(v1)
        .or_else(|_| fs::read_to_string(v2))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn lifecycle_through_the_cli_alone() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-life");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sh", "-c", "echo started; exec sleep 1000"], |_| {});
    let out_path = cli_env().dir.join(format!("{id}.out"));
    let out_file = fs::File::create(&out_path).unwrap();
    let pid_file = cli_env().dir.join(format!("{id}.pid"));

    // create: the init waits; the pid file names it
    let st = myshim_cmd(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ])
    .stdout(out_file.try_clone().unwrap())
    .stderr(out_file)
    .status()
    .unwrap();
    assert!(
        st.success(),
        "create: {}",
        fs::read_to_string(&out_path).unwrap_or_default()
    );
    let s = state(&id);
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["bundle"], b.to_str().unwrap());
    assert_eq!(s["rootfs"], env().rootfs.to_str().unwrap());
    assert!(s["ociVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert!(
        s["created"].as_str().is_some_and(|c| c.ends_with('Z')),
        "{s}"
    );
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(fs::read_to_string(&pid_file).unwrap(), pid.to_string());

    // start
    myshim_ok(&["start", &id]);
    wait_status(&id, "running");
    wait_for("output of the container", RUN_START_TIMEOUT, || {
        fs::read_to_string(&out_path)
            .ok()
            .filter(|o| o.contains("started"))
    });
    let again = myshim(&["start", &id]);
    assert_eq!(again.code, 1, "{again:?}");

    // list
    let ids = myshim_ok(&["list", "-q"]);
    assert!(ids.lines().any(|l| l == id), "{ids}");
    let listed: Value = serde_json::from_str(&myshim_ok(&["list", "--format", "json"])).unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .expect("listed");
    assert_eq!(mine["status"], "running");
    assert_eq!(mine["pid"], pid);
    let table = myshim_ok(&["list"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table
        .lines()
        .any(|l| l.starts_with(&id) && l.contains("running")));

    // ps
    let pids: Vec<i64> =
        serde_json::from_str(&myshim_ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);
    let ps = myshim_ok(&["ps", &id]);
    assert!(
        ps.lines().next().unwrap_or_default().contains("PID"),
        "{ps}"
    );
    assert!(ps.lines().skip(1).any(|l| l.contains("sleep 1000")), "{ps}");

    // exec with a process JSON (as containerd's runc shim passes it), attached: its status
    let process = json!({
        "args": ["sh", "-c", "echo exec-out; echo $GREETING; exit 7"],
        "env": [CONTAINER_PATH, "GREETING=hello"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "terminal": false
    });
    let proc_path = cli_env().dir.join(format!("{id}.process.json"));
    fs::write(&proc_path, process.to_string()).unwrap();
    let ex = myshim(&["exec", "--process", proc_path.to_str().unwrap(), &id]);
    assert_eq!(ex.code, 7, "{ex:?}");
    assert_eq!(ex.stdout, "exec-out\nhello\n");
    // exec from the command line, with --user and --env
    let ex = myshim(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "X=y",
        &id,
        "sh",
        "-c",
        "id -u; echo $X",
    ]);
    assert_eq!((ex.code, ex.stdout.as_str()), (0, "1000\ny\n"), "{ex:?}");

    // pause / resume
    myshim_ok(&["pause", &id]);
    assert_eq!(state(&id)["status"], "paused");
    let refused = myshim(&["exec", &id, "true"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("paused"), "{refused:?}");
    myshim_ok(&["resume", &id]);
    assert_eq!(state(&id)["status"], "running");

    // update, then events --stats: one sample
    myshim_ok(&["update", "--memory", "64m", "--pids-limit", "50", &id]);
    assert_eq!(memory_limit(&id).as_deref(), Some("67108864"));
    let ev = myshim_ok(&["events", "--stats", &id]);
    assert_eq!(ev.lines().count(), 1, "{ev}");
    let ev: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    assert_eq!(ev["data"]["pids"]["current"], 1);
    assert_eq!(ev["data"]["pids"]["limit"], 50);
    assert!(ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);

    // kill by name, then a stopped container refuses kill and keeps its state
    let refused = myshim(&["delete", &id]);
    assert_eq!(
        refused.code, 1,
        "delete of a running container: {refused:?}"
    );
    myshim_ok(&["kill", &id, "KILL"]);
    let s = wait_status(&id, "stopped");
    assert_eq!(s["pid"], 0);
    let refused = myshim(&["kill", &id, "9"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("container not running"),
        "{refused:?}"
    );

    // delete
    myshim_ok(&["delete", &id]);
    let gone = myshim(&["state", &id]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("does not exist"), "{gone:?}");
    assert_eq!(myshim(&["delete", &id]).code, 1);
    assert_eq!(myshim(&["delete", "--force", &id]).code, 0);
    assert_nothing_left(&id);
}

#[test]
fn run_attached_passes_the_exit_status_through() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-run");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"], |_| {});
    let out = myshim(&["run", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    // attached run deletes the container once it exited
    assert_nothing_left(&id);

    // signals reach the container's process through the attached run
    let id = unique_id("cli-run-sig");
    let _g = CliGuard(id.clone());
    let b = bundle(
        &id,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ],
        |_| {},
    );
    let mut child = myshim_cmd(&["run", "-b", b.to_str().unwrap(), &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    // `timeout` passes SIGTERM on to myshim, which forwards it to the container
    send_signal(child.id(), "TERM");
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(42), "{st:?}");
    assert_nothing_left(&id);

    // killed by a signal: 128 + signal
    let id = unique_id("cli-run-kill");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sleep", "1000"], |_| {});
    let child = myshim_cmd(&["run", "-b", b.to_str().unwrap(), &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_status(&id, "running");
    myshim_ok(&["kill", &id, "KILL"]);
    let out: RunOutput = child.wait_with_output().unwrap().into();
    assert_eq!(out.code, 137, "{out:?}");
    assert_nothing_left(&id);
}

#[test]
fn run_detached_and_delete_force() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-run-d");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sleep", "1000"], |_| {});
    // the container inherits the caller's stdio (as with runc): not the test's capture pipes
    let st = myshim_cmd(&["run", "-d", "--bundle", b.to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    wait_status(&id, "running");
    let dup = myshim(&["create", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(dup.code, 1, "{dup:?}");
    assert!(dup.stderr.contains("already exists"), "{dup:?}");
    myshim_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

#[test]
fn the_cli_sees_the_shims_containers() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-shared");
    let _g = Guard(id.clone());
    run_detached(&id, &[], &["sleep", "1000"]);
    let s = wait_status(&id, "running");
    let pids: Vec<u32> =
        serde_json::from_str(&myshim_ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, task_pids(&id));
    assert_eq!(s["pid"].as_u64(), pids.first().map(|p| u64::from(*p)));
    // a signal through the CLI is seen by containerd
    myshim_ok(&["kill", &id, "SIGKILL"]);
    wait_task_status(&id, "STOPPED", RUN_START_TIMEOUT);
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
}

#[test]
fn features_spec_version_and_errors() {
    if !testing_myshim() {
        return;
    }
    let f: Value = serde_json::from_str(&myshim_ok(&["features"])).expect("features JSON");
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["hooks"].as_array().is_some_and(|h| !h.is_empty()), "{f}");
    let v = myshim_ok(&["--version"]);
    assert!(v.starts_with("myshim version "), "{v}");

    // spec writes a config.json once
    let dir = cli_env().dir.join(format!("spec-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    myshim_ok(&["spec", "--bundle", dir.to_str().unwrap()]);
    let spec: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    assert_eq!(myshim(&["spec", "--bundle", dir.to_str().unwrap()]).code, 1);
    let _ = fs::remove_dir_all(&dir);

    // errors: a message on stderr, exit 1, and runc's JSON log line
    let log = cli_env()
        .dir
        .join(format!("log-{}.json", std::process::id()));
    let out = myshim(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "start",
        "no-such-container",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no-such-container does not exist"),
        "{out:?}"
    );
    let line: Value = serde_json::from_str(fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));
    assert!(line["time"].is_string());
    let _ = fs::remove_file(&log);
    assert_eq!(myshim(&["no-such-command"]).code, 1);
    assert_eq!(myshim(&["kill", "x", "NOSIG"]).code, 1);
}

/// Accept one connection on `listener` and receive the fd sent with SCM_RIGHTS.
fn receive_fd(listener: UnixListener) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept().expect("accept on the console socket");
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this fd for us; nothing else owns it.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received on the console socket");
}

#[test]
fn console_socket_receives_the_pty_master() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-tty");
    let _g = CliGuard(id.clone());
    let b = bundle(
        &id,
        &["sh", "-c", "tty; echo tty-ok; exec sleep 1000"],
        |s| {
            s["process"]["terminal"] = json!(true);
        },
    );
    let sock = cli_env().dir.join(format!("{id}.sock"));
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).expect("bind the console socket");
    let receiver = std::thread::spawn(move || receive_fd(listener));
    // a terminal without a console socket is refused when detached
    let refused = myshim(&["create", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(refused.code, 1, "{refused:?}");
    myshim_ok(&[
        "create",
        "-b",
        b.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    let master = receiver.join().expect("receiver");
    myshim_ok(&["start", &id]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = fs::File::from(master);
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("tty-ok") {
                break;
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("output on the pty");
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    assert!(seen.contains("tty-ok"), "{seen:?}");
    myshim_ok(&["delete", "--force", &id]);
    let _ = fs::remove_file(&sock);
    assert_nothing_left(&id);
}

#[test]
fn preserve_fds_pass_through() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-fds");
    let _g = CliGuard(id.clone());
    let b = bundle(
        &id,
        &[
            "sh",
            "-c",
            "echo three >&3; echo four >&4; ls /proc/self/fd",
        ],
        |_| {},
    );
    // close-on-exec: no other test's child may hold a write end
    let (r3, w3) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (r4, w4) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = myshim_cmd(&["run", "--preserve-fds", "2", "-b", b.to_str().unwrap(), &id]);
    let (a, bb) = (w3.as_raw_fd(), w4.as_raw_fd());
    // SAFETY: only dup2 (async-signal-safe) runs between fork and exec; the fds stay open in
    // the parent until after spawn. `timeout` passes its fds on to myshim.
    unsafe {
        cmd.pre_exec(move || {
            let hi = libc::fcntl(bb, libc::F_DUPFD_CLOEXEC, 10);
            if hi < 0 || libc::dup2(a, 3) < 0 || libc::dup2(hi, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop((w3, w4));
    let out: Output = child.wait_with_output().unwrap();
    let out: RunOutput = out.into();
    assert_eq!(out.code, 0, "{out:?}");
    let read = |fd: OwnedFd| {
        let mut s = String::new();
        fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    };
    assert_eq!(read(r3), "three\n");
    assert_eq!(read(r4), "four\n");
    // ls's own directory fd is the only other one
    let fds: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(&fds[..5], ["0", "1", "2", "3", "4"], "{out:?}");
    assert!(fds.len() <= 6, "{out:?}");
    assert_nothing_left(&id);
}

/// A private containerd whose PATH has no runc, stopped when dropped.
struct RuncShimContainerd {
    dir: PathBuf,
}

impl Drop for RuncShimContainerd {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
        // the links and fifos beside it, whether the test passed or not
        if let Some(parent) = self.dir.parent() {
            let _ = fs::remove_dir_all(parent);
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/containerd.sh")
}

#[test]
fn containerds_runc_shim_drives_the_cli() {
    if !testing_myshim() {
        return;
    }
    let e = env();
    let dir = PathBuf::from(format!("/tmp/myshim-cli-runc.{}", std::process::id()));
    // containerd's whole PATH: the few programs it needs, and no runc (Debian links runc into
    // /usr/bin and /bin as well as /usr/sbin: none of them may be on it)
    let link_dir = dir.join("bin");
    fs::create_dir_all(&link_dir).unwrap();
    let link = link_dir.join("myshim");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_containerd-shim-myshim-v2"), &link).unwrap();
    for prog in ["setsid", "containerd", "containerd-shim-runc-v2"] {
        let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(prog))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{prog} is not installed"));
        std::os::unix::fs::symlink(found, link_dir.join(prog)).unwrap();
    }
    let path = link_dir.to_str().unwrap().to_string();
    assert!(!link_dir.join("runc").exists());
    let cd_dir = dir.join("containerd");
    let st = Command::new(script())
        .arg("start")
        .arg(&cd_dir)
        .env("MYSHIM_CONTAINERD_PATH", &path)
        .env_remove("MYSHIM_BIN_DIR")
        .status()
        .unwrap();
    let _cd = RuncShimContainerd {
        dir: cd_dir.clone(),
    };
    assert!(st.success(), "start containerd");
    let ns = "myshim-cli-runc";
    let ctr = |args: &[&str]| -> RunOutput {
        Command::new("timeout")
            .args(["-k", "5", "60", "ctr", "--address"])
            .arg(cd_dir.join("containerd.sock"))
            .args(["--namespace", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn ctr")
            .into()
    };
    let image = e.dir.join("busybox.tar");
    let imp = ctr(&[
        "images",
        "import",
        "--base-name",
        IMAGE_REPO,
        image.to_str().unwrap(),
    ]);
    assert_eq!(imp.code, 0, "{imp:?}");
    let fifo = dir.join("fifo");
    let run = |rm: bool, id: &str, cmd: &[&str]| -> RunOutput {
        let mut a = vec!["run"];
        a.push(if rm { "--rm" } else { "-d" });
        a.extend([
            "--runtime",
            RUNC_RUNTIME,
            "--runc-binary",
            link.to_str().unwrap(),
            "--fifo-dir",
            fifo.to_str().unwrap(),
            IMAGE,
            id,
        ]);
        a.extend_from_slice(cmd);
        ctr(&a)
    };

    // run in the foreground: output and exit status
    let out = run(
        true,
        "fg",
        &["sh", "-c", "echo hello from the runc shim; exit 3"],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, "hello from the runc shim\n");

    // a failed create: the runc shim explains it with the CLI's error line from log.json
    let out = run(true, "bad", &["no-such-binary"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("OCI runtime create failed") && out.stderr.contains("no-such-binary"),
        "{out:?}"
    );
    assert!(!Path::new("/run/containerd/runc")
        .join(ns)
        .join("bad")
        .exists());
    assert!(!ctr(&["containers", "ls", "-q"])
        .stdout
        .lines()
        .any(|l| l == "bad"));

    // detached: exec, ps, our state on disk, kill, delete
    let out = run(false, "bg", &["sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    let state_dir = Path::new("/run/containerd/runc").join(ns).join("bg");
    let st: Value = serde_json::from_slice(&fs::read(state_dir.join("state.json")).unwrap())
        .expect("the runtime's state.json");
    assert!(st.get("pid_start").is_some(), "not myshim's state: {st}");
    let ex = ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "--fifo-dir",
        fifo.to_str().unwrap(),
        "bg",
        "sh",
        "-c",
        "echo in exec; exit 5",
    ]);
    assert_eq!((ex.code, ex.stdout.as_str()), (5, "in exec\n"), "{ex:?}");
    let ps = ctr(&["task", "ps", "bg"]);
    assert_eq!(ps.code, 0, "{ps:?}");
    let pid = st["pid"].as_i64().unwrap().to_string();
    assert!(ps.stdout.lines().any(|l| l.starts_with(&pid)), "{ps:?}");
    // the command line sees the same container under the runc shim's root
    let cli_state: Value = serde_json::from_str(&String::from_utf8_lossy(
        &Command::new(&link)
            .args([
                "--root",
                state_dir.parent().unwrap().to_str().unwrap(),
                "state",
                "bg",
            ])
            .output()
            .unwrap()
            .stdout,
    ))
    .expect("state JSON");
    assert_eq!(cli_state["status"], "running");
    // pause and resume go through the CLI too
    assert_eq!(ctr(&["task", "pause", "bg"]).code, 0);
    assert!(ctr(&["task", "ls"])
        .stdout
        .lines()
        .any(|l| l.starts_with("bg ") && l.contains("PAUSED")));
    assert_eq!(ctr(&["task", "resume", "bg"]).code, 0);
    assert_eq!(ctr(&["task", "kill", "-s", "SIGKILL", "bg"]).code, 0);
    wait_for("bg stopped", RUN_START_TIMEOUT, || {
        ctr(&["task", "ls"])
            .stdout
            .lines()
            .any(|l| l.starts_with("bg ") && l.contains("STOPPED"))
            .then_some(())
    });
    let del = ctr(&["task", "delete", "bg"]);
    assert_eq!(del.code, 0, "{del:?}");
    assert_eq!(ctr(&["containers", "rm", "bg"]).code, 0);
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
    assert!(ctr(&["task", "ls", "-q"]).stdout.trim().is_empty());
    drop(_cd);
    let _ = fs::remove_dir(state_dir.parent().unwrap());
    for h in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = fs::remove_dir(h.path().join(ns));
    }
}

#[test]
fn socket_activation_fds_come_first() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-listen");
    let _g = CliGuard(id.clone());
    let b = bundle(
        &id,
        &[
            "sh",
            "-c",
            "echo listen >&3; echo kept >&4; echo $LISTEN_FDS $LISTEN_PID",
        ],
        |_| {},
    );
    let c = cli_env();
    let listen = c.dir.join(format!("{id}.listen"));
    let kept = c.dir.join(format!("{id}.kept"));
    // systemd's socket activation as a shell gives it: LISTEN_PID is the pid that execs myshim
    let script = format!(
        "export LISTEN_PID=$$ LISTEN_FDS=1; exec {} --root {} run --preserve-fds 1 -b {} {id} \
         3>{} 4>{}",
        c.bin.display(),
        c.root.display(),
        b.display(),
        listen.display(),
        kept.display()
    );
    let out: RunOutput = Command::new("timeout")
        .args(["-k", "5", "60", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout, "1 1\n",
        "LISTEN_FDS and LISTEN_PID in the container"
    );
    assert_eq!(fs::read_to_string(&listen).unwrap(), "listen\n");
    assert_eq!(fs::read_to_string(&kept).unwrap(), "kept\n");
    let _ = fs::remove_file(listen);
    let _ = fs::remove_file(kept);
    assert_nothing_left(&id);
}

#[test]
fn attached_terminal_is_relayed_without_a_console_socket() {
    if !testing_myshim() {
        return;
    }
    // run: the pty's output reaches our stdout, the exit status comes through
    let id = unique_id("cli-run-tty");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sh", "-c", "tty; echo tty-run; exit 4"], |s| {
        s["process"]["terminal"] = json!(true);
    });
    let out = myshim(&["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stdout.contains("/dev/pts/0"), "{out:?}");
    assert!(out.stdout.contains("tty-run\r\n"), "{out:?}");
    assert_nothing_left(&id);

    // exec -t in a running container
    let id = unique_id("cli-exec-tty");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sleep", "1000"], |_| {});
    let st = myshim_cmd(&["run", "-d", "-b", b.to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let out = myshim(&["exec", "-t", &id, "sh", "-c", "tty; exit 6"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stdout.contains("/dev/pts/"), "{out:?}");
    // detached, a terminal needs a console socket
    let refused = myshim(&["exec", "-t", "-d", &id, "true"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    myshim_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// `run -d` of `bundle` with the container's stdio on /dev/null (it inherits the caller's).
fn run_detached_cli(bundle: &Path, id: &str) {
    let st = myshim_cmd(&["run", "-d", "-b", bundle.to_str().unwrap(), id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "run -d {id}");
}

/// The pids of container `id` (`ps --format json`).
fn cli_pids(id: &str) -> Vec<i64> {
    serde_json::from_str(&myshim_ok(&["ps", "--format", "json", id])).expect("ps prints JSON")
}

#[test]
fn exec_into_a_paused_container_with_ignore_paused() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-exec-paused");
    let _g = CliGuard(id.clone());
    // the container's /tmp is a host directory: what the execs write shows up here
    let out_dir = cli_env().dir.join(format!("{id}.tmp"));
    fs::create_dir_all(&out_dir).unwrap();
    let b = bundle(&id, &["sleep", "1000"], |s| {
        s["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp",
            "type": "bind",
            "source": out_dir.to_str().unwrap(),
            "options": ["rbind", "rw"]
        }));
    });
    run_detached_cli(&b, &id);
    wait_status(&id, "running");
    myshim_ok(&["pause", &id]);

    // without the flag: runc's error, nothing started
    let refused = myshim(&["exec", &id, "sh", "-c", "echo no > /tmp/refused"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        refused.stderr.trim(),
        "cannot exec in a paused container (use --ignore-paused to override)"
    );
    assert_eq!(cli_pids(&id).len(), 1);

    // detached with the flag: returns, the process sits frozen in the container
    let pid_file = cli_env().dir.join(format!("{id}.exec.pid"));
    let st = myshim_cmd(&[
        "exec",
        "-d",
        "--ignore-paused",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "echo detached > /tmp/detached",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .unwrap();
    assert!(st.success(), "exec -d --ignore-paused");
    let pid: i64 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert!(cli_pids(&id).contains(&pid));
    assert_eq!(state(&id)["status"], "paused");
    assert!(!out_dir.join("detached").exists());

    // attached with the flag: no deadlock, it waits for the resume and exits with its status
    let attached = myshim_cmd(&[
        "exec",
        "--ignore-paused",
        &id,
        "sh",
        "-c",
        "echo attached > /tmp/attached; echo out; exit 5",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(
        "the attached exec in the container",
        RUN_START_TIMEOUT,
        || (cli_pids(&id).len() == 3).then_some(()),
    );
    assert!(!out_dir.join("attached").exists());

    myshim_ok(&["resume", &id]);
    let out: RunOutput = attached.wait_with_output().unwrap().into();
    assert_eq!((out.code, out.stdout.as_str()), (5, "out\n"), "{out:?}");
    assert_eq!(
        fs::read_to_string(out_dir.join("attached")).unwrap(),
        "attached\n"
    );
    let written = wait_for("the detached exec's file", RUN_START_TIMEOUT, || {
        fs::read_to_string(out_dir.join("detached"))
            .ok()
            .filter(|t| t.ends_with('\n'))
    });
    assert_eq!(written, "detached\n");
    assert!(!out_dir.join("refused").exists());
    myshim_ok(&["delete", "--force", &id]);
    let _ = fs::remove_dir_all(&out_dir);
    assert_nothing_left(&id);
}

#[test]
fn events_reports_oom_kills() {
    if !testing_myshim() {
        return;
    }
    use std::io::BufRead;
    let id = unique_id("cli-oom");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sleep", "1000"], |s| {
        s["linux"]["resources"]["memory"] = json!({"limit": 32 << 20});
    });
    run_detached_cli(&b, &id);
    wait_status(&id, "running");
    let mut events = myshim_cmd(&["events", "--interval", "1h", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // the first event is printed once the OOM watcher is in place
    let first = rx.recv_timeout(RUN_START_TIMEOUT).expect("a first event");
    let first: Value = serde_json::from_str(&first).expect("an event is JSON");
    assert_eq!(
        (first["type"].as_str(), first["id"].as_str()),
        (Some("stats"), Some(id.as_str()))
    );

    // a process past the limit is OOM-killed, and events says so
    let hog = myshim(&["exec", &id, "sh", "-c", "x=a; while true; do x=$x$x; done"]);
    assert_eq!(hog.code, 137, "{hog:?}");
    let oom = rx.recv_timeout(RUN_START_TIMEOUT).expect("an oom event");
    assert_eq!(oom, format!(r#"{{"type":"oom","id":"{id}"}}"#));

    // once the container is gone, events ends with status 0
    myshim_ok(&["delete", "--force", &id]);
    let out = events.wait_with_output().unwrap();
    assert!(out.status.success(), "events: {out:?}");
    assert_nothing_left(&id);
}

#[test]
fn update_takes_runcs_other_flags_and_rootless() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-update");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sleep", "1000"], |_| {});
    run_detached_cli(&b, &id);
    wait_status(&id, "running");
    // realtime CPU limits on cgroup v1 (cgroup v2 has none)
    let cpu_dir = Path::new("/sys/fs/cgroup/cpu").join(NAMESPACE).join(&id);
    if cpu_dir.join("cpu.rt_period_us").exists() {
        myshim_ok(&[
            "update",
            "--cpu-rt-period",
            "500000",
            "--cpu-rt-runtime",
            "0",
            &id,
        ]);
        let read = |f: &str| fs::read_to_string(cpu_dir.join(f)).unwrap();
        assert_eq!(read("cpu.rt_period_us").trim(), "500000");
        assert_eq!(read("cpu.rt_runtime_us").trim(), "0");
    }
    // kernel memory: ignored with a warning, the rest applies
    let out = myshim(&["update", "--kernel-memory", "1m", "--memory", "48m", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("--kernel-memory is deprecated and ignored"),
        "{out:?}"
    );
    assert_eq!(memory_limit(&id).as_deref(), Some("50331648"));
    // Intel RDT: refused, nothing changed
    let out = myshim(&[
        "update",
        "--l3-cache-schema",
        "L3:0=f",
        "--memory",
        "32m",
        &id,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("Intel RDT"), "{out:?}");
    assert_eq!(memory_limit(&id).as_deref(), Some("50331648"));
    // the global --rootless, as runc takes it
    let ids = myshim_ok(&["--rootless", "auto", "list", "-q"]);
    assert!(ids.lines().any(|l| l == id), "{ids}");
    let bad = myshim(&["--rootless", "maybe", "list"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    myshim_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);

    // list --format json of an empty root: `null`, as runc
    let empty = cli_env().dir.join(format!("{id}.root"));
    fs::create_dir_all(&empty).unwrap();
    let out = Command::new(&cli_env().bin)
        .arg("--root")
        .arg(&empty)
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "null\n");
    fs::remove_dir(&empty).unwrap();
}

/// Now as `state` prints times (RFC 3339, UTC, nanoseconds), from date(1).
fn now_rfc3339() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn state_created_is_the_creation_time() {
    if !testing_myshim() {
        return;
    }
    let id = unique_id("cli-created");
    let _g = CliGuard(id.clone());
    let b = bundle(&id, &["sleep", "1000"], |_| {});
    let before = now_rfc3339();
    // the init inherits the caller's stdio: not the test's capture pipes
    let st = myshim_cmd(&["create", "-b", b.to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let after = now_rfc3339();
    assert!(st.success(), "create {id}");
    let created = state(&id)["created"].as_str().unwrap().to_string();
    // same format, so the strings order as the times do
    assert_eq!(created.len(), before.len(), "{created} {before}");
    assert!(
        before <= created && created <= after,
        "{before} {created} {after}"
    );
    myshim_ok(&["start", &id]);
    assert_eq!(wait_status(&id, "running")["created"], created.as_str());
    myshim_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}
