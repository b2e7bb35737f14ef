#!/usr/bin/env bash
# Benchmark myshim against runc and crun on this machine (the `make bench` entry point):
#
#   bench/run.sh                 full run (~4 min on 2 cores, plus the release build)
#   BENCH_QUICK=1 bench/run.sh   smoke test (5 runs each, ~40 s plus the build)
#
# Installs what is missing (containerd, runc, crun, busybox-static, python3-matplotlib, perf:
# apt; matplotlib from PyPI as a fallback), builds the release shim, starts a private
# containerd in a temp dir (scripts/containerd.sh, namespace myshim-bench), imports the busybox
# image (scripts/build-image.sh), runs bench/bench.py, and writes BENCHMARKS.md (repo root) and
# bench/latency.png (elsewhere: BENCH_REPORT=FILE, BENCH_PLOT=FILE). The containerd, its shims
# and containers and the temp dir are removed at the end, also on failure or Ctrl-C.
# Knobs (BENCH_N, BENCH_QUICK, ...): see the end of BENCHMARKS.md.
# A benchmark, not a test: nothing in `make test` depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (containers, mounts, perf)"

apt_updated=
apt_install() {
    log "installing $*"
    if [ -z "$apt_updated" ]; then
        apt-get update -qq >&2 || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# command -> Debian package
ensure_cmd() {
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

ensure_tools() {
    ensure_cmd containerd containerd
    ensure_cmd ctr containerd
    ensure_cmd runc runc
    ensure_cmd crun crun
    ensure_cmd unshare util-linux
    ensure_cmd timeout coreutils
    [ -x /bin/busybox ] || apt_install busybox-static
    # perf is optional (figure 2 then joins shim start and task create)
    command -v perf >/dev/null 2>&1 || apt_install linux-perf || log "no perf: fewer phases in figure 2"
}

# Print a python3 that can import matplotlib, installing it if none can.
find_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import matplotlib' 2>/dev/null; then
            command -v "$py"
            return
        fi
    done
    apt_install python3-matplotlib || true
    if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
        echo /usr/bin/python3
        return
    fi
    log "python3-matplotlib did not install; trying PyPI"
    python3 -m pip install -q matplotlib >&2 || true
    command -v python3 # without matplotlib the report is written, the plot skipped
}

ensure_tools
python=$(find_python)
log "python: $python"

# The release shim. A failed build is reported; an older binary, if any, is still measured.
build_failed=()
log "scripts/build-release.sh (cargo build --release, static)"
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin_dir=${target_dir:-$repo/target}/$host/release
if ! scripts/build-release.sh >/dev/null; then
    log "WARNING: the release build failed"
    build_failed=(--build-failed)
fi
[ -x "$bin_dir/containerd-shim-myshim-v2" ] ||
    log "WARNING: no $bin_dir/containerd-shim-myshim-v2: the myshim column will be empty"

work=$(mktemp -d /tmp/myshim-bench.XXXXXX)
cdir=$work/containerd
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    log "stopping containerd, removing $work"
    scripts/containerd.sh stop "$cdir" >&2 || true
    rm -rf -- "$work"
    # the runtimes leave the namespace's parent cgroup behind (empty); rmdir fails if in use
    local cg
    for cg in /sys/fs/cgroup/*/myshim-bench /sys/fs/cgroup/myshim-bench; do
        [ ! -d "$cg" ] || rmdir "$cg" 2>/dev/null || true
    done
    [ "$rc" = 0 ] || log "failed (exit $rc); cleaned up"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/build-image.sh "$work/busybox.tar" local/busybox:latest >&2
MYSHIM_BIN_DIR=$bin_dir scripts/containerd.sh start "$cdir"
timeout -k 5 120 ctr --address "$cdir/containerd.sock" -n myshim-bench \
    images import --base-name local/busybox "$work/busybox.tar" >&2

"$python" bench/bench.py --repo "$repo" --containerd-dir "$cdir" --work "$work" \
    --bin-dir "$bin_dir" "${build_failed[@]}" \
    --out "${BENCH_REPORT:-$repo/BENCHMARKS.md}" --png "${BENCH_PLOT:-$repo/bench/latency.png}"
