#!/usr/bin/env bash
# A Docker engine and the local base image for the container suite (tests/containers) and `make image`,
# on a machine that cannot pull from any registry. Idempotent and cached: each step is skipped when done.
#
#   1. docker.io + debootstrap from Debian (apt) when `dockerd` or `debootstrap` is missing;
#   2. dockerd started (overlay2, iptables on: published ports need the NAT rules) unless one answers;
#   3. the base image local/python:3.11-bookworm (Debian bookworm minbase + python3, python3-venv,
#      ca-certificates) built with debootstrap and `docker import`, once: skipped when the tag exists.
#
# When Docker cannot run here (no root to install it, the daemon does not start), it says why on stdout
# (one line, "docker unavailable: <reason>"), writes that reason to .agentgpt/docker-unavailable and exits 0:
# the container suite then skips with that reason instead of failing `make test` on such a machine.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${AGENTGPT_BASE_IMAGE:-local/python:3.11-bookworm}"
REASON_FILE="$HERE/.agentgpt/docker-unavailable"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/agentgpt-dockerd.log}"
mkdir -p "$HERE/.agentgpt"

unavailable() {
  echo "docker unavailable: $*"
  printf '%s\n' "$*" > "$REASON_FILE"
  exit 0
}

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; fi
fi

engine_up() { ${SUDO} docker info >/dev/null 2>&1; }

if ! engine_up; then
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
      unavailable "no Docker engine, and installing docker.io needs root (run scripts/docker-engine.sh as root)"
    fi
    echo "installing docker.io and debootstrap (apt)"
    ${SUDO} apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends docker.io debootstrap \
      >/dev/null 2>&1 || unavailable "apt-get install docker.io debootstrap failed"
  fi
  echo "starting dockerd (log: $DOCKERD_LOG)"
  ${SUDO} rm -f /var/run/docker.pid
  # setsid: the daemon outlives this script and the make that ran it (it is the machine's engine).
  ${SUDO} setsid dockerd --storage-driver=overlay2 --iptables=true >"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do engine_up && break; sleep 0.5; done
  engine_up || unavailable "dockerd did not start within 60 s: $(tail -n 3 "$DOCKERD_LOG" 2>/dev/null | tr '\n' ' ')"
fi
rm -f "$REASON_FILE"

if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1
fi

if ! ${SUDO} docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  # The machine's own Debian mirror (it is the one apt can reach), deb.debian.org otherwise.
  MIRROR="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)"
  MIRROR="${MIRROR:-http://deb.debian.org/debian}"
  ROOTFS="$(mktemp -d /tmp/agentgpt-rootfs.XXXXXX)"
  echo "building $BASE_IMAGE with debootstrap from $MIRROR (about a minute, once per machine)"
  if ! ${SUDO} debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$ROOTFS" "$MIRROR" > "$ROOTFS.log" 2>&1; then
    ${SUDO} rm -rf "$ROOTFS"
    unavailable "debootstrap of the base image failed (see $ROOTFS.log)"
  fi
  ${SUDO} rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  ${SUDO} tar -C "$ROOTFS" -c . | ${SUDO} docker import - "$BASE_IMAGE" >/dev/null \
    || unavailable "docker import of the base image failed"
  ${SUDO} rm -rf "$ROOTFS" "$ROOTFS.log"
fi
echo "docker ready: engine $(${SUDO} docker version --format '{{.Server.Version}}'), base image $BASE_IMAGE"
