#!/usr/bin/env bash
# make-bare-rootfs.sh SUITE DIR — a bare Debian root for the air-gapped install
# test (test/bare-host.test.ts): `debootstrap --variant=minbase SUITE` plus only
# iproute2, nftables and util-linux (no compiler, no -dev package, no CRIU),
# then apt's lists and source list removed. The mirror is the machine's own
# Debian entry (read from /etc/apt, never written here).
#
# Idempotent: a DIR finished by this version of the script for SUITE is left as
# it is (DIR/.autopod-bare names SUITE and the script's SHA-256). Builds in
# DIR.tmp and renames, so an interrupted run leaves no half-built DIR.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

log() { printf 'make-bare-rootfs: %s\n' "$*" >&2; }
die() { printf 'make-bare-rootfs: error: %s\n' "$*" >&2; exit 1; }

if [ $# -ne 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "Usage: $0 SUITE DIR   (SUITE: bookworm or trixie)" >&2
  [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && exit 0 || exit 2
fi
suite=$1
case "$suite" in bookworm | trixie) ;; *) die "unknown suite \"$suite\" (bookworm or trixie)" ;; esac
dir=$(realpath -m "$2")
stamp="$suite $(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
if [ -f "$dir/.autopod-bare" ] && [ "$(cat "$dir/.autopod-bare")" = "$stamp" ]; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "only root can build $dir (debootstrap)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing (apt-get install debootstrap)"

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

tmp=$dir.tmp
rm -rf "$tmp"
mkdir -p "$(dirname "$dir")"
log "debootstrap --variant=minbase --include=iproute2,nftables,util-linux $suite into $tmp"
start=$SECONDS
debootstrap --variant=minbase --include=iproute2,nftables,util-linux "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 ||
  { tail -n 30 "$tmp.log" >&2; die "debootstrap failed (log: $tmp.log)"; }
log "debootstrap took $((SECONDS - start)) s"
chroot "$tmp" apt-get clean
rm -rf "$tmp/var/lib/apt/lists/"* "$tmp/etc/apt/sources.list" "$tmp/etc/apt/sources.list.d/"*
: >"$tmp/etc/resolv.conf"
printf '%s\n' "$stamp" >"$tmp/.autopod-bare"
rm -rf "$dir" "$tmp.log"
mv "$tmp" "$dir"
log "done: $dir ($(du -sh "$dir" | cut -f1))"
