//! The compiled-filter cache on disk, shared by every shim on the host: containerd starts one
//! shim per container, and compiling containerd's default profile with libseccomp (three
//! architectures) takes ~10-30 ms, more than the rest of create's own work. A file holds the
//! profile it was compiled from (compared whole on load: a hash collision is a miss, never
//! another profile's filter) and the filter. Files are written atomically (temp file + rename)
//! in a directory only root may write; at most [`FILES`] are kept, the oldest removed first.
//! `/run` is emptied at boot, and the key includes the kernel release and the libseccomp and
//! myshim versions, so a program compiled against other kernel features is never reused.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Filter;

/// Files kept in the directory.
const FILES: usize = 64;

/// Bump when the file's layout or the meaning of a filter changes.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    /// What besides the profile the program depends on.
    build: String,
    /// The profile's JSON.
    profile: String,
    filter: Filter,
}

/// What besides the profile a compiled program depends on.
fn build_key() -> String {
    let v = libseccomp::ScmpVersion::current().ok();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "format {FORMAT}; myshim {}; libseccomp {}; kernel {release}",
        env!("CARGO_PKG_VERSION"),
        v.map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default(),
    )
}

fn path_for(dir: &Path, build: &str, profile: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    build.hash(&mut h);
    profile.hash(&mut h);
    dir.join(format!("{:016x}.json", h.finish()))
}

/// Whether `dir` exists (created if not) as a directory of ours that nobody else may write.
fn usable(dir: &Path) -> bool {
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    match std::fs::symlink_metadata(dir) {
        Ok(m) => m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0,
        Err(_) => false,
    }
}

/// The filter compiled from `profile` (its JSON), if the cache has it.
pub(super) fn load(dir: &Path, profile: &str) -> Option<Filter> {
    let build = build_key();
    let path = path_for(dir, &build, profile);
    let text = std::fs::read(&path).ok()?;
    if !usable(dir) {
        return None;
    }
    let entry: Entry = serde_json::from_slice(&text).ok()?;
    (entry.build == build && entry.profile == profile).then_some(entry.filter)
}

/// Remember `filter` for `profile`. Failures only cost a later compile: they are logged.
pub(super) fn store(dir: &Path, profile: &str, filter: &Filter) {
    if let Err(e) = try_store(dir, profile, filter) {
        log::warn!("seccomp cache {}: {e:#}", dir.display());
    }
}

fn try_store(dir: &Path, profile: &str, filter: &Filter) -> anyhow::Result<()> {
    use anyhow::Context;
    if !usable(dir) {
        anyhow::bail!("not a directory only this user may write");
    }
    let build = build_key();
    let path = path_for(dir, &build, profile);
    let body = serde_json::to_vec(&Entry {
        build,
        profile: profile.to_string(),
        filter: filter.clone(),
    })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&body))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write {}", path.display()));
    }
    prune(dir);
    Ok(())
}

/// Keep the newest [`FILES`] entries.
fn prune(dir: &Path) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = list
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= FILES {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - FILES] {
        let _ = std::fs::remove_file(p);
    }
}
