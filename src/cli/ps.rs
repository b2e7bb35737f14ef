//! `ps`: the container's processes (those in its cgroup): as a JSON array of pids, or as the
//! lines of the host's ps(1) output (default `ps -ef`) whose PID is one of them.

use std::process::Command;

use anyhow::{bail, Context};

use super::args::{Format, Ps};
use super::load;

/// `ps`
pub fn ps(root: &std::path::Path, a: &Ps) -> anyhow::Result<()> {
    let container = load(root, &a.id)?;
    let pids = container.pids()?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = Command::new("ps").args(&args).output().context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print!("{}", filter(&String::from_utf8_lossy(&out.stdout), &pids)?);
    Ok(())
}

/// The header and the lines of `ps` output whose PID column holds one of `pids`.
fn filter(text: &str, pids: &[i32]) -> anyhow::Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|f| f == "PID")
        .context("ps output has no PID column")?;
    let mut out = format!("{header}\n");
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: i32| pids.contains(&p)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn only_the_containers_lines_are_kept() {
        let text = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 43 42 sleep\n";
        let got = filter(text, &[42, 43]).unwrap();
        assert_eq!(got, "UID PID PPID CMD\nroot 42 1 sh\nroot 43 42 sleep\n");
        assert!(filter("USER CMD\n", &[1]).is_err());
    }
}
