#!/usr/bin/env bash
# Runs inside a guest (started by myshim-vm-boot from the shared checkout): the same flow as
# scripts/integration.sh, without cargo. A private containerd from the guest's own containerd
# (scripts/containerd.sh, the host-built shim's directory first in its PATH), then each
# host-built test binary in turn, then that containerd is stopped again.
#
#   suite.sh OUT     OUT: the output share; OUT/params (written by tests/vm/run.sh) sets
#                    BIN_DIR (the shim's directory), TESTS ("name=path" of each test binary),
#                    TEST_ARGS (array: arguments of every test binary, a filter ...),
#                    MYSHIM_TEST_RUNTIME, MYSHIM_VM_SYSTEMD_PASS (optional)
#
# Leaves OUT/results ("name exit-code" a line) and OUT/containerd.log; prints the test output.
set -uo pipefail
out=$1
cd "$(dirname "$0")/../../.." || exit 1

BIN_DIR="" TESTS="" MYSHIM_TEST_RUNTIME="" MYSHIM_VM_SYSTEMD_PASS=1
TEST_ARGS=()
# shellcheck source=/dev/null
source "$out/params" || { echo "suite: cannot read $out/params"; exit 1; }
[ -z "$MYSHIM_TEST_RUNTIME" ] || export MYSHIM_TEST_RUNTIME
# Under emulation a container create costs 10-100 times the host's: the load tests are scaled
# down here (the host suite runs them in full), their checks stay the same.
export MYSHIM_TEST_POD_CONTAINERS=${MYSHIM_TEST_POD_CONTAINERS:-50}
export MYSHIM_SOAK_RUNS=${MYSHIM_SOAK_RUNS:-10}

echo "suite: guest $(hostname): $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
echo "suite: $(containerd --version 2>&1); $(ctr --version 2>&1)"
echo "suite: /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup); controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
echo "suite: init $(ps -o comm= -p 1), $(systemctl --version | head -n1)"
command -v runc >/dev/null && echo "suite: $(runc --version | head -n1)"
command -v criu >/dev/null && echo "suite: criu $(criu --version 2>&1 | head -n1)"
echo "suite: started $(cut -d' ' -f1 /proc/uptime) s after the kernel"

dir=$(mktemp -d /tmp/myshim-it.XXXXXX)
stop() {
    cp "$dir/containerd.log" "$out/containerd.log" 2>/dev/null || true
    scripts/containerd.sh stop "$dir" || true
}
trap stop EXIT

MYSHIM_BIN_DIR=$BIN_DIR scripts/containerd.sh start "$dir" || {
    echo "suite: containerd did not start"
    exit 1
}

: >"$out/results"
failed=0
for t in $TESTS; do
    name=${t%%=*}
    bin=${t#*=}
    echo
    echo "suite: ===== $name ($bin ${TEST_ARGS[*]})"
    rc=0
    # as cargo test runs them: from the package's directory
    MYSHIM_CONTAINERD_DIR=$dir "$bin" "${TEST_ARGS[@]}" </dev/null || rc=$?
    echo "$name $rc" >>"$out/results"
    [ "$rc" = 0 ] || failed=1
done

# Second pass: the suites a Kubernetes node exercises, with every container under the systemd
# cgroup driver (cgroupsPath slice:prefix:name, as the CRI plugin sends it with SystemdCgroup),
# when systemd is pid 1 (it is in every guest). MYSHIM_VM_SYSTEMD_PASS=0 in params skips it.
if [ -d /run/systemd/system ] && [ "${MYSHIM_VM_SYSTEMD_PASS:-1}" != 0 ]; then
    for t in $TESTS; do
        name=${t%%=*}
        bin=${t#*=}
        case $name in integration | task_service) ;; *) continue ;; esac
        echo
        echo "suite: ===== $name under the systemd driver ($bin ${TEST_ARGS[*]})"
        rc=0
        MYSHIM_TEST_CGROUPS=systemd MYSHIM_CONTAINERD_DIR=$dir "$bin" "${TEST_ARGS[@]}" </dev/null || rc=$?
        echo "$name+systemd $rc" >>"$out/results"
        [ "$rc" = 0 ] || failed=1
    done
fi
echo
echo "suite: results: $(tr '\n' ' ' <"$out/results")"
exit "$failed"
