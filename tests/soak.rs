//! Many short lifecycles in a row: `ctr run --rm` MYSHIM_SOAK_RUNS times (50 in `make test`,
//! 1,000 in `make soak`) and count the shim daemons of the test's containerd before and after:
//! none may be orphaned.

mod common;

use std::time::Duration;

use common::*;

/// The shim daemons serving the tests' containerd.
fn daemons() -> Vec<u32> {
    shim_daemons(&env().address.display().to_string())
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
