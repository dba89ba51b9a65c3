#!/usr/bin/env bash
# buf lint + format, then `buf breaking`: the working tree's protos against the protos of a base commit,
# the first of these that exists (the script prints which one it used):
#   1. $PROTOS_BASE, any commit-ish (e.g. PROTOS_BASE=v0.3.0 bash scripts/check_protos.sh);
#   2. `git merge-base HEAD origin/main`, when that is not HEAD itself: a branch (or local commits not yet
#      pushed) is checked against the main it started from, whatever it changed in between;
#   3. the last tag reachable from HEAD (`git describe --tags --abbrev=0`): on main itself (CI checks a
#      fresh clone of main, where origin/main is HEAD) the API must stay compatible with the last release;
#   4. the first commit that added protos/: with no tag yet, compatible with every API ever published.
# Tag a release to move the baseline of 3 past a deliberate breaking change. The base's protos and
# buf.yaml are taken with `git archive`, so any commit in the history works; when the base cannot be
# read (a shallow clone: `git fetch --unshallow`), the breaking check is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=.venv/bin/buf
$BUF lint
$BUF format --diff --exit-code

commit_of() { git rev-parse -q --verify "$1^{commit}" 2>/dev/null; }

base="" why=""
head=$(commit_of HEAD || true)
if [ -n "${PROTOS_BASE:-}" ]; then
  base=$(commit_of "$PROTOS_BASE") || { echo "protos: PROTOS_BASE=$PROTOS_BASE is not a commit" >&2; exit 1; }
  why="PROTOS_BASE=$PROTOS_BASE"
fi
if [ -z "$base" ] && [ -n "$head" ] && commit_of origin/main >/dev/null; then
  mb=$(git merge-base HEAD origin/main 2>/dev/null || true)
  if [ -n "$mb" ] && [ "$mb" != "$head" ]; then
    base=$mb why="merge-base with origin/main"
  fi
fi
if [ -z "$base" ] && [ -n "$head" ] && tag=$(git describe --tags --abbrev=0 2>/dev/null); then
  base=$(commit_of "$tag") why="last tag $tag"
fi
if [ -z "$base" ] && [ -n "$head" ]; then
  if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    echo "protos: lint and format passed; breaking check SKIPPED: shallow clone without origin/main or a tag (git fetch --unshallow)"
    exit 0
  fi
  base=$(git rev-list HEAD -- protos | tail -n 1)
  why="first commit with protos/"
fi

if [ -z "$base" ]; then
  echo "protos: lint and format passed; no commit with protos to check breaking changes against"
  exit 0
fi
short=$(git rev-parse --short "$base")
against=$(mktemp -d)
trap 'rm -rf "$against"' EXIT
if ! git archive "$base" buf.yaml protos 2>/dev/null | tar -x -C "$against" 2>/dev/null; then
  echo "protos: lint and format passed; breaking check SKIPPED: cannot read protos/ and buf.yaml at $short ($why)"
  exit 0
fi
echo "protos: breaking-change check against $short ($why)"
$BUF breaking --against "$against"
echo "protos: lint, format and breaking-change check (against $short, $why) passed"
