#!/usr/bin/env bash
# Build (or find in the cache) the disk image of a guest:
#
#   tests/vm/image.sh GUEST      GUEST: a name of tests/vm/guests/GUEST.conf (trixie, forky)
#
# Prints the image's directory on stdout: disk.raw (ext4 root filesystem, booted read-only
# behind a qcow2 overlay), vmlinuz, initrd.img, info. The image is
# `debootstrap --variant=minbase` of the guest's suite from the Debian mirror apt uses, plus
# tests/vm/guests/{common,GUEST}.packages, systemd as init and myshim-vm.service (runs the suite
# at boot, tests/vm/guest/), made by tests/vm/build-root.sh. Cached under
# $MYSHIM_VM_CACHE/images/GUEST-<key>, where <key> hashes build-root.sh, the package lists, the
# guest's conf, the files baked into the image and IMAGE_FORMAT below:
# changing any of them builds a new image (images unused for MYSHIM_VM_KEEP_DAYS days go).
# MYSHIM_VM_REBUILD=1 forces a rebuild.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 GUEST" >&2; exit 2; }
guest=$1
valid_guest "$guest" || die "unknown guest '$guest' (known: $(guest_names | tr '\n' ' '))"

# Bump when what this script makes of the root directory changes (the disk, kernel, initrd).
IMAGE_FORMAT=1

need_root "building the $guest image"
"$vm_dir/deps.sh"
mirror=$(debian_mirror)

key=$(
    {
        echo "mirror $mirror"
        echo "format $IMAGE_FORMAT"
        cat "$vm_dir/build-root.sh" "$vm_dir/guests/$guest.conf" \
            "$vm_dir/guests/common.packages" "$vm_dir/guests/$guest.packages" \
            "$vm_dir/guest/myshim-vm-boot" "$vm_dir/guest/myshim-vm.service"
    } | sha256sum | cut -c1-16
)
images=$cache_dir/images
final=$images/$guest-$key
mkdir -p "$images"

exec 9>"$images/$guest.lock"
flock 9

# Images of this guest with another key (another checkout, an older script) that no run used
# for MYSHIM_VM_KEEP_DAYS days (default 3) go; a recent one may serve another worktree still.
# Under the lock no build of this guest runs: a .build-GUEST.* left is from a killed build.
prune() {
    local old
    for old in "$images/$guest"-*; do
        [ -d "$old" ] && [ "$old" != "$final" ] || continue
        if [ -z "$(find "$old" -maxdepth 1 \( -name last-used -o -name complete \) \
            -mtime -"${MYSHIM_VM_KEEP_DAYS:-3}" 2>/dev/null)" ]; then
            log "removing the unused image $old"
            rm -rf -- "$old"
        fi
    done
    for old in "$images/.build-$guest".*; do
        [ ! -e "$old" ] || rm -rf -- "$old"
    done
}

if [ -f "$final/complete" ] && [ "${MYSHIM_VM_REBUILD:-0}" != 1 ]; then
    log "$guest image cached: $final"
    touch "$final/last-used"
    prune
    echo "$final"
    exit 0
fi

work=$(mktemp -d "$images/.build-$guest.XXXXXX")
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT
buildlog=$images/$guest-build.log
log "building the $guest image in $work (log: $buildlog)"
start=$(date +%s)
root=$work/root
mkdir -p "$root"
if ! unshare --mount --propagation private -- "$vm_dir/build-root.sh" "$guest" "$root" "$mirror" \
    >"$buildlog" 2>&1; then
    tail -n 40 "$buildlog" >&2
    die "building the $guest image failed (log: $buildlog)"
fi

img=$work/image
mkdir -p "$img"
kernels=("$root"/boot/vmlinuz-*)
initrds=("$root"/boot/initrd.img-*)
[ ${#kernels[@]} = 1 ] && [ -f "${kernels[0]}" ] || die "expected one kernel in $root/boot"
[ ${#initrds[@]} = 1 ] && [ -f "${initrds[0]}" ] || die "expected one initrd in $root/boot"
cp "${kernels[0]}" "$img/vmlinuz"
cp "${initrds[0]}" "$img/initrd.img"

# ext4 from the directory (no loop mount); room for the guest's writes beyond the files
used_mb=$(du -sm "$root" | cut -f1)
size_mb=$((used_mb + 1024))
mkfs.ext4 -q -F -L myshim-root -m 0 -E root_owner=0:0 -d "$root" "$img/disk.raw" "${size_mb}M" \
    >>"$buildlog" 2>&1 || die "mkfs.ext4 -d failed (log: $buildlog)"

{
    echo "guest=$guest"
    echo "suite=$(. "$vm_dir/guests/$guest.conf" && echo "$SUITE")"
    echo "key=$key"
    echo "mirror=$mirror"
    echo "kernel=$(basename "${kernels[0]}" | sed 's/^vmlinuz-//')"
    echo "containerd=$(chroot "$root" dpkg-query -W -f='${Version}' containerd 2>/dev/null)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(($(date +%s) - start))"
    echo "size_mb=$size_mb"
} >"$img/info"
touch "$img/complete" "$img/last-used"

rm -rf -- "$final"
mv "$img" "$final"
prune
log "$guest image built in $(($(date +%s) - start)) s: $final ($(tr '\n' ' ' <"$final/info"))"
echo "$final"
