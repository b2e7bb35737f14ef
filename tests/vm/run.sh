#!/usr/bin/env bash
# Run the integration suites (every tests/*.rs) inside a cgroup v2 Debian guest under qemu:
#
#   tests/vm/run.sh GUEST [TEST-BINARY-ARGS...]     e.g. tests/vm/run.sh forky run_exit_code_3
#
# 1. builds the test binaries and the shim on the host (cargo test --no-run, target/debug);
# 2. builds or reuses the guest's image (tests/vm/image.sh GUEST);
# 3. boots it with qemu (TCG; -kernel/-initrd, root on virtio-blk behind a throw-away qcow2
#    overlay; cgroup_no_v1=all; systemd as init; no network), the checkout shared over 9p
#    read-only at the same absolute path (and cargo's target dir, if outside it), so the test
#    binaries' compiled-in paths hold in the guest;
# 4. the guest runs tests/vm/guest/suite.sh from the share (a private containerd from the
#    guest's packages, the host-built shim first in its PATH, each test binary in turn), writes
#    its log and exit code to a writable 9p share and powers off; this script prints the log as
#    it grows and exits with the suite's status: 0 all passed, 1 a test failed, 124 the guest
#    did not finish within MYSHIM_VM_TIMEOUT seconds (qemu is killed), 125 the guest could not
#    run the suite.
#
# Results are kept in <target>/vm/GUEST/: suite.log, console.log (serial console: kernel and
# systemd), containerd.log, results, times.
#
# Environment: MYSHIM_VM_SUITES (the test suites to run, e.g. "integration cgroups", or "all";
# default: tests/vm/guests/GUEST.suites), MYSHIM_VM_SYSTEMD_PASS (0: no second pass of
# integration and task_service under the systemd cgroup driver),
# MYSHIM_VM_TIMEOUT (default 1200 s, the whole boot + suite), MYSHIM_VM_MEM (MiB,
# default 4096), MYSHIM_VM_SMP (default 2), MYSHIM_TEST_RUNTIME (passed to the tests),
# MYSHIM_VM_CACHE, MYSHIM_VM_MIRROR, MYSHIM_VM_REBUILD (tests/vm/image.sh), CARGO.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 GUEST [TEST-BINARY-ARGS...]" >&2; exit 2; }
guest=$1
shift
valid_guest "$guest" || die "unknown guest '$guest' (known: $(guest_names | tr '\n' ' '))"
need_root "qemu, images"
timeout_s=${MYSHIM_VM_TIMEOUT:-1200}
cargo=${CARGO:-cargo}

"$vm_dir/deps.sh"
cd "$repo_dir"

# Paths shared with the guest are mounted there at the same place: keep them off the guest's
# own system directories, and free of blanks (the kernel command line carries them).
check_share_path() {
    [[ $1 =~ ^/[^[:space:]]*$ ]] || die "path '$1' has blanks or is not absolute: cannot share it"
    case $1/ in
    / | /proc/* | /sys/* | /dev/* | /run/* | /usr/* | /etc/* | /boot/* | /bin/* | /sbin/* | /lib/* | /lib64/* | /var/lib/containerd/*)
        die "$1 cannot be shared at the same path in the guest (system directory there)" ;;
    esac
}

# --- 1. test binaries and shim, built on the host --------------------------------------------
# The suites this guest runs: MYSHIM_VM_SUITES ("all": every tests/*.rs), else every suite
# when test arguments (a filter) are given, else the names in tests/vm/guests/GUEST.suites
# (not baked into the image: changing it builds nothing).
if [ -n "${MYSHIM_VM_SUITES:-}" ]; then
    suites=$MYSHIM_VM_SUITES
elif [ $# -gt 0 ]; then
    suites=all
else
    suites=$(sed -e 's/#.*//' "$vm_dir/guests/$guest.suites" 2>/dev/null | tr -s ' \t\n' ' ')
fi
[ -n "${suites// /}" ] || suites=all
tests=()
for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    if [ "$suites" = all ] || [[ " $suites " == *" $name "* ]]; then
        tests+=(--test "$name")
    fi
done
[ ${#tests[@]} -gt 0 ] || die "no tests/*.rs among the suites '$suites'"
log "building the test binaries: $cargo test --no-run ${tests[*]}"
json=$("$cargo" test --no-run --message-format=json-render-diagnostics "${tests[@]}")
target_dir=$("$cargo" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "cargo metadata: no target_directory"
target_dir=$(realpath "$target_dir")
bin_dir=$target_dir/debug
[ -x "$bin_dir/containerd-shim-myshim-v2" ] || die "$bin_dir/containerd-shim-myshim-v2 was not built"
test_bins=$(sed -n 's/.*"target":{"kind":\["test"\][^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1=\2/p' <<<"$json" | sort -u)
[ -n "$test_bins" ] || die "no test executable in cargo's output"

src=$(realpath "$repo_dir")
check_share_path "$src"
share_target=""
case $target_dir/ in
"$src"/*) ;;
*) check_share_path "$target_dir"; share_target=$target_dir ;;
esac

# --- 2. image ----------------------------------------------------------------------------------
t0=$(date +%s)
img=$("$vm_dir/image.sh" "$guest")
t_image=$(($(date +%s) - t0))

# --- 3. boot -----------------------------------------------------------------------------------
results=$target_dir/vm/$guest
rm -rf -- "$results"
mkdir -p "$results"
run=$(mktemp -d "${TMPDIR:-/tmp}/myshim-vm.$guest.XXXXXX")
out=$run/out
mkdir -p "$out"
qpid=""
finish() {
    local rc=$?
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        log "stopping qemu (pid $qpid)"
        kill -TERM "$qpid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    cp -a "$out"/. "$results"/ 2>/dev/null || true
    cp "$run/console.log" "$results/" 2>/dev/null || true
    rm -rf -- "$run"
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

{
    printf 'BIN_DIR=%q\n' "$bin_dir"
    printf 'TESTS=%q\n' "$(tr '\n' ' ' <<<"$test_bins")"
    printf 'TEST_ARGS=('
    [ $# -eq 0 ] || printf '%q ' "$@"
    printf ')\n'
    printf 'MYSHIM_TEST_RUNTIME=%q\n' "${MYSHIM_TEST_RUNTIME:-}"
    printf 'MYSHIM_VM_SYSTEMD_PASS=%q\n' "${MYSHIM_VM_SYSTEMD_PASS:-1}"
} >"$out/params"

qemu-img create -q -f qcow2 -F raw -b "$img/disk.raw" "$run/overlay.qcow2"
append="root=/dev/vda rw console=ttyS0 panic=-1 cgroup_no_v1=all"
append+=" systemd.unified_cgroup_hierarchy=1 myshim.src=$src"
[ -z "$share_target" ] || append+=" myshim.target=$share_target"
virtfs=(-virtfs "local,path=$src,mount_tag=myshim-src,security_model=none,readonly=on,multidevs=remap")
[ -z "$share_target" ] ||
    virtfs+=(-virtfs "local,path=$share_target,mount_tag=myshim-target,security_model=none,readonly=on,multidevs=remap")
virtfs+=(-virtfs "local,path=$out,mount_tag=myshim-out,security_model=none")

log "booting $guest ($(tr '\n' ' ' <"$img/info"))"
t_boot0=$(date +%s)
# qemu dies with this script, even when it is SIGKILLed (no trap then)
pdeath=()
setpriv --help 2>/dev/null | grep -q -- --pdeathsig && pdeath=(setpriv --pdeathsig KILL --)
"${pdeath[@]}" qemu-system-x86_64 -nodefaults -no-user-config -no-reboot \
    -accel tcg,thread=multi -cpu max -smp "${MYSHIM_VM_SMP:-2}" -m "${MYSHIM_VM_MEM:-4096}" \
    -display none -monitor none -serial "file:$run/console.log" -nic none \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$append" \
    -drive "file=$run/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe" \
    "${virtfs[@]}" </dev/null >"$run/qemu.out" 2>&1 &
qpid=$!

# --- 4. wait: stream the suite's log, bounded ------------------------------------------------
shown=0 t_suite0=""
show_log() {
    [ -f "$out/suite.log" ] || return 0
    [ -n "$t_suite0" ] || t_suite0=$(date +%s)
    local size
    size=$(stat -c %s "$out/suite.log")
    if [ "$size" -gt "$shown" ]; then
        tail -c +"$((shown + 1))" "$out/suite.log" | head -c "$((size - shown))"
        shown=$size
    fi
}
deadline=$((t_boot0 + timeout_s))
rc=""
while kill -0 "$qpid" 2>/dev/null; do
    show_log
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "$guest: no result after ${timeout_s}s: killing qemu; last console lines:"
        tail -n 30 "$run/console.log" >&2 || true
        rc=124
        break
    fi
    sleep 2
done
if [ -z "$rc" ]; then
    wait "$qpid" || log "qemu exited with $? ($(tail -n 3 "$run/qemu.out" | tr '\n' ' '))"
    qpid=""
fi
show_log
t_end=$(date +%s)

if [ -z "$rc" ]; then
    if [ -f "$out/exit-code" ]; then
        rc=$(cat "$out/exit-code")
        [ ! -f "$out/exit-code.reason" ] || log "$guest: $(cat "$out/exit-code.reason")"
    else
        log "$guest: the guest stopped without a result; last console lines:"
        tail -n 30 "$run/console.log" >&2 || true
        rc=125
    fi
fi
boot_s=$(( ${t_suite0:-$t_end} - t_boot0 ))
{
    echo "image_seconds=$t_image"
    echo "boot_seconds=$boot_s"
    echo "suite_seconds=$((t_end - ${t_suite0:-$t_end}))"
    echo "exit_code=$rc"
} >"$out/times"
log "$guest: image ${t_image}s, boot ${boot_s}s (to the suite's start), suite $((t_end - ${t_suite0:-$t_end}))s, exit code $rc; logs in $results"
[ ! -s "$out/results" ] || log "$guest: results: $(tr '\n' ' ' <"$out/results")"
[[ $rc =~ ^[0-9]+$ ]] || rc=125
exit "$rc"
