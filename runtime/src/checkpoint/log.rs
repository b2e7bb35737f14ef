//! criu's own log (`dump.log`, `restore.log` in the work directory): a failure's message
//! quotes its error lines, since the RPC answer only says that the request failed.

use std::path::Path;

/// How many error lines are quoted at most.
const MAX_LINES: usize = 6;

/// The last error lines of the log at `path` joined with " / ", or `None` if it has none (or
/// cannot be read).
pub fn errors(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    pick(&text)
}

fn pick(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .map(str::trim)
        .collect();
    if lines.is_empty() {
        return None;
    }
    let from = lines.len().saturating_sub(MAX_LINES);
    Some(lines[from..].join(" / "))
}

/// `err` with the error lines of the criu log at `path` and where the log is.
pub fn explain(err: anyhow::Error, path: &Path) -> anyhow::Error {
    match errors(path) {
        Some(lines) => err.context(format!("criu log {}: {lines}", path.display())),
        None => err.context(format!("criu log {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_picked() {
        let log = "(00.001) Version: 4.2\n(00.2) Error (criu/cr-restore.c:1): Can't open x\n\
                   (00.3) fine\n(00.4) Error (criu/files.c:2): boom\n";
        assert_eq!(
            pick(log).unwrap(),
            "(00.2) Error (criu/cr-restore.c:1): Can't open x / (00.4) Error (criu/files.c:2): boom"
        );
        assert_eq!(pick("all good\n"), None);
    }
}
