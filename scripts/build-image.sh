#!/usr/bin/env bash
# Build a busybox OCI image layout tarball from the host's static busybox (busybox-static).
#
#   scripts/build-image.sh OUT.tar [NAME]
#
# NAME defaults to local/busybox:latest. The result is deterministic: same busybox, same bytes.
# Import it into containerd with the repository part of NAME as --base-name:
#
#   ctr -n NS images import --base-name local/busybox OUT.tar
#
# (Do not pass --index-name equal to NAME: ctr then names the index after the image and
# unpacking breaks.)
#
# Layout of the tarball: oci-layout, index.json, blobs/sha256/{layer (tar+gzip), config,
# manifest}. The index entry carries both io.containerd.image.name (the full NAME, which ctr
# uses verbatim) and org.opencontainers.image.ref.name (the tag, which --base-name prefixes).
set -euo pipefail

usage() { echo "usage: $0 OUT.tar [NAME]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
out=$1
name=${2:-local/busybox:latest}

# NAME = repo[:tag]; a ':' after the last '/' starts the tag.
last=${name##*/}
if [[ $last == *:* ]]; then
    tag=${last##*:}
    repo=${name%:*}
else
    tag=latest
    repo=$name
    name=$repo:$tag
fi

busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "$0: $busybox not found: apt-get install busybox-static" >&2; exit 1; }
if ! "$busybox" --list >/dev/null 2>&1; then
    echo "$0: $busybox does not list its applets (need busybox-static)" >&2; exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
    echo "$0: $busybox is dynamically linked; the image has no libc: use busybox-static" >&2
    exit 1
fi

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
    amd64|x86_64) arch=amd64 ;;
    arm64|aarch64) arch=arm64 ;;
    i386|i686) arch=386 ;;
    ppc64el|ppc64le) arch=ppc64le ;;
    s390x) arch=s390x ;;
    riscv64) arch=riscv64 ;;
    *) echo "$0: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/myshim-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 022

# --- root filesystem ------------------------------------------------------------------------
r=$work/rootfs
mkdir -p "$r"/{bin,etc,tmp,root,home/user,proc,sys,dev}
cp "$busybox" "$r/bin/busybox"
chmod 0755 "$r/bin/busybox"
"$busybox" --list | LC_ALL=C sort -u | while read -r applet; do
    [ -n "$applet" ] && [ "$applet" != busybox ] || continue
    ln -s busybox "$r/bin/$applet"
done
cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
chmod 0644 "$r/etc/passwd" "$r/etc/group"
chmod 0755 "$r" "$r"/{bin,etc,home,home/user,proc,sys,dev}
chmod 1777 "$r/tmp"
chmod 0700 "$r/root"

# --- layer: fixed mtimes, sorted, numeric owners; /home/user belongs to 1000:1000 ----------
tarflags=(--format=gnu --sort=name --mtime=@0 --numeric-owner --no-acls --no-xattrs --no-selinux)
layer_tar=$work/layer.tar
tar -C "$r" "${tarflags[@]}" --owner=0 --group=0 --exclude=./home/user -cf "$layer_tar" .
tar -C "$r" "${tarflags[@]}" --owner=1000 --group=1000 -rf "$layer_tar" ./home/user
diff_id=$(sha256sum "$layer_tar" | cut -d' ' -f1)
gzip -n -9 -c "$layer_tar" >"$work/layer.tar.gz"

# --- OCI layout -----------------------------------------------------------------------------
o=$work/oci
mkdir -p "$o/blobs/sha256"

# add_blob FILE -> prints "digest size" and stores FILE under blobs/sha256/<digest>
add_blob() {
    local d s
    d=$(sha256sum "$1" | cut -d' ' -f1)
    s=$(stat -c %s "$1")
    cp "$1" "$o/blobs/sha256/$d"
    echo "$d $s"
}

read -r layer_digest layer_size < <(add_blob "$work/layer.tar.gz")

cat >"$work/config.json" <<EOF
{"architecture":"$arch","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"myshim scripts/build-image.sh: busybox $("$busybox" 2>&1 | head -n1 | sed -n 's/^BusyBox \(v[^ ]*\).*/\1/p')"}]}
EOF
read -r config_digest config_size < <(add_blob "$work/config.json")

cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$layer_size}]}
EOF
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

cat >"$o/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"platform":{"architecture":"$arch","os":"linux"},"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"$tag"}}]}
EOF
echo '{"imageLayoutVersion":"1.0.0"}' >"$o/oci-layout"

mkdir -p "$(dirname "$out")"
tar -C "$o" "${tarflags[@]}" --owner=0 --group=0 -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
echo "built $name ($arch) -> $out: manifest sha256:$manifest_digest, layer sha256:$layer_digest ($layer_size bytes)"
echo "import: ctr -n NAMESPACE images import --base-name $repo $out"
