#!/usr/bin/env bash
# Start/stop a throw-away js-ipfs (npm ipfs@0.66.1) daemon with a Kubo-compatible RPC API on loopback.
# Offline: no swarm listeners, no bootstrap peers, no MDNS/webRTC discovery, no delegates, no preload.
#
#   jsipfs-node.sh install            # npm ci into $JSIPFS_DIR (package.json + package-lock.json there), then patch
#   jsipfs-node.sh start              # init repo if missing, start daemon, wait until RPC answers
#   jsipfs-node.sh stop
#
# env: JSIPFS_DIR (dir holding package.json/node_modules), IPFS_PATH (repo dir),
#      IPFS_API_PORT (15001), IPFS_GW_PORT (18080), JSIPFS_LOG, JSIPFS_PIDFILE
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JSIPFS_DIR="${JSIPFS_DIR:-$HERE}"
export IPFS_PATH="${IPFS_PATH:-${TMPDIR:-/tmp}/jsipfs-repo}"
API_PORT="${IPFS_API_PORT:-15001}"
GW_PORT="${IPFS_GW_PORT:-18080}"
LOG="${JSIPFS_LOG:-$IPFS_PATH.log}"
PIDFILE="${JSIPFS_PIDFILE:-$IPFS_PATH.pid}"
JSIPFS="$JSIPFS_DIR/node_modules/.bin/jsipfs"
# Node < 22 lacks Promise.withResolvers; newer transitive deps (mortice>=3.1 -> it-queue) use it.
# The lockfile pins mortice 3.0.6, this polyfill is a second line of defence.
POLYFILL="$JSIPFS_DIR/withresolvers-polyfill.cjs"

write_polyfill() {
  cat > "$POLYFILL" <<'JS'
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
JS
}

case "${1:-start}" in
install)
  # npm ci: exact lockfile; overrides pin mortice 3.0.6 (Node 20) and stub wrtc/electron-webrtc
  # (optional webRTC deps whose install needs GitHub/binary downloads). Install scripts are not needed.
  ( cd "$JSIPFS_DIR" && npm ci --no-audit --no-fund --prefer-offline --ignore-scripts )
  "$HERE/patch-jsipfs.sh" "$JSIPFS_DIR"
  write_polyfill
  ;;
start)
  [ -f "$POLYFILL" ] || write_polyfill
  if [ ! -f "$IPFS_PATH/config" ]; then
    cfg="$(mktemp)"
    cat > "$cfg" <<JSON
{
  "Addresses": { "API": "/ip4/127.0.0.1/tcp/$API_PORT", "Gateway": "/ip4/127.0.0.1/tcp/$GW_PORT",
                 "RPC": "", "Swarm": [], "Delegates": [], "Announce": [], "NoAnnounce": [] },
  "Bootstrap": [],
  "Discovery": { "MDNS": { "Enabled": false, "Interval": 10 }, "webRTCStar": { "Enabled": false } },
  "Swarm": { "DisableNatPortMap": true, "ConnMgr": { "LowWater": 0, "HighWater": 0 } },
  "Routing": { "Type": "none" }
}
JSON
    NODE_OPTIONS="--require $POLYFILL" "$JSIPFS" init --profile test --emptyRepo --defaultConfig "$cfg" >/dev/null
    rm -f "$cfg"
  fi
  JSIPFS_LOCAL_ONLY="${JSIPFS_LOCAL_ONLY:-1}" NODE_OPTIONS="--require $POLYFILL" nohup "$JSIPFS" daemon --offline --enable-preload=false >"$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 300); do
    if curl -sf -X POST "http://127.0.0.1:$API_PORT/api/v0/version" >/dev/null 2>&1; then
      echo "js-ipfs RPC ready on /ip4/127.0.0.1/tcp/$API_PORT (pid $(cat "$PIDFILE"), repo $IPFS_PATH)"; exit 0
    fi
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "daemon exited:"; cat "$LOG"; exit 1; }
    sleep 0.2
  done
  echo "timeout waiting for js-ipfs RPC"; cat "$LOG"; exit 1
  ;;
stop)
  if [ -f "$PIDFILE" ]; then
    pid="$(cat "$PIDFILE")"
    # jsipfs is a node process started directly by nohup: SIGTERM lets it close the repo lock cleanly
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
  ;;
*) echo "usage: $0 install|start|stop"; exit 2 ;;
esac
