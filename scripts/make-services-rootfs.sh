#!/usr/bin/env bash
# make-services-rootfs.sh DIR — build a root file system for pods that run real
# services, from Debian's own packages: `debootstrap --variant=minbase` of the
# machine's Debian release, then nginx-light, mariadb-server and redis-server installed into
# it with apt-get (their maintainer scripts run, so www-data, mysql and redis exist and
# /var/lib/mysql holds an initialised data directory), then apt's caches and
# source list removed. The mirror is the machine's own Debian entry (read from
# /etc/apt, never written here).
#
# Idempotent: a DIR finished by this version of the script is left as it is
# (DIR/.autopod-services names the script's SHA-256). Builds in DIR.tmp and
# renames, so an interrupted run leaves no half-built DIR.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

PACKAGES=(nginx-light mariadb-server redis-server)
log() { printf 'make-services-rootfs: %s\n' "$*" >&2; }
die() { printf 'make-services-rootfs: error: %s\n' "$*" >&2; exit 1; }

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "Usage: $0 DIR" >&2
  [ $# -eq 1 ] && exit 0 || exit 2
fi
dir=$(realpath -m "$1")
stamp=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
if [ -f "$dir/.autopod-services" ] && [ "$(cat "$dir/.autopod-services")" = "$stamp" ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "only root can build $dir (debootstrap, chroot)"

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends debootstrap >/dev/null; } ||
    die "cannot install debootstrap"
fi

# The machine's Debian mirror: the first "deb" entry whose URI ends in /debian.
mirror=''
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk 'BEGIN{IGNORECASE=1} /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }')
fi
[ -n "$mirror" ] || die "no Debian entry in /etc/apt to take the mirror from"
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$suite" ] || die "cannot tell this machine's Debian release (VERSION_CODENAME in /etc/os-release)"

tmp=$dir.tmp
cleanup() {
  # Whatever is still mounted under the build (an interrupted run).
  if [ -d "$tmp" ]; then
    awk -v t="$tmp/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  fi
}
trap cleanup EXIT
cleanup
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"

log "debootstrap --variant=minbase $suite into $tmp"
start=$SECONDS
debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "debootstrap failed (log: $tmp.log)"; }
log "debootstrap took $((SECONDS - start)) s"

# No service starts inside the build: maintainer scripts ask policy-rc.d.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 0755 "$tmp/usr/sbin/policy-rc.d"

log "apt-get install ${PACKAGES[*]} (in the new root)"
start=$SECONDS
# A mount namespace of its own: /proc (which the maintainer scripts need) goes away with it.
unshare --mount --propagation private -- sh -c '
  set -e
  mount -t proc proc "$1/proc"
  root=$1; shift
  chroot "$root" apt-get update -q
  chroot "$root" apt-get install -y -q --no-install-recommends "$@"
' sh "$tmp" "${PACKAGES[@]}" >>"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; die "apt-get install in the new root failed (log: $tmp.log)"; }
log "the packages took $((SECONDS - start)) s"

chroot "$tmp" apt-get clean
rm -rf "$tmp/var/lib/apt/lists/"* "$tmp/etc/apt/sources.list" "$tmp/etc/apt/sources.list.d/"* "$tmp/usr/sbin/policy-rc.d"
: >"$tmp/etc/resolv.conf"
printf '%s\n' "$stamp" >"$tmp/.autopod-services"
rm -rf "$dir" "$tmp.log"
mv "$tmp" "$dir"
log "done: $dir ($(du -sh "$dir" | cut -f1))"
