#!/usr/bin/env bash
# The root filesystem of a guest image, in a directory (called by tests/vm/image.sh, inside a
# private mount namespace: the chroot's proc, sys and dev mounts go away with it, even when the
# build fails):
#
#   tests/vm/build-root.sh GUEST ROOT MIRROR
#
# `debootstrap --variant=minbase` of the guest's suite from MIRROR into ROOT, then
# tests/vm/guests/{common,GUEST}.packages (--no-install-recommends), a small initrd, systemd
# booting straight to myshim-vm.service (tests/vm/guest/), nothing else running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || { echo "usage: $0 GUEST ROOT MIRROR" >&2; exit 2; }
guest=$1
valid_guest "$guest" || die "unknown guest '$guest'"
root=$2
mirror=$3

# Package list: common + the guest's, comments and blank lines dropped.
packages() {
    sed -e 's/#.*//' "$vm_dir/guests/common.packages" "$vm_dir/guests/$guest.packages" |
        tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u | tr '\n' ' '
}

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

