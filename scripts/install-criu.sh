#!/usr/bin/env bash
# install-criu.sh — make sure this machine has a CRIU that works with its kernel.
#
#   1. Fast path: a criu (/usr/local/sbin/criu or the one on PATH) that is new
#      enough for the running kernel, carries autopod's CRIU patches (its
#      `criu --version` says "GitID: autopod-<patch set>") and passes
#      `criu check` -> done (no apt).
#   2. Otherwise build from Debian unstable's (sid) source package with the
#      patches applied, using a private apt configuration (a deb-src entry
#      that copies the URIs and Signed-By of the machine's existing Debian
#      entry, and lists of its own: no mirror host is hard-coded here and the
#      machine's apt state is not touched), and install the binary to
#      /usr/local/sbin/criu (or --target).
#
# The patches are scripts/criu-patches/*.patch, each with a header saying why.
# A copy of this script written by `autopod __install-criu-script` carries
# them after its last line instead. Debian's binary package lacks them, so it
# is never used: an installed criu without them (or with an older patch set)
# is rebuilt.
#
# Note: libprotobuf-dev is needed (protobuf.pc + descriptor.proto) even though
# it is only a Recommends of protobuf-compiler; we install --no-install-recommends.
#
# Also installs `nftables` when `nft` is missing (criu --network-lock nftables).
#
# Minimum CRIU by kernel (see NOTES-criu.md):
#   kernel >= 6.16 -> CRIU >= 4.2 (SO_PASSCRED on TCP sockets)
#   kernel >= 6.13 -> CRIU >= 4.1 ([vvar_vclock] vDSO area)
#   otherwise      -> CRIU >= 3.15
#
# With --bundle DIR it builds the same CRIU (always from source) and, instead of
# installing it, writes a relocatable bundle into DIR for build.ts to embed in
# the autopod binary: DIR/bin/criu plus every shared library it needs except
# glibc's (DIR/lib/), found through an $ORIGIN run path set with patchelf, so
# it runs on any x86-64 host with glibc >= the build machine's (Debian 12's
# 2.36). DIR/.autopod-bundle records the patch set and this script's hash: an
# up-to-date DIR is left as it is.
#
# Usage: scripts/install-criu.sh [--check] [--force] [--target PATH] [--bundle DIR] [--help]
# Environment:
#   AUTOPOD_CRIU_SOURCE_VERSION  Debian source version to build (e.g. 4.2.1-1);
#                                default: the newest one sid offers.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

readonly PROG=install-criu
readonly DEFAULT_TARGET=/usr/local/sbin/criu
readonly LOCK_FILE=/run/lock/autopod-install-criu.lock
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly BUILD_DEPS=(
  patch libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler python3-protobuf
  libnl-3-dev libnet1-dev libcap-dev libbsd-dev libnftables-dev
  libgnutls28-dev pkg-config uuid-dev libaio-dev libdrm-dev build-essential
)
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
  cat <<'EOF'
Usage: install-criu.sh [--check] [--force] [--target PATH] [--bundle DIR] [--help]

Ensure a CRIU new enough for the running kernel, with autopod's patches, is
installed (building it from Debian unstable's source package into
/usr/local/sbin/criu when the installed one is too old or lacks the patches),
and that nftables (nft) is installed.

  --check          only report; exit 0 if CRIU (and nft) are good, 1 if not
  --force          rebuild CRIU from source even if a good one is installed
  --target PATH    install CRIU at PATH instead of /usr/local/sbin/criu, and
                   look at no other criu (a build of one's own for testing)
  --bundle DIR     build CRIU from source into a relocatable bundle in DIR
                   (bin/criu, lib/ with its libraries but glibc's) for
                   build.ts to embed in the autopod binary; installs nothing
  --and-install    with --bundle: also install the same build (as without
                   --bundle) when the installed criu is not good: one compile
  --help           show this help

Environment:
  AUTOPOD_CRIU_SOURCE_VERSION  Debian source version to build (default: newest in sid)
EOF
}

MODE=install
FORCE=0
BUNDLE_DIR=''
AND_INSTALL=0
TARGET=$DEFAULT_TARGET
while (($#)); do
  case "$1" in
    --check) MODE=check ;;
    --force) FORCE=1 ;;
    --target)
      [[ $# -ge 2 && $2 == /* ]] || die "--target needs an absolute path"
      TARGET=$2
      shift
      ;;
    --bundle)
      [[ $# -ge 2 && -n $2 ]] || die "--bundle needs a directory"
      MODE=bundle
      FORCE=1
      BUNDLE_DIR=$(realpath -m "$2")
      shift
      ;;
    --and-install) AND_INSTALL=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

# ---------------------------------------------------------------- versions ---

# ver_ge A B: true if version A >= version B (Debian version ordering).
ver_ge() { dpkg --compare-versions "$1" ge "$2"; }

# Upstream part of a Debian version: drop the epoch and the Debian revision.
upstream_version() {
  local v=${1#*:}
  printf '%s\n' "${v%-*}"
}

kernel_release() { uname -r; }

# Minimum CRIU version for the running kernel.
required_criu_version() {
  local kr major minor
  kr=$(kernel_release)
  if [[ $kr =~ ^([0-9]+)\.([0-9]+) ]]; then
    major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  else
    echo 4.2; return # unknown kernel string: be conservative
  fi
  if ((major > 6 || (major == 6 && minor >= 16))); then
    echo 4.2
  elif ((major == 6 && minor >= 13)); then
    echo 4.1
  else
    echo 3.15
  fi
}

# Version of the criu binary at $1 ("" if it cannot say).
criu_version() {
  "$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1
}

# ----------------------------------------------------------------- patches ---

# Write autopod's CRIU patches into directory $1: from criu-patches/ beside
# this script, or else from the copies appended after this script's last line
# ("#### criu-patch NAME" starts each one).
extract_patches() {
  local dest=$1 f
  mkdir -p "$dest"
  if [[ -d $SCRIPT_DIR/criu-patches ]]; then
    for f in "$SCRIPT_DIR"/criu-patches/*.patch; do
      [[ -f $f ]] && cp -- "$f" "$dest/"
    done
  else
    awk -v dest="$dest" '
      /^#### criu-patch [A-Za-z0-9._-]+\.patch$/ { out = dest "/" $3; next }
      out != "" { print > out }
    ' "${BASH_SOURCE[0]}"
  fi
}

# The patch set's id: the first 12 hex digits of the SHA-256 of the patches'
# contents, in name order. A build with them says "GitID: autopod-<id>".
patch_set_id() {
  local dir=$1
  find "$dir" -maxdepth 1 -name '*.patch' -type f -print0 | sort -z | xargs -0 -r cat | sha256sum | cut -c1-12
}

PATCH_DIR=$(mktemp -d /tmp/autopod-criu-patches.XXXXXX)
trap 'rm -rf "$PATCH_DIR"' EXIT
extract_patches "$PATCH_DIR"
compgen -G "$PATCH_DIR/*.patch" >/dev/null || die "autopod's CRIU patches are missing (no criu-patches/ beside $0, none appended to it)"
readonly PATCH_DIR
EXPECTED_GITID=autopod-$(patch_set_id "$PATCH_DIR")
readonly EXPECTED_GITID

# GitID of the criu binary at $1 ("" if it prints none).
criu_gitid() {
  "$1" --version 2>/dev/null | sed -n 's/^GitID: *//p' | head -n1
}

# criu_good PATH: binary exists, is new enough, carries this patch set, and `criu check` passes.
# Sets CRIU_GOOD_VERSION / CRIU_BAD_REASON.
criu_good() {
  local bin=$1 v out
  CRIU_GOOD_VERSION='' CRIU_BAD_REASON=''
  if [[ ! -x $bin ]]; then CRIU_BAD_REASON="not found"; return 1; fi
  v=$(criu_version "$bin")
  if [[ -z $v ]]; then CRIU_BAD_REASON="cannot read its version"; return 1; fi
  if ! ver_ge "$v" "$REQUIRED"; then
    CRIU_BAD_REASON="version $v < $REQUIRED (needed for kernel $(kernel_release))"
    return 1
  fi
  local gitid
  gitid=$(criu_gitid "$bin")
  if [[ $gitid != "$EXPECTED_GITID" ]]; then
    CRIU_BAD_REASON="version $v, built without autopod's CRIU patches (GitID ${gitid:-none}, $EXPECTED_GITID expected)"
    return 1
  fi
  if ! out=$("$bin" check 2>&1); then
    CRIU_BAD_REASON="version $v, but 'criu check' fails: $(printf '%s\n' "$out" | grep -v 'RLIMIT_NOFILE' | tail -n 3 | tr '\n' ' ')"
    return 1
  fi
  CRIU_GOOD_VERSION=$v
}

# Warn when the criu that PATH resolves to is not the good one we found.
warn_if_shadowed() {
  local good=$1 first v
  first=$(type -P criu 2>/dev/null || true)
  [[ -z $first || $first -ef $good ]] && return 0
  v=$(criu_version "$first")
  if [[ -z $v ]] || ! ver_ge "$v" "$REQUIRED"; then
    warn "'criu' on PATH is $first (version ${v:-unknown}), which shadows $good; put $(dirname "$good") first in PATH"
  fi
}

# Find a good criu among /usr/local/sbin/criu and the one on PATH.
find_good_criu() {
  local cand seen=''
  GOOD_CRIU=''
  LAST_BAD=''
  local others=("$(type -P criu 2>/dev/null || true)")
  [[ $TARGET == "$DEFAULT_TARGET" ]] || others=()
  for cand in "$TARGET" "${others[@]}"; do
    [[ -n $cand && $cand != "$seen" ]] || continue
    seen=$cand
    if criu_good "$cand"; then
      GOOD_CRIU=$cand
      return 0
    fi
    [[ $CRIU_BAD_REASON == "not found" ]] || LAST_BAD="$cand: $CRIU_BAD_REASON"
  done
  return 1
}

REQUIRED=$(required_criu_version)
# The bundle is built for other hosts: at least the newest kernel's minimum.
[[ $MODE != bundle ]] || REQUIRED=4.2

if [[ $MODE == bundle ]]; then
  BUNDLE_STAMP="$EXPECTED_GITID ${AUTOPOD_CRIU_SOURCE_VERSION:-newest} $(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
  if [[ -f $BUNDLE_DIR/.autopod-bundle && $(cat "$BUNDLE_DIR/.autopod-bundle") == "$BUNDLE_STAMP" ]]; then
    if ((AND_INSTALL)); then
      # The bundle is current: only the installed criu may need the normal way.
      log "the CRIU bundle in $BUNDLE_DIR is up to date ($EXPECTED_GITID)"
      rm -rf "$PATCH_DIR"
      exec bash "${BASH_SOURCE[0]}" --target "$TARGET"
    fi
    log "the CRIU bundle in $BUNDLE_DIR is up to date ($EXPECTED_GITID)"
    exit 0
  fi
fi

# --------------------------------------------------------------- fast path ---

if ((FORCE == 0)) || [[ $MODE == check ]]; then
  if find_good_criu; then
    if command -v nft >/dev/null 2>&1; then
      log "criu $CRIU_GOOD_VERSION at $GOOD_CRIU is good for kernel $(kernel_release) (needs >= $REQUIRED; criu check passed); nft present"
      warn_if_shadowed "$GOOD_CRIU"
      exit 0
    fi
    if [[ $MODE == check ]]; then
      log "criu $CRIU_GOOD_VERSION at $GOOD_CRIU is good, but nft (nftables) is missing"
      exit 1
    fi
  elif [[ $MODE == check ]]; then
    log "no usable criu for kernel $(kernel_release) (needs >= $REQUIRED)${LAST_BAD:+; $LAST_BAD}"
    command -v nft >/dev/null 2>&1 || log "nft (nftables) is missing"
    exit 1
  fi
fi

# ------------------------------------------------------------- slow paths ---

[[ $(id -u) -eq 0 ]] || die "must run as root to install packages (try sudo)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian-based systems only"

# Serialise concurrent runs.
mkdir -p "$(dirname "$LOCK_FILE")"
exec 9>"$LOCK_FILE"
if ! flock -n 9; then
  log "another install-criu run holds $LOCK_FILE; waiting"
  flock 9
fi

WORKDIR=''
cleanup() {
  local rc=$?
  [[ -n $WORKDIR && -d $WORKDIR ]] && rm -rf "$WORKDIR"
  rm -rf "$PATCH_DIR"
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run apt-get update once if the package lists look absent or unusable.
APT_UPDATED=0
apt_update_once() {
  ((APT_UPDATED)) && return 0
  log "apt-get update"
  apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update failed"
  APT_UPDATED=1
}

# Candidate version of a binary package ("" if none).
apt_candidate() {
  apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' || true
}

apt_install() {
  log "apt-get install $*"
  if ! apt-get "${APT_OPTS[@]}" -y -qq --no-install-recommends install "$@" >&2; then
    apt_update_once
    apt-get "${APT_OPTS[@]}" -y -qq --no-install-recommends install "$@" >&2 ||
      die "apt-get install failed for: $*"
  fi
}

# Make sure the lists know about the packages we may install.
[[ -n $(apt_candidate build-essential) ]] || apt_update_once

if [[ $MODE != bundle ]] && ! command -v nft >/dev/null 2>&1; then
  apt_install nftables
  command -v nft >/dev/null 2>&1 || die "nftables installed but 'nft' still not found"
fi

if ((FORCE == 0)) && find_good_criu; then
  log "criu $CRIU_GOOD_VERSION at $GOOD_CRIU is good for kernel $(kernel_release) (needs >= $REQUIRED)"
  warn_if_shadowed "$GOOD_CRIU"
  exit 0
fi
[[ -n ${LAST_BAD:-} ]] && log "current criu unusable: $LAST_BAD"
log "kernel $(kernel_release) needs criu >= $REQUIRED"

# --------------------------------------------------- build from source ---

# Print "URIS<TAB>SIGNED_BY" for the machine's main Debian entry. SIGNED_BY
# may be empty, or hold a multi-line embedded key with "\n" escapes.
find_debian_entry_deb822() {
  local file=$1
  awk '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false|0)$/ &&
          uris != "" && suites !~ /-security/ && uris ~ /\/debian\/?( |$)/ &&
          found == 0) {
        found = 1
        printf "%s\t%s\n", uris, signed
      }
      types = uris = suites = signed = enabled = cur = ""
    }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]/ {
      if (cur == "signed-by") { line = $0; signed = signed "\\n" line }
      next
    }
    {
      key = tolower($0); sub(/:.*/, "", key)
      val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
      cur = key
      if (key == "types") types = val
      else if (key == "uris") uris = val
      else if (key == "suites") suites = val
      else if (key == "signed-by") signed = val
      else if (key == "enabled") enabled = tolower(val)
    }
    END { flush() }
  ' "$file"
}

find_debian_entry_oneline() {
  local file=$1
  awk '
    /^[ \t]*deb[ \t]/ {
      line = $0; sub(/#.*/, "", line)
      opts = ""
      if (match(line, /\[[^]]*\]/)) {
        opts = substr(line, RSTART + 1, RLENGTH - 2)
        line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
      }
      n = split(line, f, /[ \t]+/)
      i = 1; while (i <= n && f[i] == "") i++
      uri = f[i + 1]; suite = f[i + 2]
      if (uri !~ /\/debian\/?$/ || suite ~ /-security/) next
      signed = ""
      m = split(opts, o, /[ \t]+/)
      for (j = 1; j <= m; j++) if (tolower(o[j]) ~ /^signed-by=/) { signed = o[j]; sub(/^[^=]*=/, "", signed) }
      printf "%s\t%s\n", uri, signed
      exit
    }
  ' "$file"
}

find_debian_entry() {
  local f entry=''
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    entry=$(find_debian_entry_deb822 /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z $entry ]]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f && $f != /etc/apt/sources.list.d/debian.sources ]] || continue
      entry=$(find_debian_entry_deb822 "$f")
      [[ -n $entry ]] && break
    done
  fi
  if [[ -z $entry ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $f ]] || continue
      entry=$(find_debian_entry_oneline "$f")
      [[ -n $entry ]] && break
    done
  fi
  printf '%s\n' "$entry"
}

entry=$(find_debian_entry)
[[ -n $entry ]] || die "no Debian apt entry found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; cannot add a deb-src entry for criu's source package"
uris=${entry%%$'\t'*}
signed=${entry#*$'\t'}

log "installing build dependencies"
apt_install "${BUILD_DEPS[@]}"
if [[ $MODE == bundle ]] && ! command -v patchelf >/dev/null 2>&1; then apt_install patchelf; fi

# A private apt configuration: its own source list and package lists under
# WORKDIR, so the machine's sources and lists are left as they were.
WORKDIR=$(mktemp -d /tmp/autopod-criu-build.XXXXXX)
chmod 0755 "$WORKDIR"
SRC_FILE=$WORKDIR/sid-src.sources
mkdir -p "$WORKDIR/lists/partial" "$WORKDIR/dl"
APT_SRC_OPTS=(-o Dir::Etc::sourcelist="$SRC_FILE" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$WORKDIR/lists")
log "private deb-src entry (suite sid, component main) in $SRC_FILE"
{
  echo "Types: deb-src"
  echo "URIs: $uris"
  echo "Suites: sid"
  echo "Components: main"
  if [[ -n $signed ]]; then
    printf 'Signed-By: %b\n' "$signed"
  fi
} >"$SRC_FILE"
# Let apt's unprivileged _apt user write the lists and the download.
if id -u _apt >/dev/null 2>&1; then chown -R _apt:root "$WORKDIR/lists" "$WORKDIR/dl"; fi

log "apt-get update (the private sid deb-src entry only)"
apt-get "${APT_OPTS[@]}" "${APT_SRC_OPTS[@]}" -qq update >&2 ||
  die "apt-get update failed for the sid deb-src entry"

# Pick the source record to build: the pinned version, or the newest offered.
showsrc=$(apt-cache "${APT_SRC_OPTS[@]}" showsrc criu 2>/dev/null || true)
[[ -n $showsrc ]] || die "apt-cache showsrc criu found no source package after adding the sid deb-src entry"
src_version=${AUTOPOD_CRIU_SOURCE_VERSION:-}
if [[ -z $src_version ]]; then
  while IFS= read -r v; do
    if [[ -z $src_version ]] || dpkg --compare-versions "$v" gt "$src_version"; then src_version=$v; fi
  done < <(printf '%s\n' "$showsrc" | sed -n 's/^Version: *//p')
fi
[[ -n $src_version ]] || die "could not read a version from 'apt-cache showsrc criu'"
if ! ver_ge "$(upstream_version "$src_version")" "$REQUIRED"; then
  die "sid offers criu source $src_version, older than the $REQUIRED this kernel needs"
fi

# Checksums-Sha256 lines (" <sha> <size> <name>") of that version's record.
checksums=$(printf '%s\n' "$showsrc" | awk -v want="$src_version" '
  /^$/ { inrec = 0; insum = 0; ver = ""; next }
  /^Package:/ { inrec = 1 }
  /^Version:/ { ver = $2 }
  /^[^ ]/ { insum = ($1 == "Checksums-Sha256:"); next }
  insum && ver == want && NF == 3 { print $1, $3 }
')
orig_line=$(printf '%s\n' "$checksums" | awk '$2 ~ /\.orig\.tar\./ { print; exit }')
[[ -n $orig_line ]] || die "no orig tarball SHA-256 for criu $src_version in 'apt-cache showsrc criu'"
orig_sha=${orig_line%% *}
orig_name=${orig_line#* }
[[ $orig_name =~ ^[A-Za-z0-9._+~-]+$ ]] || die "unexpected orig tarball name: $orig_name"

log "downloading criu source $src_version into $WORKDIR/dl"
if ! (cd "$WORKDIR/dl" && apt-get "${APT_OPTS[@]}" "${APT_SRC_OPTS[@]}" -qq source --download-only "criu=$src_version" >&2); then
  log "apt-get source reported an error (the .debian.tar.xz may be missing on the mirror); continuing if the orig tarball arrived"
fi
[[ -f $WORKDIR/dl/$orig_name ]] || die "download failed: $orig_name did not arrive"

actual_sha=$(sha256sum "$WORKDIR/dl/$orig_name" | awk '{print $1}')
if [[ $actual_sha != "$orig_sha" ]]; then
  die "checksum mismatch for $orig_name: expected $orig_sha, got $actual_sha"
fi
log "SHA-256 of $orig_name verified"

mkdir "$WORKDIR/src"
tar -xf "$WORKDIR/dl/$orig_name" -C "$WORKDIR/src" --strip-components=1 ||
  die "could not unpack $orig_name"

for p in "$PATCH_DIR"/*.patch; do
  log "applying $(basename "$p")"
  patch -d "$WORKDIR/src" -p1 --forward --batch --silent <"$p" >&2 ||
    die "$(basename "$p") does not apply to criu $src_version: pin the version it was written for with AUTOPOD_CRIU_SOURCE_VERSION (e.g. 4.2.1-1), or update the patch"
done

jobs=$(nproc 2>/dev/null || echo 2)
build_log=$WORKDIR/build.log
log "building criu $(upstream_version "$src_version") with patch set $EXPECTED_GITID (make -j$jobs criu); log: $build_log"
build_start=$SECONDS
if ! make -C "$WORKDIR/src" -j"$jobs" GITID="$EXPECTED_GITID" criu >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  saved=/tmp/autopod-install-criu-build.log
  cp "$build_log" "$saved" 2>/dev/null || true
  die "build failed (full log in $saved). If sid's criu no longer builds here, pin a 4.2.x source with AUTOPOD_CRIU_SOURCE_VERSION"
fi
log "build finished in $((SECONDS - build_start)) s"

built=$WORKDIR/src/criu/criu
[[ -x $built ]] || die "build succeeded but $built is missing"

# glibc's own libraries: the host's are used (the bundle needs glibc >= this machine's).
readonly GLIBC_SONAMES=" linux-vdso.so.1 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 libanl.so.1 libutil.so.1 ld-linux-x86-64.so.2 "

# make_bundle BIN DIR: DIR/bin/criu and DIR/lib/<every non-glibc library it needs>, behind $ORIGIN run paths.
make_bundle() {
  local bin=$1 dir=$2 tmp=$2.tmp lib name
  rm -rf "$tmp"
  mkdir -p "$tmp/bin" "$tmp/lib"
  install -m 0755 "$bin" "$tmp/bin/criu"
  while read -r name lib; do
    [[ $GLIBC_SONAMES == *" $name "* ]] && continue
    [[ -f $lib ]] || die "ldd names $name at '$lib', which is not a file"
    install -m 0644 "$lib" "$tmp/lib/$name"
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 } $2 == "=>" && $3 == "not" { print $1, "missing" }')
  patchelf --set-rpath '$ORIGIN/../lib' "$tmp/bin/criu"
  for lib in "$tmp"/lib/*; do patchelf --set-rpath '$ORIGIN' "$lib"; done
  # Every library must now come from the bundle (or glibc).
  local stray
  stray=$(ldd "$tmp/bin/criu" | awk '$2 == "=>" { print $1, $3 }' | while read -r name lib; do
    [[ $GLIBC_SONAMES == *" $name "* || $(readlink -f "$lib") == "$tmp/lib/$name" ]] || printf '%s ' "$name"
  done)
  [[ -z $stray ]] || die "the bundle's criu still loads these from the system: $stray"
  "$tmp/bin/criu" --version >/dev/null || die "the bundle's criu does not run"
  printf '%s\n' "$BUNDLE_STAMP" >"$tmp/.autopod-bundle"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "CRIU bundle in $dir: $(du -sh "$dir" | cut -f1) ($(ls "$dir/lib" | wc -l) libraries)"
}

if [[ $MODE == bundle ]]; then
  criu_good "$built" || die "built criu is unusable: $CRIU_BAD_REASON"
  mkdir -p "$(dirname "$BUNDLE_DIR")"
  make_bundle "$built" "$BUNDLE_DIR"
  if ((AND_INSTALL == 0)) || { find_good_criu && command -v nft >/dev/null 2>&1; }; then exit 0; fi
  command -v nft >/dev/null 2>&1 || apt_install nftables
  if find_good_criu; then exit 0; fi
fi
if ! criu_good "$built"; then
  die "built criu is unusable: $CRIU_BAD_REASON"
fi

install -d -m 0755 "$(dirname "$TARGET")"
install -m 0755 "$built" "$TARGET.new"
mv -f "$TARGET.new" "$TARGET"
hash -r

if ! criu_good "$TARGET"; then
  die "installed $TARGET is unusable: $CRIU_BAD_REASON"
fi
log "installed criu $CRIU_GOOD_VERSION at $TARGET ('criu check' passed)"
warn_if_shadowed "$TARGET"
exit 0
