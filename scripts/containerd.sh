#!/usr/bin/env bash
# A private containerd for development and tests: never /run/containerd or /var/lib/containerd.
#
#   scripts/containerd.sh start DIR   start containerd with everything under DIR (absolute or
#                                     relative; created): DIR/config.toml, DIR/root, DIR/state,
#                                     socket DIR/containerd.sock, log DIR/containerd.log (debug
#                                     level), pid DIR/containerd.pid. Returns once
#                                     `ctr --address DIR/containerd.sock version` answers.
#   scripts/containerd.sh stop DIR    remove what is left in it (tasks, containers), stop that
#                                     containerd (SIGTERM, then SIGKILL), kill the shims it
#                                     started (and their containers' processes), unmount what
#                                     is mounted under DIR, remove DIR.
#
# Environment:
#   MYSHIM_BIN_DIR   directory put first in containerd's PATH, so that containerd finds the
#                    containerd-shim-myshim-v2 to test (e.g. target/debug or target/release).
#                    Unset: containerd finds whatever is on PATH.
#   MYSHIM_CONTAINERD_PATH  when set, containerd's whole PATH (MYSHIM_BIN_DIR still goes
#                    first); e.g. a PATH without runc, to show a test does not use it.
#
# Only processes started by this containerd are ended, each by its pid.
set -euo pipefail

readonly MARKER=.myshim-private-containerd
START_TIMEOUT=${MYSHIM_CONTAINERD_START_TIMEOUT:-30}
STOP_TIMEOUT=${MYSHIM_CONTAINERD_STOP_TIMEOUT:-15}

die() { echo "containerd.sh: $*" >&2; exit 1; }
log() { echo "containerd.sh: $*" >&2; }

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
[ -n "$2" ] || usage
dir=$(realpath -m -- "$2")
[ "$dir" != / ] || die "refusing to use / as DIR"

sock=$dir/containerd.sock
pidfile=$dir/containerd.pid

ctr_() { timeout -k 5 20 ctr --address "$sock" "$@"; }

# pid_alive PID: the process exists and is not a zombie
pid_alive() {
    local st
    [ -r "/proc/$1/stat" ] || return 1
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# our_containerd PID: PID is a containerd started with DIR/config.toml
our_containerd() {
    pid_alive "$1" || return 1
    { tr '\0' '\n' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qxF -- "$dir/config.toml"
}

# wait_gone PID SECONDS
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

# Pids of shims started by this containerd: their argv has "-address DIR/containerd.sock".
shim_pids() {
    local p argv
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" != $$ ] || continue
        argv=$({ tr '\0' '\n' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
        grep -qxF -- "$sock" <<<"$argv" || continue
        grep -qxF -- "-address" <<<"$argv" || continue
        case "$(head -n1 <<<"$argv")" in
        containerd-shim* | */containerd-shim*) echo "$p" ;;
        esac
    done
}

# Descendants of PID (children first listed after their parent).
descendants() {
    local p c
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        c=$({ awk '/^PPid:/ {print $2}' <"/proc/$p/status"; } 2>/dev/null) || continue
        if [ "$c" = "$1" ]; then
            echo "$p"
            descendants "$p"
        fi
    done
}

# argv value after FLAG in /proc/PID/cmdline
argv_value() {
    { tr '\0' '\n' <"/proc/$1/cmdline"; } 2>/dev/null | awk -v f="$2" 'take {print; exit} $0 == f {take = 1}'
}

write_config() {
    cat >"$dir/config.toml" <<EOF
# Private containerd for myshim tests (scripts/containerd.sh). Nothing here touches the host's
# /run/containerd or /var/lib/containerd.
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = "$dir/debug.sock"
  level = "debug"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    # disabled above (disabled_plugins): no CRI, so no CNI either
  [plugins."io.containerd.gc.v1.scheduler"]
    pause_threshold = 0.02
EOF
}

start() {
    if [ -f "$pidfile" ] && our_containerd "$(cat "$pidfile")"; then
        die "a containerd already runs in $dir (pid $(cat "$pidfile")); stop it first"
    fi
    command -v containerd >/dev/null || die "containerd not found (apt-get install containerd)"
    command -v ctr >/dev/null || die "ctr not found (apt-get install containerd)"
    mkdir -p "$dir"
    touch "$dir/$MARKER"
    mkdir -p "$dir/root" "$dir/state"
    write_config

    local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    [ -z "${PATH:-}" ] || path=$PATH:$path
    [ -z "${MYSHIM_CONTAINERD_PATH:-}" ] || path=$MYSHIM_CONTAINERD_PATH
    if [ -n "${MYSHIM_BIN_DIR:-}" ]; then
        local bindir
        bindir=$(realpath -m -- "$MYSHIM_BIN_DIR")
        [ -x "$bindir/containerd-shim-myshim-v2" ] ||
            log "warning: $bindir/containerd-shim-myshim-v2 does not exist (yet)"
        path=$bindir:$path
        echo "$bindir" >"$dir/bin_dir"
    else
        log "MYSHIM_BIN_DIR is not set: containerd finds containerd-shim-myshim-v2 on PATH"
        : >"$dir/bin_dir"
    fi

    # setsid: our own session, so that ^C or a test harness' signals do not reach it.
    PATH=$path setsid containerd --config "$dir/config.toml" --log-level debug \
        </dev/null >>"$dir/containerd.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"

    local i
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if ! pid_alive "$pid"; then
            tail -n 30 "$dir/containerd.log" >&2 || true
            die "containerd exited during startup (log: $dir/containerd.log)"
        fi
        if [ -S "$sock" ] && timeout -k 2 5 ctr --address "$sock" version >/dev/null 2>&1; then
            log "containerd (pid $pid) ready at $sock; log $dir/containerd.log"
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$dir/containerd.log" >&2 || true
    die "containerd (pid $pid) did not answer within ${START_TIMEOUT}s"
}

# Best effort while containerd still answers: kill and delete every task, delete every
# container, in every namespace of this containerd.
cleanup_containers() {
    [ -S "$sock" ] || return 0
    ctr_ version >/dev/null 2>&1 || return 0
    local ns t c
    for ns in $(ctr_ namespaces ls -q 2>/dev/null); do
        for t in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
            log "leftover task $ns/$t: killing"
            ctr_ -n "$ns" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
        done
        for t in $(ctr_ -n "$ns" tasks ls -q 2>/dev/null); do
            ctr_ -n "$ns" tasks delete -f "$t" >/dev/null 2>&1 || true
        done
        for c in $(ctr_ -n "$ns" containers ls -q 2>/dev/null); do
            log "leftover container $ns/$c: deleting"
            ctr_ -n "$ns" containers delete "$c" >/dev/null 2>&1 || true
        done
    done
}

stop() {
    if [ ! -e "$dir" ]; then
        log "$dir does not exist: nothing to stop"
        return 0
    fi
    [ -f "$dir/$MARKER" ] || die "$dir was not made by $0 start (no $MARKER): not touching it"

    cleanup_containers || true

    # containerd itself
    local pid=""
    [ -f "$pidfile" ] && pid=$(cat "$pidfile")
    if [ -n "$pid" ] && our_containerd "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
            log "containerd (pid $pid) still there after ${STOP_TIMEOUT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 5 || log "containerd (pid $pid) does not die"
        fi
    fi

    # shims it started, and what they still run
    local s d ns id addr
    for s in $(shim_pids); do
        ns=$(argv_value "$s" -namespace)
        id=$(argv_value "$s" -id)
        addr=$(argv_value "$s" -address)
        log "leftover shim pid $s ($ns/$id): killing it and its processes"
        for d in $(descendants "$s"); do kill -KILL "$d" 2>/dev/null || true; done
        kill -KILL "$s" 2>/dev/null || true
        wait_gone "$s" 5 || log "shim pid $s does not die"
        [ -n "$ns" ] && [ -n "$id" ] || continue
        # the shim's socket: /run/containerd/s/sha256(<address>/<namespace>/<id>)
        if [ -n "$addr" ]; then
            rm -f "/run/containerd/s/$(printf '%s' "$addr/$ns/$id" | sha256sum | cut -d' ' -f1)"
        fi
        # the runtime's state of that (now dead) container, and its cgroup at containerd's
        # default cgroupsPath /<namespace>/<id> (rmdir: only if empty)
        rm -rf -- "/run/myshim/$ns/$id" "/run/containerd/runc/$ns/$id"
        for _ in 1 2 3 4 5; do
            local left=0 cg
            for cg in /sys/fs/cgroup/*/"$ns"/"$id" /sys/fs/cgroup/"$ns"/"$id"; do
                [ -d "$cg" ] || continue
                rmdir "$cg" 2>/dev/null || left=1
            done
            [ "$left" = 0 ] && break
            sleep 0.2
        done
    done

    # mounts under DIR, deepest first (mountinfo field 5 is the mount point)
    local m
    for _ in 1 2 3; do
        m=$(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
        [ -n "$m" ] || break
        while read -r mp; do
            mp=$(printf '%b' "$mp") # \040 etc.
            umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
        done <<<"$m"
    done
    m=$(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo)
    [ -z "$m" ] || log "still mounted under $dir: $m"

    rm -rf -- "$dir" || log "could not remove all of $dir"
    log "stopped; $dir removed"
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
