#!/usr/bin/env bash
# Install arlocal (a local Arweave gateway) and arweave-js into tools/arlocal/node_modules, offline-capable.
#
#   install.sh        # npm ci from package-lock.json, or restore the machine's cached build of that lockfile
#
# Why the flags: sqlite3 (arlocal's store) has no prebuilt binary we can reach, so it compiles from source,
# and node-gyp would download Node's headers unless pointed at the ones Debian ships (npm_config_nodedir=/usr).
# package.json overrides avsc to 5.7.7 because arbundles names it by a git URL that cannot be fetched.
#
# Why the cache: that compile takes minutes. A successful install is saved as a tar keyed by the sha256 of
# package-lock.json under ${XDG_CACHE_HOME:-$HOME/.cache}/agentgpt-sessions/, and restored by the next install
# of the same lockfile on this machine (another clone, or after `make clean`) in seconds. A different
# lockfile gets a different key, so a stale build is never restored. AGENTGPT_ARLOCAL_CACHE=0 disables it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/agentgpt-sessions"
KEY="$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)"
TARBALL="$CACHE_DIR/arlocal-$KEY.tar"
USE_CACHE="${AGENTGPT_ARLOCAL_CACHE:-1}"

installed() {
  # The native module is the part that takes long and the part that breaks: require it, not just the files.
  ( cd "$HERE" && node -e "require('sqlite3'); require('arlocal'); require('arweave')" ) >/dev/null 2>&1
}

# node_modules/.lock-sha256 records which lockfile the tree was installed from.
MARKER="$HERE/node_modules/.lock-sha256"
if [ "$(cat "$MARKER" 2>/dev/null)" = "$KEY" ] && installed; then
  echo "arlocal: already installed from this package-lock.json"
  exit 0
fi

if [ "$USE_CACHE" != 0 ] && [ -f "$TARBALL" ]; then
  rm -rf "$HERE/node_modules"
  if tar -xf "$TARBALL" -C "$HERE" && installed; then
    echo "$KEY" > "$MARKER"
    echo "arlocal: restored node_modules from $TARBALL"
    exit 0
  fi
  echo "arlocal: cached build $TARBALL is unusable; removing it and installing from the registry" >&2
  rm -f "$TARBALL"
  rm -rf "$HERE/node_modules"
fi

( cd "$HERE" && npm_config_nodedir="${npm_config_nodedir:-/usr}" npm ci --no-audit --no-fund --prefer-offline )
installed || { echo "arlocal: npm ci finished but sqlite3/arlocal/arweave do not load" >&2; exit 1; }

if [ "$USE_CACHE" != 0 ]; then
  # The cache is a convenience: failing to write it never fails the install.
  if mkdir -p "$CACHE_DIR" 2>/dev/null && tmp="$(mktemp "$CACHE_DIR/.arlocal-XXXXXX.tar" 2>/dev/null)"; then
    # Written to a temp name and renamed: a concurrent install never restores a half-written tar.
    if tar -cf "$tmp" -C "$HERE" node_modules && mv -f "$tmp" "$TARBALL"; then
      echo "arlocal: cached node_modules as $TARBALL"
    else
      rm -f "$tmp"
      echo "arlocal: could not write the cache $TARBALL (the install itself is fine)" >&2
    fi
  else
    echo "arlocal: cannot write to $CACHE_DIR; not caching the build (the install itself is fine)" >&2
  fi
fi
echo "$KEY" > "$MARKER"
