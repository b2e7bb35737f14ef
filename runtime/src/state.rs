//! The container's state on disk: `<root>/<id>/state.json` beside the exec fifo. It holds what
//! a later process needs to manage the container: the init's pid and start time (to tell it from
//! a reused pid), the cgroup path, and the hooks that must still run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Name of the state file in the container's directory.
const STATE_FILE: &str = "state.json";
/// Name of the exec fifo in the container's directory.
pub const EXEC_FIFO: &str = "exec.fifo";

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// being created
    Creating,
    /// created, init waiting for start
    Created,
    /// user process running
    Running,
    /// frozen
    Paused,
    /// init gone
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What a later process needs to manage the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// container id
    pub id: String,
    /// bundle path
    pub bundle: PathBuf,
    /// host pid of the init (0 before it is known)
    pub pid: i32,
    /// start time of the init in clock ticks since boot (`/proc/<pid>/stat` field 22)
    pub pid_start: u64,
    /// the user process has been released by start
    pub started: bool,
    /// the container's cgroup, resolved once at create
    pub cgroup: crate::cgroups::CgroupManager,
    /// hooks still to run (poststart, poststop)
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// the container has a pid namespace of its own (when it has not, its other processes
    /// outlive the init unless someone kills them)
    #[serde(default = "yes")]
    pub own_pid_namespace: bool,
    /// the spec's seccomp profile (exec'd processes get it too)
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// annotations of the spec (given to hooks)
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// when the container was created (its init forked), nanoseconds since the Unix epoch;
    /// 0 in state written before this was recorded
    #[serde(default)]
    pub created_ns: u64,
}

/// Now, in nanoseconds since the Unix epoch (for [`State::created_ns`]).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn yes() -> bool {
    true
}

/// The container's directory under the runtime root.
pub fn dir(root: &Path, id: &str) -> Result<PathBuf> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.contains('/')
        || id.len() > 1024
        || id.chars().any(|c| c.is_control())
    {
        return Err(Error::invalid(format!("invalid container id {id:?}")));
    }
    Ok(root.join(id))
}

impl State {
    /// Write the state atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(".state.json.tmp");
        let body = serde_json::to_vec(self).context("encode state")?;
        std::fs::write(&tmp, body).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(STATE_FILE))
            .with_context(|| format!("rename {} into place", tmp.display()))?;
        Ok(())
    }

    /// Read the state of container `id`; [`Error::NotFound`] when it has none.
    pub fn load(dir: &Path, id: &str) -> Result<State> {
        let path = dir.join(STATE_FILE);
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("read {}", path.display()))
                    .into())
            }
        };
        Ok(serde_json::from_slice(&body).with_context(|| format!("parse {}", path.display()))?)
    }

    /// Whether the init still runs (same pid *and* same start time, not a zombie).
    pub fn init_alive(&self) -> bool {
        self.pid > 0
            && matches!(proc_start(self.pid), Some((start, alive)) if start == self.pid_start && alive)
    }
}

/// Start time (field 22) of `/proc/<pid>/stat` and whether the process is not a zombie.
pub fn proc_start(pid: i32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(u64, bool)> {
    // The command name is in parentheses and may contain spaces: count fields after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?; // field 3
    let start = fields.nth(18)?.parse().ok()?; // field 22
    Some((start, state != "Z" && state != "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_skips_odd_command_names() {
        let line = "123 (a b) c) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(line), Some((98765, true)));
        let zombie = "7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0";
        assert_eq!(parse_stat(zombie), Some((555, false)));
    }

    #[test]
    fn our_own_start_time_is_read() {
        let (start, alive) = proc_start(std::process::id() as i32).unwrap();
        assert!(start > 0 && alive);
    }

    #[test]
    fn ids_cannot_escape_the_root() {
        let root = Path::new("/run/x");
        assert!(dir(root, "../etc").is_err());
        assert!(dir(root, "").is_err());
        assert_eq!(dir(root, "abc").unwrap(), root.join("abc"));
    }

    #[test]
    fn state_round_trips() {
        let d = std::env::temp_dir().join(format!("myshim-state-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let s = State {
            id: "c1".into(),
            bundle: "/b".into(),
            pid: 5,
            pid_start: 9,
            started: true,
            cgroup: crate::cgroups::CgroupManager::new(Some(Path::new("/ns/c1")), "c1").unwrap(),
            hooks: None,
            own_pid_namespace: true,
            seccomp: None,
            annotations: Default::default(),
            created_ns: 1_700_000_000_123_456_789,
        };
        s.save(&d).unwrap();
        let back = State::load(&d, "c1").unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(back.pid, 5);
        assert_eq!(back.created_ns, 1_700_000_000_123_456_789);
        assert!(back.started);
        assert!(matches!(State::load(&d, "c1"), Err(Error::NotFound(_))));
    }
}
