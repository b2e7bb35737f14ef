//! What the container init's fds 0-2 pointed at when it was dumped (`descriptors.json` in the
//! image directory, a JSON array of three strings as runc writes it: `pipe:[123]`,
//! `/dev/null`, `/dev/pts/0`, ...). A restore gives each stream that was a pipe the new pipe
//! of that stream (criu's `inherit_fd`, keyed by the old pipe's name); the rest criu reopens.

use std::path::Path;

use anyhow::Context;

/// File name in the image directory.
pub const FILE: &str = "descriptors.json";

/// Where fds 0, 1 and 2 of `pid` point (an fd that is closed gives an empty string).
pub fn of_process(pid: i32) -> Vec<String> {
    (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Write `descriptors` into the image directory `dir`.
pub fn write(dir: &Path, descriptors: &[String]) -> anyhow::Result<()> {
    let path = dir.join(FILE);
    let body = serde_json::to_vec(descriptors).context("encode descriptors")?;
    std::fs::write(&path, body).with_context(|| format!("write {}", path.display()))
}

/// Read the descriptors of the image directory `dir`.
pub fn read(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = dir.join(FILE);
    let body = std::fs::read(&path).with_context(|| {
        format!(
            "read {} (is {} a checkpoint of this runtime or runc?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_slice(&body).with_context(|| format!("parse {}", path.display()))
}

/// `(key, fd)` for criu's `inherit_fd`: each of fds 0-2 that was a pipe gets the new stream
/// with the same number.
pub fn inherited(descriptors: &[String]) -> Vec<(String, i32)> {
    descriptors
        .iter()
        .take(3)
        .zip(0..)
        .filter(|(d, _)| d.starts_with("pipe:"))
        .map(|(d, fd)| (d.clone(), fd))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_inherited_by_number() {
        let d = vec![
            "/dev/null".to_string(),
            "pipe:[4242]".to_string(),
            "pipe:[4243]".to_string(),
        ];
        assert_eq!(
            inherited(&d),
            vec![
                ("pipe:[4242]".to_string(), 1),
                ("pipe:[4243]".to_string(), 2)
            ]
        );
        assert!(inherited(&["/dev/pts/0".to_string()]).is_empty());
    }

    #[test]
    fn round_trip_and_our_own() {
        let dir = std::env::temp_dir().join(format!("myshim-desc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mine = of_process(std::process::id() as i32);
        assert_eq!(mine.len(), 3);
        write(&dir, &mine).unwrap();
        assert_eq!(read(&dir).unwrap(), mine);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(read(&dir).is_err());
    }
}
