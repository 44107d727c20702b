#!/usr/bin/env bash
# Builds the Debian bookworm base image for Nimbus locally, from Debian's packages only
# (debootstrap, then `docker import`), for machines whose Docker Engine has no registry.
# Cached: does nothing when the image already exists (pass --force to rebuild).
#
#   deploy/docker/base-image.sh [--force]     -> image nimbus-base:bookworm
#
# With a registry you do not need this: the Dockerfile's default BASE_IMAGE is
# debian:bookworm-slim and it installs the same packages with apt-get.
set -euo pipefail
IMAGE="${NIMBUS_BASE_IMAGE:-nimbus-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What a Nimbus node needs at run time: the python3/node runtimes' interpreters, the
# sandbox's tools (ip, nft/iptables, mkfs.ext4, losetup), tc for netem in chaos tests,
# TLS roots and curl for health checks, procps for ps/pkill in containers.
PACKAGES=python3,nodejs,iproute2,nftables,iptables,e2fsprogs,mount,ca-certificates,curl,procps,tini

if [ "${1:-}" != "--force" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base image $IMAGE exists (pass --force to rebuild)"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
root="$(mktemp -d /var/tmp/nimbus-rootfs.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm into $root (a few minutes)..."
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" \
  >"$root.log" 2>&1 || { tail -30 "$root.log"; exit 1; }
rm -f "$root.log"
# Slim it like the official -slim images: no apt lists, docs or man pages.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  - "$IMAGE" >/dev/null
echo "built $IMAGE"
