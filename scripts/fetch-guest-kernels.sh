#!/usr/bin/env bash
# fetch-guest-kernels.sh DIR — Debian's own kernels for the cross-kernel test
# (test/cross-kernel.test.ts): linux-image-amd64 of bookworm (6.1) and of
# trixie (6.12), each unpacked into DIR/SUITE with
#   vmlinuz   the kernel
#   release   its `uname -r`
#   modules/  lib/modules/RELEASE with only the modules a guest needs to run
#             autopod's agent and CRIU (netfilter, bridge, veth, overlay, the
#             *_diag modules, with what they depend on), uncompressed, and a
#             modules.dep that busybox's modprobe reads.
#
# apt does the downloading, through a private configuration (its own source
# list and package lists under a temporary directory) whose URI and Signed-By
# are READ from the machine's own Debian entry: no mirror host is written here,
# and the machine's apt state is left as it was. A suite already in DIR is not
# fetched again. Needs root (apt), dpkg-deb, depmod (kmod) and xz.
set -euo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

readonly PROG=fetch-guest-kernels
readonly SUITES=(bookworm trixie)
# What the guest loads (with their dependencies): the agent's pod network and
# network lock, the pods' overlay roots, and what `criu check` and CRIU's
# dump/restore of sockets need.
readonly WANTED=(
  crc32c_generic nfnetlink nf_tables nf_conntrack_netlink nft_chain_nat nft_ct nft_reject_inet nft_compat nf_nat nf_conntrack
  bridge veth overlay tun virtio_pci virtio_blk
  inet_diag tcp_diag udp_diag raw_diag unix_diag netlink_diag af_packet_diag
)
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

[[ $# -eq 1 && $1 != -* ]] || { echo "Usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
for s in "${SUITES[@]}"; do [[ -s $OUT/$s/release && -s $OUT/$s/vmlinuz ]] || missing=1; done
if [[ -z ${missing:-} ]]; then log "kernels already in $OUT"; exit 0; fi
[[ $(id -u) -eq 0 ]] || die "only root can fetch the kernels (apt-get)"
for tool in dpkg-deb depmod xz apt-get; do command -v "$tool" >/dev/null || die "$tool is missing"; done

# "URIS<TAB>SIGNED_BY" of the machine's main Debian entry (deb822 first, then one-line).
debian_entry() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false|0)$/ && uris ~ /\/debian\/?( |$)/ && suites !~ /-security/ && !found) {
          found = 1; printf "%s\t%s\n", uris, signed
        }
        types = uris = suites = signed = enabled = cur = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { if (cur == "signed-by") signed = signed "\\n" $0; next }
      {
        key = tolower($0); sub(/:.*/, "", key)
        val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
        cur = key
        if (key == "types") types = val; else if (key == "uris") uris = val
        else if (key == "suites") suites = val; else if (key == "signed-by") signed = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }
    ' "$f" | head -n1 | grep . && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk '/^[ \t]*deb[ \t]/ {
      line = $0; sub(/#.*/, "", line); opts = ""
      if (match(line, /\[[^]]*\]/)) { opts = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH) }
      n = split(line, w, /[ \t]+/); i = 1; while (i <= n && w[i] == "") i++
      if (w[i + 1] !~ /\/debian\/?$/ || w[i + 2] ~ /-security/) next
      signed = ""; m = split(opts, o, /[ \t]+/)
      for (j = 1; j <= m; j++) if (tolower(o[j]) ~ /^signed-by=/) { signed = o[j]; sub(/^[^=]*=/, "", signed) }
      printf "%s\t%s\n", w[i + 1], signed; exit
    }' "$f" | grep . && return 0
  done
  return 1
}

entry=$(debian_entry) || die "no Debian entry in the machine's apt sources to read the mirror from"
uris=${entry%%$'\t'*}
signed=${entry#*$'\t'}

WORK=$(mktemp -d /tmp/autopod-guest-kernels.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 0755 "$WORK"

for suite in "${SUITES[@]}"; do
  dest=$OUT/$suite
  [[ -s $dest/release && -s $dest/vmlinuz ]] && continue
  src=$WORK/$suite.sources
  {
    echo "Types: deb"
    echo "URIs: $uris"
    echo "Suites: $suite"
    echo "Components: main"
    [[ -n $signed ]] && printf 'Signed-By: %b\n' "$signed"
  } >"$src"
  mkdir -p "$WORK/lists-$suite/partial" "$WORK/dl-$suite"
  if id -u _apt >/dev/null 2>&1; then chown -R _apt:root "$WORK/lists-$suite" "$WORK/dl-$suite"; fi
  opts=(-o Dir::Etc::sourcelist="$src" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$WORK/lists-$suite"
    -o APT::Architecture=amd64 -o Acquire::Retries=3 -o Acquire::Languages=none)
  log "apt-get update ($suite, private lists)"
  apt-get "${opts[@]}" -qq update >&2 || die "apt-get update failed for $suite"
  # linux-image-amd64 is a metapackage: the kernel is the linux-image-* it depends on.
  pkg=$(apt-cache "${opts[@]}" depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
  [[ -n $pkg ]] || die "no kernel package behind $suite's linux-image-amd64"
  log "downloading $pkg ($suite)"
  (cd "$WORK/dl-$suite" && apt-get "${opts[@]}" -qq download "$pkg" >&2) || die "apt-get download $pkg failed"
  deb=$(ls "$WORK/dl-$suite"/*.deb)
  x=$WORK/x-$suite
  dpkg-deb -x "$deb" "$x"
  # trixie's packages put modules under /usr (merged /usr), bookworm's under /lib.
  base=$x; [[ -d $x/usr/lib/modules ]] && base=$x/usr
  release=$(ls "$base/lib/modules" | head -n1)
  [[ -n $release && -f $x/boot/vmlinuz-$release ]] || die "$pkg holds no vmlinuz"
  # The package runs depmod at install: run it here on the unpacked tree.
  depmod -b "$base" "$release"
  mods=$base/lib/modules/$release
  # Each wanted module and what it depends on (modules.dep: "path: dep dep ...").
  need=$(for m in "${WANTED[@]}"; do
    line=$(grep -E "/${m}\.ko(\.xz|\.zst)?:" "$mods/modules.dep" || true)
    [[ -n $line ]] || { log "$suite: no module $m (built in, or absent)"; continue; }
    printf '%s\n' "$line" | tr -d ':' | tr ' ' '\n'
  done | grep . | sort -u)
  tmp=$WORK/out-$suite
  rm -rf "$tmp" && mkdir -p "$tmp/modules/$release"
  while IFS= read -r rel; do
    mkdir -p "$tmp/modules/$release/$(dirname "$rel")"
    case $rel in
      *.xz) xz -dc "$mods/$rel" >"$tmp/modules/$release/${rel%.xz}" ;;
      *.zst) zstd -qdc "$mods/$rel" >"$tmp/modules/$release/${rel%.zst}" ;;
      *) cp "$mods/$rel" "$tmp/modules/$release/$rel" ;;
    esac
  done <<<"$need"
  cp "$mods/modules.builtin" "$mods/modules.builtin.modinfo" "$mods/modules.order" "$tmp/modules/$release/" 2>/dev/null || true
  # depmod -b looks under lib/modules; the tree here is modules/: make its modules.dep directly.
  mkdir -p "$tmp/lib" && ln -s ../modules "$tmp/lib/modules" && depmod -b "$tmp" "$release" && rm "$tmp/lib/modules" && rmdir "$tmp/lib"
  cp "$x/boot/vmlinuz-$release" "$tmp/vmlinuz"
  echo "$release" >"$tmp/release"
  echo "$pkg" >"$tmp/package"
  rm -rf "$dest" && mv "$tmp" "$dest"
  rm -rf "$x" "$WORK/dl-$suite"
  log "$suite: $release ($(du -sh "$dest" | cut -f1))"
done
