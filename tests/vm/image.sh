#!/usr/bin/env bash
# Build (or find in the cache) the disk image of a guest:
#
#   tests/vm/image.sh GUEST      GUEST: a name of tests/vm/guests/GUEST.conf (trixie, forky)
#
# Prints the image's directory on stdout: disk.raw (ext4 root filesystem, booted read-only
# behind a qcow2 overlay), vmlinuz, initrd.img, info. The image is
# `debootstrap --variant=minbase` of the guest's suite from the Debian mirror apt uses, plus
# tests/vm/guests/{common,GUEST}.packages, systemd as init and myshim-vm.service (runs the suite
# at boot, tests/vm/guest/). Cached under $MYSHIM_VM_CACHE/images/GUEST-<key>, where <key>
# hashes this script, the package lists, the guest's conf and the files baked into the image:
# changing any of them builds a new image (and drops the old one). MYSHIM_VM_REBUILD=1 forces a
# rebuild.
#
# Mounts (proc, sys, dev of the chroot) live in a private mount namespace (unshare): they go
# away with the build, even when it fails.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -ge 1 ] || { echo "usage: $0 GUEST" >&2; exit 2; }
guest=$1
valid_guest "$guest" || die "unknown guest '$guest' (known: $(guest_names | tr '\n' ' '))"

# Package list: common + the guest's, comments and blank lines dropped.
packages() {
    sed -e 's/#.*//' "$vm_dir/guests/common.packages" "$vm_dir/guests/$guest.packages" |
        tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u | tr '\n' ' '
}

# --- inside the private mount namespace: the build itself ------------------------------------
if [ "${2:-}" = --build ]; then
    root=$3
    mirror=$4
    # shellcheck source=/dev/null
    source "$vm_dir/guests/$guest.conf"
    script=/usr/share/debootstrap/scripts/$SUITE
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    log "debootstrap --variant=minbase $SUITE from $mirror"
    debootstrap --variant=minbase --components=main \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$root" "$mirror" "$script"

    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    in_root() {
        chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
    }
    # no service starts inside the chroot
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" \
        >"$root/etc/apt/sources.list"
    # a small initrd with just what mounting the root takes (virtio-blk, ext4): under TCG a
    # generic one costs tens of seconds of boot to unpack and probe. initramfs-tools (trixie)
    # and dracut (forky) alike; in a chroot neither can guess the guest's hardware.
    mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d" \
        "$root/etc/dracut.conf.d"
    echo MODULES=list >"$root/etc/initramfs-tools/conf.d/myshim-vm.conf"
    printf '%s\n' virtio_pci virtio_blk ext4 >"$root/usr/share/initramfs-tools/modules.d/myshim-vm"
    printf '%s\n' 'hostonly="no"' 'drivers=" virtio_pci virtio_blk ext4 "' \
        'filesystems=" ext4 "' >"$root/etc/dracut.conf.d/myshim-vm.conf"
    pkgs=$(packages)
    log "apt-get install $pkgs"
    in_root apt-get "${APT_OPTS[@]}" -q update
    # shellcheck disable=SC2086
    in_root apt-get "${APT_OPTS[@]}" -q -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install $pkgs

    # --- configuration: boot straight to the suite, nothing else running -------------------
    echo "myshim-vm-$guest" >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 myshim-vm-%s\n' "$guest" >"$root/etc/hosts"
    echo '/dev/vda / ext4 rw,errors=remount-ro 0 0' >"$root/etc/fstab"
    # legacy PC devices of qemu's pc machine that the suite does not use: udev would load
    # their drivers at every boot
    printf 'blacklist %s\n' floppy ata_piix pata_acpi ata_generic i2c_piix4 psmouse pcspkr \
        serio_raw joydev >"$root/etc/modprobe.d/myshim-vm.conf"
    mkdir -p "$root/etc/systemd/journald.conf.d"
    printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/myshim-vm.conf"
    install -m 0755 "$vm_dir/guest/myshim-vm-boot" "$root/usr/local/sbin/myshim-vm-boot"
    install -m 0644 "$vm_dir/guest/myshim-vm.service" "$root/etc/systemd/system/myshim-vm.service"
    in_root systemctl enable myshim-vm.service
    in_root systemctl set-default multi-user.target
    # the suite starts its own containerd (scripts/containerd.sh), as the host tests do
    in_root systemctl disable containerd.service 2>/dev/null || true
    for u in getty.target serial-getty@ttyS0.service getty@tty1.service \
        apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
        e2scrub_reap.service fstrim.timer systemd-timesyncd.service; do
        in_root systemctl mask "$u" >/dev/null 2>&1 || true
    done
    in_root apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d" "$root"/var/cache/debconf/*-old
    : >"$root/etc/machine-id"
    exit 0
fi

# --- outside: cache lookup, build, disk image ---------------------------------------------
need_root "building the $guest image"
"$vm_dir/deps.sh"
mirror=$(debian_mirror)

key=$(
    {
        echo "mirror $mirror"
        cat "$0" "$vm_dir/lib.sh" "$vm_dir/guests/$guest.conf" \
            "$vm_dir/guests/common.packages" "$vm_dir/guests/$guest.packages" \
            "$vm_dir/guest/myshim-vm-boot" "$vm_dir/guest/myshim-vm.service"
    } | sha256sum | cut -c1-16
)
images=$cache_dir/images
final=$images/$guest-$key
mkdir -p "$images"

exec 9>"$images/$guest.lock"
flock 9

if [ -f "$final/complete" ] && [ "${MYSHIM_VM_REBUILD:-0}" != 1 ]; then
    log "$guest image cached: $final"
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
if ! unshare --mount --propagation private -- "$0" "$guest" --build "$root" "$mirror" \
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
touch "$img/complete"

rm -rf -- "$final"
mv "$img" "$final"
# older images of this guest
for old in "$images/$guest"-*; do
    [ -d "$old" ] && [ "$old" != "$final" ] && rm -rf -- "$old"
done
log "$guest image built in $(($(date +%s) - start)) s: $final ($(tr '\n' ' ' <"$final/info"))"
echo "$final"
