#!/bin/sh
# autopod installer.
#
#   curl -fsSL <url>/install.sh | sh -s -- --from-url <url>/autopod
#   sh install.sh --from-file ./autopod        # air-gapped host
#   sh install.sh                              # from a source checkout: builds
#
# Installs /usr/local/bin/autopod, a default /etc/autopod/autopod.toml (never
# overwritten), /var/lib/autopod, an autopod.service unit where systemd runs,
# and CRIU: a good system CRIU stays; else the one the binary carries
# (`autopod criu install`: no compiler, no network); else one built from
# source (scripts/install-criu.sh). Then runs `autopod doctor`. Re-running
# upgrades the binary atomically and never touches state.
set -eu

PROG=install.sh
FROM_URL=""
FROM_FILE=""
PREFIX=""
SKIP_CRIU=0
MODE=install
FORCE=0

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
  cat <<'USAGE'
Usage: install.sh [--from-url URL | --from-file PATH] [--prefix DIR] [--skip-criu]
       install.sh --uninstall | --purge [--prefix DIR] [--force]

Sources of the binary (default: build from the source checkout this script is in):
  --from-url URL    download URL and URL.sha256, and verify the checksum
  --from-file PATH  install a binary copied to this host (air-gapped install)

Options:
  --prefix DIR      install under DIR instead of / (for tests); the config then
                    points state and socket under DIR too
  --skip-criu       do not install CRIU
  --uninstall       remove the binary and the unit; keep config and state
  --purge           also remove config and state (/etc/autopod, /var/lib/autopod)
  --force           uninstall or purge even while the agent reports pods
  --print-unit      print the systemd unit this would write, and change nothing
  -h, --help        show this help
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    --from-url) [ $# -ge 2 ] || die "--from-url needs a URL"; FROM_URL=$2; shift 2 ;;
    --from-file) [ $# -ge 2 ] || die "--from-file needs a PATH"; FROM_FILE=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a DIR"; PREFIX=$2; shift 2 ;;
    --skip-criu) SKIP_CRIU=1; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) MODE=purge; shift ;;
    --force) FORCE=1; shift ;;
    --print-unit) MODE=print-unit; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option \"$1\"" ;;
  esac
done

[ -z "$FROM_URL" ] || [ -z "$FROM_FILE" ] || die "give --from-url or --from-file, not both"
if [ -n "$PREFIX" ]; then
  case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
  PREFIX=${PREFIX%/}
fi

BIN_DIR="$PREFIX/usr/local/bin"
BIN="$BIN_DIR/autopod"
SHARE_DIR="$PREFIX/usr/local/share/autopod"
CONF_DIR="$PREFIX/etc/autopod"
CONF="$CONF_DIR/autopod.toml"
STATE_DIR="$PREFIX/var/lib/autopod"
SOCKET="$PREFIX/run/autopod/autopod.sock"
UNIT="$PREFIX/etc/systemd/system/autopod.service"

has_systemd() { [ -z "$PREFIX" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# The directory of this script when run from a file (empty when piped into sh).
SRC_DIR=""
case "$0" in
  */install.sh|install.sh) d=$(cd "$(dirname "$0")" 2>/dev/null && pwd || true)
    if [ -n "$d" ] && [ -f "$d/build.ts" ] && [ -f "$d/package.json" ]; then SRC_DIR=$d; fi ;;
esac

pods_running() {
  [ -x "$BIN" ] || return 1
  out=$("$BIN" ps --json --socket "$SOCKET" 2>/dev/null) || return 1
  case "$out" in *'"name"'*) return 0 ;; *) return 1 ;; esac
}

uninstall() {
  if pods_running && [ "$FORCE" -ne 1 ]; then
    die "the agent still reports pods: stop and remove them (autopod ps), or pass --force"
  fi
  if has_systemd && [ -f "$UNIT" ]; then
    systemctl disable --now autopod.service >/dev/null 2>&1 || true
  fi
  rm -f "$BIN" "$UNIT"
  rm -rf "$SHARE_DIR"
  if has_systemd; then systemctl daemon-reload || true; fi
  log "removed $BIN and the service unit"
  if [ "$MODE" = purge ]; then
    rm -rf "$STATE_DIR" "$CONF_DIR"
    log "purged $STATE_DIR and $CONF_DIR"
  else
    log "kept $CONF_DIR and $STATE_DIR (use --purge to remove them)"
  fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch() { # URL DEST
  if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
  else die "neither curl nor wget is installed: copy the binary here and use --from-file"; fi
}

# Puts the new binary at $NEW (a temporary file beside the target).
obtain_binary() {
  if [ -n "$FROM_URL" ]; then
    log "downloading $FROM_URL"
    fetch "$FROM_URL" "$NEW" || die "cannot download $FROM_URL"
    fetch "$FROM_URL.sha256" "$NEW.sha256" || die "cannot download $FROM_URL.sha256 (refusing an unverified binary)"
    want=$(cut -d' ' -f1 <"$NEW.sha256")
    rm -f "$NEW.sha256"
    got=$(sha256_of "$NEW")
    [ "$want" = "$got" ] || die "checksum mismatch for $FROM_URL: expected $want, got $got"
    log "checksum verified ($got)"
  elif [ -n "$FROM_FILE" ]; then
    [ -f "$FROM_FILE" ] || die "no such file: $FROM_FILE"
    cp "$FROM_FILE" "$NEW"
  elif [ -n "$SRC_DIR" ]; then
    log "building from the source checkout in $SRC_DIR"
    if [ ! -x "$SRC_DIR/node_modules/.bin/bun" ]; then
      command -v npm >/dev/null 2>&1 || die "npm is needed to build from source (apt-get install npm), or use --from-file"
      (cd "$SRC_DIR" && npm ci --no-audit --no-fund) || die "npm ci failed"
    fi
    (cd "$SRC_DIR" && ./node_modules/.bin/bun build.ts --outfile "$NEW") || die "build failed"
  else
    die "no binary to install: pass --from-url URL or --from-file PATH (or run from a source checkout)"
  fi
  chmod 0755 "$NEW"
  "$NEW" version >/dev/null 2>&1 || die "the new binary does not run on this host: $("$NEW" version 2>&1 | head -n 3)"
}

write_config() {
  mkdir -p "$CONF_DIR"
  if [ -e "$CONF" ]; then
    log "kept existing $CONF"
    return
  fi
  tmp="$CONF.new.$$"
  {
    echo "# autopod configuration. Every key, its default and meaning: autopod config show"
    echo "# Environment variables AUTOPOD_<SECTION>_<KEY> override this file; flags override both."
    echo "state_dir = \"$STATE_DIR\""
    echo "socket = \"$SOCKET\""
    echo "log_level = \"info\""
    echo ""
    echo "[network]"
    echo "bridge = \"autopod0\""
    echo "subnet = \"10.213.0.0/24\""
    echo "nat = false"
  } >"$tmp"
  mv -f "$tmp" "$CONF"
  log "wrote $CONF"
}

unit_text() {
  cat <<UNIT
[Unit]
Description=autopod agent: pods that survive host patching
Documentation=https://example.invalid/autopod
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=$BIN agent --config $CONF
Restart=always
RestartSec=2
# Pods are children of the agent but must outlive it (restarts, upgrades):
# only the agent itself is stopped.
KillMode=process
Delegate=yes

[Install]
WantedBy=multi-user.target
UNIT
}

write_unit() {
  if ! has_systemd; then
    log "systemd is not running here: start the agent with"
    log "  $BIN agent --config $CONF"
    log "under your supervisor (it must survive logout; pods keep running when it stops)"
    return
  fi
  tmp="$UNIT.new.$$"
  unit_text >"$tmp"
  mv -f "$tmp" "$UNIT"
  systemctl daemon-reload
  systemctl enable autopod.service >/dev/null 2>&1 || true
  if systemctl is-active --quiet autopod.service; then
    systemctl restart autopod.service && log "restarted autopod.service on the new binary"
  else
    systemctl start autopod.service && log "started autopod.service"
  fi
}

install_criu() {
  if [ "$SKIP_CRIU" -eq 1 ]; then log "skipping CRIU (--skip-criu)"; return; fi
  [ "$(id -u)" -eq 0 ] || { log "not root: skipping CRIU (run as root to install it)"; return; }
  script="$SHARE_DIR/install-criu.sh"
  if [ -n "$SRC_DIR" ] && [ -f "$SRC_DIR/scripts/install-criu.sh" ]; then script="$SRC_DIR/scripts/install-criu.sh"; fi
  # 1. A good system CRIU (new enough for this kernel, with autopod's patches) is used as it is.
  if bash "$script" --check; then return; fi
  # 2. The CRIU the binary carries: no compiler, no network (an air-gapped host).
  log "no good system CRIU: installing the one this binary carries"
  if "$BIN" criu install --prefix "$PREFIX/usr/local/lib/autopod/criu"; then return; fi
  # 3. Build it from source (needs the network and Debian's build dependencies).
  log "the binary's own CRIU could not be installed (see above): building CRIU from source"
  bash "$script" || die "CRIU installation failed (see above); re-run with --skip-criu to install autopod without it"
}

if [ "$MODE" = print-unit ]; then unit_text; exit 0; fi
if [ "$MODE" != install ]; then uninstall; exit 0; fi

mkdir -p "$BIN_DIR" "$SHARE_DIR"
NEW="$BIN_DIR/.autopod.new.$$"
trap 'rm -f "$NEW" "$NEW.sha256"' EXIT INT TERM
UPGRADE=0
[ -e "$BIN" ] && UPGRADE=1
obtain_binary
mv -f "$NEW" "$BIN"   # atomic: a running agent keeps its old inode
if [ "$UPGRADE" -eq 1 ]; then log "upgraded $BIN to $("$BIN" version)"; else log "installed $BIN: $("$BIN" version)"; fi
"$BIN" __install-criu-script >"$SHARE_DIR/install-criu.sh.new" && mv -f "$SHARE_DIR/install-criu.sh.new" "$SHARE_DIR/install-criu.sh"

mkdir -p "$STATE_DIR"
chmod 0700 "$STATE_DIR"
write_config
install_criu
write_unit

log "running autopod doctor"
if "$BIN" doctor --config "$CONF"; then
  log "done"
else
  log "installed, but doctor found something missing: see the fixes above"
fi
