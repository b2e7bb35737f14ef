//! OCI hooks: each runs with the container's state as JSON on its stdin, its own args and env,
//! and an optional timeout. A failing hook is an error that names it and carries its output.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use oci_spec::runtime::Hook;
use serde::Serialize;

use crate::reaper;

/// The state document a hook reads on stdin (OCI runtime spec, "State").
#[derive(Debug, Serialize)]
pub struct HookState<'a> {
    /// OCI version
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    /// container id
    pub id: &'a str,
    /// "creating", "created", "running", "stopped"
    pub status: &'a str,
    /// init pid (absent once stopped)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// bundle path
    pub bundle: &'a std::path::Path,
    /// annotations
    pub annotations: &'a std::collections::HashMap<String, String>,
}

/// Run `hooks` in order; the first failure stops the rest and is returned, labelled with
/// `stage` (e.g. "prestart").
pub fn run(stage: &str, hooks: &[Hook], state: &HookState<'_>) -> anyhow::Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state).context("encode hook state")?;
    for hook in hooks {
        run_one(hook, &input).with_context(|| format!("{stage} hook {}", hook.path().display()))?;
    }
    Ok(())
}

fn run_one(hook: &Hook, input: &[u8]) -> anyhow::Result<()> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((arg0, rest)) = args.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let out = tempfile_like()?;
    cmd.stdin(Stdio::piped())
        .stdout(out.try_clone().context("dup hook output")?)
        .stderr(out.try_clone().context("dup hook output")?);
    let mut child = reaper::spawn(&mut cmd).context("start")?;
    if let Some(mut stdin) = child.child().stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(input);
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t.unsigned_abs()));
    let code = match child.wait_timeout(timeout)? {
        Some(code) => code,
        None => {
            let _ = child.child().kill();
            let _ = child.wait_timeout(Some(Duration::from_secs(5)));
            bail!("timed out after {}s", timeout.map_or(0, |t| t.as_secs()));
        }
    };
    if code != 0 {
        let text = read_back(out);
        if text.is_empty() {
            bail!("exit status {code}");
        }
        bail!("exit status {code}: {}", text.trim_end());
    }
    Ok(())
}

/// The hooks that run once the container's namespaces exist, before its rootfs is pivoted
/// into: `prestart` (deprecated, kept for its users) then `createRuntime`, in the runtime's
/// namespaces.
pub fn run_create_runtime(
    hooks: Option<&oci_spec::runtime::Hooks>,
    state: &HookState<'_>,
) -> anyhow::Result<()> {
    let Some(h) = hooks else {
        return Ok(());
    };
    run(
        "prestart",
        h.prestart().as_deref().unwrap_or_default(),
        state,
    )?;
    run(
        "createRuntime",
        h.create_runtime().as_deref().unwrap_or_default(),
        state,
    )
}

/// An anonymous file for the hook's output (no path left behind).
fn tempfile_like() -> anyhow::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(
        c"myshim-hook",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .context("memfd for hook output")?;
    Ok(std::fs::File::from(fd))
}

fn read_back(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = String::new();
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.take(4096).read_to_string(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    fn state() -> (
        std::collections::HashMap<String, String>,
        std::path::PathBuf,
    ) {
        (Default::default(), "/b".into())
    }

    #[test]
    fn hook_reads_state_and_failure_carries_output() {
        let (ann, bundle) = state();
        let st = HookState {
            oci_version: "1.0.2",
            id: "c9",
            status: "creating",
            pid: Some(1),
            bundle: &bundle,
            annotations: &ann,
        };
        let ok = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "grep -q '\"id\":\"c9\"'"]}),
        );
        run("prestart", &[ok], &st).unwrap();
        let bad = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo broken >&2; exit 4"]}),
        );
        let err = format!("{:#}", run("prestart", &[bad], &st).unwrap_err());
        assert!(
            err.contains("prestart hook /bin/sh")
                && err.contains("exit status 4")
                && err.contains("broken"),
            "{err}"
        );
    }

    #[test]
    fn missing_hook_and_timeout_are_errors() {
        let (ann, bundle) = state();
        let st = HookState {
            oci_version: "1.0.2",
            id: "c9",
            status: "creating",
            pid: None,
            bundle: &bundle,
            annotations: &ann,
        };
        let missing = hook(serde_json::json!({"path": "/nonexistent/hook"}));
        assert!(run("poststop", &[missing], &st).is_err());
        let slow = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1}),
        );
        let err = format!("{:#}", run("poststop", &[slow], &st).unwrap_err());
        assert!(err.contains("timed out"), "{err}");
    }
}
