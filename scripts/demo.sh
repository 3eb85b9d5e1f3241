#!/usr/bin/env bash
# autopod's main job, end to end, on this machine (as root):
#   1. build and install autopod (install.sh: binary, config, CRIU, doctor);
#   2. start two agents, each in its own network namespace acting as a host;
#   3. run a pod on host A that counts in memory and appends to a file, and
#      serves an echo port with a client connected to it from outside the pod;
#   4. checkpoint it, restore it: the counter goes on without a gap and the
#      client keeps its connection;
#   5. export it, import it on host B, restore it there: it goes on there;
#   6. print the host's patch status.
# Everything it makes (namespaces, agents, pods, state under $DEMO) is removed
# at the end. Usage: bash scripts/demo.sh [--skip-install]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO=${DEMO:-/tmp/autopod-demo}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root: pods need namespaces, mounts and CRIU"

if [ "${1:-}" != "--skip-install" ]; then
  step "Install: build the binary, install it with CRIU, check the host"
  sh install.sh
fi
AUTOPOD=$(command -v autopod || echo /usr/local/bin/autopod)
[ -x "$AUTOPOD" ] || die "autopod is not installed (run without --skip-install)"
BUN="$ROOT/node_modules/.bin/bun"
[ -x "$BUN" ] || npm ci --no-audit --no-fund

step "Test root file system (busybox) in .cache/rootfs"
bash scripts/make-test-rootfs.sh "$ROOT/.cache/rootfs"
ROOTFS="$ROOT/.cache/rootfs"

AGENTS=()
CLIENT=""
cleanup() {
  set +e
  [ -n "$CLIENT" ] && kill "$CLIENT" 2>/dev/null
  for h in a b; do
    AUTOPOD_CONFIG="$DEMO/$h.toml" "$AUTOPOD" rm --force counter >/dev/null 2>&1
  done
  for p in "${AGENTS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for h in a b; do ip netns del "autopod-demo-$h" 2>/dev/null; done
  rm -rf "$DEMO"
}
trap cleanup EXIT
rm -rf "$DEMO" && mkdir -p "$DEMO"

start_host() { # NAME OCTET
  local name=$1 octet=$2
  cat >"$DEMO/$name.toml" <<CONF
state_dir = "$DEMO/$name/state"
socket = "$DEMO/$name/agent.sock"
[network]
bridge = "apdemo$name"
subnet = "10.213.$octet.0/24"
CONF
  ip netns add "autopod-demo-$name"
  ip -n "autopod-demo-$name" link set lo up
  nsenter --net="/run/netns/autopod-demo-$name" -- "$AUTOPOD" agent --config "$DEMO/$name.toml" >"$DEMO/$name.log" 2>&1 &
  AGENTS+=($!)
  for _ in $(seq 100); do AUTOPOD_CONFIG="$DEMO/$name.toml" "$AUTOPOD" ps >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$DEMO/$name.log" >&2
  die "the agent of host $name did not start"
}
a() { AUTOPOD_CONFIG="$DEMO/a.toml" "$AUTOPOD" "$@"; }
b() { AUTOPOD_CONFIG="$DEMO/b.toml" "$AUTOPOD" "$@"; }
check_counter() { # HOST-FN: the counter file is 1..N with no gap or repeat
  "$1" exec counter -- cat /counter | awk 'NR != $1 { print "gap or repeat at line " NR ": " $1; bad = 1; exit } END { if (!bad) print NR " values, no gap, no repeat"; exit bad }'
}

step "Two hosts: network namespaces with an agent each"
start_host a 61
start_host b 61
a ps

step "Run a pod: a counter in memory appended to /counter, and an echo server on port 7000"
a run counter --rootfs "$ROOTFS" -- sh -c 'nc -ll -p 7000 -e cat & i=0; while :; do i=$((i+1)); echo $i >> /counter; sleep 0.05; done'
IP=$(a ps --json | "$BUN" -e 'const p = JSON.parse(await Bun.stdin.text()).find((x) => x.name === "counter"); console.log(p.address.split("/")[0])')
sleep 0.5
ip netns exec autopod-demo-a "$BUN" test/fixtures/tcp-client.ts "$IP" 7000 20 >"$DEMO/client.json" 2>"$DEMO/client.err" &
CLIENT=$!
sleep 1
a ps

step "Checkpoint it (the pod stops), then restore it"
ID=$(a checkpoint counter)
a ps
a images
sleep 1
a restore "$ID"
sleep 1
check_counter a
a logs counter | tail -n 3 || true

step "The client outside the pod kept its connection"
kill -TERM "$CLIENT"; wait "$CLIENT" || true; CLIENT=""
cat "$DEMO/client.json"
grep -q '"errors":\[\]' "$DEMO/client.json" || die "the client saw errors"
grep -q '"closed":false' "$DEMO/client.json" || die "the connection was closed"

step "Export it, import it on host B and restore it there"
a checkpoint counter --export "$DEMO/counter.img" >/dev/null
ls -l "$DEMO/counter.img"
b restore --import "$DEMO/counter.img"
sleep 1
b ps
check_counter b

step "This host's patch status"
"$AUTOPOD" status || true

step "Done: everything the demo made is being removed"
