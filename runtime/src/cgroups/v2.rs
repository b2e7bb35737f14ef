//! cgroup v2 (the unified hierarchy): enabling controllers down the ancestors'
//! `cgroup.subtree_control`, `cgroup.freeze` waiting for
//! `cgroup.events`, and `cgroup.kill`. The limits are written by cgroups-rs
//! ([`super::limits`]); device rules by an eBPF program ([`super::bpf`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{files, stats};
use crate::{Error, Result};

/// Enable controllers in `cgroup.subtree_control` of every ancestor of `dir` from the hierarchy
/// root (`mountpoint`) down, so that `dir` gets their files. Each level enables what it has
/// itself (its `cgroup.controllers`; the root's set on the way down), restricted to `only`.
/// Levels that refuse (a non-root cgroup with processes of its own, EBUSY) are logged and
/// skipped: the missing files then show up as errors when limits are written.
pub(super) fn enable_controllers(
    mountpoint: &Path,
    dir: &Path,
    only: Option<&[&str]>,
) -> Result<()> {
    let rel = dir.strip_prefix(mountpoint).with_context(|| {
        format!(
            "cgroup {} is not below {}",
            dir.display(),
            mountpoint.display()
        )
    })?;
    let mut level = mountpoint.to_path_buf();
    for c in rel.components() {
        let available = files::read(&level, "cgroup.controllers")?;
        let enabled = files::read(&level, "cgroup.subtree_control")?;
        let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
        let missing: Vec<&str> = available
            .split_whitespace()
            .filter(|c| only.is_none_or(|o| o.contains(c)) && !enabled.contains(c))
            .collect();
        if !missing.is_empty() {
            let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
            if let Err(e) = files::write(&level, "cgroup.subtree_control", &all.join(" ")) {
                log::debug!("cgroups: {e:#}; enabling one by one");
                for c in &missing {
                    if let Err(e) = files::write(&level, "cgroup.subtree_control", &format!("+{c}"))
                    {
                        log::debug!("cgroups: {e:#}");
                    }
                }
            }
        }
        level.push(c);
    }
    Ok(())
}

/// How long to wait for `cgroup.events` to report the new freezer state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// Freeze (`true`) or thaw the cgroup and wait until `cgroup.events` says `frozen 1` (or `0`).
/// A freeze that does not complete in time is undone and reported.
pub(super) fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    let want = if frozen { "1" } else { "0" };
    files::write(dir, "cgroup.freeze", want)?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut pause = Duration::from_micros(500);
    loop {
        let events = files::read(dir, "cgroup.events")?;
        if stats::parse_flat_keyed(&events).get("frozen").copied() == Some(u64::from(frozen)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            break;
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    if frozen {
        let _ = files::write(dir, "cgroup.freeze", "0");
    }
    Err(anyhow::anyhow!(
        "{} did not become {} within {FREEZE_TIMEOUT:?}",
        dir.display(),
        if frozen { "frozen" } else { "thawed" }
    )
    .into())
}

/// Kill every process of the cgroup at once with `cgroup.kill` (Linux 5.14+). `Ok(false)` when
/// the kernel does not have it.
pub(super) fn kill(dir: &Path) -> Result<bool> {
    match files::write(dir, "cgroup.kill", "1") {
        Ok(()) => Ok(true),
        Err(e) if files::is_not_found(&e) && dir.exists() => Ok(false),
        Err(e) if files::is_not_found(&e) => Ok(true), // no cgroup, nothing to kill
        Err(e) => Err(Error::Other(e)),
    }
}

/// Tests on a fake cgroup directory in /tmp (plain files: each write replaces the start of the
/// file, so only single-write files are checked). No root needed.
#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    struct FakeDir(PathBuf);

    impl FakeDir {
        fn new(name: &str, files: &[(&str, &str)]) -> FakeDir {
            let dir = std::env::temp_dir().join(format!("myshim-v2-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            for (f, content) in files {
                let path = dir.join(f);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            }
            FakeDir(dir)
        }
        fn read(&self, f: &str) -> String {
            fs::read_to_string(self.0.join(f)).unwrap()
        }
    }

    impl Drop for FakeDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn controllers_enabled_down_the_ancestors() {
        let fake = FakeDir::new(
            "enable",
            &[
                ("cgroup.controllers", "cpu memory pids\n"),
                ("cgroup.subtree_control", ""),
                ("a/cgroup.controllers", "cpu memory pids\n"),
                ("a/cgroup.subtree_control", "cpu\n"),
                ("a/b/cgroup.controllers", "cpu memory pids\n"),
                ("a/b/cgroup.subtree_control", "cpu memory pids\n"),
                ("a/b/c/cgroup.subtree_control", "untouched"),
            ],
        );
        enable_controllers(&fake.0, &fake.0.join("a/b/c"), None).unwrap();
        assert_eq!(fake.read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(fake.read("a/cgroup.subtree_control"), "+memory +pids");
        assert_eq!(fake.read("a/b/cgroup.subtree_control"), "cpu memory pids\n");
        assert_eq!(fake.read("a/b/c/cgroup.subtree_control"), "untouched");

        let fake = FakeDir::new(
            "enable-only",
            &[
                ("cgroup.controllers", "cpu hugetlb\n"),
                ("cgroup.subtree_control", ""),
            ],
        );
        enable_controllers(&fake.0, &fake.0.join("x"), Some(&["hugetlb"])).unwrap();
        assert_eq!(fake.read("cgroup.subtree_control"), "+hugetlb");
    }

    #[test]
    fn freeze_waits_for_events() {
        let fake = FakeDir::new(
            "freeze",
            &[
                ("cgroup.freeze", ""),
                ("cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        set_frozen(&fake.0, true).unwrap();
        assert_eq!(fake.read("cgroup.freeze"), "1");
    }
}
