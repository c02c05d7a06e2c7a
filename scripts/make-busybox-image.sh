#!/bin/bash
# Builds gantry's built-in demo image: an OCI image layout at OUTDIR whose
# single layer is a rootfs made of the host's static busybox (Debian's
# busybox-static) and its applet symlinks, a minimal /etc/passwd and
# /etc/group (root, nobody, app 1000:1000), /tmp (1777) and /root.
#
#   scripts/make-busybox-image.sh OUTDIR [TAG]      (TAG defaults to "latest")
#
# Needs: busybox-static, umoci. Idempotent: if OUTDIR already holds TAG it is
# left alone. Timestamps are pinned (SOURCE_DATE_EPOCH, default 0) so two
# builds from the same busybox binary give the same manifest digest.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUTDIR [TAG]" >&2
  exit 2
fi
OUT=$1
TAG=${2:-latest}
BUSYBOX=${BUSYBOX:-/bin/busybox}
EPOCH=${SOURCE_DATE_EPOCH:-0}
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)
case "$(uname -m)" in
  x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; armv7l) ARCH=arm ;; i686) ARCH=386 ;;
  ppc64le) ARCH=ppc64le ;; s390x) ARCH=s390x ;; riscv64) ARCH=riscv64 ;; *) ARCH=$(uname -m) ;;
esac

for tool in umoci; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "$0: $BUSYBOX not found (apt-get install busybox-static)" >&2; exit 1; }

if [ -f "$OUT/index.json" ] && umoci ls --layout "$OUT" 2>/dev/null | grep -qx "$TAG"; then
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gantry-busybox.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/rootfs
mkdir -p "$ROOT"/{bin,sbin,etc,tmp,root,home/app,proc,sys,dev,var,usr/bin,usr/sbin}
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
for applet in sh ash echo ls cat true false id hostname sleep env httpd wget ps mount umount \
  cp mv rm mkdir rmdir ln chmod chown touch grep sed awk head tail wc sort uniq cut tr \
  date uname whoami pwd test printf kill ip ifconfig ping nc netstat df du find xargs \
  tee vi less more dmesg top free uptime stat readlink realpath basename dirname which \
  nslookup seq yes md5sum sha256sum tar gzip gunzip; do
  ln -s busybox "$ROOT/bin/$applet"
done
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
app:x:1000:
nogroup:x:65534:
EOF
echo "gantry-busybox" >"$ROOT/etc/hostname"
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
chown 1000:1000 "$ROOT/home/app"
find "$ROOT" -exec touch -h -d "@$EPOCH" {} +

if [ ! -f "$OUT/oci-layout" ]; then
  # umoci init wants to create the directory itself
  if [ -d "$OUT" ]; then rmdir "$OUT" || { echo "$0: $OUT is not empty and not an OCI layout" >&2; exit 1; }; fi
  umoci init --layout "$OUT"
fi
umoci new --image "$OUT:$TAG"
# unpack + repack (not `insert ROOT /`, which would record an entry named
# "/" that careful layer extractors rightly treat as an absolute path).
umoci unpack --image "$OUT:$TAG" "$WORK/bundle" >/dev/null
cp -a "$ROOT/." "$WORK/bundle/rootfs/"
touch -h -d "@$EPOCH" "$WORK/bundle/rootfs"
umoci repack --image "$OUT:$TAG" --history.created "$CREATED" \
  --history.created_by "gantry make-busybox-image.sh" "$WORK/bundle"
umoci config --image "$OUT:$TAG" --created "$CREATED" --no-history \
  --os linux --architecture "$ARCH" \
  --config.cmd /bin/sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / \
  --config.label org.opencontainers.image.title=gantry-busybox
umoci gc --layout "$OUT"
