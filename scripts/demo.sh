#!/usr/bin/env bash
# autopod's main job, end to end, on this machine (as root):
#   1. build and install autopod (install.sh: binary, config, CRIU, doctor);
#   2. start two agents, each in its own network namespace acting as a host,
#      both on one LAN (a bridge) with a client machine (a third namespace);
#      the pod network is routed across both hosts (network.mode = "routed");
#   3. make them a cluster: `cluster init` on A, `cluster add-host` a bundle
#      for B, `cluster join` it on B, `peer add` each other, `peers`;
#   4. run a pod on host A that counts in memory and appends to a file, and
#      serves an echo port with a client on the LAN connected to it;
#   5. checkpoint it, restore it: the counter goes on without a gap;
#   6. live-migrate it to host B and back (`autopod migrate`: rounds of
#      checkpoints while it runs send only what the peer lacks, then a short
#      freeze hands it over at the same address): the counter goes on, and
#      the LAN client kept its connection through all of it, with nothing lost;
#   7. print the host's patch status.
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
  for h in a b c; do ip link del "apdemo-$h" 2>/dev/null; done
  for p in "${AGENTS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for h in a b c; do ip netns del "autopod-demo-$h" 2>/dev/null; done
  ip link del apdemolan 2>/dev/null
  rm -rf "$DEMO"
}
trap cleanup EXIT
rm -rf "$DEMO" && mkdir -p "$DEMO"

LAN=10.213.61
uplink() { # NETNS ADDRESS: a veth from the LAN bridge into the namespace, as lan0
  local ns=$1 addr=$2
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "apdemo-${ns##*-}" type veth peer name lan0 netns "$ns"
  ip link set "apdemo-${ns##*-}" master apdemolan up
  ip -n "$ns" addr add "$addr/24" dev lan0
  ip -n "$ns" link set lan0 up
}
start_host() { # NAME HOST-OCTET
  local name=$1 octet=$2
  cat >"$DEMO/$name.toml" <<CONF
state_dir = "$DEMO/$name/state"
socket = "$DEMO/$name/agent.sock"
[network]
mode = "routed"
subnet = "$LAN.128/26"
lan_interface = "lan0"
[peer]
listen = "$LAN.$octet:7443"
CONF
  uplink "autopod-demo-$name" "$LAN.$octet"
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

step "Two hosts on one LAN: network namespaces with an agent each, and a client machine"
ip link add apdemolan type bridge
ip link set apdemolan up
uplink autopod-demo-c "$LAN.250"
start_host a 10
start_host b 11
a ps

step "A cluster of the two: a CA on A, a bundle for B, mutual TLS between them"
a cluster init --name demo --host a --address "$LAN.10"
a cluster add-host b --address "$LAN.11" --out "$DEMO/b.bundle"
b cluster join "$DEMO/b.bundle"
a peer add b "https://$LAN.11:7443" >/dev/null
b peer add a "https://$LAN.10:7443" >/dev/null
a peers

step "Run a pod: a counter in memory appended to /counter, and an echo server on port 7000"
a run counter --rootfs "$ROOTFS" -- sh -c 'nc -ll -p 7000 -e cat & i=0; while :; do i=$((i+1)); echo $i >> /counter; sleep 0.05; done'
IP=$(a ps --json | "$BUN" -e 'const p = JSON.parse(await Bun.stdin.text()).find((x) => x.name === "counter"); console.log(p.address.split("/")[0])')
sleep 0.5
nsenter --net=/run/netns/autopod-demo-c -- "$BUN" test/fixtures/tcp-client.ts "$IP" 7000 20 >"$DEMO/client.json" 2>"$DEMO/client.err" &
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

step "Live-migrate it to host B: rounds while it runs (only what B lacks), then a short freeze; the same address on B"
a migrate counter --to b
b ps
check_counter b
echo "A no longer answers for $IP (its route is gone): $(ip -n autopod-demo-a route show "$IP" | wc -l) route(s)"

step "And back to host A (B's updates can now be applied), with a report"
b migrate counter --to a --json | "$BUN" -e 'const r = JSON.parse(await Bun.stdin.text()); console.log(`${r.mode}: ${r.rounds.length} rounds, frozen ${r.freezeMs} ms, ${r.bytesSent} bytes sent of ${r.bytesOffered} offered, ${r.totalMs} ms in all`)'
a ps
check_counter a

step "The client on the LAN kept its connection through all three moves (longest pause: maxGapMs)"
sleep 1
kill -TERM "$CLIENT"; wait "$CLIENT" || true; CLIENT=""
cat "$DEMO/client.json"
grep -q '"errors":\[\]' "$DEMO/client.json" || die "the client saw errors"
grep -q '"closed":false' "$DEMO/client.json" || die "the connection was closed"

step "This host's patch status"
"$AUTOPOD" status || true

step "Done: everything the demo made is being removed"
