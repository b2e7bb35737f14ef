#!/usr/bin/env bash
# Install what the guest tests need on the host, when it is missing (non-interactive,
# idempotent; `make vm-deps` and every vm target run it):
#   - debootstrap and e2fsprogs (mkfs.ext4 -d) from the host's release;
#   - qemu-system-x86 from <release>-backports (bookworm's qemu-system 7.2 conflicts with the
#     qemu-utils 10.0 from backports), through a private apt configuration under
#     $MYSHIM_VM_CACHE/apt: /etc/apt is left unchanged.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export DEBIAN_FRONTEND=noninteractive

missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
if [ ${#missing[@]} -gt 0 ]; then
    need_root "apt-get install ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! qemu-system-x86_64 --version >/dev/null 2>&1; then
    need_root "apt-get install qemu-system-x86"
    APT_CONFIG=$(private_apt_config)
    export APT_CONFIG
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    log "installing qemu-system-x86 from $codename-backports (private apt config $APT_CONFIG)"
    apt-get update -q
    apt-get install -y -q --no-install-recommends -t "$codename-backports" qemu-system-x86
    qemu-system-x86_64 --version | head -n1 >&2
fi
