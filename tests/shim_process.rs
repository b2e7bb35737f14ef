//! The shim process as containerd drives it: `-v` and `-info`, the `start` action as each
//! containerd generation runs it (1.6: plain address; 1.7: JSON bootstrap; 2.3+: a
//! `BootstrapParams` stdin and task API v3), the runc options' `ShimCgroup`, one daemon per
//! pod, exits that happen while containerd is down, and an exec created then deleted.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use containerd_shim::api::{
    ConnectRequest, DeleteRequest, DeleteResponse, ExecProcessRequest, Options as RuncOptions,
    ShutdownRequest,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{CodedOutputStream, Message};
use containerd_shim::protos::shim::shim_ttrpc::TaskClient;
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::introspection::RuntimeInfo;
use serde_json::json;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-myshim-v2");

fn run_shim(args: &[&str], envs: &[(&str, &str)], cwd: &Path, stdin: &[u8]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "30", SHIM])
        .args(args)
        .current_dir(cwd)
        .env_remove("MAX_SHIM_VERSION")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the shim");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write the shim's stdin");
    child.wait_with_output().expect("wait for the shim")
}

fn runc_options(opts: RuncOptions) -> Any {
    Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: opts.write_to_bytes().expect("encode options"),
        ..Default::default()
    }
}

/// `-v` and `-version` print the name, version and revision; `-info` answers a `RuntimeInfo`
/// with the options it was given and the OCI features document.
#[test]
fn version_and_info() {
    let cwd = std::env::temp_dir();
    for flag in ["-v", "-version"] {
        let out = run_shim(&[flag], &[], &cwd, b"");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flag}: {out:?}");
        assert!(text.contains("containerd-shim-myshim-v2"), "{text}");
        assert!(
            text.contains("Version:") && text.contains("Revision:"),
            "{text}"
        );
    }
    let opts = runc_options(RuncOptions {
        shim_cgroup: "/x".into(),
        ..Default::default()
    });
    let out = run_shim(&["-info"], &[], &cwd, &opts.write_to_bytes().unwrap());
    assert!(out.status.success(), "-info: {out:?}");
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).expect("a RuntimeInfo");
    assert_eq!(info.name, "io.containerd.myshim.v2");
    assert!(!info.version.version.is_empty() && !info.version.revision.is_empty());
    assert_eq!(info.options.type_url, "containerd.runc.v1.Options");
    assert_eq!(
        info.features.type_url,
        "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
    );
    let features: serde_json::Value =
        serde_json::from_slice(&info.features.value).expect("features JSON");
    let ns = features["linux"]["namespaces"]
        .as_array()
        .expect("namespaces");
    for n in ["pid", "mount", "user", "network"] {
        assert!(ns.contains(&json!(n)), "{ns:?}");
    }
    assert_eq!(features["linux"]["seccomp"]["enabled"], json!(true));
    assert!(features["linux"]["capabilities"]
        .as_array()
        .is_some_and(|c| c.contains(&json!("CAP_NET_ADMIN"))));
    // without options
    let out = run_shim(&["-info"], &[], &cwd, b"");
    assert!(out.status.success(), "-info: {out:?}");
    assert!(RuntimeInfo::parse_from_bytes(&out.stdout)
        .unwrap()
        .options
        .is_none());
    // garbage options: a clear error, exit 1
    let out = run_shim(&["-info"], &[], &cwd, b"\xff\xff\xff");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runtime options"),
        "{out:?}"
    );
}

/// A bundle directory for the `start` action: config.json with a group annotation.
struct FakeBundle {
    dir: PathBuf,
}

impl FakeBundle {
    fn new(tag: &str, group: &str) -> FakeBundle {
        let dir = std::env::temp_dir().join(format!("myshim-start-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("config.json"),
            json!({"annotations": {"io.kubernetes.cri.sandbox-id": group}}).to_string(),
        )
        .unwrap();
        FakeBundle { dir }
    }
}

impl Drop for FakeBundle {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A `BootstrapParams` as containerd 2.3 writes it to `start`'s stdin.
fn bootstrap_params(id: &str, ns: &str, grpc: &str, socket_dir: &str, opts: &Any) -> Vec<u8> {
    let mut ext = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut ext);
        os.write_bytes(1, &opts.write_to_bytes().unwrap()).unwrap();
        os.flush().unwrap();
    }
    let mut buf = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut buf);
        os.write_string(1, id).unwrap();
        os.write_string(2, ns).unwrap();
        os.write_int32(3, -4).unwrap(); // debug
        os.write_string(4, "2.3.0").unwrap();
        os.write_string(5, "/nonexistent/containerd.sock.ttrpc")
            .unwrap();
        os.write_string(6, grpc).unwrap();
        os.write_string(7, "/usr/bin/containerd").unwrap();
        os.write_bytes(8, &ext).unwrap();
        os.write_string(9, socket_dir).unwrap();
        os.flush().unwrap();
    }
    buf
}

/// Ask the daemon at `address` to shut down and wait until it is gone with its socket.
fn shutdown(address: &str, pid: u32) {
    let client = TaskClient::new(ttrpc::Client::connect(address).expect("connect"));
    // The daemon may exit before it answers: either outcome is fine.
    let _ = client.shutdown(
        ttrpc::context::with_timeout(5_000_000_000),
        &ShutdownRequest::default(),
    );
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        (!process_alive(pid)).then_some(())
    });
    let path = address.trim_start_matches("unix://");
    wait_for("the socket to go", Duration::from_secs(5), || {
        (!Path::new(path).exists()).then_some(())
    });
}

/// The shim pid that answers `Connect` on `address`, through `service` (v2 or v3).
fn connect(address: &str, service: &str) -> u32 {
    let client = ttrpc::Client::connect(address).expect("connect");
    let req = ttrpc::Request {
        service: service.into(),
        method: "Connect".into(),
        payload: ConnectRequest::default().write_to_bytes().unwrap(),
        timeout_nano: 5_000_000_000,
        ..Default::default()
    };
    let res = client.request(req).expect("Connect");
    assert_eq!(
        res.status.code(),
        ttrpc::Code::OK,
        "{service}/Connect: {res:?}"
    );
    containerd_shim::api::ConnectResponse::parse_from_bytes(&res.payload)
        .expect("ConnectResponse")
        .shim_pid
}

/// Remove `path` in every cgroup hierarchy (the shim cgroup the test asked for).
fn remove_cgroup(path: &str) {
    for ent in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = fs::remove_dir(ent.path().join(path.trim_start_matches('/')));
    }
    let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
}

/// containerd 1.6: options `Any` on stdin, no `MAX_SHIM_VERSION`: a plain address; the daemon
/// joins the runc options' `ShimCgroup`; a second container of the same pod joins the same
/// daemon; Shutdown ends it and removes its socket; `delete` answers after it.
#[test]
fn start_as_containerd_1_6_with_shim_cgroup_and_grouping() {
    let ns = "myshim-test-start";
    let grpc = format!("/run/myshim-test-start-16-{}.sock", std::process::id());
    let group = unique_id("pod16");
    let b1 = FakeBundle::new("16a", &group);
    let b2 = FakeBundle::new("16b", &group);
    let cgroup = format!("/myshim-test-shimcg-{}", std::process::id());
    let opts = runc_options(RuncOptions {
        shim_cgroup: cgroup.clone(),
        ..Default::default()
    });
    let args = |id: &str| {
        vec![
            "-namespace".to_string(),
            ns.to_string(),
            "-id".into(),
            id.into(),
            "-address".into(),
            grpc.clone(),
            "-publish-binary".into(),
            "/usr/bin/containerd".into(),
            "start".into(),
        ]
    };
    let envs = [("TTRPC_ADDRESS", "/nonexistent/containerd.sock.ttrpc")];
    let out = run_shim(
        &strs(&args("c1")),
        &envs,
        &b1.dir,
        &opts.write_to_bytes().unwrap(),
    );
    assert!(out.status.success(), "start: {out:?}");
    let address = String::from_utf8(out.stdout).unwrap();
    assert!(
        address.starts_with("unix:///run/containerd/s/"),
        "{address}"
    );
    assert_eq!(fs::read_to_string(b1.dir.join("address")).unwrap(), address);
    let pid = connect(&address, "containerd.task.v2.Task");
    assert_eq!(shim_daemons(&grpc), vec![pid]);
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines().any(|l| l.ends_with(&format!(":{cgroup}"))),
        "the daemon is not in {cgroup}:\n{cg}"
    );
    // the pod's next container: same address, no new daemon
    let out = run_shim(&strs(&args("c2")), &envs, &b2.dir, b"");
    assert!(out.status.success(), "second start: {out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), address);
    assert_eq!(
        shim_daemons(&grpc),
        vec![pid],
        "a second daemon was spawned"
    );
    shutdown(&address, pid);
    // containerd's cleanup after the daemon: `delete` answers a DeleteResponse
    let mut del = args("c1");
    *del.last_mut().unwrap() = "delete".into();
    let out = run_shim(&strs(&del), &envs, &b1.dir, b"");
    assert!(out.status.success(), "delete: {out:?}");
    let resp = DeleteResponse::parse_from_bytes(&out.stdout).expect("DeleteResponse");
    assert_eq!(resp.exit_status, 137);
    assert!(shim_daemons(&grpc).is_empty());
    remove_cgroup(&cgroup);
}

/// containerd 1.7 (MAX_SHIM_VERSION=2, options `Any`): the JSON bootstrap with version 2.
#[test]
fn start_as_containerd_1_7_answers_json_v2() {
    let ns = "myshim-test-start";
    let grpc = format!("/run/myshim-test-start-17-{}.sock", std::process::id());
    let b = FakeBundle::new("17", &unique_id("pod17"));
    let opts = runc_options(RuncOptions::default());
    let envs = [
        ("TTRPC_ADDRESS", "/nonexistent/containerd.sock.ttrpc"),
        ("MAX_SHIM_VERSION", "2"),
    ];
    let args = ["-namespace", ns, "-id", "c17", "-address", &grpc, "start"];
    let out = run_shim(&args, &envs, &b.dir, &opts.write_to_bytes().unwrap());
    assert!(out.status.success(), "start: {out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["version"], json!(2), "{answer}");
    assert_eq!(answer["protocol"], json!("ttrpc"));
    let address = answer["address"].as_str().unwrap().to_string();
    let pid = connect(&address, "containerd.task.v2.Task");
    shutdown(&address, pid);
    assert!(shim_daemons(&grpc).is_empty());
}

/// containerd 2.3+: `BootstrapParams` on stdin: version 3, the socket in the directory it
/// names, task API v3 served (and v2 still), debug logging asked by its log level.
#[test]
fn start_as_containerd_2_3_answers_json_v3_in_its_socket_dir() {
    let ns = "myshim-test-start";
    let grpc = format!("/run/myshim-test-start-23-{}.sock", std::process::id());
    let b = FakeBundle::new("23", &unique_id("pod23"));
    let socket_dir = format!("/tmp/myshim-s-{}", std::process::id());
    let opts = runc_options(RuncOptions::default());
    let params = bootstrap_params("c23", ns, &grpc, &socket_dir, &opts);
    let envs = [("MAX_SHIM_VERSION", "2")];
    // containerd 2.3 passes no -address flag value it does not also put in the params
    let args = ["-namespace", ns, "-id", "c23", "-address", &grpc, "start"];
    let out = run_shim(&args, &envs, &b.dir, &params);
    assert!(out.status.success(), "start: {out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["version"], json!(3), "{answer}");
    let address = answer["address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with(&format!("unix://{socket_dir}/")),
        "{address} is not in {socket_dir}"
    );
    assert_eq!(
        fs::read_link(b.dir.join("s")).unwrap(),
        PathBuf::from(&socket_dir)
    );
    let pid = connect(&address, "containerd.task.v3.Task");
    assert_eq!(connect(&address, "containerd.task.v2.Task"), pid);
    let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        argv.split(|b| *b == 0).any(|a| a == b"-debug"),
        "debug log level not passed on"
    );
    shutdown(&address, pid);
    let _ = fs::remove_dir(&socket_dir);
}

/// The bundle state directory of container `id` in the tests' containerd.
fn bundle_dir(id: &str) -> PathBuf {
    env()
        .dir
        .join("state/io.containerd.runtime.v2.task")
        .join(NAMESPACE)
        .join(id)
}

/// An exec process created and deleted without being started answers status 0 and pid 0, as
/// containerd expects.
#[test]
fn exec_created_then_deleted_answers_0() {
    let id = unique_id("execdel");
    let _g = Guard(id.clone());
    run_detached(&id, &[], &["sleep", "1000"]);
    let address = fs::read_to_string(bundle_dir(&id).join("address")).expect("address file");
    let client = TaskClient::new(ttrpc::Client::connect(&address).expect("connect"));
    let ctx = || ttrpc::context::with_timeout(10_000_000_000);
    let spec = json!({"args": ["true"], "cwd": "/", "env": [CONTAINER_PATH], "user": {"uid": 0, "gid": 0}});
    let req = ExecProcessRequest {
        id: id.clone(),
        exec_id: "never-started".into(),
        spec: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: spec.to_string().into_bytes(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    client.exec(ctx(), &req).expect("Exec");
    let resp = client
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.clone(),
                exec_id: "never-started".into(),
                ..Default::default()
            },
        )
        .expect("Delete of the exec");
    assert_eq!((resp.exit_status, resp.pid), (0, 0), "{resp:?}");
    kill_delete_rm(&id);
}

/// `ctr run -d --config` of `spec` as container `id`; the time it took.
fn run_config_detached(id: &str, spec: &serde_json::Value) -> Duration {
    let e = env();
    let path = write_spec(id, spec);
    let t0 = Instant::now();
    let out: RunOutput = ctr(&[
        "run",
        "-d",
        "--runtime",
        &e.runtime,
        "--fifo-dir",
        &e.fifo_dir.display().to_string(),
        "--config",
        &path,
        id,
    ])
    .into();
    assert_eq!(
        out.code,
        0,
        "ctr run -d {id}: {out:?}\n{}",
        containerd_log(id)
    );
    t0.elapsed()
}

/// A pod: one sandbox and 200 containers carrying its sandbox id, created 10 at a time. One
/// daemon serves them all; none is left once all are deleted.
/// The soft and hard "Max open files" of process `pid` (/proc/<pid>/limits).
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in /proc/{pid}/limits: {limits}"));
    let f: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (
        f.first().copied().unwrap_or_default().to_string(),
        f.get(1).copied().unwrap_or_default().to_string(),
    )
}

#[test]
fn pod_of_200_containers_shares_one_daemon() {
    // 200 on the host; the guest suites ask for fewer (MYSHIM_TEST_POD_CONTAINERS): under
    // emulation 200 creates cost minutes, and the limit check below covers the fds' side.
    let containers: usize = std::env::var("MYSHIM_TEST_POD_CONTAINERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    const PARALLEL: usize = 10;
    let sandbox = unique_id("pod-sandbox");
    let _g = Guard(sandbox.clone());
    let pod_spec = |id: &str| {
        let mut s = spec_for(id, &["sleep", "100000"]);
        s["annotations"] = json!({
            "io.kubernetes.cri.sandbox-id": sandbox,
            "io.kubernetes.cri.container-type": if id == sandbox { "sandbox" } else { "container" },
        });
        s
    };
    run_config_detached(&sandbox, &pod_spec(&sandbox));
    let daemon = shim_pids(&sandbox);
    assert_eq!(daemon.len(), 1, "the sandbox's daemon: {daemon:?}");
    // a pod holds several fds per container in this one daemon: its soft open-file limit is
    // raised to the hard one (1024 would end near 110 containers)
    let (soft, hard) = open_file_limits(daemon[0]);
    assert_eq!(soft, hard, "the daemon's open-file limit is raised");
    let ids: Vec<String> = (0..containers)
        .map(|i| unique_id(&format!("pod-c{i}")))
        .collect();
    let guards: Vec<Guard> = ids.iter().map(|i| Guard(i.clone())).collect();
    let next = AtomicUsize::new(0);
    let slowest = Mutex::new(Duration::ZERO);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(id) = ids.get(i) else { break };
                let took = run_config_detached(id, &pod_spec(id));
                let mut m = slowest.lock().unwrap();
                *m = (*m).max(took);
            });
        }
    });
    eprintln!(
        "slowest ctr run -d of the pod: {:?}",
        slowest.lock().unwrap()
    );
    for id in &ids {
        assert!(shim_pids(id).is_empty(), "{id} got a daemon of its own");
    }
    assert_eq!(shim_pids(&sandbox), daemon, "the pod's daemon changed");
    let running = ctr_ok(&["task", "ls"]);
    assert_eq!(
        ids.iter()
            .filter(|id| running.contains(id.as_str()))
            .count(),
        containers
    );
    // tear down, 10 at a time, the sandbox last
    let next = AtomicUsize::new(0);
    let ids = Arc::new(ids);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(id) = ids.get(i) else { break };
                ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
                wait_task_status(id, "STOPPED", Duration::from_secs(30));
                ctr_ok(&["task", "delete", id]);
                ctr_ok(&["containers", "rm", id]);
            });
        }
    });
    assert_eq!(
        shim_pids(&sandbox),
        daemon,
        "the daemon left with containers of the pod"
    );
    kill_delete_rm(&sandbox);
    wait_for("the pod's daemon to exit", Duration::from_secs(10), || {
        shim_pids(&sandbox).is_empty().then_some(())
    });
    drop(guards);
    for id in ids.iter() {
        assert_nothing_left(id);
    }
}

/// A second private containerd for the restart test (its own directory, stopped by Drop).
struct OwnContainerd {
    dir: PathBuf,
}

impl OwnContainerd {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/containerd.sh")
    }

    fn start(dir: &Path) {
        let bin_dir = Path::new(SHIM).parent().unwrap();
        let out = Command::new(Self::script())
            .args(["start"])
            .arg(dir)
            .env("MYSHIM_BIN_DIR", bin_dir)
            .output()
            .expect("containerd.sh start");
        assert!(out.status.success(), "containerd.sh start: {out:?}");
    }

    fn new(tag: &str) -> OwnContainerd {
        let dir = PathBuf::from(format!("/tmp/myshim-{tag}-{}", std::process::id()));
        Self::start(&dir);
        OwnContainerd { dir }
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> RunOutput {
        Command::new("timeout")
            .args(["-k", "5", "60", "ctr", "--address"])
            .arg(self.sock())
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
            .into()
    }

    /// Stop containerd alone (SIGTERM to its pid), leaving its shims running.
    fn stop_daemon_only(&self) {
        let pid: u32 = fs::read_to_string(self.dir.join("containerd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        send_signal(pid, "TERM");
        wait_for("containerd to stop", Duration::from_secs(15), || {
            (!process_alive(pid)).then_some(())
        });
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("containerd.log")).unwrap_or_default())
            .into_owned()
    }
}

impl Drop for OwnContainerd {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// `Tasks/Wait` on containerd at `sock` for `id` (and `exec_id`): the exit status.
fn grpc_wait(sock: &Path, id: &str, exec_id: &str) -> Result<u64, String> {
    let mut req = Vec::new();
    grpc::pb_bytes(&mut req, 1, id.as_bytes());
    if !exec_id.is_empty() {
        grpc::pb_bytes(&mut req, 2, exec_id.as_bytes());
    }
    let resp = grpc::unary_at(
        sock,
        NAMESPACE,
        "/containerd.services.tasks.v1.Tasks/Wait",
        &req,
    )?;
    Ok(grpc::pb_varint_field(&resp, 1).unwrap_or(0))
}

/// Whether the `containerd` on PATH is 1.6 (the later ones clean up, at their restart, a shim
/// whose processes have all exited: containerd/containerd#6860).
fn containerd_is_1_6() -> bool {
    Command::new("containerd")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .is_some_and(|v| v.trim_start_matches('v').starts_with("1.6."))
        })
        .unwrap_or(false)
}

/// Exits that happen while containerd is down reach it once it is back. First an exec exits
/// (status 5) while the init runs on: after the restart its TaskExit is forwarded and Wait
/// answers 5. Then the init exits (status 7) while containerd is down again: containerd 1.6
/// gets its TaskExit and Wait answers 7; containerd 1.7 and 2.x, finding at their restart a
/// shim with no process left, delete the task themselves (as they do with runc's shim), and
/// the shim exits leaving nothing.
#[test]
fn exits_while_containerd_is_down_are_delivered() {
    if !testing_myshim() {
        return;
    }
    let c = OwnContainerd::new("restart");
    let id = unique_id("restart");
    // The processes exit on SIGUSR1, sent by the test while containerd is down (no timing:
    // under emulation a fixed sleep could end before the exec even starts).
    let waiting = |code: u8| format!("trap 'exit {code}' USR1; while :; do sleep 0.1; done");
    let spec = spec_for(&id, &["sh", "-c", &waiting(7)]);
    let path = write_spec(&id, &spec);
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        MYSHIM_RUNTIME,
        "--config",
        &path,
        &id,
    ]);
    assert_eq!(out.code, 0, "run: {out:?}");
    let out = c.ctr(&[
        "task",
        "exec",
        "-d",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        &waiting(5),
    ]);
    assert_eq!(out.code, 0, "exec: {out:?}");
    // the init's and the exec's sh (not their short-lived sleeps)
    let sh_pid = |marker: &str| {
        let out = c.ctr(&["task", "ps", &id]);
        out.stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse::<u32>().ok())
            .find(|p| {
                fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
            })
    };
    let exec_pid = wait_for("the exec", Duration::from_secs(60), || sh_pid("exit 5"));
    let init_pid = wait_for("the init", Duration::from_secs(60), || sh_pid("exit 7"));
    let shim = shim_pids(&id);
    assert_eq!(shim.len(), 1, "{shim:?}");

    // Containerd down while `pid` exits; back up; the number of TaskExit it logged before.
    let exit_while_down = |pid: u32| {
        c.stop_daemon_only();
        let before = c.log().matches("topic=/tasks/exit").count();
        send_signal(pid, "USR1");
        wait_for("the process to exit", Duration::from_secs(60), || {
            (!process_alive(pid)).then_some(())
        });
        std::thread::sleep(Duration::from_secs(1));
        assert!(process_alive(shim[0]), "the shim died with containerd away");
        OwnContainerd::start(&c.dir);
        before
    };
    let forwarded = |before: usize| {
        let ok = poll(Duration::from_secs(60), || {
            (c.log().matches("topic=/tasks/exit").count() > before).then_some(())
        });
        if ok.is_none() {
            let log = c.log();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&id) || l.contains("tasks/exit") || l.contains("shim"))
                .collect();
            panic!(
                "no TaskExit forwarded within 60 s after the restart; containerd's log:\n{}",
                tail[tail.len().saturating_sub(60)..].join("\n")
            );
        }
    };

    let before = exit_while_down(exec_pid);
    forwarded(before);
    assert_eq!(grpc_wait(&c.sock(), &id, "e1"), Ok(5));

    let before = exit_while_down(init_pid);
    if containerd_is_1_6() {
        forwarded(before);
        assert_eq!(grpc_wait(&c.sock(), &id, ""), Ok(7));
        let out = c.ctr(&["task", "delete", &id]);
        assert_eq!(out.code, 0, "task delete: {out:?}");
    } else {
        wait_for(
            "containerd to delete the task",
            Duration::from_secs(60),
            || {
                let out = c.ctr(&["task", "ls", "-q"]);
                (!out.stdout.lines().any(|l| l.trim() == id)).then_some(())
            },
        );
    }
    let out = c.ctr(&["containers", "rm", &id]);
    assert_eq!(out.code, 0, "containers rm: {out:?}");
    wait_for("the shim to exit", Duration::from_secs(30), || {
        shim_pids(&id).is_empty().then_some(())
    });
}
