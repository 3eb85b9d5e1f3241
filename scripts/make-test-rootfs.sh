#!/usr/bin/env bash
# make-test-rootfs.sh DIR — build a small root file system for pods from
# Debian's busybox-static: /bin/busybox, a symlink per applet (sh, nc, httpd,
# sleep, cat, ...), and the few files the tests and first steps need.
# Idempotent: running it again on a finished DIR changes nothing.
set -euo pipefail

usage() { echo "Usage: $0 DIR" >&2; }
if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  [ $# -eq 1 ] && exit 0 || exit 2
fi
dir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

busybox=/bin/busybox
# Debian's plain `busybox` package is dynamically linked: only the static one
# runs in a root without a C library.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "$0: busybox-static is not installed and only root can install it (apt-get install busybox-static)" >&2
    exit 1
  fi
  echo "$0: installing busybox-static" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >/dev/null
fi

mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root tmp proc dev sys var/log var/www srv
chmod 1777 tmp
chmod 0700 root

# Copy only when the content differs, so a second run leaves mtimes alone.
if ! cmp -s "$busybox" bin/busybox; then
  install -m 0755 "$busybox" bin/busybox.new
  mv -f bin/busybox.new bin/busybox
fi

# One symlink per applet, at the path busybox itself installs it to.
"$busybox" --list-full | while IFS= read -r path; do
  case "$path" in bin/busybox | linuxrc) continue ;; esac
  [ -L "$path" ] || [ -e "$path" ] && continue
  mkdir -p "$(dirname "$path")"
  ln -s /bin/busybox "$path"
done

write_if_changed() { # FILE CONTENT
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then printf '%s\n' "$2" >"$1"; fi
}
write_if_changed etc/passwd 'root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false'
write_if_changed etc/group 'root:x:0:
tty:x:5:
nogroup:x:65534:'
write_if_changed etc/hosts '127.0.0.1 localhost'
write_if_changed etc/resolv.conf '# autopod test root: no name servers'
write_if_changed var/www/index.html 'hello from an autopod pod'
write_if_changed etc/os-release 'NAME="autopod test root (busybox)"
ID=autopod-test'

# glibc's dynamic loader and C library, from the host's libc6: the CPU baseline
# test asks the pod's glibc what it selected (ld.so --list-diagnostics), and
# dynamically linked programs can run. At the paths of an x86-64 Debian.
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for lib in ld-linux-x86-64.so.2 libc.so.6; do
  src_lib=/lib/$multiarch/$lib
  [ -f "$src_lib" ] || continue
  mkdir -p "lib/$multiarch"
  if ! cmp -s "$src_lib" "lib/$multiarch/$lib"; then
    install -m 0755 "$src_lib" "lib/$multiarch/$lib.new"
    mv -f "lib/$multiarch/$lib.new" "lib/$multiarch/$lib"
  fi
done
if [ -f "lib/$multiarch/ld-linux-x86-64.so.2" ] && [ ! -L lib64/ld-linux-x86-64.so.2 ]; then
  mkdir -p lib64
  ln -sfn "/lib/$multiarch/ld-linux-x86-64.so.2" lib64/ld-linux-x86-64.so.2
fi

# memhog: a static program holding N MiB of random memory, for checkpoint
# tests and benchmarks (busybox has nothing that holds random memory).
src="$here/../test/fixtures/memhog.c"
if [ -f "$src" ] && { [ ! -x usr/local/bin/memhog ] || [ "$src" -nt usr/local/bin/memhog ]; }; then
  if command -v gcc >/dev/null 2>&1 && { [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/libc.a ]; }; then
    mkdir -p usr/local/bin
    gcc -O2 -static -o usr/local/bin/memhog.new "$src"
    mv -f usr/local/bin/memhog.new usr/local/bin/memhog
  else
    echo "$0: gcc and a static libc (apt-get install gcc libc6-dev) are needed to build memhog; skipping it" >&2
  fi
fi
