//! End-to-end tests of checkpoint and restore (CRIU) through containerd and `ctr`.
//!
//! With criu on the host (the forky guest: criu 4.x, cgroup v2): a container's process state
//! survives `ctr containers checkpoint --task --rw` and `ctr containers restore --live --rw`
//! (a shell's counter goes on from its checkpointed value, an fd stays open), exec works in
//! the restored container, `ctr tasks checkpoint --exit` ends the task, and a restore from a
//! corrupted checkpoint fails with criu's error and leaves nothing. Without criu (a host where
//! it is missing): checkpoint and restore answer a clear "CRIU unavailable" error, the
//! container keeps running, nothing is left.
//!
//! The containers that are checkpointed run in the host's network namespace (`--net-host`):
//! criu dumps a network namespace of the container's own with iproute2's `ip`, which the
//! guest image lacks (that case is checked to fail clearly).
//!
//! The corrupted (or, without criu, any) checkpoint image is made by hand: a criu tar with
//! `descriptors.json` and garbage images, the spec as containerd stores it, an index naming
//! the base image, runtime and snapshotter, as `ctr containers checkpoint` makes them.
//!
//! Run with `make integration` (a private containerd; see tests/common).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// criu as the runtime looks for it.
fn criu_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join("criu").is_file())
}

/// Skip (with the reason printed) unless criu can be used and the runtime is myshim (the
/// tests also run on runc, which needs criu the same way).
fn need_criu() -> bool {
    if !criu_installed() {
        eprintln!("skipped: criu is not installed on this host");
        return false;
    }
    true
}

/// Skip when criu is installed (the test checks the error without it).
fn need_no_criu() -> bool {
    if criu_installed() {
        eprintln!("skipped: criu is installed (this test checks the error without it)");
        return false;
    }
    true
}

/// A shell that counts in memory, writes the count to /tmp/count and keeps fd 3 open on
/// /tmp/held.
const COUNTER: &[&str] = &[
    "sh",
    "-c",
    "exec 3>/tmp/held; i=0; while :; do i=$((i+1)); echo $i >/tmp/count; sleep 0.3; done",
];

/// The count the container's shell last wrote.
fn count(id: &str, tag: &str) -> u64 {
    let out = exec(id, &format!("cat-{tag}"), &[], &["cat", "/tmp/count"]);
    assert_eq!(
        out.code,
        0,
        "exec cat in {id}: {out:?}\n{}",
        containerd_log(id)
    );
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("count of {id}: {:?}", out.stdout))
}

/// Wait until the count is above `min`; returns it.
fn count_above(id: &str, min: u64, tag: &str) -> u64 {
    let mut n = 0;
    wait_for(
        &format!("{id}: count above {min}"),
        Duration::from_secs(30),
        || {
            n += 1;
            let c = count(id, &format!("{tag}{n}"));
            (c > min).then_some(c)
        },
    )
}

/// `ctr images rm` of a checkpoint image (no error if it is gone).
fn remove_image(name: &str) {
    let _ = ctr(&["images", "rm", name]);
}

#[test]
fn checkpoint_and_restore_carry_the_process_state() {
    if !need_criu() {
        return;
    }
    let id = unique_id("ckpt-restore");
    let image = format!("checkpoint/{id}:1");
    run_detached(&id, &["--net-host"], COUNTER);
    let before = count_above(&id, 2, "a");

    // Leave-running checkpoint: the task goes on.
    let out = ctr(&["containers", "checkpoint", "--task", "--rw", &id, &image]);
    assert!(
        out.status.success(),
        "checkpoint {id}: {out:?}\n{}",
        containerd_log(&id)
    );
    assert_eq!(task_info(&id).map(|t| t.status), Some("RUNNING".into()));
    let at_checkpoint = count_above(&id, before, "b");

    // Gone entirely, then back from the image.
    ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    wait_task_status(&id, "STOPPED", Duration::from_secs(20));
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);

    let out = ctr(&["containers", "restore", "--live", "--rw", &id, &image]);
    assert!(
        out.status.success(),
        "restore {id}: {out:?}\n{}",
        containerd_log(&id)
    );
    wait_task_status(&id, "RUNNING", Duration::from_secs(30));
    // The shell's counter goes on from where it was (a new shell would start at 1).
    let after = count_above(&id, at_checkpoint, "c");
    assert!(after > at_checkpoint, "{after} <= {at_checkpoint}");
    // Its fd 3 is still open on the file, and exec works in the restored container.
    let out = exec(&id, "held", &[], &["readlink", "/proc/1/fd/3"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "/tmp/held");
    // The restored init is in the container's cgroup.
    let pids = task_pids(&id);
    assert!(!pids.is_empty());
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", pids[0])).unwrap_or_default();
    assert!(
        cgroup.contains(&format!("/{NAMESPACE}/{id}")),
        "cgroup of {}: {cgroup}",
        pids[0]
    );

    kill_delete_rm(&id);
    remove_image(&image);
}

#[test]
fn checkpoint_with_exit_stops_the_task() {
    if !need_criu() {
        return;
    }
    let id = unique_id("ckpt-exit");
    run_detached(&id, &["--net-host"], COUNTER);
    count_above(&id, 1, "a");
    let out = ctr(&["tasks", "checkpoint", "--exit", &id]);
    assert!(
        out.status.success(),
        "checkpoint --exit {id}: {out:?}\n{}",
        containerd_log(&id)
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let info = wait_task_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(info.status, "STOPPED");
    ctr_ok(&["task", "delete", &id]);
    ctr_ok(&["containers", "rm", &id]);
    assert_nothing_left(&id);
    if !name.is_empty() {
        remove_image(&name);
    }
}

#[test]
fn checkpoint_without_criu_is_refused_clearly() {
    if !need_no_criu() || !testing_myshim() {
        return;
    }
    checkpoint_is_refused("ckpt-nocriu", "CRIU unavailable");
}

/// `ctr tasks checkpoint` of a running `sleep` fails, saying `reason`, and the task runs on
/// (containerd resumes what it paused for the checkpoint).
fn checkpoint_is_refused(tag: &str, reason: &str) {
    let id = unique_id(tag);
    run_detached(&id, &[], &["sleep", "600"]);
    let out = ctr(&["tasks", "checkpoint", &id]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "checkpoint of {id}: {out:?}");
    eprintln!("checkpoint failed as expected: {}", text.trim());
    assert!(text.contains(reason), "ctr said: {text}");
    wait_task_status(&id, "RUNNING", Duration::from_secs(20));
    kill_delete_rm(&id);
}

/// Whether iproute2's `ip` is installed (criu needs it for a network namespace).
fn ip_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join("ip").exists())
}

#[test]
fn checkpoint_of_a_network_namespace_without_ip_is_refused_clearly() {
    if !need_criu() || !testing_myshim() {
        return;
    }
    if ip_installed() {
        eprintln!("skipped: iproute2 is installed (this test checks the error without it)");
        return;
    }
    checkpoint_is_refused("ckpt-noip", "iproute2");
}

/// `-info` (what containerd 2.x asks the shim) says whether checkpoint can work: runc's
/// `org.opencontainers.runc.checkpoint.enabled` and criu's version, or why it is unavailable.
#[test]
fn checkpoint_support_is_reported_by_info() {
    let out = Command::new(env!("CARGO_BIN_EXE_containerd-shim-myshim-v2"))
        .arg("-info")
        .stdin(Stdio::null())
        .output()
        .expect("run the shim's -info");
    assert!(out.status.success(), "-info: {out:?}");
    // The features document is JSON inside the RuntimeInfo message.
    let text = String::from_utf8_lossy(&out.stdout);
    if criu_installed() {
        assert!(
            text.contains(r#""org.opencontainers.runc.checkpoint.enabled":"true""#),
            "{text}"
        );
        assert!(text.contains("/criu "), "{text}");
    } else {
        assert!(
            text.contains(r#""org.opencontainers.runc.checkpoint.enabled":"false""#),
            "{text}"
        );
        assert!(text.contains("CRIU unavailable"), "{text}");
    }
}

// --- a checkpoint image made by hand -----------------------------------------------------------

const MEDIA_CRIU_TAR: &str = "application/vnd.containerd.container.criu.checkpoint.criu.tar";
const MEDIA_CONFIG: &str = "application/vnd.containerd.container.checkpoint.config.v1+proto";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    format!(
        "sha256:{}",
        text.split_whitespace().next().unwrap_or_default()
    )
}

/// Put `data` in containerd's content store; returns its digest.
fn ingest(reference: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let mut child = ctr_command(&[
        "content",
        "ingest",
        "--expected-size",
        &data.len().to_string(),
        "--expected-digest",
        &digest,
        reference,
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("ctr content ingest");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to ctr");
    let out = child.wait_with_output().expect("ctr content ingest");
    assert!(out.status.success(), "ctr content ingest: {out:?}");
    digest
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A containerd `Descriptor` message.
fn pb_descriptor(media_type: &str, digest: &str, size: usize) -> Vec<u8> {
    let mut d = Vec::new();
    grpc::pb_bytes(&mut d, 1, media_type.as_bytes());
    grpc::pb_bytes(&mut d, 2, digest.as_bytes());
    d.push(3 << 3);
    pb_varint(&mut d, size as u64);
    d
}

/// A checkpoint image `name` whose criu tar holds `descriptors.json` and garbage images, for a
/// container running `cmd` from the test image.
fn fake_checkpoint(name: &str, id: &str, cmd: &[&str]) {
    let dir = env().spec_dir.join(format!("{id}-ckpt"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("descriptors.json"),
        br#"["/dev/null","pipe:[1]","pipe:[2]"]"#,
    )
    .expect("write descriptors");
    std::fs::write(dir.join("inventory.img"), b"not a criu image").expect("write inventory");
    std::fs::write(dir.join("pstree.img"), [0xffu8; 64]).expect("write pstree");
    let tar = Command::new("tar")
        .args(["-C", &dir.display().to_string(), "-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar: {tar:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let mut spec = env().default_spec.clone();
    // In the host's network namespace (as with `ctr run --net-host`): criu needs no ip tool.
    if let Some(list) = spec["linux"]["namespaces"].as_array_mut() {
        list.retain(|n| n["type"] != "network");
    }
    spec["process"]["args"] = serde_json::json!(cmd);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["root"] = serde_json::json!({ "path": "rootfs" });
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{NAMESPACE}/{id}"));
    let mut any = Vec::new();
    grpc::pb_bytes(&mut any, 1, SPEC_TYPE_URL.as_bytes());
    grpc::pb_bytes(&mut any, 2, spec.to_string().as_bytes());

    let tar_digest = sha256(&tar.stdout);
    let spec_digest = sha256(&any);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            { "mediaType": MEDIA_CRIU_TAR, "digest": tar_digest, "size": tar.stdout.len() },
            { "mediaType": MEDIA_CONFIG, "digest": spec_digest, "size": any.len() },
        ],
        "annotations": {
            "org.opencontainers.image.ref.name": IMAGE,
            "io.containerd.checkpoint.runtime": env().runtime,
            "io.containerd.checkpoint.snapshotter": "overlayfs",
        }
    })
    .to_string();
    let index_digest = sha256(index.as_bytes());
    let blobs = [
        (format!("{id}-criu"), tar.stdout.as_slice()),
        (format!("{id}-spec"), any.as_slice()),
        (format!("{id}-index"), index.as_bytes()),
    ];
    let mut img = Vec::new();
    grpc::pb_bytes(&mut img, 1, name.as_bytes());
    grpc::pb_bytes(
        &mut img,
        3,
        &pb_descriptor(MEDIA_INDEX, &index_digest, index.len()),
    );
    let mut req = Vec::new();
    grpc::pb_bytes(&mut req, 1, &img);
    // Content nothing refers to yet may be collected by a garbage collection that another
    // test's delete starts: ingest what is missing until the image (which keeps the index)
    // and the index's labels (which keep its blobs) hold everything.
    let mut created = false;
    for _ in 0..10 {
        for (reference, data) in &blobs {
            if !has_content(&sha256(data)) {
                ingest(reference, data);
            }
        }
        if !created {
            grpc::unary("/containerd.services.images.v1.Images/Create", &req)
                .unwrap_or_else(|e| panic!("create image {name}: {e}"));
            created = true;
        }
        let _ = ctr(&[
            "content",
            "label",
            &index_digest,
            &format!("containerd.io/gc.ref.content.m.0={tar_digest}"),
            &format!("containerd.io/gc.ref.content.m.1={spec_digest}"),
        ]);
        if [&tar_digest, &spec_digest, &index_digest]
            .iter()
            .all(|d| has_content(d))
        {
            return;
        }
    }
    panic!("the blobs of {name} keep disappearing from the content store");
}

/// Whether containerd's content store has `digest`.
fn has_content(digest: &str) -> bool {
    ctr(&["content", "get", digest]).status.success()
}

/// `ctr containers restore --live` from a checkpoint that cannot be restored (criu missing,
/// or the images garbage) fails with `expect` in ctr's error, and leaves nothing once the
/// container record ctr made is removed.
fn failed_restore(tag: &str, expect: &[&str]) {
    let id = unique_id(tag);
    let image = format!("checkpoint/{id}:bad");
    fake_checkpoint(&image, &id, &["sleep", "600"]);
    let out = ctr(&["containers", "restore", "--live", &id, &image]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "restore of {image}: {out:?}");
    eprintln!("restore of {image} failed as expected: {}", text.trim());
    for e in expect {
        assert!(
            text.contains(e),
            "ctr said: {text}\n{}",
            containerd_log(&id)
        );
    }
    assert!(
        task_info(&id).is_none(),
        "a task is left: {:?}",
        task_info(&id)
    );
    let _ = ctr(&["containers", "rm", &id]);
    assert_nothing_left(&id);
    remove_image(&image);
}

#[test]
fn restore_without_criu_is_refused_clearly() {
    if !need_no_criu() || !testing_myshim() {
        return;
    }
    failed_restore("restore-nocriu", &["CRIU unavailable"]);
}

#[test]
fn restore_of_a_corrupted_checkpoint_fails_and_leaves_nothing() {
    if !need_criu() || !testing_myshim() {
        return;
    }
    failed_restore("restore-corrupt", &["restore container", "criu"]);
}
