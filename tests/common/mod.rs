//! Harness of the integration tests: a private containerd, the busybox image, `ctr` helpers,
//! polling, and the check that a container left nothing behind.
//!
//! Shared by every integration test binary (tests/integration.rs, tests/task_service.rs).
//!
//! The containerd is started and stopped outside the test binary (Rust's test harness has no
//! global teardown): `make integration` runs `scripts/integration.sh`, which does
//! `scripts/containerd.sh start DIR` → `MYSHIM_CONTAINERD_DIR=DIR cargo test --test integration
//! --test task_service` → `scripts/containerd.sh stop DIR` (always, from a trap). The first test
//! to need it imports the image (once per test binary, [`env`]).
//!
//! Environment:
//! - `MYSHIM_CONTAINERD_DIR` (required): the DIR given to `scripts/containerd.sh start`.
//! - `MYSHIM_TEST_RUNTIME`: the runtime under test; default `io.containerd.myshim.v2`. Set it to
//!   `io.containerd.runc.v2` to check the tests themselves against runc.
//! - `MYSHIM_TEST_STATE_ROOT`: where the runtime keeps per-container state
//!   (`<root>/<namespace>/<id>`); default `/run/myshim` for myshim, `/run/containerd/runc` for
//!   runc.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod grpc;

/// The containerd namespace every test uses.
pub const NAMESPACE: &str = "myshim-test";
/// The image every test runs (built by scripts/build-image.sh).
pub const IMAGE: &str = "local/busybox:latest";
/// `--base-name` for `ctr images import`.
pub const IMAGE_REPO: &str = "local/busybox";
/// Our runtime's name as containerd knows it.
pub const MYSHIM_RUNTIME: &str = "io.containerd.myshim.v2";
/// The runc runtime, to check the tests themselves.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// Bound of every `ctr` call (`timeout -k 5 <this> ctr ...`).
pub const CTR_TIMEOUT_SECS: u64 = 60;
/// How long a container may take to start.
pub const RUN_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a container may take to disappear after its `ctr` returned.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);
/// PATH inside containers run from a `--config` spec.
pub const CONTAINER_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const HOW_TO_RUN: &str = "\
The integration tests need a private containerd. Run them with

    make integration            # or: scripts/integration.sh [-- TEST-FILTER]

or by hand (as root):

    MYSHIM_BIN_DIR=$PWD/target/debug scripts/containerd.sh start /tmp/myshim-it
    MYSHIM_CONTAINERD_DIR=/tmp/myshim-it cargo test --test integration --test task_service
    scripts/containerd.sh stop /tmp/myshim-it

MYSHIM_TEST_RUNTIME=io.containerd.runc.v2 checks the tests against runc.";

/// The test environment, set up once per test binary.
#[derive(Debug)]
pub struct Env {
    /// The private containerd's directory (MYSHIM_CONTAINERD_DIR).
    pub dir: PathBuf,
    /// Its gRPC socket.
    pub address: PathBuf,
    /// Runtime under test (`--runtime`).
    pub runtime: String,
    /// Where the runtime keeps per-container state, if known: `<root>/<namespace>/<id>`.
    pub state_root: Option<PathBuf>,
    /// An unpacked copy of the image, root of the `--config` specs (used read-only).
    pub rootfs: PathBuf,
    /// `ctr --fifo-dir`: keeps ctr's fifos out of /run/containerd.
    pub fifo_dir: PathBuf,
    /// Where the `--config` specs are written.
    pub spec_dir: PathBuf,
    /// `ctr oci spec`: containerd's default spec.
    pub default_spec: Value,
}

/// The environment; the first caller sets it up (checks containerd, imports the image). A
/// failure panics with instructions, in every test that calls it.
pub fn env() -> &'static Env {
    ENV.get_or_init(Env::init)
}

static ENV: OnceLock<Env> = OnceLock::new();

/// Is the runtime under test myshim (and not runc, for checking the tests)?
pub fn testing_myshim() -> bool {
    env().runtime == MYSHIM_RUNTIME
}

impl Env {
    fn init() -> Env {
        let runtime =
            std::env::var("MYSHIM_TEST_RUNTIME").unwrap_or_else(|_| MYSHIM_RUNTIME.to_string());
        if !is_root() {
            panic!("the integration tests must run as root.\n\n{HOW_TO_RUN}");
        }
        let dir = match std::env::var_os("MYSHIM_CONTAINERD_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => panic!("MYSHIM_CONTAINERD_DIR is not set.\n\n{HOW_TO_RUN}"),
        };
        let address = dir.join("containerd.sock");
        if !address.exists() {
            panic!(
                "no containerd socket at {}: is a containerd running in {}?\n\n{HOW_TO_RUN}",
                address.display(),
                dir.display()
            );
        }
        let out = raw_ctr(&address, &["version"]);
        if !out.status.success() {
            panic!(
                "containerd at {} does not answer `ctr version`: {}\n\n{HOW_TO_RUN}",
                address.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if runtime == MYSHIM_RUNTIME {
            check_shim_binary(&dir);
        }
        let state_root = match std::env::var_os("MYSHIM_TEST_STATE_ROOT") {
            Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => match runtime.as_str() {
                MYSHIM_RUNTIME => Some(PathBuf::from("/run/myshim")),
                RUNC_RUNTIME => Some(PathBuf::from("/run/containerd/runc")),
                _ => None,
            },
        };

        let fifo_dir = dir.join("fifo");
        let spec_dir = dir.join("specs");
        for d in [&fifo_dir, &spec_dir] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let image_tar = dir.join("busybox.tar");
        ensure_image(&address, &image_tar);
        let rootfs = ensure_rootfs(&dir, &image_tar);

        let out = raw_ctr(&address, &["oci", "spec"]);
        assert!(
            out.status.success(),
            "ctr oci spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let default_spec: Value =
            serde_json::from_slice(&out.stdout).expect("ctr oci spec prints JSON");

        eprintln!(
            "integration: runtime {runtime}, containerd {}, namespace {NAMESPACE}",
            address.display()
        );
        Env {
            dir,
            address,
            runtime,
            state_root,
            rootfs,
            fifo_dir,
            spec_dir,
            default_spec,
        }
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The containerd must find the binary cargo built for this test run, not some other copy.
fn check_shim_binary(dir: &Path) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-myshim-v2"));
    let exe_dir = exe.parent().expect("binary has a directory").to_path_buf();
    assert!(
        exe.exists(),
        "{} does not exist: build it (cargo build)",
        exe.display()
    );
    let configured = fs::read_to_string(dir.join("bin_dir")).unwrap_or_default();
    let configured = configured.trim();
    let same = !configured.is_empty()
        && fs::canonicalize(configured).ok() == fs::canonicalize(&exe_dir).ok();
    if !same {
        panic!(
            "the containerd in {} was started with MYSHIM_BIN_DIR={:?}, but this test binary \
             tests {}: restart it with MYSHIM_BIN_DIR={} so that containerd runs that shim.\n\n\
             {HOW_TO_RUN}",
            dir.display(),
            configured,
            exe.display(),
            exe_dir.display()
        );
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn raw_ctr(address: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", &CTR_TIMEOUT_SECS.to_string(), "ctr", "--address"])
        .arg(address)
        .args(["--namespace", NAMESPACE])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn `timeout ... ctr` (coreutils, containerd installed?)")
}

/// Build the image tarball (if missing) and import it (if containerd lacks the image).
fn ensure_image(address: &Path, tar: &Path) {
    if !tar.exists() {
        let tmp = tar.with_extension("tar.tmp");
        let out = Command::new(repo_root().join("scripts/build-image.sh"))
            .arg(&tmp)
            .arg(IMAGE)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/build-image.sh");
        assert!(
            out.status.success(),
            "scripts/build-image.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, tar).expect("rename image tarball");
    }
    let has_image = |address: &Path| {
        let out = raw_ctr(address, &["images", "ls", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == IMAGE)
    };
    if has_image(address) {
        return;
    }
    let tar_s = tar.to_str().expect("utf-8 path");
    let out = raw_ctr(
        address,
        &["images", "import", "--base-name", IMAGE_REPO, tar_s],
    );
    assert!(
        out.status.success() && has_image(address),
        "ctr images import --base-name {IMAGE_REPO} {tar_s} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unpack the image's layer into DIR/busybox-rootfs (the root of `--config` specs).
fn ensure_rootfs(dir: &Path, tar: &Path) -> PathBuf {
    let rootfs = dir.join("busybox-rootfs");
    if rootfs.join("bin/busybox").exists() {
        return rootfs;
    }
    let oci = dir.join("busybox-oci");
    let tmp = dir.join("busybox-rootfs.tmp");
    for d in [&oci, &tmp] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    sh_ok(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(&oci));
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let read_json = |p: PathBuf| -> Value {
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let index = read_json(oci.join("index.json"));
    let manifest = read_json(blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ));
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("layer digest");
        sh_ok(
            Command::new("tar")
                .args(["--numeric-owner", "-xzf"])
                .arg(blob(digest))
                .arg("-C")
                .arg(&tmp),
        );
    }
    fs::rename(&tmp, &rootfs).expect("rename rootfs");
    let _ = fs::remove_dir_all(&oci);
    rootfs
}

fn sh_ok(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// ctr

/// `timeout -k 5 60 ctr --address ... --namespace myshim-test ARGS`, stdin from /dev/null.
pub fn ctr_command(args: &[&str]) -> Command {
    let e = env();
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &CTR_TIMEOUT_SECS.to_string(), "ctr", "--address"])
        .arg(&e.address)
        .args(["--namespace", NAMESPACE])
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Run ctr with `args` (bounded by `timeout`).
pub fn ctr(args: &[&str]) -> Output {
    ctr_command(args).output().expect("spawn ctr")
}

/// Run ctr and require success; returns stdout.
pub fn ctr_ok(args: &[&str]) -> String {
    let out = ctr(args);
    assert!(
        out.status.success(),
        "ctr {} failed ({}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a `ctr run` printed and how it exited.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub stdout: String,
    pub stderr: String,
    /// ctr's exit code (the task's exit status for `ctr run` in the foreground); a ctr killed by
    /// a signal shows as 128 + signal; 124 means `timeout` had to stop ctr.
    pub code: i32,
}

impl From<Output> for RunOutput {
    fn from(o: Output) -> Self {
        let code = o
            .status
            .code()
            .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0));
        RunOutput {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            code,
        }
    }
}

/// The arguments of `ctr run`: `run [--rm] --runtime RT --fifo-dir F OPTS... IMAGE ID CMD...`.
pub fn run_args(rm: bool, id: &str, opts: &[&str], cmd: &[&str]) -> Vec<String> {
    let e = env();
    let mut a: Vec<String> = vec!["run".into()];
    if rm {
        a.push("--rm".into());
    }
    a.extend(["--runtime".into(), e.runtime.clone()]);
    a.extend(["--fifo-dir".into(), e.fifo_dir.display().to_string()]);
    a.extend(opts.iter().map(|s| s.to_string()));
    if systemd_driver() && !opts.contains(&"--cgroup") {
        a.extend(["--cgroup".into(), cgroups_path(id)]);
    }
    a.push(IMAGE.into());
    a.push(id.into());
    a.extend(cmd.iter().map(|s| s.to_string()));
    a
}

/// `&[String]` as `Vec<&str>` (for [`ctr`] and friends).
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `ctr run --rm IMAGE ID CMD...`
pub fn run_rm(id: &str, cmd: &[&str]) -> RunOutput {
    run_rm_with(id, &[], cmd)
}

/// `ctr run --rm OPTS... IMAGE ID CMD...`
pub fn run_rm_with(id: &str, opts: &[&str], cmd: &[&str]) -> RunOutput {
    ctr(&strs(&run_args(true, id, opts, cmd))).into()
}

/// `ctr run --rm OPTS... IMAGE ID CMD...` with `input` on its standard input, then EOF.
///
/// ctr 1.6 forwards the end of its stdin to the task (CloseIO) only if it reads that EOF after
/// its NewTask returned; an EOF read earlier is lost and the container never sees it (a ctr
/// race, with runc too). So stdin is closed only once the task runs (or ctr is gone).
pub fn run_rm_stdin(id: &str, opts: &[&str], cmd: &[&str], input: &[u8]) -> RunOutput {
    let mut child = spawn_ctr_with_stdin(&strs(&run_args(true, id, opts, cmd)));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let ctr_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (id, ctr_done) = (id.to_string(), ctr_done.clone());
        std::thread::spawn(move || {
            // The container may exit before reading everything: EPIPE is fine.
            let _ = stdin.write_all(&input);
            let _ = poll(Duration::from_secs(CTR_TIMEOUT_SECS), || {
                let started = task_info(&id).is_some_and(|t| t.status != "CREATED");
                (started || ctr_done.load(Ordering::SeqCst)).then_some(())
            });
            drop(stdin);
        })
    };
    let out = child.wait_with_output().expect("wait ctr");
    ctr_done.store(true, Ordering::SeqCst);
    writer.join().expect("stdin writer");
    out.into()
}

/// `ctr run --rm OPTS... IMAGE ID CMD...` in the background (stdout and stderr piped).
pub fn spawn_run_rm(id: &str, opts: &[&str], cmd: &[&str]) -> Child {
    spawn_ctr(&strs(&run_args(true, id, opts, cmd)))
}

/// ctr ARGS in the background (stdout and stderr piped).
pub fn spawn_ctr(args: &[&str]) -> Child {
    ctr_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr")
}

/// ctr ARGS in the background with stdin, stdout and stderr piped.
pub fn spawn_ctr_with_stdin(args: &[&str]) -> Child {
    ctr_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr")
}

/// Wait for a [`spawn_run_rm`] (bounded by its `timeout`).
pub fn finish(child: Child) -> RunOutput {
    child.wait_with_output().expect("wait ctr").into()
}

/// `ctr run -d OPTS... IMAGE ID CMD...`; panics unless it succeeds.
pub fn run_detached(id: &str, opts: &[&str], cmd: &[&str]) {
    let mut o = vec!["-d"];
    o.extend_from_slice(opts);
    let out: RunOutput = ctr(&strs(&run_args(false, id, &o, cmd))).into();
    assert_eq!(
        out.code,
        0,
        "ctr run -d {id}: {out:?}\n{}",
        containerd_log(id)
    );
}

// ---------------------------------------------------------------------------------------------
// --config specs

/// containerd's default spec made runnable for container `id` without an image snapshot:
/// root = the unpacked busybox (read-only), `args`, PATH, cgroupsPath `/<namespace>/<id>`.
pub fn spec_for(id: &str, args: &[&str]) -> Value {
    let e = env();
    let mut s = e.default_spec.clone();
    s["root"] = json!({ "path": e.rootfs.display().to_string(), "readonly": true });
    s["process"]["args"] = json!(args);
    s["process"]["env"] = json!([CONTAINER_PATH]);
    s["process"]["terminal"] = json!(false);
    s["process"]["cwd"] = json!("/");
    s["linux"]["cgroupsPath"] = json!(cgroups_path(id));
    s
}

/// Write `spec` as `<spec dir>/<id>.json`; returns its path.
pub fn write_spec(id: &str, spec: &Value) -> String {
    let path = env().spec_dir.join(format!("{id}.json"));
    fs::write(
        &path,
        serde_json::to_vec_pretty(spec).expect("spec to JSON"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

/// `ctr containers create --runtime RT --config SPEC ID` with `spec` written for it (no task
/// yet: the caller creates it, through containerd's API for options ctr cannot send); returns
/// the spec's path.
pub fn create_container(id: &str, spec: &Value) -> String {
    let spec_path = write_spec(id, spec);
    let rt = env().runtime.clone();
    ctr_ok(&[
        "containers",
        "create",
        "--runtime",
        &rt,
        "--config",
        &spec_path,
        id,
    ]);
    spec_path
}

fn config_run_args(id: &str, spec: &Value) -> Vec<String> {
    let e = env();
    vec![
        "run".into(),
        "--rm".into(),
        "--runtime".into(),
        e.runtime.clone(),
        "--fifo-dir".into(),
        e.fifo_dir.display().to_string(),
        "--config".into(),
        write_spec(id, spec),
        id.into(),
    ]
}

/// `ctr run --rm --config SPEC ID`.
pub fn run_config_rm(id: &str, spec: &Value) -> RunOutput {
    ctr(&strs(&config_run_args(id, spec))).into()
}

/// `ctr run --rm --config SPEC ID` in the background.
pub fn spawn_config_rm(id: &str, spec: &Value) -> Child {
    spawn_ctr(&strs(&config_run_args(id, spec)))
}

// ---------------------------------------------------------------------------------------------
// ids, polling, tasks

/// A container id unique in this test run and across runs: `n<counter>-<tag>-<pid>`. No id is
/// a substring of another, so leak checks can grep for it.
pub fn unique_id(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("n{n}-{}-{}", tag.trim_matches('-'), std::process::id())
}

/// Call `f` until it returns `Some`, at most `timeout`; `None` if time ran out.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

/// [`poll`], panicking with `what` when time runs out.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// A task as `ctr task ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub pid: u32,
    pub status: String,
}

/// The task of container `id` in `ctr task ls`, if listed.
pub fn task_info(id: &str) -> Option<TaskInfo> {
    let out = ctr(&["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id).then(|| TaskInfo {
                pid: f[1].parse().unwrap_or(0),
                status: f[2].to_string(),
            })
        })
}

/// Wait until the task of `id` has `status` (e.g. RUNNING, STOPPED).
pub fn wait_task_status(id: &str, status: &str, timeout: Duration) -> TaskInfo {
    wait_for(&format!("task {id} to be {status}"), timeout, || {
        task_info(id).filter(|t| t.status == status)
    })
}

/// Wait until the task of `id`, started by the background `ctr run` `child`, is RUNNING. Panics
/// with ctr's output if ctr exits first (the container failed to start).
pub fn wait_running(id: &str, child: &mut Child) -> TaskInfo {
    let mut exited = None;
    let task = poll(RUN_START_TIMEOUT, || {
        if let Some(t) = task_info(id).filter(|t| t.status == "RUNNING") {
            return Some(Some(t));
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                exited = Some(status);
                Some(None)
            }
            _ => None,
        }
    });
    match (task, exited) {
        (Some(Some(t)), _) => t,
        (_, Some(status)) => {
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "ctr run for {id} exited ({status}) before the task ran:\nstdout: {out}\nstderr: {err}\n{}",
                containerd_log(id)
            )
        }
        _ => panic!(
            "task {id} not RUNNING after {RUN_START_TIMEOUT:?}: {:?}\n{}",
            task_info(id),
            containerd_log(id)
        ),
    }
}

/// Pids listed by `ctr task ps ID`.
pub fn task_pids(id: &str) -> Vec<u32> {
    let out = ctr(&["task", "ps", id]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Best-effort removal of container `id` (task and container), e.g. after a failed test.
/// Never panics (it runs from [`Guard`]'s drop during a panic).
pub fn force_remove(id: &str) {
    let Some(e) = ENV.get() else { return };
    let ctr = |args: &[&str]| -> Option<Output> {
        Command::new("timeout")
            .args(["-k", "5", "20", "ctr", "--address"])
            .arg(&e.address)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
    };
    let _ = ctr(&["task", "kill", "-a", "-s", "SIGKILL", id]);
    let _ = poll(Duration::from_secs(5), || {
        let out = ctr(&["task", "ls"])?;
        let listed = String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&id) && f.get(2) != Some(&"STOPPED")
        });
        (!listed).then_some(())
    });
    let _ = ctr(&["task", "delete", "-f", id]);
    let _ = ctr(&["containers", "delete", id]);
}

/// Removes the container when dropped while the test is panicking, so that one failure does
/// not leave a running container to the tests after it.
pub struct Guard(pub String);

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            force_remove(&self.0);
        }
    }
}

/// The containerd log lines that mention `id` (the last 40), for failure messages.
pub fn containerd_log(id: &str) -> String {
    let log = fs::read_to_string(env().dir.join("containerd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    format!(
        "--- containerd.log lines mentioning {id} ---\n{}",
        tail.join("\n")
    )
}

// ---------------------------------------------------------------------------------------------
// leak checks

/// Everything container `id` left behind (empty: nothing). See [`assert_nothing_left`].
pub fn leftovers(id: &str) -> Vec<String> {
    let e = env();
    let mut left = Vec::new();

    // processes: anything whose argv mentions the id (the shim: `... -id <id> ...`)
    let me = std::process::id().to_string();
    if let Ok(rd) = fs::read_dir("/proc") {
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
                continue;
            }
            if let Ok(cmdline) = fs::read(ent.path().join("cmdline")) {
                let argv: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                if argv.iter().any(|a| a.contains(id)) {
                    left.push(format!("process {name}: {}", argv.join(" ")));
                }
            }
        }
    }

    // cgroups: any directory whose path contains the id, in every hierarchy
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for ent in rd.flatten() {
            let p = ent.path();
            if p.is_symlink() || !p.is_dir() {
                continue;
            }
            find_dirs_containing(&p, id, 8, &mut left);
        }
    }

    // mounts
    if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
        left.extend(
            mi.lines()
                .filter(|l| l.contains(id))
                .map(|l| format!("mount: {l}")),
        );
    }

    // runtime state and containerd's bundle
    let mut dirs = vec![e
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(NAMESPACE)
        .join(id)];
    if let Some(root) = &e.state_root {
        dirs.push(root.join(NAMESPACE).join(id));
    }
    for d in dirs {
        if d.exists() {
            left.push(format!("directory {}", d.display()));
        }
    }

    // systemd units (the systemd driver's scopes; a failed unit stays listed until reset)
    if Path::new("/run/systemd/system").is_dir() {
        if let Ok(out) = std::process::Command::new("systemctl")
            .args([
                "list-units",
                "--all",
                "--plain",
                "--no-legend",
                "--no-pager",
            ])
            .arg(format!("*{id}*"))
            .output()
        {
            left.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("systemd unit: {}", l.trim())),
            );
        }
    }

    // containerd's view
    let tasks = ctr(&["task", "ls", "-q"]);
    if String::from_utf8_lossy(&tasks.stdout)
        .lines()
        .any(|l| l.trim() == id)
    {
        left.push("ctr task ls lists it".into());
    }
    let containers = ctr(&["containers", "ls", "-q"]);
    if String::from_utf8_lossy(&containers.stdout)
        .lines()
        .any(|l| l.trim() == id)
    {
        left.push("ctr containers ls lists it".into());
    }
    left
}

fn find_dirs_containing(dir: &Path, id: &str, depth: u32, out: &mut Vec<String>) {
    if dir.to_string_lossy().contains(id) {
        out.push(format!("cgroup {}", dir.display()));
        return;
    }
    if depth == 0 {
        return;
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for ent in rd.flatten() {
            if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                find_dirs_containing(&ent.path(), id, depth - 1, out);
            }
        }
    }
}

/// Container `id` is gone without a trace: no process whose argv mentions it (shim included),
/// no cgroup, no systemd unit, no mount, no runtime state directory
/// (`/run/myshim/<namespace>/<id>`), no containerd bundle, and neither `ctr task ls` nor
/// `ctr containers ls` lists it. Waits up to [`CLEANUP_TIMEOUT`] for that (shims exit
/// asynchronously).
pub fn assert_nothing_left(id: &str) {
    let mut last = Vec::new();
    let clean = poll(CLEANUP_TIMEOUT, || {
        last = leftovers(id);
        last.is_empty().then_some(())
    });
    if clean.is_none() {
        panic!(
            "container {id} left behind after {CLEANUP_TIMEOUT:?}:\n  {}\n{}",
            last.join("\n  "),
            containerd_log(id)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ctr task exec

/// The arguments of `ctr task exec --fifo-dir F --exec-id EXEC OPTS... ID CMD...`.
pub fn exec_args(id: &str, exec_id: &str, opts: &[&str], cmd: &[&str]) -> Vec<String> {
    let e = env();
    let mut a: Vec<String> = vec!["task".into(), "exec".into()];
    a.extend(["--fifo-dir".into(), e.fifo_dir.display().to_string()]);
    a.extend(["--exec-id".into(), exec_id.into()]);
    a.extend(opts.iter().map(|s| s.to_string()));
    a.push(id.into());
    a.extend(cmd.iter().map(|s| s.to_string()));
    a
}

/// `ctr task exec --exec-id EXEC OPTS... ID CMD...` (in the foreground: ctr exits with the
/// process's exit status).
pub fn exec(id: &str, exec_id: &str, opts: &[&str], cmd: &[&str]) -> RunOutput {
    ctr(&strs(&exec_args(id, exec_id, opts, cmd))).into()
}

/// `ctr run -d IMAGE ID sleep 1000` (plus `opts`), RUNNING; returns the task.
pub fn run_sleeper(id: &str, opts: &[&str]) -> TaskInfo {
    run_detached(id, opts, &["sleep", "1000"]);
    wait_task_status(id, "RUNNING", RUN_START_TIMEOUT)
}

/// [`exec`] for a process whose output the test checks, run again (with another exec id, at
/// most twice) while `lost(output)`: ctr 1.6 sometimes loses the output of a process that exits
/// right after writing it, on a busy machine, with runc as with myshim, so on ctr's side
/// (probably its client closing the fifos on the exit before its copy goroutine read them).
/// Measured with `sh -c 'echo ...; exit N'` under load: on runc 1 in 100 sequential execs and
/// 1 in 40 concurrent ones, on myshim 1 in 200 concurrent ones. A shim that never passes the
/// output through still fails every attempt.
pub fn exec_retry_lost(
    id: &str,
    exec_id: &str,
    opts: &[&str],
    cmd: &[&str],
    lost: impl Fn(&RunOutput) -> bool,
) -> RunOutput {
    let mut out = exec(id, exec_id, opts, cmd);
    for n in 1..=2 {
        if !lost(&out) {
            break;
        }
        eprintln!("exec {exec_id} in {id}: output lost ({out:?}), running it again");
        out = exec(id, &format!("{exec_id}-again{n}"), opts, cmd);
    }
    out
}

/// [`exec`] in the background (stdout and stderr piped).
pub fn spawn_exec(id: &str, exec_id: &str, opts: &[&str], cmd: &[&str]) -> Child {
    spawn_ctr(&strs(&exec_args(id, exec_id, opts, cmd)))
}

/// `ctr task exec --detach ...`; panics unless ctr succeeds.
pub fn exec_detached(id: &str, exec_id: &str, cmd: &[&str]) {
    let out = exec(id, exec_id, &["--detach"], cmd);
    assert_eq!(
        out.code,
        0,
        "ctr task exec --detach --exec-id {exec_id} {id}: {out:?}\n{}",
        containerd_log(id)
    );
}

/// Kill every process of `id` (SIGKILL), wait until STOPPED, `ctr task delete`,
/// `ctr containers rm`, then [`assert_nothing_left`]. Returns what `ctr task delete` printed on
/// stderr.
pub fn kill_delete_rm(id: &str) -> String {
    ctr_ok(&["task", "kill", "-a", "-s", "SIGKILL", id]);
    wait_task_status(id, "STOPPED", Duration::from_secs(20));
    let out = ctr(&["task", "delete", id]);
    assert!(
        out.status.success(),
        "ctr task delete {id}: {out:?}\n{}",
        containerd_log(id)
    );
    ctr_ok(&["containers", "rm", id]);
    assert_nothing_left(id);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// events

/// One line of `ctr events`: `<time> <namespace> <topic> <event as JSON>`.
#[derive(Debug, Clone)]
pub struct Event {
    pub namespace: String,
    pub topic: String,
    pub body: Value,
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        // The time ("2006-01-02 15:04:05.999999999 +0000 UTC") and the namespace have no '/':
        // the topic is the first word starting with '/'.
        let start = line.find(" /")? + 1;
        let namespace = line[..start - 1].rsplit(' ').next()?.to_string();
        let rest = &line[start..];
        let (topic, body) = rest.split_once(' ').unwrap_or((rest, "{}"));
        Some(Event {
            namespace,
            topic: topic.to_string(),
            body: serde_json::from_str(body.trim()).unwrap_or(Value::Null),
        })
    }

    /// The container the event is about: `container_id`, or `id` for /containers/ events.
    pub fn container(&self) -> Option<&str> {
        let v = match self.body.get("container_id") {
            Some(v) => v,
            None if self.topic.starts_with("/containers/") => self.body.get("id")?,
            None => return None,
        };
        v.as_str()
    }

    /// A string field of the event's body.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    /// `exit_status` of a /tasks/exit or /tasks/delete event (omitted when 0).
    pub fn exit_status(&self) -> u64 {
        self.body
            .get("exit_status")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// `ctr events` in the background, collecting what it prints; stopped (SIGTERM to its
/// `timeout`, which passes it on to ctr) when dropped.
pub struct EventWatcher {
    child: Child,
    events: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Bound of a `ctr events` (it is stopped by its test well before).
const EVENTS_TIMEOUT_SECS: u64 = 600;

impl EventWatcher {
    /// Start `ctr events` and return once it is subscribed (it has printed an event caused
    /// after it started: the creation of a namespace made for that, removed again).
    pub fn start() -> EventWatcher {
        let e = env();
        let mut child = Command::new("timeout")
            .args([
                "-k",
                "5",
                &EVENTS_TIMEOUT_SECS.to_string(),
                "ctr",
                "--address",
            ])
            .arg(&e.address)
            .args(["--namespace", NAMESPACE, "events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ctr events");
        let stdout = child.stdout.take().expect("stdout");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = {
            let events = events.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(ev) = Event::parse(&line) {
                        events.lock().unwrap().push(ev);
                    }
                }
            })
        };
        let w = EventWatcher {
            child,
            events,
            reader: Some(reader),
        };
        let subscribed = poll(Duration::from_secs(20), || {
            let probe = unique_id("evprobe");
            let created = ctr(&["namespaces", "create", &probe]).status.success();
            let seen = created
                && poll(Duration::from_millis(500), || {
                    w.find(|ev| ev.topic == "/namespaces/create" && ev.str("name") == Some(&probe))
                })
                .is_some();
            let _ = ctr(&["namespaces", "remove", &probe]);
            seen.then_some(())
        });
        assert!(subscribed.is_some(), "ctr events printed nothing in 20 s");
        w
    }

    /// Everything seen so far.
    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The events about container `id` (in the tests' namespace) seen so far.
    pub fn of(&self, id: &str) -> Vec<Event> {
        self.all()
            .into_iter()
            .filter(|e| e.namespace == NAMESPACE && e.container() == Some(id))
            .collect()
    }

    /// The first event seen so far that matches `pred`.
    pub fn find(&self, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|e| pred(e))
            .cloned()
    }

    /// Wait up to `timeout` for an event about container `id` with `topic` that matches
    /// `pred`; `None` if none came.
    pub fn poll_for(
        &self,
        id: &str,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        poll(timeout, || {
            self.find(|e| {
                e.namespace == NAMESPACE && e.container() == Some(id) && e.topic == topic && pred(e)
            })
        })
    }

    /// [`EventWatcher::poll_for`], panicking (with the events of `id`) when none came.
    pub fn wait_for(
        &self,
        id: &str,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Event {
        self.poll_for(id, topic, timeout, pred).unwrap_or_else(|| {
            panic!(
                "no {topic} event for {id} within {timeout:?}; its events:\n{}\n{}",
                self.of(id)
                    .iter()
                    .map(|e| format!("  {} {}", e.topic, e.body))
                    .collect::<Vec<_>>()
                    .join("\n"),
                containerd_log(id)
            )
        })
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-s", "TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let done = poll(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().map(|_| ())
        });
        if done.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// host processes

/// The process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of the shims serving container `id`: `containerd-shim-*` with `-id <id>` in argv.
pub fn shim_pids(id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for ent in rd.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(ent.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = argv.first().is_some_and(|a| {
            Path::new(a)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"))
        });
        if is_shim && argv.windows(2).any(|w| w[0] == "-id" && w[1] == id) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether the host's /sys/fs/cgroup is the cgroup v2 unified hierarchy (a hybrid host's is not).
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's line of a `/proc/<pid>/cgroup` text: the memory controller's on cgroup v1,
/// the unified `0::` one on cgroup v2.
pub fn container_cgroup_line(text: &str) -> Option<String> {
    let v2 = cgroup_v2();
    text.lines()
        .find(|l| {
            let ctrl = l.split(':').nth(1).unwrap_or("");
            if v2 {
                l.starts_with("0::")
            } else {
                ctrl.split(',').any(|c| c == "memory")
            }
        })
        .map(str::to_string)
}

/// The slice of the containers when the tests run under the systemd driver.
pub const TEST_SLICE: &str = "myshim-test.slice";

/// Whether the tests run their containers under the systemd cgroup driver
/// (`MYSHIM_TEST_CGROUPS=systemd`, the guest suites' second pass): every container gets the
/// cgroupsPath `myshim-test.slice:cri-containerd:<id>`, the form a Kubernetes node's CRI plugin
/// sends with `SystemdCgroup = true`. Otherwise cgroupfs with ctr's `/<namespace>/<id>`.
pub fn systemd_driver() -> bool {
    std::env::var("MYSHIM_TEST_CGROUPS").is_ok_and(|v| v == "systemd")
}

/// The spec's `linux.cgroupsPath` of container `id` under the tests' cgroup driver.
pub fn cgroups_path(id: &str) -> String {
    if systemd_driver() {
        format!("{TEST_SLICE}:cri-containerd:{id}")
    } else {
        format!("/{NAMESPACE}/{id}")
    }
}

/// Container `id`'s cgroup relative to a hierarchy's root, as `/proc/<pid>/cgroup` shows it:
/// `/<namespace>/<id>`, or under the systemd driver its scope in the test slice
/// (`myshim-test.slice` is `myshim.slice/myshim-test.slice`, as systemd nests dashed names).
pub fn container_cgroup(id: &str) -> String {
    if systemd_driver() {
        format!("/myshim.slice/{TEST_SLICE}/cri-containerd-{id}.scope")
    } else {
        format!("/{NAMESPACE}/{id}")
    }
}

/// A cgroup file of container `id` on the host: `/sys/fs/cgroup/<ctrl>/<cgroup>/<v1_file>` on
/// cgroup v1, `/sys/fs/cgroup/<cgroup>/<v2_file>` on v2 (`<cgroup>`: [`container_cgroup`]).
pub fn container_cgroup_file(id: &str, ctrl: &str, v1_file: &str, v2_file: &str) -> PathBuf {
    let cg = container_cgroup(id);
    if cgroup_v2() {
        PathBuf::from(format!("/sys/fs/cgroup{cg}/{v2_file}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{cg}/{v1_file}"))
    }
}

/// Pids of live shim daemons started with `-address ADDRESS` (containerd's socket), sorted.
pub fn shim_daemons(address: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for ent in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(ent.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let shim = argv
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
        if shim
            && argv
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == address.as_bytes())
            && process_alive(pid)
        {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// `kill -s SIG PID`.
pub fn send_signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -s {sig} {pid} failed");
}

// ---------------------------------------------------------------------------------------------
// terminals: ctr -t under util-linux `script`, which gives it a pseudo-terminal

/// Is util-linux `script` installed (Debian: bsdutils, essential)?
pub fn have_script() -> bool {
    Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `s` quoted for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line for sh: ctr ARGS bounded by `timeout --foreground` (plain `timeout` would
/// put ctr in a background process group of the terminal, where ctr -t is stopped by SIGTTOU).
pub fn ctr_shell_command(args: &[&str]) -> String {
    let e = env();
    let mut words = vec![
        "timeout".to_string(),
        "--foreground".into(),
        "-k".into(),
        "5".into(),
        CTR_TIMEOUT_SECS.to_string(),
        "ctr".into(),
        "--address".into(),
        e.address.display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A shell script run by `script -qec 'sh FILE' /dev/null` (its own pseudo-terminal), with
/// its output collected as it comes.
pub struct PtySession {
    child: Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr_reader: Option<std::thread::JoinHandle<String>>,
}

impl PtySession {
    /// Start `shell` (sh code) in a new terminal; `tag` names the script file.
    pub fn start(tag: &str, shell: &str) -> PtySession {
        let file = env().spec_dir.join(format!("{tag}.pty.sh"));
        fs::write(&file, shell).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let mut child = Command::new("timeout")
            .args(["-k", "5", &(CTR_TIMEOUT_SECS + 30).to_string()])
            .args(["script", "-qec"])
            .arg(format!("sh {}", sh_quote(&file.display().to_string())))
            .arg("/dev/null")
            // a pipe nobody writes to: script forwards no input and sees no EOF
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn script");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        PtySession {
            child,
            output,
            reader: Some(reader),
            stderr_reader: Some(stderr_reader),
        }
    }

    /// What the terminal showed so far, without the terminal's `\r`s and NULs.
    pub fn output(&self) -> String {
        let raw = self.output.lock().unwrap().clone();
        String::from_utf8_lossy(&raw).replace(['\r', '\0'], "")
    }

    /// Wait until the output has a whole line starting with `prefix`; returns that line.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let found = poll(timeout, || {
            let out = self.output();
            // only complete lines: the last one may still be arriving
            let complete = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
            // (a terminal may show `^@` first: the echo of a NUL byte written to it)
            complete
                .lines()
                .map(|l| l.trim_start_matches("^@"))
                .find(|l| l.starts_with(prefix))
                .map(str::to_string)
        });
        found.unwrap_or_else(|| {
            panic!(
                "the terminal showed no line starting with {prefix:?} within {timeout:?}; it \
                 showed:\n{}",
                self.output()
            )
        })
    }

    /// Wait for `script` to end (it is bounded by its `timeout`): the exit status of the
    /// script (= of its last command) and the terminal's output.
    pub fn finish(mut self) -> RunOutput {
        let status = self.child.wait().expect("wait script");
        drop(self.child.stdin.take());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self
            .stderr_reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        RunOutput {
            stdout: self.output(),
            stderr,
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        }
    }
}

impl Drop for PtySession {
    /// A session left running by a failed test: SIGTERM to its `timeout`, which passes it on to
    /// `script` (which ends its terminal and so the command in it).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            if poll(Duration::from_secs(10), || {
                self.child.try_wait().ok().flatten().map(|_| ())
            })
            .is_none()
            {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// ctr ARGS bounded by `timeout -k 5 SECS` (for calls that must not take the usual 60 s when
/// the runtime misbehaves, e.g. an exec into a frozen container).
pub fn ctr_within(secs: u64, args: &[&str]) -> RunOutput {
    let e = env();
    Command::new("timeout")
        .args(["-k", "5", &secs.to_string(), "ctr", "--address"])
        .arg(&e.address)
        .args(["--namespace", NAMESPACE])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn ctr")
        .into()
}
