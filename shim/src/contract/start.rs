//! The `start` action: containerd runs it in the bundle, reads one answer from stdout, and
//! connects there. It either finds the daemon of this container's group (a pod's shim) alive
//! and answers its address, spawning nothing, or binds the group's socket, spawns the daemon
//! with the listening socket as fd 3 (so the socket accepts connections before `start` answers:
//! nothing to wait for), moves it into the shim cgroup the options name, and answers.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use myshim_runtime::cgroups::CgroupManager;

use super::bootstrap::{self, Answer, StartInput};
use super::flags::Flags;
use super::socket::{self, Bound};
use crate::options;

/// Annotations that group containers into one shim, in order of precedence: the runc shim's
/// own group label, and the pod sandbox id CRI puts on every container of a pod.
const GROUP_ANNOTATIONS: &[&str] = &[
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The fd the daemon finds its listening socket at.
pub const LISTENER_FD: i32 = 3;

/// The grouping key: the first group annotation of the bundle's config.json, else the id.
pub fn grouping(id: &str, config_json: &Path) -> String {
    let annotations = std::fs::read(config_json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("annotations").cloned());
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|key| {
            annotations
                .as_ref()?
                .get(key)?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| id.to_string())
}

/// Run the `start` action; returns what to print.
pub fn run(flags: &Flags) -> anyhow::Result<String> {
    if flags.id.is_empty() {
        bail!("start: -id is required");
    }
    let mut input = Vec::new();
    std::io::stdin()
        .take(bootstrap::STDIN_LIMIT)
        .read_to_end(&mut input)
        .context("read the bootstrap parameters from stdin")?;
    let input = bootstrap::decode_start_input(&input, &flags.id, &flags.namespace)?;
    let answer = Answer::choose(
        std::env::var("MAX_SHIM_VERSION").ok().as_deref(),
        input.params.as_ref(),
    );
    let bundle = std::env::current_dir().context("the bundle (working directory)")?;
    let address = start(flags, &input, &bundle)?;
    answer.render(&address)
}

/// Find or spawn the daemon; its address.
fn start(flags: &Flags, input: &StartInput, bundle: &Path) -> anyhow::Result<String> {
    let params = input.params.as_ref();
    let socket_dir = params.and_then(|p| p.socket_dir.as_deref());
    if let Some(dir) = socket_dir.filter(|d| !d.is_empty()) {
        socket::write_socket_dir(bundle, dir).context("record the socket directory")?;
    }
    let containerd_address = params
        .map(|p| p.grpc_address.as_str())
        .filter(|a| !a.is_empty())
        .unwrap_or(&flags.address);
    let group = grouping(&flags.id, &bundle.join("config.json"));
    let address = socket::address(containerd_address, &flags.namespace, &group, socket_dir);
    // containerd 1.6 and 1.7 find a running shim again through this file after a restart. It
    // is written before anything is spawned: a failure here leaves no daemon nobody knows of.
    std::fs::write(bundle.join("address"), &address)
        .context("write the shim address into the bundle")?;
    let listener = match socket::bind(&address)? {
        Bound::Served => {
            log::debug!("start {}: joins the shim of group {group}", flags.id);
            return Ok(address);
        }
        Bound::New(l) => l,
    };
    let undo_socket = |e: anyhow::Error| {
        let _ = socket::remove(&address);
        e
    };
    let debug = flags.debug || params.is_some_and(|p| p.debug());
    let mut cmd = Command::new(std::env::current_exe().map_err(|e| undo_socket(e.into()))?);
    cmd.args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", containerd_address, "-socket", &address])
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !flags.publish_binary.is_empty() {
        cmd.args(["-publish-binary", &flags.publish_binary]);
    }
    if debug {
        cmd.arg("-debug");
    }
    if let Some(ttrpc) = params.map(|p| &p.ttrpc_address).filter(|a| !a.is_empty()) {
        cmd.env("TTRPC_ADDRESS", ttrpc);
    }
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: dup2 (which clears
    // close-on-exec on the new fd; fcntl clears it when the socket already is fd 3) and setpgid
    // (a signal to containerd's process group must not reach the daemon).
    unsafe {
        cmd.pre_exec(move || {
            let placed = if fd == LISTENER_FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, LISTENER_FD)
            };
            if placed < 0 || libc::setpgid(0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .context("spawn the shim daemon")
        .map_err(undo_socket)?;
    drop(listener);
    let pid = child.id();
    // The daemon is not ours to wait for: it outlives this process.
    drop(child);
    let placed = place_daemon(pid, input).map_err(undo_socket);
    if let Err(e) = placed {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        return Err(e);
    }
    log::debug!(
        "start {}: spawned shim daemon {pid} for group {group}",
        flags.id
    );
    Ok(address)
}

/// Move the new daemon into the shim cgroup of the runtime options, and give it containerd's
/// OOM score plus one (the shim goes before containerd, after its containers).
fn place_daemon(pid: u32, input: &StartInput) -> anyhow::Result<()> {
    let opts = options::parse(input.options.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !opts.shim_cgroup.is_empty() {
        let cgroup = CgroupManager::new(Some(Path::new(&opts.shim_cgroup)), "shim")
            .with_context(|| format!("shim cgroup {}", opts.shim_cgroup))?;
        cgroup
            .apply(pid as i32)
            .with_context(|| format!("move the shim daemon into cgroup {}", opts.shim_cgroup))?;
    }
    let parent = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let score = (parent + 1).min(1000);
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string())
        .with_context(|| format!("set the shim daemon's oom_score_adj to {score}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_by_annotation() {
        let dir = std::env::temp_dir().join(format!("myshim-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.json");
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::write(&cfg, r#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","x":"y"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("c1", &cfg), "pod1");
        std::fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.containerd.runc.v2.group":"g"}}"#,
        )
        .unwrap();
        assert_eq!(grouping("c1", &cfg), "g");
        std::fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":""}}"#,
        )
        .unwrap();
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::write(&cfg, "not json").unwrap();
        assert_eq!(grouping("c1", &cfg), "c1");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
