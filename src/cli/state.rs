//! `state` and `list`: runc's view of a container (ociVersion, id, pid, status, bundle, rootfs,
//! created, owner, annotations) from the runtime's state on disk, shared with the shim.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use myshim_runtime::state::State;
use myshim_runtime::Status;
use serde_json::{json, Value};

use super::args::{Format, List};
use super::time;

/// The OCI version the state reports.
const OCI_VERSION: &str = "1.0.2";

/// One container as `state` prints it.
fn describe(root: &Path, id: &str) -> anyhow::Result<Value> {
    let container = super::load(root, id)?;
    let dir = myshim_runtime::state::dir(root, id)?;
    let st = State::load(&dir, id)?;
    let status = container.status();
    let pid = if status == Status::Stopped { 0 } else { st.pid };
    // Recorded at create; state from before that has the init's start time (10 ms ticks).
    let created = match st.created_ns {
        0 => time::process_start(st.pid_start),
        ns => Some(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)),
    }
    .map(time::rfc3339)
    .unwrap_or_default();
    let mut v = json!({
        "ociVersion": OCI_VERSION,
        "id": id,
        "pid": pid,
        "status": status.to_string(),
        "bundle": st.bundle,
        "rootfs": rootfs_of(&st.bundle),
        "created": created,
        "owner": owner_of(&dir),
    });
    if !st.annotations.is_empty() {
        v["annotations"] = json!(st.annotations);
    }
    Ok(v)
}

/// The absolute rootfs of a bundle (its config.json's `root.path`).
fn rootfs_of(bundle: &Path) -> PathBuf {
    let path = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["root"]["path"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(path)
}

/// The user owning the container's state directory (runc's OWNER column).
fn owner_of(dir: &Path) -> String {
    let Ok(meta) = std::fs::metadata(dir) else {
        return String::new();
    };
    let uid = meta.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

/// `state`
pub fn state(root: &Path, id: &str) -> anyhow::Result<()> {
    let v = describe(root, id)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `list`
pub fn list(root: &Path, a: &List) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    match std::fs::read_dir(root) {
        Ok(entries) => {
            for e in entries {
                let e = e.with_context(|| format!("read {}", root.display()))?;
                if e.path().join("state.json").exists() {
                    ids.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    }
    ids.sort();
    let mut states = Vec::new();
    for id in &ids {
        match describe(root, id) {
            Ok(v) => states.push(v),
            // Deleted meanwhile, or unreadable: runc skips it too.
            Err(e) => log::warn!("list: {id}: {e:#}"),
        }
    }
    if a.quiet {
        for s in &states {
            println!("{}", s["id"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match a.format {
        // As runc's (a nil slice): `null` when there is nothing.
        Format::Json if states.is_empty() => println!("null"),
        Format::Json => println!("{}", serde_json::to_string(&states)?),
        Format::Table => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for s in &states {
                let field = |k: &str| match &s[k] {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                rows.push(
                    ["id", "pid", "status", "bundle", "created", "owner"]
                        .iter()
                        .map(|k| field(k))
                        .collect(),
                );
            }
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

/// Left-aligned columns, each at least 12 wide and 3 spaces apart (the last one unpadded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(9)
                + 3
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["ID".to_string(), "PID".to_string(), "X".to_string()],
            vec![
                "a-long-container".to_string(),
                "1".to_string(),
                "y".to_string(),
            ],
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].find("PID"), lines[1].find('1'));
        assert!(lines[1].starts_with("a-long-container   1"));
    }
}
