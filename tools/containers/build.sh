#!/usr/bin/env bash
# Build the container suite's images on the local base image (scripts/docker-engine.sh makes it), each
# tagged by a hash of what goes into it and skipped when that tag exists: a machine builds each once per
# change of its inputs, and `make test` after that builds nothing.
#
#   build.sh project    localhost/agentgpt-sessions:<hash> and :dev, from the Dockerfile
#                       (inputs: Dockerfile, .dockerignore, the lockfiles, pyproject.toml, agentgpt/,
#                       services/, apps/__init__.py, apps/cli/)
#   build.sh backends   localhost/agentgpt-backends:<hash>: anvil, the IPFS test node (tools/ipfs-node) and
#                       PostgreSQL (Debian's) on the same base (inputs: this directory, the anvil binary,
#                       tools/ipfs-node, the node binary)
#
# The last line of stdout is the image reference built or found (the tests read it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE_IMAGE="${AGENTGPT_BASE_IMAGE:-local/python:3.11-bookworm}"
PROJECT_IMAGE="localhost/agentgpt-sessions"
BACKENDS_IMAGE="localhost/agentgpt-backends"
ANVIL="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

# A hash of the files' paths and contents (no caches, no bytecode), and of the base image's id.
content_hash() {
  (
    cd "$ROOT"
    find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.mypy_cache/*' -print0 \
      | sort -z | xargs -0 sha256sum
    docker image inspect --format '{{.Id}}' "$BASE_IMAGE"
  ) | sha256sum | cut -c1-16
}

# The host's CA certificates (a TLS-intercepting proxy's among them) for pip inside the build.
extra_ca() {
  cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
}

docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || {
  echo "no base image $BASE_IMAGE: run scripts/docker-engine.sh (make docker) first" >&2
  exit 1
}

case "${1:-}" in
project)
  tag="$PROJECT_IMAGE:$(content_hash Dockerfile .dockerignore requirements-runtime.lock pyproject.toml \
    agentgpt services apps/__init__.py apps/cli)"
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    echo "building $tag (the project image; once per change of its inputs)" >&2
    docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg EXTRA_CA_CERTS="$(extra_ca)" \
      -t "$tag" "$ROOT" >&2
  fi
  docker tag "$tag" "$PROJECT_IMAGE:dev"
  echo "$tag"
  ;;
backends)
  [ -x "$ANVIL" ] && [ -d "$ROOT/tools/ipfs-node/node_modules" ] || {
    echo "anvil or the IPFS node is not installed: run make setup first" >&2
    exit 1
  }
  node_bin="$(readlink -f "$(command -v node)")"
  # The node binary lives outside the tree: its version and size stand for it in the hash.
  tag="$BACKENDS_IMAGE:$( (content_hash tools/containers tools/ipfs-node/package-lock.json \
    tools/ipfs-node/package.json node_modules/@foundry-rs/anvil-linux-amd64; "$node_bin" --version; \
    stat -c %s "$node_bin") | sha256sum | cut -c1-16)"
  if ! docker image inspect "$tag" >/dev/null 2>&1; then
    echo "building $tag (anvil, IPFS node, PostgreSQL; once per change of its inputs)" >&2
    ctx="$(mktemp -d /tmp/agentgpt-backends.XXXXXX)"
    trap 'rm -rf "$ctx"' EXIT
    cp "$ROOT/tools/containers/backends.Dockerfile" "$ROOT/tools/containers/entrypoint.sh" "$ctx/"
    cp "$ANVIL" "$ctx/anvil"
    cp "$node_bin" "$ctx/node"
    cp -a "$ROOT/tools/ipfs-node" "$ctx/ipfs-node"
    docker build -q -f "$ctx/backends.Dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$tag" "$ctx" >&2
  fi
  echo "$tag"
  ;;
*)
  echo "usage: $0 project|backends" >&2
  exit 2
  ;;
esac
