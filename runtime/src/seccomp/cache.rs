//! Compiled filters by profile: in memory for the life of the process (the shim: an exec in a
//! container and the containers of one pod reuse the program their profile compiled to), then on
//! disk when the process set a cache directory ([`set_dir`], see [`super::disk`]). Entries are
//! keyed by the profile's JSON (compared whole, so no two profiles can share an entry); the
//! in-memory ones are bounded in number, the oldest dropped first.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use oci_spec::runtime::LinuxSeccomp;

use super::Filter;
use crate::Result;

/// How many compiled profiles are kept.
const ENTRIES: usize = 8;

static CACHE: Mutex<Vec<(String, Arc<Filter>)>> = Mutex::new(Vec::new());

static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Keep compiled filters in `dir` too (created 0700 if missing; not used unless only this user
/// may write it), for the other processes of the host that compile the same profiles.
pub fn set_dir(dir: PathBuf) {
    *DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir);
}

/// The filter for `profile`: from the cache, or made by `compile` and remembered.
pub(super) fn get_or_compile(
    profile: &LinuxSeccomp,
    compile: impl FnOnce(&LinuxSeccomp) -> Result<Filter>,
) -> Result<Arc<Filter>> {
    let key = serde_json::to_string(profile).context("seccomp: encode the profile")?;
    let hit = {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, f)| Arc::clone(f))
    };
    if let Some(f) = hit {
        return Ok(f);
    }
    let dir = DIR.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let on_disk = dir.as_deref().and_then(|d| super::disk::load(d, &key));
    let filter = match on_disk {
        Some(f) => Arc::new(f),
        None => {
            // Compiled outside the lock: two creates of different profiles do not wait on
            // each other.
            let f = compile(profile)?;
            if let Some(d) = &dir {
                super::disk::store(d, &key, &f);
            }
            Arc::new(f)
        }
    };
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if !cache.iter().any(|(k, _)| *k == key) {
        if cache.len() >= ENTRIES {
            cache.remove(0);
        }
        cache.push((key, Arc::clone(&filter)));
    }
    Ok(filter)
}
