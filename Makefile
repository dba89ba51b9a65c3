# Two commands: `make up` (the local stack + demo session) and `make test` (everything CI runs).
# `make setup` installs what both need; it is idempotent and a no-op when nothing changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := .tools/bin/uv
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
STAMP_IPFS := tools/ipfs-node/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: setup up test check protos contracts docs lint bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(STAMP_PY) $(STAMP_NODE) $(STAMP_IPFS)  ## install Python deps (locked), Node toolchain (locked), IPFS test node

$(UV):
	$(PYTHON) -m venv .tools && .tools/bin/pip install -q --disable-pip-version-check uv==0.13.8

$(STAMP_PY): requirements.lock pyproject.toml | $(UV)
	$(UV) venv -q --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync -q --python $(PY) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

$(STAMP_NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

$(STAMP_IPFS): tools/ipfs-node/package.json tools/ipfs-node/package-lock.json
	bash tools/ipfs-node/jsipfs-node.sh install
	touch $@

up: setup  ## start the local stack and run the demo session (Ctrl-C stops everything)
	$(VENV)/bin/agentgpt up

protos: $(STAMP_PY)  ## regenerate the protobuf stubs
	$(PY) scripts/gen_protos.py

contracts: setup  ## recompile the contracts into agentgpt/contracts/artifacts
	$(PY) scripts/build_contracts.py

check: setup  ## generated code is fresh, protos lint/format/breaking, ruff
	$(PY) scripts/gen_protos.py --check
	$(PY) scripts/build_contracts.py --check
	bash scripts/check_protos.sh
	$(VENV)/bin/ruff check .

test: check  ## everything: checks, then unit, component, integration and end-to-end tests
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

docs: $(STAMP_PY)  ## regenerate the README's configuration table
	$(PY) scripts/update_readme.py

lint: setup  ## ruff + mypy --strict (advisory)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy agentgpt services

bench: setup  ## benchmarks; each prints a ratio against a baseline measured in the same run
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:  ## remove installed toolchains and local state
	rm -rf $(VENV) .tools node_modules tools/ipfs-node/node_modules .agentgpt
