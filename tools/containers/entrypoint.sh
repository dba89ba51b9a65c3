#!/usr/bin/env bash
# One backend of the container suite in the foreground, listening on every interface of the container
# (the suite's Docker network, and the ports it publishes to the host):
#   anvil ARGS...   anvil on :8545 (ARGS: --chain-id N, --block-time S, ...)
#   ipfs            the js-ipfs test node's Kubo-compatible RPC API on :5001 (offline, empty repo)
#   postgres        PostgreSQL 15 on :5432, database and role `agentgpt`, trust auth (a test server)
set -euo pipefail
what="${1:-}"
shift || true
case "$what" in
anvil)
  exec /usr/local/bin/anvil --host 0.0.0.0 --port 8545 "$@"
  ;;
ipfs)
  export IPFS_PATH=/tmp/ipfs-repo
  cfg="$(mktemp)"
  cat > "$cfg" <<'JSON'
{
  "Addresses": { "API": "/ip4/0.0.0.0/tcp/5001", "Gateway": "/ip4/127.0.0.1/tcp/8080",
                 "RPC": "", "Swarm": [], "Delegates": [], "Announce": [], "NoAnnounce": [] },
  "Bootstrap": [],
  "Discovery": { "MDNS": { "Enabled": false, "Interval": 10 }, "webRTCStar": { "Enabled": false } },
  "Swarm": { "DisableNatPortMap": true, "ConnMgr": { "LowWater": 0, "HighWater": 0 } },
  "Routing": { "Type": "none" }
}
JSON
  # Node < 22 lacks Promise.withResolvers; the node's launcher installs the same polyfill.
  polyfill=/opt/ipfs-node/withresolvers-polyfill.cjs
  [ -f "$polyfill" ] || cat > /tmp/withresolvers-polyfill.cjs <<'JS'
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
JS
  [ -f "$polyfill" ] || polyfill=/tmp/withresolvers-polyfill.cjs
  export NODE_OPTIONS="--require $polyfill" JSIPFS_LOCAL_ONLY=1
  /opt/ipfs-node/node_modules/.bin/jsipfs init --profile test --emptyRepo --defaultConfig "$cfg" >/dev/null
  exec /opt/ipfs-node/node_modules/.bin/jsipfs daemon --offline --enable-preload=false
  ;;
postgres)
  bin=/usr/lib/postgresql/15/bin
  data=/tmp/pgdata
  mkdir -p "$data" /tmp/pgsock && chown postgres:postgres "$data" /tmp/pgsock
  run() { runuser -u postgres -- "$@"; }
  run "$bin/initdb" -D "$data" --auth=trust --username=agentgpt >/dev/null
  echo "host all all 0.0.0.0/0 trust" >> "$data/pg_hba.conf"
  run "$bin/pg_ctl" -D "$data" -o "-c listen_addresses='' -k /tmp/pgsock" -w start >/dev/null
  run "$bin/createdb" -h /tmp/pgsock -U agentgpt agentgpt
  run "$bin/pg_ctl" -D "$data" -w stop >/dev/null
  exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses='*' -k /tmp/pgsock
  ;;
*)
  echo "usage: entrypoint.sh anvil ARGS... | ipfs | postgres" >&2
  exit 2
  ;;
esac
