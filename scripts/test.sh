#!/usr/bin/env bash
# The test command: on a fresh Debian machine, as root, installs everything the
# tests need (Debian packages, npm dependencies with Bun, CRIU, the test root
# file system), builds the binary, then runs every test: the type check, unit
# tests beside the code (src/) and the tests that need root, CRIU or several
# hosts (test/). Ends with the line "N passed, N failed".
#
# Usage: bash scripts/test.sh [bun test filters...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf 'test.sh: %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
  # Debian packages the tests use. Each is looked up only when missing.
  need=()
  command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || need+=(busybox-static)
  command -v nft >/dev/null 2>&1 || need+=(nftables)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v flock >/dev/null 2>&1 || need+=(util-linux)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  command -v gcc >/dev/null 2>&1 || need+=(gcc)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
  # The dnf check's test builds an RPM repository and runs the real dnf (test/status-dnf.test.ts).
  command -v dnf >/dev/null 2>&1 || need+=(dnf)
  command -v rpmbuild >/dev/null 2>&1 || need+=(rpm)
  command -v createrepo_c >/dev/null 2>&1 || need+=(createrepo-c)
  # The services root (scripts/make-services-rootfs.sh) is a debootstrap of this machine's release.
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  # The cross-kernel test boots Debian's own kernels under QEMU (test/cross-kernel.test.ts); depmod indexes their modules.
  command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
  command -v depmod >/dev/null 2>&1 || need+=(kmod)
  command -v xz >/dev/null 2>&1 || need+=(xz-utils)
  # The unit install.sh writes is checked with systemd-analyze verify (test/install.test.ts).
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  # The fleet-lock tests start a real etcd cluster (test/update-lock-etcd.test.ts, test/_etcd.ts).
  [ -x /usr/bin/etcd ] || need+=(etcd-server)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get install -y --no-install-recommends "${need[@]}" || { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
  fi
  # The CRIU the binary carries (build.ts embeds it), cached in .cache/criu-bundle; from the same compile, the
  # host's CRIU when it is missing or lacks autopod's patches (scripts/criu-patches/).
  log "making sure CRIU is installed, and the CRIU bundle the binary carries is built"
  bash scripts/install-criu.sh --bundle "$ROOT/.cache/criu-bundle" --and-install
  # Bare Debian 12 and 13 roots for the air-gapped install test (test/bare-host.test.ts): both at once, cached.
  log "building the bare Debian roots (test/bare-host.test.ts)"
  bash scripts/make-bare-rootfs.sh bookworm "$ROOT/.cache/bare-bookworm" &
  bare_bookworm=$!
  bash scripts/make-bare-rootfs.sh trixie "$ROOT/.cache/bare-trixie" &
  bare_trixie=$!
  wait "$bare_bookworm" || { log "building the bare bookworm root failed"; exit 1; }
  wait "$bare_trixie" || { log "building the bare trixie root failed"; exit 1; }
else
  log "not root: skipping the Debian packages and CRIU; tests that need them will say so and skip"
fi

if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies (Bun comes from the npm registry)"
  npm ci --no-audit --no-fund
fi
BUN="$ROOT/node_modules/.bin/bun"

if [ -f scripts/make-test-rootfs.sh ]; then
  log "building the test root file system"
  bash scripts/make-test-rootfs.sh "$ROOT/.cache/rootfs"
fi
export AUTOPOD_TEST_ROOTFS="$ROOT/.cache/rootfs"

if [ "$(id -u)" -eq 0 ]; then
  # Real services (nginx, MariaDB, Redis) from Debian's packages: debootstrap plus apt-get, about 5 minutes the first time.
  log "building the services root file system (test/services.test.ts)"
  bash scripts/make-services-rootfs.sh "$ROOT/.cache/services-rootfs"
  export AUTOPOD_TEST_SERVICES_ROOTFS="$ROOT/.cache/services-rootfs"
  # Debian's bookworm (6.1) and trixie (6.12) kernels for test/cross-kernel.test.ts, with apt (about a minute the first time).
  log "fetching the guest kernels (test/cross-kernel.test.ts)"
  bash scripts/fetch-guest-kernels.sh "$ROOT/.cache/guest-kernels" ||
    log "could not fetch the guest kernels: test/cross-kernel.test.ts will try again and fail saying why"
fi

log "building dist/autopod"
# As root the CRIU bundle was built above: the binary must carry it (the bare-host test installs it).
if [ "$(id -u)" -eq 0 ]; then "$BUN" build.ts --require-criu; else "$BUN" build.ts; fi

passed=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

log "type check"
if node_modules/.bin/tsc --noEmit -p .; then passed=$((passed + 1)); else failed=$((failed + 1)); log "type check failed"; fi

log "format and lint (biome)"
if node_modules/.bin/biome ci --error-on-warnings .; then passed=$((passed + 1)); else failed=$((failed + 1)); log "biome: unformatted code or lint errors (fix: node_modules/.bin/biome check --write .)"; fi

log "bun test"
set +e
if [ $# -eq 0 ]; then set -- ./src ./test; fi
"$BUN" test --timeout 300000 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
p=$(grep -Eo '^ *[0-9]+ pass$' "$out" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
f=$(grep -Eo '^ *[0-9]+ fail$' "$out" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
s=$(grep -Eo '^ *[0-9]+ skip$' "$out" | tail -n1 | grep -Eo '[0-9]+' || echo 0)
passed=$((passed + p))
failed=$((failed + f))
if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
  # bun failed outside a test (a file that did not load, an unhandled error).
  failed=$((failed + 1))
fi
echo "${passed} passed, ${failed} failed, ${s} skipped"
[ "$failed" -eq 0 ]
