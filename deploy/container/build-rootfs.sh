#!/bin/sh
# Builds vial's container root filesystem from Debian packages only - no image is pulled from
# any registry: mmdebstrap installs Debian 12 (bookworm) from the Debian mirror this machine's
# apt uses, plus vial's own .deb (cpack, README "Installing") and what it depends on, and adds
# the non-root user `vial` (uid/gid 10001, as deploy/kubernetes runs it). The result is a tarball
# for `podman import` / `docker import`, or for Containerfile's `FROM scratch` + `ADD`.
#
# Usage: build-rootfs.sh VIAL_DEB OUT.tar [APT_SOURCES]
#   VIAL_DEB     vial_<version>_amd64.deb (cpack -G DEB --config build/CPackConfig.cmake)
#   OUT.tar      the root filesystem written
#   APT_SOURCES  the sources the root's apt uses (default: this machine's debian.sources,
#                deb822 or one-line format)
# Needs root (mmdebstrap --mode=root) and Debian's mmdebstrap.
# VIAL_ROOTFS_CACHE=DIR keeps the downloaded .debs in DIR between runs (the test does): about
# 50 MB fetched once, then only what changed.
set -eu
deb=$(realpath "$1")
out=$2
sources=${3:-/etc/apt/sources.list.d/debian.sources}
[ -f "$sources" ] || sources=/etc/apt/sources.list
cache=${VIAL_ROOTFS_CACHE:-}
[ -z "$cache" ] || { mkdir -p "$cache"; cache=$(realpath "$cache"); }
for need in "$deb" "$sources"; do
  [ -f "$need" ] || { echo "build-rootfs.sh: no such file: $need" >&2; exit 2; }
done
# The cache: seeded into the root's apt archives before apt runs, refilled from them after.
set --
[ -z "$cache" ] || set -- \
  --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"; cp -n \"$cache\"/*.deb \"\$1/var/cache/apt/archives/\" 2>/dev/null || true" \
  --customize-hook="cp -n \"\$1\"/var/cache/apt/archives/*.deb \"$cache/\" 2>/dev/null || true"
# --variant=apt: the Essential packages (a shell and coreutils, which the probes and the token's
# init container use) plus apt; docs, man pages and locales are left out, and apt's lists and
# caches removed, as in Debian's own slim images.
mmdebstrap --mode=root --variant=apt --format=tar --skip=essential/unlink \
  --include="$deb" \
  --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
  "$@" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='chroot "$1" groupadd --system --gid 10001 vial' \
  --customize-hook='chroot "$1" useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vial' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$out" "$sources"
