#!/usr/bin/env bash
# A test cluster for people, on this machine (as root): N hosts as network
# namespaces on one LAN bridge, each with its own agent, state directory,
# socket, certificates and peer API address, the routed pod network across
# them, and a client namespace on the LAN. The hosts form a cluster (h1 holds
# the CA) and know each other as peers.
#
#   bash scripts/test-cluster.sh up [N] [--rate 1gbit]   # N hosts (default 2); optional tbf shaping
#   bash scripts/test-cluster.sh env HOST                # prints: export AUTOPOD_CONFIG=...
#   bash scripts/test-cluster.sh down                    # removes everything it made
#
# Then, e.g.:  eval "$(bash scripts/test-cluster.sh env h1)"; autopod peers
# The client namespace: nsenter --net=/run/netns/apcluster-client -- CMD
# Addresses: LAN 10.213.9.0/24, hosts from .10, pods from .128/26, client .250.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${AUTOPOD_CLUSTER_DIR:-/tmp/autopod-cluster}
LAN=10.213.9
BRIDGE=apcluster
die() { echo "test-cluster: $*" >&2; exit 1; }
AUTOPOD=$(command -v autopod || true)
[ -n "$AUTOPOD" ] || AUTOPOD="$ROOT/dist/autopod"
[ -x "$AUTOPOD" ] || die "no autopod: install it (sh install.sh) or build dist/autopod (node_modules/.bin/bun build.ts)"

uplink() { # NETNS ADDRESS LINK
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip link add "$3" type veth peer name lan0 netns "$1"
  ip link set "$3" master "$BRIDGE" up
  ip -n "$1" addr add "$2/24" dev lan0
  ip -n "$1" link set lan0 up
}

up() {
  local n=${1:-2} rate=${2:-}
  [ "$(id -u)" -eq 0 ] || die "run as root: hosts are network namespaces"
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 20 ] || die "N must be 1 to 20 (got \"$n\")"
  [ ! -e "$DIR" ] || die "$DIR exists: run \`$0 down\` first"
  mkdir -p "$DIR"
  ip link add "$BRIDGE" type bridge
  ip link set "$BRIDGE" up
  uplink apcluster-client "$LAN.250" apcl-client
  for i in $(seq 1 "$n"); do
    local h="h$i" addr="$LAN.$((9 + i))"
    mkdir -p "$DIR/$h"
    cat >"$DIR/$h.toml" <<CONF
state_dir = "$DIR/$h/state"
socket = "$DIR/$h/agent.sock"
[network]
mode = "routed"
subnet = "$LAN.128/26"
lan_interface = "lan0"
[peer]
listen = "$addr:7443"
CONF
    uplink "apcluster-$h" "$addr" "apcl-$h"
    if [ -n "$rate" ]; then
      tc qdisc replace dev "apcl-$h" root tbf rate "$rate" burst 256kb latency 50ms
      ip netns exec "apcluster-$h" tc qdisc replace dev lan0 root tbf rate "$rate" burst 256kb latency 50ms
    fi
    nsenter --net="/run/netns/apcluster-$h" -- "$AUTOPOD" agent --config "$DIR/$h.toml" >"$DIR/$h.log" 2>&1 &
    echo $! >"$DIR/$h.pid"
    for _ in $(seq 100); do AUTOPOD_CONFIG="$DIR/$h.toml" "$AUTOPOD" ps >/dev/null 2>&1 && break; sleep 0.1; done
    AUTOPOD_CONFIG="$DIR/$h.toml" "$AUTOPOD" ps >/dev/null || die "the agent of $h did not start (see $DIR/$h.log)"
  done
  AUTOPOD_CONFIG="$DIR/h1.toml" "$AUTOPOD" cluster init --name test --host h1 --address "$LAN.10" >/dev/null
  for i in $(seq 2 "$n"); do
    AUTOPOD_CONFIG="$DIR/h1.toml" "$AUTOPOD" cluster add-host "h$i" --address "$LAN.$((9 + i))" --out "$DIR/h$i.bundle" >/dev/null
    AUTOPOD_CONFIG="$DIR/h$i.toml" "$AUTOPOD" cluster join "$DIR/h$i.bundle" >/dev/null
    rm -f "$DIR/h$i.bundle"
  done
  for i in $(seq 1 "$n"); do
    for j in $(seq 1 "$n"); do
      [ "$i" -eq "$j" ] || AUTOPOD_CONFIG="$DIR/h$i.toml" "$AUTOPOD" peer add "h$j" "https://$LAN.$((9 + j)):7443" >/dev/null
    done
  done
  echo "$n hosts up (state under $DIR); h1 holds the CA. From h1:"
  AUTOPOD_CONFIG="$DIR/h1.toml" "$AUTOPOD" peers
  echo
  echo "Use a host:   eval \"\$(bash $0 env h1)\"; autopod ps"
  echo "The client:   nsenter --net=/run/netns/apcluster-client -- CMD"
  echo "Remove it:    bash $0 down"
}

down() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  for conf in "$DIR"/h*.toml; do
    [ -e "$conf" ] || continue
    local pods
    pods=$(AUTOPOD_CONFIG="$conf" "$AUTOPOD" ps --json 2>/dev/null | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true)
    [ -z "$pods" ] || AUTOPOD_CONFIG="$conf" "$AUTOPOD" rm --force $pods >/dev/null 2>&1 || true
  done
  for pid in "$DIR"/h*.pid; do
    [ -e "$pid" ] || continue
    kill "$(cat "$pid")" 2>/dev/null || true
  done
  sleep 1
  for ns in $(ls /run/netns 2>/dev/null | grep '^apcluster-' || true); do ip netns del "$ns"; done
  for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^apcl-' || true); do ip link del "$l" 2>/dev/null || true; done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$DIR"
  echo "test cluster removed"
}

case "${1:-}" in
  up)
    shift
    n=${1:-2}
    rate=""
    if [ "${2:-}" = "--rate" ]; then rate=${3:?--rate needs a value like 1gbit}; fi
    up "$n" "$rate"
    ;;
  env)
    [ -n "${2:-}" ] && [ -e "$DIR/$2.toml" ] || die "no host \"${2:-}\" (hosts: $(ls "$DIR" 2>/dev/null | grep -o '^h[0-9]*\.toml' | sed 's/\.toml//' | tr '\n' ' '))"
    echo "export AUTOPOD_CONFIG=$DIR/$2.toml"
    ;;
  down) down ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
