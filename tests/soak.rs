//! Many short lifecycles in a row: `ctr run --rm` MYSHIM_SOAK_RUNS times (50 in `make test`,
//! 1,000 in `make soak`) and count the shim daemons of the test's containerd before and after:
//! none may be orphaned.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// Pids of shim daemons serving the tests' containerd (`-address <its socket>` in argv).
fn daemons() -> Vec<u32> {
    let address = env().address.display().to_string();
    let mut out = Vec::new();
    for ent in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(ent.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let shim = argv
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim"));
        if shim
            && argv
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == address.as_bytes())
            && process_alive(pid)
        {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn sequential_runs_orphan_no_daemon() {
    let runs: usize = std::env::var("MYSHIM_SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let before = daemons();
    for i in 0..runs {
        let id = unique_id("soak");
        let out = run_rm(&id, &["true"]);
        assert_eq!(
            out.code,
            0,
            "run {i} ({id}): {out:?}\n{}",
            containerd_log(&id)
        );
        if i % 100 == 99 {
            assert_nothing_left(&id);
        }
    }
    // A daemon may still be on its way out after the last run.
    let after = poll(Duration::from_secs(10), || {
        let now = daemons();
        (now == before).then_some(now)
    });
    assert_eq!(
        after.as_ref(),
        Some(&before),
        "{runs} runs left daemons behind: before {before:?}, now {:?}",
        daemons()
    );
}
