#!/usr/bin/env bash
# buf lint + format, and a breaking-change check against the previous commit's protos.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=.venv/bin/buf
$BUF lint
$BUF format --diff --exit-code
if git rev-parse -q --verify HEAD~1 >/dev/null && git cat-file -e HEAD~1:protos 2>/dev/null; then
  $BUF breaking --against ".git#ref=HEAD~1"
  echo "protos: lint, format and breaking-change check (against HEAD~1) passed"
else
  echo "protos: lint and format passed; no previous commit with protos to check breaking changes against"
fi
