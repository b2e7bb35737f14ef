#!/usr/bin/env bash
# Create latency with containerd's default seccomp profile (`ctr run --rm --seccomp ... true`),
# against a private containerd that runs the shim found in BIN_DIR:
#
#   bench/seccomp_latency.sh BIN_DIR [N] [MODE]
#
# MODE: warm (default: the compiled filter comes from the shims' cache after the first run),
# cold (the cache directory is removed before each run, so every create compiles), none
# (no --seccomp). Prints the median, min and max wall time of N runs (default 30) in ms, after
# one warm-up run. Everything (containerd, its shims, the temp dir) is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "$1")
n=${2:-30}
mode=${3:-warm}
cache=/run/myshim/seccomp-cache
dir=$(mktemp -d /tmp/myshim-sclat.XXXXXX)
trap 'scripts/containerd.sh stop "$dir" >/dev/null 2>&1 || true' EXIT
MYSHIM_BIN_DIR=$bin scripts/containerd.sh start "$dir" >/dev/null 2>&1
scripts/build-image.sh "$dir/busybox.tar" local/busybox:latest >/dev/null 2>&1
ctr=(timeout -k 5 60 ctr --address "$dir/containerd.sock" -n myshim-sclat)
"${ctr[@]}" images import --base-name local/busybox "$dir/busybox.tar" >/dev/null
opts=(--rm --runtime io.containerd.myshim.v2 --fifo-dir "$dir/fifo")
[ "$mode" = none ] || opts+=(--seccomp)
"${ctr[@]}" run "${opts[@]}" local/busybox:latest sclat-warmup true </dev/null
for i in $(seq "$n"); do
    [ "$mode" != cold ] || rm -rf "$cache"
    start=$(date +%s%N)
    "${ctr[@]}" run "${opts[@]}" local/busybox:latest "sclat-$i" true </dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000))
done | sort -n | awk -v mode="$mode" '{ t[NR] = $1 }
    END { printf "%s: median %.1f ms, min %.1f, max %.1f (n=%d)\n", mode,
          t[int((NR + 1) / 2)] / 1000, t[1] / 1000, t[NR] / 1000, NR }'
