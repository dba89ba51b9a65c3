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
STAMP_ARLOCAL := tools/arlocal/node_modules/.installed
STAMP_ZK_NODE := circuits/node_modules/.installed
# The zk_batch_prover's circuit and Groth16 setup, cached under ~/.cache (minutes the first time on a machine).
ZK_SETUP := .agentgpt/zk/setup.json
# promtool (Debian's `prometheus` package) tests the alert rules; installed once per machine.
PROMTOOL := /usr/bin/promtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
LOAD_ARGS ?=
# e.g. BENCH_ARGS="--repeat 5 --only session_api" (bench/run.py --help)
BENCH_ARGS ?=
# make test runs the files on this many pytest-xdist workers (a file stays on one worker, so a module's
# stack starts once). The suite spends about 40% of its time waiting (leases lapsing, blocks, processes
# starting), so one worker more than the CPUs (at least 3) keeps them busy; measured on 2 CPUs under
# load, all tests passing: 20.7 min with 2 workers, 20.0 with 3 while other jobs took the CPUs.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); n=$$((n + 1)); [ $$n -lt 3 ] && n=3; echo $$n)
# mypy --strict covers the library, the services and the application package once it exists.
MYPY_PACKAGES := agentgpt services $(wildcard apps)

.PHONY: setup up test coverage coverage-relay test-chaos chaos check protos contracts docs lint bench load image docker lock clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(STAMP_PY) $(STAMP_NODE) $(STAMP_IPFS) $(STAMP_ARLOCAL) $(PROMTOOL) $(ZK_SETUP)  ## install Python deps (locked), Node toolchain (locked), IPFS test node, arlocal (Arweave test gateway), promtool, the zk circuit and its trusted setup (cached)

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

# sqlite3 compiles from source (minutes): install.sh keeps the built node_modules in ~/.cache keyed by the lockfile.
$(STAMP_ARLOCAL): tools/arlocal/package.json tools/arlocal/package-lock.json
	bash tools/arlocal/install.sh
	touch $@

$(STAMP_ZK_NODE): circuits/package.json circuits/package-lock.json
	cd circuits && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

$(ZK_SETUP): circuits/batch_chain.circom $(STAMP_ZK_NODE) scripts/zk_setup.py | $(STAMP_PY)
	$(PY) scripts/zk_setup.py
	touch $@

$(PROMTOOL):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus

up: setup  ## start the local stack and run the demo session (Ctrl-C stops everything)
	$(VENV)/bin/agentgpt up

protos: $(STAMP_PY)  ## regenerate the protobuf stubs
	$(PY) scripts/gen_protos.py

contracts: setup  ## recompile the contracts (and the demo market) into their artifacts
	$(PY) scripts/build_contracts.py

check: setup  ## generated code fresh; protos lint/format/breaking; ruff lint + format; mypy --strict; import contracts
	$(PY) scripts/gen_protos.py --check
	$(PY) scripts/build_contracts.py --check
	$(PY) scripts/make_checkpoint_vectors.py --check
	$(PY) scripts/zk_setup.py --check-constants
	$(PY) scripts/zk_setup.py --check
	bash scripts/check_protos.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(MYPY_PACKAGES)
	if [ -f .importlinter ]; then $(VENV)/bin/lint-imports; fi

# make test measures line and branch coverage of the in-process tests ([tool.coverage.*] in pyproject.toml),
# prints it per package and writes .agentgpt/coverage/html; the relay path must be fully covered (checked
# on a full run only: with PYTEST_ARGS the summary is printed, not enforced).
# make test runs the suite, then the relay path's coverage from the tests that drive it: every line and
# branch of RELAY_PATH, enforced (a coverage trace of the whole suite would more than double its time).
# `make coverage` measures the whole suite: per-package figures, HTML and XML under .agentgpt/coverage.
RELAY_TESTS := tests/unit/session tests/unit/test_cli_errors.py tests/integration/session/test_onchain_lifecycle.py

test: check docker  ## everything: checks, then unit, component, integration, end-to-end and container tests; the relay path's coverage
	$(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(MAKE) --no-print-directory coverage-relay)

coverage-relay: setup  ## 100% line and branch coverage of the owner-authenticated relay path, enforced
	mkdir -p .agentgpt/coverage && rm -f .agentgpt/coverage/.coverage*
	$(PY) -m pytest -p no:cacheprovider -q -n $(PYTEST_WORKERS) --cov --cov-report= $(RELAY_TESTS)
	$(PY) scripts/coverage_report.py --strict-only

coverage: check docker  ## the whole suite under branch coverage: per-package figures (< 85% flagged), HTML and XML reports
	mkdir -p .agentgpt/coverage && rm -f .agentgpt/coverage/.coverage*
	$(PY) -m pytest -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --cov --cov-report= $(PYTEST_ARGS)
	$(PY) scripts/coverage_report.py $(if $(PYTEST_ARGS),--no-strict)

test-chaos: setup  ## only the failure tests: executors, services and nodes killed, stopped and restarted (make test runs them too)
	$(PY) -m pytest -p no:cacheprovider -m chaos $(PYTEST_ARGS)

docs: $(STAMP_PY)  ## regenerate the README's configuration table
	$(PY) scripts/update_readme.py

lint: check  ## alias of check

bench: setup  ## benchmarks: each bench/*.py --repeat times, ratios to same-run baselines -> .agentgpt/bench/report.json + a table
	$(PY) bench/run.py $(BENCH_ARGS)

chaos: setup  ## the chaos run: seeded kills, stops, IPFS restarts and reorgs under load, then the invariants (CHAOS_ARGS="--seed N")
	$(PY) load/chaos.py --json .agentgpt/chaos.json $(CHAOS_ARGS)

load: setup  ## the load run: 1,000 concurrent sessions with tasks through the full stack on PostgreSQL (LOAD_ARGS="--sessions 100")
	$(PY) load/run.py --json .agentgpt/load.json $(LOAD_ARGS)

lock: | $(UV)  ## re-resolve the lockfiles after changing pyproject.toml (dev + runtime)
	$(UV) pip compile -q pyproject.toml --extra dev -o requirements.lock --python-version 3.11
	$(UV) pip compile -q pyproject.toml -o requirements-runtime.lock --python-version 3.11

# The Docker engine and the base image built locally (no registry): idempotent, cached on the machine; on a
# machine where Docker cannot run it says why and succeeds, and the container suite skips with that reason.
docker:  ## a running Docker engine and the local base image local/python:3.11-bookworm (for image and the container suite)
	bash scripts/docker-engine.sh

image: docker  ## build the one container image of the four services: localhost/agentgpt-sessions:dev (and :<content hash>)
	bash tools/containers/build.sh project

clean:  ## remove installed toolchains and local state
	rm -rf $(VENV) .tools node_modules tools/ipfs-node/node_modules tools/arlocal/node_modules circuits/node_modules .agentgpt
