#!/usr/bin/env bash
# Run the integration tests (every tests/*.rs: tests/integration.rs, tests/task_service.rs, ...)
# against a private containerd:
#
#   scripts/integration.sh [CARGO-TEST-ARGS...] [-- TEST-BINARY-ARGS...]
#
# builds the test binaries and the shim (target/debug), starts a containerd in a temp dir with
# the shim's directory first on its PATH, runs `cargo test --no-fail-fast --test integration
# --test task_service ...` (one --test per tests/*.rs), and always stops that containerd again
# (trap), whatever the tests did.
#
# Environment: MYSHIM_TEST_RUNTIME (default io.containerd.myshim.v2; io.containerd.runc.v2 checks
# the tests on runc), CARGO (default cargo), MYSHIM_IT_DIR (default: a new /tmp/myshim-it.XXXXXX).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}

[ "$(id -u)" = 0 ] || { echo "integration.sh: must run as root" >&2; exit 1; }

# One --test per integration test binary (tests/*.rs; tests/common/ is their shared module).
tests=()
for f in tests/*.rs; do
    tests+=(--test "$(basename "$f" .rs)")
done
[ ${#tests[@]} -gt 0 ] || { echo "integration.sh: no tests/*.rs" >&2; exit 1; }

# Build first: the shim binary must exist where containerd will look for it.
"$cargo" test "${tests[@]}" --no-run "$@"

target_dir=$("$cargo" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || target_dir=$PWD/target
bin_dir=$target_dir/debug
[ -x "$bin_dir/containerd-shim-myshim-v2" ] || {
    echo "integration.sh: $bin_dir/containerd-shim-myshim-v2 was not built" >&2
    exit 1
}

dir=${MYSHIM_IT_DIR:-$(mktemp -d /tmp/myshim-it.XXXXXX)}
stop() {
    local rc=$?
    if [ "$rc" != 0 ] && [ -f "$dir/containerd.log" ]; then
        echo "integration.sh: tests failed; last lines of $dir/containerd.log:" >&2
        tail -n 40 "$dir/containerd.log" >&2 || true
    fi
    scripts/containerd.sh stop "$dir" || true
    exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MYSHIM_BIN_DIR=$bin_dir scripts/containerd.sh start "$dir"

echo "integration.sh: runtime ${MYSHIM_TEST_RUNTIME:-io.containerd.myshim.v2}, containerd in $dir"
# --no-fail-fast: a failing test binary does not keep the next one from running.
MYSHIM_CONTAINERD_DIR=$dir "$cargo" test --no-fail-fast "${tests[@]}" "$@"
