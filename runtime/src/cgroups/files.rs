//! cgroupfs file and directory primitives: one `write(2)` per value (cgroupfs parses each write
//! on its own), reads, creating a cgroup level by level and removing a cgroup subtree with
//! retries while its last processes exit. Errors name the operation and the path.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use anyhow::{Context, Result};

/// Write `value` to `dir/file` (no create, no truncate: cgroupfs files exist or the controller
/// is missing).
pub fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    log::trace!("cgroups: write {value:?} to {}", path.display());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("write {} to {}", value.trim_end(), path.display()))
}

/// Read `dir/file`.
pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

/// Read `dir/file`; `None` when it does not exist.
pub fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Whether an error made by this module is "no such file or directory".
pub fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::NotFound)
}

/// Create `dir` and every missing level between `mountpoint` and it. Returns the directories it
/// created, top first; on failure removes them again.
pub fn create_levels(mountpoint: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let rel = dir.strip_prefix(mountpoint).with_context(|| {
        format!(
            "cgroup {} is not below its hierarchy {}",
            dir.display(),
            mountpoint.display()
        )
    })?;
    let mut created = Vec::new();
    let mut current = mountpoint.to_path_buf();
    for c in rel.components() {
        current.push(c);
        match fs::create_dir(&current) {
            Ok(()) => created.push(current.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                remove_created(&created);
                return Err(e).with_context(|| format!("create cgroup {}", current.display()));
            }
        }
    }
    Ok(created)
}

/// Best-effort removal of directories made by [`create_levels`] (deepest first).
pub fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        if let Err(e) = fs::remove_dir(dir) {
            log::warn!("cgroups: undo: remove {}: {e}", dir.display());
        }
    }
}

/// How often and how long [`remove_tree`] retries a busy cgroup.
const RMDIR_ATTEMPTS: u32 = 10;
const RMDIR_FIRST_SLEEP: Duration = Duration::from_millis(2);
const RMDIR_MAX_SLEEP: Duration = Duration::from_millis(50);

/// Remove the cgroup `dir` and the cgroups below it (a container may create its own), deepest
/// first. A missing directory is fine; EBUSY (processes still exiting) is retried a few times
/// with short sleeps (about a quarter of a second in all).
pub fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("list {}", dir.display()))?;
        // cgroupfs holds only files and cgroup directories; never follow anything else.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    let mut pause = RMDIR_FIRST_SLEEP;
    let mut attempt = 1;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                sleep(pause);
                pause = (pause * 2).min(RMDIR_MAX_SLEEP);
                attempt += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("remove cgroup {}", dir.display())),
        }
    }
}
